"""Thousands of waiters (issue 13, scope item 4; issue 11, scope item 3): a blocked WAIT
costs the server a socket, not a thread, so 1,000 of them leave creation, ABORT and
/availability answering; connections over a cap get 503 with Retry-After; idle
connections are closed. Behaviour only: the rates are in bench/waits.py.

The waiters come from 125 loopback addresses (127.0.1.1 ...), 8 each, so that the
per-client caps (connections, and WAITs per client) do not turn them away: this file
tests that the server holds them, bench/waits.py how fast it answers meanwhile.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from lxml import etree

from conftest import UWS_NS, Server, start_server

WAITERS = 1000
ADDRESSES = 125


def client_address(index: int) -> str:
    """One of ADDRESSES loopback source addresses (Linux routes all of 127/8 to lo)."""
    spot = index % ADDRESSES
    return f"127.0.1.{spot + 1}"


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def hold_wait(server: Server, job_url: str, index: int, seconds: int = 60) -> socket.socket:
    """A raw WAIT request left blocking (it costs this process a socket, no thread)."""
    sock = socket.create_connection(("127.0.0.1", port_of(server)),
                                    source_address=(client_address(index), 0))
    sock.sendall(f"GET {path_of(job_url)}?WAIT={seconds} HTTP/1.1\r\nHost: opus\r\n\r\n"
                 .encode())
    return sock


def answered(sockets: list[socket.socket]) -> list[socket.socket]:
    """Those of ``sockets`` the server has answered (or closed) by now."""
    ready: list[socket.socket] = []
    for start in range(0, len(sockets), 500):  # select() takes fds below 1024 only
        poller = select.poll()
        chunk = {sock.fileno(): sock for sock in sockets[start:start + 500]}
        for fd in chunk:
            poller.register(fd, select.POLLIN)
        ready.extend(chunk[fd] for fd, _ in poller.poll(0))
    return ready


def read_answer(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """The whole answer on a connection (Content-Length framed), or what came before
    the server closed it."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def quick_stop(server: Server) -> None:
    """SIGQUIT: gunicorn stops at once instead of waiting out the held WAITs (a graceful
    stop would wait ``graceful_timeout`` for them); opus serve then stops its scheduler."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGQUIT)
        server.process.wait(30)


def create_pending(server: Server, count: int) -> list[str]:
    """``count`` PENDING echo jobs, created by 4 clients at once."""
    def create(_: int) -> str:
        return server.create("echo", run=False, text="w")

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(create, range(count)))


#: As deployed (PostgreSQL, where the driver must yield to the other greenlets); the
#: waiters cost the same sockets on SQLite, and bench/waits.py measures both.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_thousand_waiters_leave_the_service_answering(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory()
    session = requests.Session()
    jobs = create_pending(server, WAITERS)
    sockets = [hold_wait(server, job, i) for i, job in enumerate(jobs)]
    try:
        # The service answers beside them (they hold sockets, not the threads it needs).
        assert session.get(f"{server.url}/availability", timeout=30).status_code == 200

        # Creation still answers 303 and the job is there.
        created = session.post(server.rest("echo"), data={"text": "after"},
                               allow_redirects=False, timeout=30)
        assert created.status_code == 303
        assert session.get(created.headers["Location"], timeout=30).status_code == 200

        # ABORT ends a job whose waiter then answers ABORTED at once.
        target = jobs[7]
        aborted = session.post(f"{target}/phase", data={"PHASE": "ABORT"},
                               allow_redirects=False, timeout=30)
        assert aborted.status_code == 303
        answer = read_answer(sockets[7])
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        document = etree.fromstring(answer.partition(b"\r\n\r\n")[2])
        assert document.findtext("uws:phase", namespaces=UWS_NS) == "ABORTED"

        # /availability says the service is up, in its VOSI document.
        availability = session.get(f"{server.url}/availability", timeout=30)
        assert availability.status_code == 200
        assert b"true" in availability.content

        # And all the other waiters are still held, none turned away.
        early = [s for s in answered(sockets) if s is not sockets[7]]
        assert not early, read_answer(early[0])[:300]
    finally:
        session.close()
        quick_stop(server)
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker (the caps are per worker process), 4 connections per client address,
    idle connections closed after 2 s. On SQLite: the caps are the worker's, whatever the
    database."""
    server = start_server(tmp_path_factory.mktemp("capped"), workers=1,
                          connections_per_client=4, keepalive=2)
    yield server
    quick_stop(server)
    server.stop()


def test_connections_over_the_per_client_cap_get_503_with_retry_after(
        capped_server: Server) -> None:
    server = capped_server
    held = [socket.create_connection(("127.0.0.1", port_of(server))) for _ in range(4)]
    try:
        # The four are served (keep-alive), and stay open.
        for sock in held:
            sock.sendall(b"GET /availability HTTP/1.1\r\nHost: opus\r\n\r\n")
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
        one_more = socket.create_connection(("127.0.0.1", port_of(server)))
        one_more.sendall(b"GET /availability HTTP/1.1\r\nHost: opus\r\n\r\n")
        answer = read_answer(one_more)
        one_more.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"\r\nRetry-After: " in answer
        # Another address is not affected.
        other = socket.create_connection(("127.0.0.1", port_of(server)),
                                         source_address=("127.0.2.1", 0))
        other.sendall(b"GET /availability HTTP/1.1\r\nHost: opus\r\n\r\n")
        assert read_answer(other).startswith(b"HTTP/1.1 200")
        other.close()
    finally:
        for sock in held:
            sock.close()


def test_idle_connections_are_closed(capped_server: Server) -> None:
    server = capped_server
    silent = socket.create_connection(("127.0.0.1", port_of(server)))
    served = socket.create_connection(("127.0.0.1", port_of(server)))
    try:
        served.sendall(b"GET /availability HTTP/1.1\r\nHost: opus\r\n\r\n")
        assert read_answer(served).startswith(b"HTTP/1.1 200")
        # Neither sends anything more: the server closes both (recv sees the end).
        for sock in (silent, served):
            sock.settimeout(30)
            assert sock.recv(1) == b""
    finally:
        silent.close()
        served.close()


def test_psycopg_yields_to_other_greenlets(postgres_database: str) -> None:
    """psycopg imported before gevent's patch (as in ``opus serve``'s master), then made
    cooperative: a greenlet keeps running while another waits on pg_sleep."""
    code = textwrap.dedent(f"""
        import psycopg
        from gevent import monkey
        monkey.patch_all()
        import gevent
        from opus.serving import cooperative_psycopg
        cooperative_psycopg()
        ticks = []
        def tick():
            while True:
                ticks.append(1)
                gevent.sleep(0.01)
        ticker = gevent.spawn(tick)
        gevent.sleep(0)
        with psycopg.connect({postgres_database!r}) as conn:
            before = len(ticks)
            conn.execute("SELECT pg_sleep(0.5)")
            print(len(ticks) - before)
        ticker.kill()
    """)
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], timeout=60, check=True)
    assert int(output.stdout.strip()) > 5, output.stderr
