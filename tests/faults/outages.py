"""Helpers of the database and disk fault scenarios (issue 13, item 3).

- :class:`TcpProxy`: a TCP forwarder between OPUS and PostgreSQL whose ``cut()`` drops
  every connection and refuses new ones, like a database that went away, without
  restarting the server other tests on this machine share.
- :func:`restart_postgres`: the real thing, ``pg_ctlcluster`` stop and start, kept short.
- :class:`Burst`: clients creating jobs and following them with WAIT, recording every
  answer, until told to stop; :meth:`Burst.summary` prints jobs, time, errors, lost and
  duplicated.
- :class:`Tmpfs`: a small tmpfs (root only) as a data dir, to fill.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from lxml import etree

UWS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
ACTIVE = {"PENDING", "QUEUED", "EXECUTING"}
#: ``OPUS_FAULTS_PROFILE=long`` runs the scenarios longer, with more clients.
LONG = os.environ.get("OPUS_FAULTS_PROFILE", "short") == "long"


class TcpProxy:
    """127.0.0.1:<port> forwarded to ``target``; ``cut()`` closes every connection and
    refuses new ones (the port stays bound but nobody accepts: connects are reset) until
    ``restore()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def url(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by this proxy's."""
        import sqlalchemy as sa

        return sa.engine.make_url(database_url).set(
            host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                client.close()  # reset: as if nothing listened
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:  # cut() meanwhile: this one goes too
                if not self._open.is_set():
                    client.close()
                    upstream.close()
                    continue
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._sockets.discard(sock)

    def cut(self) -> None:
        with self._lock:
            self._open.clear()
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


def restart_postgres(down: float) -> None:
    """Stop the machine's PostgreSQL, wait ``down`` s, start it again (a few seconds: other
    tests on this machine use it)."""
    subprocess.run(["pg_ctlcluster", "15", "main", "stop", "-m", "fast"], check=True,
                   timeout=60)
    try:
        time.sleep(down)
    finally:
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True, timeout=60)


def postgres_cluster_problem() -> str | None:
    """Why the real restart cannot be done here (None: it can)."""
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None:
        return "restarting PostgreSQL needs root and pg_ctlcluster"
    status = subprocess.run(["pg_ctlcluster", "15", "main", "status"], capture_output=True)
    if status.returncode != 0:
        return "no PostgreSQL cluster 15/main on this machine"
    return None


@dataclass
class Burst:
    """``clients`` threads, each creating an ``activity`` job and following it with WAIT
    until it ends, over and over until :meth:`stop`. Every answer's status is counted; an
    answer 5xx is also checked for ``Retry-After``. A client whose request is refused with
    503 retries after ``Retry-After`` (capped at ``retry_cap`` s)."""

    url: str
    activity: str
    clients: int
    params: dict[str, str] = field(default_factory=dict)
    retry_cap: float = 1.0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    without_retry_after: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    started: float = 0.0
    elapsed: float = 0.0

    def start(self) -> "Burst":
        self.started = time.monotonic()
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self.elapsed = time.monotonic() - self.started

    def _record(self, response: requests.Response, what: str) -> None:
        with self._lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500 and "Retry-After" not in response.headers:
                self.without_retry_after.append(f"{what}: {response.status_code} "
                                                f"{response.text[:200]!r}")

    def _pause(self, response: requests.Response) -> None:
        try:
            seconds = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            seconds = 1.0
        self._stop.wait(min(seconds, self.retry_cap))

    def _client(self, number: int) -> None:
        session = requests.Session()
        data = {"PHASE": "RUN", **self.params}
        while not self._stop.is_set():
            try:
                response = session.post(f"{self.url}/rest/{self.activity}", data=data,
                                        allow_redirects=False, timeout=30)
            except requests.RequestException as error:
                with self._lock:
                    self.problems.append(f"client {number} POST: {error}")
                self._stop.wait(0.5)
                continue
            self._record(response, "POST")
            if response.status_code != 303:
                self._pause(response)
                continue
            job_url = response.headers["Location"]
            with self._lock:
                self.accepted.append(job_url)
            self._follow(session, job_url, number)

    def _follow(self, session: requests.Session, job_url: str, number: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                response = session.get(job_url, params={"WAIT": "5"}, timeout=30)
            except requests.RequestException as error:
                with self._lock:
                    self.problems.append(f"client {number} WAIT: {error}")
                time.sleep(0.5)
                continue
            self._record(response, "WAIT")
            if response.status_code != 200:
                self._pause(response)
                continue
            phase = etree.fromstring(response.content).findtext("uws:phase", namespaces=UWS)
            if phase not in ACTIVE or self._stop.is_set():
                return

    def summary(self, name: str, final: dict[str, str], listed: set[str],
                runs: dict[str, int]) -> dict[str, int]:
        """Print and return the figures: ``final`` phase of every accepted job (after
        the burst, waited for), ``listed`` the job ids the server lists, ``runs`` how many
        times each job's activity ran."""
        accepted_ids = {url.rsplit("/", 1)[1] for url in self.accepted}
        lost = sum(1 for job_id in accepted_ids
                   if final.get(job_id) not in {"COMPLETED"})
        duplicated = len(listed - accepted_ids) + sum(max(0, n - 1) for n in runs.values())
        errors = sum(n for status, n in self.statuses.items() if status >= 500)
        figures = {"jobs": len(accepted_ids), "answers": sum(self.statuses.values()),
                   "errors_5xx": errors, "answers_500": self.statuses.get(500, 0),
                   "without_retry_after": len(self.without_retry_after),
                   "lost": lost, "duplicated": duplicated}
        print(f"\n{name}: jobs={figures['jobs']} time={self.elapsed:.1f}s "
              f"answers={figures['answers']} errors={errors} "
              f"(500: {figures['answers_500']}, 5xx without Retry-After: "
              f"{figures['without_retry_after']}) statuses={dict(self.statuses)} "
              f"lost={lost} duplicated={duplicated}")
        return figures


def final_phases(url: str, job_urls: list[str], timeout: float = 120) -> dict[str, str]:
    """The phase of every job once it has left the active phases (or at ``timeout``)."""
    session = requests.Session()
    phases: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for job_url in job_urls:
        while True:
            response = session.get(job_url, params={"WAIT": "10"}, timeout=30)
            phase = (etree.fromstring(response.content).findtext("uws:phase", namespaces=UWS)
                     if response.status_code == 200 else f"HTTP {response.status_code}")
            if phase not in ACTIVE or time.monotonic() > deadline:
                phases[job_url.rsplit("/", 1)[1]] = phase or ""
                break
    return phases


def listed_jobs(url: str, activity: str) -> set[str]:
    """The ids of every job of ``activity`` the server lists."""
    response = requests.get(f"{url}/rest/{activity}", timeout=60)
    response.raise_for_status()
    document = etree.fromstring(response.content)
    return {ref.get("id") for ref in document.findall("uws:jobref", UWS)}


class Tmpfs:
    """A tmpfs of ``size`` mounted on ``path`` (root only); :meth:`fill` writes a file
    until the file system is full, :meth:`free` removes it."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], check=True)
        self._filler = path / "filler.bin"

    def fill(self) -> int:
        """Fill the file system (unbuffered writes, smaller and smaller); the bytes
        written."""
        written = 0
        descriptor = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 4096, 512, 1):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        written += os.write(descriptor, block)
        finally:
            os.close(descriptor)
        return written

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Tmpfs]:
    mounted = Tmpfs(path, size)
    try:
        yield mounted
    finally:
        mounted.unmount()


def root_conftest() -> Any:
    """tests/conftest.py as a module (its helpers: start_server, write_activities...),
    whatever other conftest.py pytest imported under the name ``conftest`` since."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module
    spec = importlib.util.spec_from_file_location("opus_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BIN = Path(__file__).resolve().parent / "bin"


def fault_activities(directory: Path) -> Path:
    """The scenarios' activities: ``count`` (its output: how many times it ran), ``fill``
    (writes ``megabytes`` MB), the test activity ``copy`` (an upload) and the real
    ``sleep``."""
    from opus.activities.model import (ActivityDescription, EntityDescription,
                                       ParameterDescription)

    output = EntityDescription("output", content_type="text/plain",
                               default_filename="output.txt")
    activities = [
        ActivityDescription(name="count", description="counts its runs",
                            command=(str(BIN / "tally.sh"),), execution_duration=60,
                            generated=(output,)),
        ActivityDescription(name="fill", description="writes megabytes MB",
                            command=(str(BIN / "fill.sh"),), execution_duration=60,
                            parameters=(ParameterDescription("megabytes", datatype="int",
                                                             default="1"),),
                            generated=(output,)),
        ActivityDescription(name="copy", description="copies its input",
                            command=(str(BIN.parents[1] / "bin" / "copy.sh"),),
                            execution_duration=60,
                            parameters=(ParameterDescription("suffix", arraysize="*",
                                                             default="end"),),
                            used=(EntityDescription("input", content_type="text/plain",
                                                    default_filename="input.txt"),),
                            generated=(output,)),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    return root_conftest().write_activities(directory, activities, ("sleep",))


def runs_of(session: requests.Session, job_urls: list[str]) -> dict[str, int]:
    """How many times each ``count`` job ran (its output), for the completed ones."""
    runs = {}
    for job_url in job_urls:
        response = session.get(f"{job_url}/results/output", timeout=30)
        if response.status_code == 200:
            runs[job_url.rsplit("/", 1)[1]] = int(response.text.strip() or "0")
    return runs


def wait_for_log(server: Any, text: str, timeout: float = 60.0) -> str:
    """The server's log once it holds ``text`` (polled: a log has no event to await)."""
    deadline = time.monotonic() + timeout
    while text not in (log := server.log()):
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s"
        time.sleep(0.2)
    return log
