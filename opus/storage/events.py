"""Job-change events across processes, so a blocked WAIT wakes when the phase changes.

Design (DESIGN.md, principle 6): each process has one :class:`JobEvents` hub with one
listener thread; every waiter registers a :class:`threading.Event` for its job in the hub,
and the listener sets it when a change of that job is announced by any process. Waiters
never poll the database.

Two transports carry the announcements between processes:

- PostgreSQL: ``pg_notify`` inside the very transaction that changes the row (so it is sent
  at commit and only if the commit succeeds); one ``LISTEN`` connection per process.
- SQLite: a Unix datagram socket per listening process in a shared directory; a writer
  sends one small datagram to every socket there after its commit. Sockets of processes
  that died are removed by the first writer that finds them refusing.

A message is ``"<job_id> <phase>"``; phase ``DELETED`` announces a deletion.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import sqlalchemy as sa

from opus.storage.health import health_of

log = logging.getLogger("opus.events")

CHANNEL = "opus_job"
Message = tuple[str, str]


class Transport:
    """How announcements travel between processes."""

    def publish_in_transaction(self, connection: sa.Connection, messages: list[Message]) -> None:
        """Called inside the writing transaction, before commit."""

    def publish_after_commit(self, messages: list[Message]) -> None:
        """Called after the writing transaction committed."""

    def listen(self, deliver: Callable[[str, str], None], ready: threading.Event) -> None:
        """Run forever in the listener thread, calling ``deliver`` for each message."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class PostgresTransport(Transport):
    """LISTEN/NOTIFY: delivered by the server to every listening connection at commit."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._closed = threading.Event()  # set by close(), from another thread

    def publish_in_transaction(self, connection: sa.Connection, messages: list[Message]) -> None:
        for job_id, phase in messages:
            connection.execute(
                sa.text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": f"{job_id} {phase}"},
            )

    def listen(self, deliver: Callable[[str, str], None], ready: threading.Event) -> None:
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        health = health_of(self.engine)
        lost = False
        while not self._closed.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    ready.set()
                    if lost:  # changes made while nobody listened: wake everybody
                        lost = False
                        health.recovered()
                        deliver("*", "UNKNOWN")
                    while not self._closed.is_set():
                        for notify in conn.notifies(timeout=5.0):
                            job_id, _, phase = notify.payload.partition(" ")
                            deliver(job_id, phase)
            except Exception as error:  # the database went away: reconnect, waiters time out
                if self._closed.is_set():
                    break
                health.failed(error)  # logged once per outage
                if not lost:
                    lost = True
                    deliver("*", "UNKNOWN")
                time.sleep(1.0)

    def close(self) -> None:
        self._closed.set()


def socket_directory(run_dir: Path) -> Path:
    """Where the SQLite transport's sockets live: under ``run_dir`` if the path is short
    enough for AF_UNIX (108 bytes), else a directory in /tmp named after ``run_dir``."""
    directory = run_dir / "events"
    if len(str(directory)) > 70:
        digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
        directory = Path(tempfile.gettempdir()) / f"opus-events-{digest}"
    return directory


class SocketTransport(Transport):
    """Unix datagram sockets in one directory; one per listening process."""

    #: How long a writer waits for a listener whose queue is full. The kernel queues only
    #: net.unix.max_dgram_qlen datagrams per socket (10 by default), so a burst of changes
    #: must wait for the listener to drain rather than be dropped.
    SEND_TIMEOUT = 0.5

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.settimeout(self.SEND_TIMEOUT)
        self._receiver: socket.socket | None = None
        self._path: Path | None = None
        self._lock = threading.Lock()
        #: Sockets that missed a message: they get "wake everybody" with the next one.
        self._missed: set[str] = set()

    def publish_after_commit(self, messages: list[Message]) -> None:
        """One datagram per listener with every message of the transaction, one a line."""
        body = "\n".join(f"{job_id} {phase}" for job_id, phase in messages)
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        with self._lock:
            for name in names:
                if not name.endswith(".sock"):
                    continue
                path = str(self.directory / name)
                payload = ("* UNKNOWN\n" + body) if name in self._missed else body
                try:
                    self._sender.sendto(payload.encode(), path)
                    self._missed.discard(name)
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # its process is gone
                    self._missed.discard(name)
                except (TimeoutError, BlockingIOError):
                    # The listener is stuck; its waiters will be woken (all of them) with
                    # the next message that gets through, and they have their own timeout.
                    log.warning("event socket %s did not drain in %s s", name,
                                self.SEND_TIMEOUT)
                    self._missed.add(name)
                except OSError as error:
                    if error.errno != errno.ENOTCONN:
                        log.warning("event socket %s: %s", name, error)

    def listen(self, deliver: Callable[[str, str], None], ready: threading.Event) -> None:
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = self.directory / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        receiver.bind(str(path))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._receiver, self._path = receiver, path
        ready.set()
        while True:
            try:
                data = receiver.recv(65536)
            except OSError:
                return  # closed
            for line in data.decode(errors="replace").splitlines():
                job_id, _, phase = line.partition(" ")
                if job_id:
                    deliver(job_id, phase)

    def close(self) -> None:
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        if self._receiver is not None:
            with contextlib.suppress(OSError):
                self._receiver.shutdown(socket.SHUT_RDWR)
            self._receiver.close()
        self._sender.close()


class JobEvents:
    """The per-process hub: publishes changes and wakes this process's waiters.

    The listener thread starts on first use, after any fork (gunicorn workers each start
    their own), and is a daemon: it never keeps a process alive.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._watchers: dict[str, set[threading.Event]] = {}
        self._subscribers: list[Callable[[str, str], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._pid = os.getpid()

    # -- publishing (called by the store) --------------------------------------------
    def publish_in_transaction(self, connection: sa.Connection, messages: list[Message]) -> None:
        self.transport.publish_in_transaction(connection, messages)

    def publish_after_commit(self, messages: list[Message]) -> None:
        self.transport.publish_after_commit(messages)

    # -- listening ---------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Start the listener thread (idempotent) and wait until it receives."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._ready.clear()
                self._thread = threading.Thread(
                    target=self.transport.listen, args=(self._deliver, self._ready),
                    name="opus-events", daemon=True,
                )
                self._thread.start()
        if not self._ready.wait(timeout):
            log.error("event listener did not start within %s s", timeout)

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(job_id, phase)`` for every change announced (the scheduler)."""
        self._subscribers.append(callback)
        self.start()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[threading.Event]:
        """An event set when ``job_id`` changes. Register *before* reading the job, so a
        change between the read and the wait is not missed."""
        self.start()
        waiter = threading.Event()
        with self._lock:
            self._watchers.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                group = self._watchers.get(job_id)
                if group is not None:
                    group.discard(waiter)
                    if not group:
                        del self._watchers[job_id]

    def _deliver(self, job_id: str, phase: str) -> None:
        with self._lock:
            if job_id == "*":
                targets: Iterable[threading.Event] = [
                    w for group in self._watchers.values() for w in group
                ]
            else:
                targets = list(self._watchers.get(job_id, ()))
        for waiter in targets:
            waiter.set()
        for callback in self._subscribers:
            try:
                callback(job_id, phase)
            except Exception:
                log.exception("event subscriber failed")

    def close(self) -> None:
        self.transport.close()


def make_events(engine: sa.Engine, run_dir: Path) -> JobEvents:
    """The hub for this database: LISTEN/NOTIFY on PostgreSQL, sockets otherwise."""
    if engine.dialect.name == "postgresql":
        return JobEvents(PostgresTransport(engine))
    return JobEvents(SocketTransport(socket_directory(run_dir)))
