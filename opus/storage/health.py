"""Whether the database can be reached, logged once per outage rather than once per request.

While PostgreSQL restarts, every request and every scheduler pass fails the same way; a
log line each (16,114 tracebacks in a 10 s outage, issue 13) hides what happened. Each
engine has one :class:`DatabaseHealth`, fed by the engine's own events: a statement or a
connection that fails because the database cannot be reached
(:data:`DATABASE_UNAVAILABLE`) starts an outage, logged once with its cause; the next
statement that succeeds ends it, logged once with its length and how many failures it
caused. The LISTEN connection of :mod:`opus.storage.events` reports to the same object.
One line per outage and per process (each gunicorn worker and the scheduler log their own).

A full disk under SQLite (``SQLITE_FULL``) is no outage of the database: it is answered 507
(:func:`opus.diskspace.disk_full`), and logged where it is answered.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from opus.diskspace import disk_full

log = logging.getLogger("opus.database")

#: What a database that cannot be reached (down, restarting, connection lost, or so slow
#: to connect that the pool ran out) raises: answered 503 with Retry-After, never 500.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (sa.exc.OperationalError,
                                                     sa.exc.InterfaceError,
                                                     sa.exc.TimeoutError)

#: Seconds without a failure before a success ends an outage: while PostgreSQL stops, the
#: sessions it has not terminated yet still answer for a moment (an outage logged thrice).
SETTLE = 1.0
#: Seconds after an outage ended during which a failure belongs to it: a connection the
#: restart killed can be found dead only when next used, after fresh ones have succeeded
#: (seen: the scheduler logged one PostgreSQL restart as two outages, 0.5 s apart).
REOPEN = 5.0


class DatabaseHealth:
    """The outage state of one engine in this process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_failure = 0.0
        self._failures = 0
        self._ended: tuple[float, float] | None = None  # (began, ended) of the last outage

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, error: BaseException) -> None:
        """A failure of reaching the database: logged if it starts an outage."""
        with self._lock:
            self._failures += 1
            self._last_failure = time.monotonic()
            if self._down_since is not None:
                return
            if self._ended is not None and self._last_failure - self._ended[1] < REOPEN:
                self._down_since = self._ended[0]  # the same outage, not logged again
                return
            self._down_since = self._last_failure
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()
        log.error("database %s cannot be reached; answering 503 and retrying until it is "
                  "back: %s", self.name, cause[0] if cause else type(error).__name__)

    def recovered(self) -> None:
        """The database answered: logged if it ends an outage."""
        if not self.down:  # the common case, without the lock
            return
        with self._lock:
            if time.monotonic() - self._last_failure < SETTLE:
                return  # a session the stopping server has not closed yet
            since, self._down_since = self._down_since, None
            failures, self._failures = self._failures, 0
            if since is not None:
                self._ended = (since, time.monotonic())
        if since is None:  # another thread logged it
            return
        seconds = time.monotonic() - since
        log.warning("database %s is back after %.1f s (%d failed attempts meanwhile)",
                    self.name, seconds, failures)


_health: "weakref.WeakKeyDictionary[sa.Engine, DatabaseHealth]" = weakref.WeakKeyDictionary()


def health_of(engine: sa.Engine) -> DatabaseHealth:
    """The health of ``engine``, watching its events from the first call on."""
    found = _health.get(engine)
    if found is None:
        found = _health.setdefault(engine, DatabaseHealth(
            engine.url.render_as_string(hide_password=True)))
        _watch(engine, found)
    return found


def _watch(engine: sa.Engine, health: DatabaseHealth) -> None:
    def on_error(context: Any) -> None:  # sa.engine.ExceptionContext
        if context.is_pre_ping:  # the pool reconnects at once; only a failure of that counts
            return
        error = context.sqlalchemy_exception or context.original_exception
        if isinstance(error, DATABASE_UNAVAILABLE) and not disk_full(error):
            health.failed(error)

    def on_statement(*_args: Any) -> None:
        health.recovered()

    event.listen(engine, "handle_error", on_error)
    event.listen(engine, "after_cursor_execute", on_statement)
