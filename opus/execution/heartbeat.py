"""The scheduler's heartbeat and leadership thread, and its log of database outages.

Every ``scheduler_timeout / 4`` seconds the thread renews this process's claim to lead
(:class:`opus.storage.claims.Leadership`) and writes its heartbeat; the scheduler loop
works only while it leads. The claims are atomic anyway, so a short overlap of two
leaders (a paused process waking up) cannot run a job twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from opus.storage.claims import Leadership
from opus.uws.models import utcnow

log = logging.getLogger("opus.scheduler")


class Outage:
    """One log line when the database becomes unreachable, one when it is back: not one
    per failed attempt."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._down = False
        self._lock = threading.Lock()

    def failed(self, error: BaseException) -> None:
        with self._lock:
            first, self._down = not self._down, True
        if first:
            log.error("%s: database unavailable (%s); retrying until it is back",
                      self.what, str(error).splitlines()[0] if str(error) else type(error))

    def succeeded(self) -> None:
        with self._lock:
            back, self._down = self._down, False
        if back:
            log.warning("%s: database reachable again", self.what)

    @property
    def down(self) -> bool:
        return self._down


class Heartbeat:
    """Renews the leadership every ``interval`` seconds until ``stop``; calls
    ``on_lead`` when this process becomes the leader."""

    def __init__(self, leadership: Leadership, interval: float,
                 on_lead: Callable[[], None]) -> None:
        self.leadership = leadership
        self.interval = interval
        self.on_lead = on_lead
        self.leading = threading.Event()
        self.outage = Outage("scheduler heartbeat")
        self._said_standby = False

    def beat(self) -> None:
        try:
            leading = self.leadership.renew(utcnow())
        except Exception as error:  # noqa: BLE001 - unreachable, or a schema not migrated
            self.outage.failed(error)
            leading = False
        else:
            self.outage.succeeded()
        if leading and not self.leading.is_set():
            log.info("scheduler %s is the active scheduler", self.leadership.id)
            self.leading.set()
            self.on_lead()
        elif not leading and self.leading.is_set():
            log.warning("scheduler %s is no longer the active scheduler; standing by",
                        self.leadership.id)
            self.leading.clear()
        elif not leading and not self.outage.down and not self._said_standby:
            self._said_standby = True
            log.info("scheduler %s standing by (another one is active)",
                     self.leadership.id)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.beat()
            stop.wait(self.interval)
        self.leading.clear()
        self.leadership.resign()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), daemon=True,
                                  name="scheduler-heartbeat")
        thread.start()
        return thread
