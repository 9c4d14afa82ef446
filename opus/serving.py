"""``opus serve``'s web server: gunicorn run in this process with OPUS's settings.

Why gevent by default (issue 13, scope item 4; issue 11, scope item 3): a blocking WAIT
(UWS 1.1 section 2.2.1.2) may last ``wait_max`` seconds. With gthread workers each held
WAIT, and each idle connection, holds a thread; past ``workers x threads`` gunicorn queues
every other request without bound (at 540 waiters ``/availability`` timed out, at 1,000
creation stopped). With gevent workers a WAIT is a greenlet parked on an event: it costs a
socket and a few kilobytes, so thousands are held while short requests are served at once.
The database driver must then yield to other greenlets while it waits for the server:
:func:`cooperative_psycopg` makes sure psycopg 3 does (``bench/waits.py`` measures it).
gthread stays available (``worker_class: gthread``) for deployments that cannot use
monkey-patching; there WAITs are bounded by the thread count.

Every worker caps the connections it holds, in all and per client address
(``connections_max``, ``connections_per_client``); a connection beyond a cap is answered
``503`` with ``Retry-After`` (RFC 9110 section 15.6.4) and closed, never left in the
listen queue. Idle keep-alive connections, and connections that never send a request, are
closed after ``keepalive`` seconds.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import threading
from collections import Counter
from typing import Any

from opus.config import Settings

log = logging.getLogger("opus.serving")

#: Seconds a client turned away by a connection cap is asked to wait.
CONNECTION_RETRY_AFTER = 5


def rejection(reason: str) -> bytes:
    """The whole answer to a connection over a cap: 503, Retry-After, closed."""
    body = f"503 Service Unavailable: {reason}; retry later\n".encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: text/plain; charset=UTF-8\r\n"
            + f"Retry-After: {CONNECTION_RETRY_AFTER}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n".encode()
            + b"Connection: close\r\n\r\n" + body)


class ConnectionCaps:
    """Open connections of one worker process, in all and per client address."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._open: Counter[str] = Counter()
        self._count = 0
        self._lock = threading.Lock()

    @staticmethod
    def address(addr: Any) -> str:
        return str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)

    def admit(self, addr: Any) -> str | None:
        """Count the connection in and return None, or say which cap it is over."""
        key = self.address(addr)
        with self._lock:
            if self._count >= self.total:
                return f"this server holds {self.total} connections already"
            if self._open[key] >= self.per_client:
                return f"{self.per_client} connections from {key} already"
            self._open[key] += 1
            self._count += 1
        return None

    def release(self, addr: Any) -> None:
        key = self.address(addr)
        with self._lock:
            self._count -= 1
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]


def cooperative_psycopg() -> None:
    """Make psycopg 3 wait for the server through gevent's patched ``select``.

    psycopg picks its wait function when it is imported: its C ``wait_c`` blocks the whole
    worker (every greenlet) while one query runs, unless ``select`` was already patched.
    ``opus serve`` imports psycopg in the master (to migrate) before forking the workers,
    so the choice is made again here, after the patch. Nothing to do when psycopg was not
    imported yet: it will see the patch itself.
    """
    import sys

    waiting = sys.modules.get("psycopg.waiting")
    if waiting is None:
        return
    import selectors

    waiting.wait = waiting.wait_poll  # type: ignore[attr-defined]  # select.poll, patched
    waiting._ready = waiting._ready_poll  # type: ignore[attr-defined]
    waiting.DefaultSelector = selectors.DefaultSelector  # type: ignore[attr-defined]


def _gevent_worker(caps_of: Any) -> type:
    from gunicorn.workers.ggevent import GeventWorker

    class OpusGeventWorker(GeventWorker):  # type: ignore[misc]
        """gunicorn's gevent worker, cooperative psycopg, connection caps."""

        def patch(self) -> None:
            super().patch()
            cooperative_psycopg()

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            caps: ConnectionCaps = caps_of(self)
            over = caps.admit(addr)
            if over is not None:
                _reject(client, over, wait=1.0)
                return
            try:
                super().handle(listener, client, addr)
            finally:
                caps.release(addr)

    return OpusGeventWorker


def _gthread_worker(caps_of: Any) -> type:
    from gunicorn.workers import gthread

    class CountedConnection(gthread.TConn):  # type: ignore[misc]
        released = False

        def close(self, graceful: bool = False) -> None:
            if not self.released:
                self.released = True
                self.caps.release(self.client)
            super().close(graceful)

    class OpusThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
        """gunicorn's gthread worker with connection caps (accept() as gunicorn's, with the
        cap checked before the connection takes a thread)."""

        def accept(self, listener: Any) -> None:
            try:
                client_sock, client_addr = listener.accept()
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            caps: ConnectionCaps = caps_of(self)
            over = caps.admit(client_addr)
            if over is not None:
                _reject(client_sock, over, wait=0.0)  # the main loop must not block
                return
            self.nr_conns += 1
            client_sock.setblocking(True)
            conn = CountedConnection(self.cfg, client_sock, client_addr,
                                     listener.getsockname())
            conn.caps = caps
            self.enqueue_req(conn)

    return OpusThreadWorker


def _reject(client: socket.socket, reason: str, wait: float) -> None:
    """Answer 503 on a connection we will not serve. Its request is read first (up to
    ``wait`` seconds) so that closing does not reset it before the client reads ours."""
    try:
        client.settimeout(wait if wait > 0 else 0.0)
        try:
            client.recv(65536)
        except (BlockingIOError, TimeoutError, socket.timeout):
            pass
        client.settimeout(1.0)
        client.sendall(rejection(reason))
        client.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        client.close()


def _open_files_for(connections: int) -> None:
    """Raise this process's open-file limit to what the caps need (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256  # database connections, job files, the listen socket
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("open-file limit %s is below connections_max %s", hard, connections)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's configuration for ``settings``."""
    def caps_of(worker: Any) -> ConnectionCaps:
        # One per worker process, made in the worker (after the fork).
        caps: ConnectionCaps | None = getattr(worker, "opus_caps", None)
        if caps is None:
            caps = worker.opus_caps = ConnectionCaps(settings.connections_per_client,
                                                     settings.connections_max)
        return caps

    gevent = settings.worker_class == "gevent"
    worker = _gevent_worker(caps_of) if gevent else _gthread_worker(caps_of)
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": worker,
        "threads": 1 if gevent else settings.threads,
        # The caps answer 503 themselves; gunicorn's own limit sits just above them so
        # that it never leaves a connection unanswered in the listen queue.
        "worker_connections": settings.connections_max + 64,
        "backlog": 2048,
        "timeout": 120,
        "graceful_timeout": 5,
        # Idle keep-alive connections (and, with gevent, connections that never send a
        # request) are closed after this long. A client that reuses one just as the server
        # closes it sees the connection reset (seen in CI with a 5 s idle); a long idle
        # time makes that rare.
        "keepalive": settings.keepalive,
        "accesslog": None,
        "loglevel": settings.log_level.lower(),
        # One control socket per user by default: two servers side by side would fight
        # over it.
        "control_socket_disable": True,
        # gunicorn would set wsgi.url_scheme from X-Forwarded-Proto of any local peer;
        # OPUS decides what proxies say (opus/web/proxies.py).
        "secure_scheme_headers": {},
    }


def serve(settings: Settings) -> None:
    """Run gunicorn with OPUS until it is stopped (blocks)."""
    from gunicorn.app.base import BaseApplication

    options = gunicorn_options(settings)
    _open_files_for(settings.connections_max * 2)

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from opus.app import create_app

            return create_app(settings)

    Application().run()
