"""Database engines and schema migrations (SQLite embedded, PostgreSQL in production).

SQLite runs in WAL mode so readers never block the writer, with a busy timeout so that two
gunicorn workers and the scheduler queue for the write lock instead of failing. Write
transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that reads and then
writes can fail with SQLITE_BUSY_SNAPSHOT, which no busy timeout retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

#: What a database that cannot be reached raises (answered 503): opus.storage.health.
from opus.storage.health import DATABASE_UNAVAILABLE as DATABASE_UNAVAILABLE
from opus.storage.health import health_of

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url`` with the settings OPUS relies on (WAL and locking on SQLite)."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # created 0600 here: SQLite gives its -wal and -shm files the database's mode
            os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
        engine = sa.create_engine(url, pool_size=20, max_overflow=50, pool_timeout=60)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy's "begin" event, below, decide how transactions start.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: sa.Connection) -> None:
            options = connection.get_execution_options()
            if options.get("single_statement"):
                return  # sqlite3 runs the statement as its own transaction (autocommit)
            if options.get("write"):
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.exec_driver_sql("BEGIN")

        health_of(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # connect_timeout: a server that does not answer (a host gone, a partition) is an
    # outage within seconds, not after the system's TCP timeout of minutes.
    # No pool_pre_ping: it is one more round trip for every checkout (29 % of a creation's
    # time in a gevent worker, py-spy; issue 15). A connection found dead raises
    # DATABASE_UNAVAILABLE once (503 with Retry-After) and SQLAlchemy then drops every
    # pooled connection older than it, so a database restart costs each worker one answer.
    engine = sa.create_engine(url, pool_size=10, max_overflow=40, pool_recycle=3600,
                              connect_args={"connect_timeout": 5})
    health_of(engine)  # one log line per outage (opus.storage.health)
    return engine


#: Seconds between two tries of a SQLite write lock held by another process: doubling from
#: the first to the second.
LOCK_POLL_MIN = 0.0001
LOCK_POLL_MAX = 0.002


class _SqliteWriteLock:
    """Writers queue on a file lock instead of in SQLite's busy handler, which sleeps
    between retries (up to 100 ms at a time): a waiting writer then starts within
    :data:`LOCK_POLL_MAX` of the previous one's commit. Measured with bench/uws.py: worst
    creation latency under 16 clients fell from ~1.4 s to ~0.1 s.

    The lock is polled (``LOCK_NB``, then a short sleep) rather than waited for in
    ``flock``: a blocking ``flock`` blocks a whole gevent worker, every greenlet of it,
    while another process writes; ``time.sleep`` (gevent's, once patched) lets the
    worker serve other requests meanwhile, whose rows then join the same transaction
    (:mod:`opus.storage.group_commit`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a fork needs its own descriptor
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._thread_lock:
            descriptor = self._descriptor()
            pause = LOCK_POLL_MIN
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(pause)
                    pause = min(pause * 2, LOCK_POLL_MAX)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)


_write_locks: "weakref.WeakKeyDictionary[sa.Engine, _SqliteWriteLock]" = (
    weakref.WeakKeyDictionary())


def write_lock(engine: sa.Engine) -> contextlib.AbstractContextManager[None]:
    """Serialises write transactions across processes on a SQLite file; PostgreSQL has
    row locks and needs none."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return contextlib.nullcontext()
    lock = _write_locks.get(engine)
    if lock is None:
        lock = _write_locks.setdefault(engine, _SqliteWriteLock(Path(database + ".writelock")))
    return lock()


@contextlib.contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One write transaction: SQLite writers queue on the file lock, then BEGIN IMMEDIATE
    (see :func:`make_engine`); on PostgreSQL a plain transaction."""
    writer = _writers.get(engine)
    if writer is None:
        # Made once: setting the option on every connection cost 4 % of a creation (py-spy
        # of a gevent worker, issue 15).
        writer = _writers.setdefault(engine, engine.execution_options(write=True))
    with write_lock(engine), writer.connect() as connection:
        with connection.begin():
            yield connection


_writers: "weakref.WeakKeyDictionary[sa.Engine, sa.Engine]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def single_statement(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection whose one write statement is its own transaction, durable when it
    returns: one round trip on PostgreSQL (autocommit, not BEGIN, INSERT, COMMIT), and on
    SQLite one statement under the file lock instead of three (``BEGIN IMMEDIATE`` is not
    needed: a lone write reads nothing before it writes). Issue 15: a PENDING job's INSERT."""
    single = _single.get(engine)
    if single is None:
        options: dict[str, object] = (
            {"isolation_level": "AUTOCOMMIT"} if engine.dialect.name == "postgresql"
            else {"single_statement": True})
        single = _single.setdefault(engine, engine.execution_options(**options))
    with write_lock(engine), single.connect() as connection:
        yield connection
        connection.commit()  # nothing left to commit; ends SQLAlchemy's own transaction


_single: "weakref.WeakKeyDictionary[sa.Engine, sa.Engine]" = weakref.WeakKeyDictionary()


def alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (``opus db upgrade``); safe to run at every start."""
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
