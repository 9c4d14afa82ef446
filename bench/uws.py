"""OPUS UWS benchmark: the server as deployed, beside a bottle "hello world" baseline.

    .venv/bin/python bench/uws.py [--backend sqlite|postgresql|both] [--quick] [--json PATH]

For each backend it starts ``opus serve`` (gunicorn, OPUS_WORKERS=2 gthread workers with
OPUS_THREADS threads, plus its separate scheduler process) on a temporary data dir (and, on
PostgreSQL, a fresh database that it drops at the end), and measures

1. job creations/s (POST /rest/echo text=x, no PHASE=RUN, 303s counted) with 16 keep-alive
   clients driven by ``wrk``, beside the same load on bench/hello.py served the same way;
   the same again with 200 idle WAIT=60 waiters blocked on PENDING jobs;
2. WAIT wake-up latency after a phase change made (a) by a web worker (HTTP PHASE=ABORT),
   (b) by another process writing through opus's JobStore (what the scheduler does), and
   (c) by the runner (end of a ``sleep`` activity -> waiter sees COMPLETED);
3. GET /rest/echo?LAST=20 (and with PHASE=COMPLETED / PHASE=PENDING) latency with 10k and
   100k jobs stored (bulk-inserted with SQLAlchemy into opus.uws.tables.jobs);
4. the turnaround of an echo job: POST PHASE=RUN, WAIT until COMPLETED.

It prints one table with the targets and PASS/MISS, writes the figures as JSON with --json,
and exits 0 on MISS (it is a benchmark, not a test). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import platform
import random
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("OPUS_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
UWS_NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# -- small helpers -------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def parse_time(text: str | None) -> float | None:
    """UWS timestamp (YYYY-MM-DDThh:mm:ss.sssZ) -> POSIX seconds."""
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=dt.timezone.utc).timestamp()


def job_fields(body: bytes) -> dict[str, str | None]:
    root = etree.fromstring(body)
    return {name: root.findtext(f"uws:{name}", namespaces=UWS_NS)
            for name in ("phase", "startTime", "endTime")}


class Client:
    """One keep-alive HTTP/1.1 connection (http.client), reopened when the server closes it."""

    def __init__(self, base_url: str, timeout: float = 90.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                # Typically the server closed an idle keep-alive connection (keepalive 5 s).
                self.close()
                if attempt:
                    raise
                continue
            if response.will_close:
                self.close()
            return response.status, response, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- servers -------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def wait_ready(self, path: str = "/", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        client = Client(self.url, timeout=2)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                if client.request("GET", path)[0] == 200:
                    client.close()
                    return
            except OSError:
                client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process we started (gunicorn master; opus serve also stops its
        scheduler), then SIGKILL its own process group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        else:
            # The master is gone; make sure nothing of its group is left.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_process(name: str, command: list[str], env: dict[str, str], log_path: Path,
                  url: str) -> Server:
    with open(log_path, "ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=ROOT, start_new_session=True)
    return Server(name, url, process, log_path, env)


def start_hello(work: Path, workers: int, threads: int, worker_class: str) -> Server:
    port = free_port()
    server = start_process(
        "hello", [PYTHON, str(ROOT / "bench" / "hello.py"), "--port", str(port),
                  "--workers", str(workers), "--threads", str(threads),
                  "--worker-class", worker_class],
        dict(os.environ), work / "hello.log", f"http://127.0.0.1:{port}")
    server.wait_ready("/hello")
    return server


def start_ceiling(work: Path, backend: str, database_url: str, workers: int, threads: int,
                  worker_class: str) -> Server:
    """bench/ceiling.py on ``database_url`` (its own table), or its own SQLite file."""
    port = free_port()
    url = database_url or f"sqlite:///{work / f'ceiling-{backend}.sqlite'}"
    server = start_process(
        f"ceiling-{backend}", [PYTHON, str(ROOT / "bench" / "ceiling.py"), "--port",
                               str(port), "--database-url", url, "--workers", str(workers),
                               "--threads", str(threads), "--worker-class", worker_class],
        dict(os.environ), work / f"ceiling-{backend}.log", f"http://127.0.0.1:{port}")
    server.wait_ready("/hello")
    return server


def start_opus(backend: str, data_dir: Path, database_url: str, workers: int,
               threads: int, **settings: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPUS_")}
    env.update({
        "OPUS_DATA_DIR": str(data_dir),
        "OPUS_DATABASE_URL": database_url,
        "OPUS_WORKERS": str(workers),
        "OPUS_THREADS": str(threads),
        "OPUS_LOG_LEVEL": "WARNING",
        # Row 1b measures the WAIT machinery, not the per-client limit (README, Limits):
        # lift that (its waiters come from 50 addresses, below the connection cap).
        "OPUS_WAIT_PER_CLIENT": "100000",
        **{f"OPUS_{key.upper()}": value for key, value in settings.items()},
    })
    server = start_process(
        f"opus-{backend}", [PYTHON, "-m", "opus.cli", "serve", "--port", str(port)], env,
        data_dir / "server.log", f"http://127.0.0.1:{port}")
    server.env = {**env, "OPUS_PORT": str(port), "OPUS_BASE_URL": server.url}
    server.wait_ready("/")
    return server


# -- load generator --------------------------------------------------------------------------
WRK_LUA = r"""
wrk.method = "%(method)s"
wrk.body = "%(body)s"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; other = 0 end
function response(status, headers, body)
  if status == %(expect)d then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, x = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); x = x + t:get("other") end
  io.write(string.format('BENCH {"ok": %%d, "other": %%d, "requests": %%d, "duration_us": %%d, ' ..
    '"errors": %%d, "p50_us": %%d, "p99_us": %%d}\n', o, x, summary.requests,
    summary.duration, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(url: str, script: Path, seconds: float, connections: int,
        threads: int) -> dict[str, Any]:
    """Run wrk and return {"rate": ok responses/s, ...}."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "30s", "-s", str(script), url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH "):
            figures = json.loads(line[6:])
            figures["rate"] = figures["ok"] / (figures["duration_us"] / 1e6)
            return figures
    raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def write_lua(path: Path, method: str, body: str, expect: int, close: bool = False) -> Path:
    """wrk's script; ``close``: a new connection per request (the server closes each one
    after its answer, wrk reconnects), as curl loops and scripts without a session do."""
    script = WRK_LUA % {"method": method, "body": body, "expect": expect}
    if close:
        script = 'wrk.headers["Connection"] = "close"\n' + script
    path.write_text(script)
    return path


# -- the measurements -------------------------------------------------------------------------
@dataclass
class Plan:
    quick: bool
    clients: int = 16
    wrk_threads: int = 1

    @property
    def rounds(self) -> int:
        return 1 if self.quick else 3

    @property
    def seconds(self) -> float:
        return 3 if self.quick else 6

    @property
    def wait_trials(self) -> int:
        return 8 if self.quick else 20

    @property
    def runner_trials(self) -> int:
        return 6 if self.quick else 20

    @property
    def turnaround_trials(self) -> int:
        return 10 if self.quick else 30

    @property
    def list_requests(self) -> int:
        return 50 if self.quick else 200


class Bench:
    def __init__(self, backend: str, opus: Server, hello: Server, plan: Plan, work: Path,
                 database_url: str, ceiling: Server) -> None:
        self.backend = backend
        self.opus = opus
        self.hello = hello
        self.ceiling = ceiling
        self.plan = plan
        self.work = work
        self.database_url = database_url
        self.client = Client(opus.url)
        self.results: dict[str, Any] = {"backend": backend}
        self._store: Any = None

    # The bench process as "another process" writing through opus's own store, like the
    # scheduler does (events announced by pg_notify or by the SQLite datagram sockets).
    @property
    def store(self) -> Any:
        if self._store is None:
            from opus.config import load_settings
            from opus.storage.engine import make_engine
            from opus.storage.events import make_events
            from opus.storage.jobs import JobStore

            settings = load_settings(environ=self.opus.env)
            engine = make_engine(settings.effective_database_url)
            self._store = JobStore(engine, make_events(engine, settings.run_dir))
        return self._store

    def create_job(self, activity: str = "echo", run: bool = False, client: Client | None = None,
                   **params: str) -> str:
        body = "&".join(f"{k}={v}" for k, v in params.items())
        if run:
            body += "&PHASE=RUN"
        status, response, data = (client or self.client).request(
            "POST", f"/rest/{activity}", body=body, headers=FORM)
        if status == 503:  # e.g. the first use of a connection a database restart killed
            log(f"  {self.backend}: creation answered 503 ({data[:80]!r}); retrying once, "
                f"as Retry-After asks")
            time.sleep(min(5.0, float(response.getheader("Retry-After") or 1)))
            status, response, data = (client or self.client).request(
                "POST", f"/rest/{activity}", body=body, headers=FORM)
        if status != 303:
            raise RuntimeError(f"job creation: {status} {data[:300]!r}")
        return path_of(response.getheader("Location"))

    # 1. creations/s ------------------------------------------------------------------------
    def creations(self) -> None:
        """Creations/s of hello, the bare-stack ceiling and OPUS, with keep-alive clients
        and with a new connection per request (``Connection: close``), alternating."""
        plan = self.plan
        post = write_lua(self.work / "post.lua", "POST", "text=x", 303)
        scripts = {"keepalive": post,
                   "close": write_lua(self.work / "post-close.lua", "POST", "text=x", 303,
                                      close=True)}
        rates: dict[str, list[float]] = {}
        waited_rates, details = [], []
        for round_no in range(plan.rounds):
            for mode, script in scripts.items():
                for name, server in (("hello", self.hello), ("ceiling", self.ceiling),
                                     ("opus", self.opus)):
                    url = f"{server.url}/rest/echo"
                    wrk(url, script, 1, plan.clients, plan.wrk_threads)  # warm-up
                    figures = wrk(url, script, plan.seconds, plan.clients, plan.wrk_threads)
                    rates.setdefault(f"{name} {mode}", []).append(figures["rate"])
                    details.append({"server": name, "mode": mode, "round": round_no,
                                    **figures})
                    log(f"  {self.backend} round {round_no} {mode}: {name} "
                        f"{figures['rate']:.0f}/s (non-303: {figures['other']}, socket "
                        f"errors: {figures['errors']})")
            figures, blocked = self.creations_with_waiters(post, 200)
            waited_rates.append(figures["rate"])
            details.append({"server": "opus+200 waiters", "round": round_no, **figures,
                            "waiters_blocked_throughout": blocked})
            log(f"  {self.backend} round {round_no}: opus with 200 waiters "
                f"{figures['rate']:.0f}/s (waiters still blocked after the run: {blocked}/200)")
        median = {key: statistics.median(values) for key, values in rates.items()}
        opus_rate = median["opus keepalive"]
        self.results["creations"] = {
            "clients": plan.clients, "seconds_per_run": plan.seconds, "rounds": plan.rounds,
            "hello_per_s": median["hello keepalive"], "opus_per_s": opus_rate,
            "ratio_to_hello": opus_rate / median["hello keepalive"],
            "medians": median,
            **{f"ratio_to_{base}_{mode}": median[f"opus {mode}"] / median[f"{base} {mode}"]
               for base in ("hello", "ceiling") for mode in scripts},
            "with_200_waiters_per_s": statistics.median(waited_rates),
            "ratio_with_waiters": statistics.median(waited_rates) / opus_rate,
            "runs": details,
        }

    def creations_with_waiters(self, post: Path, count: int) -> tuple[dict[str, Any], int]:
        """wrk creations while ``count`` WAIT=60 requests block on PENDING jobs (raw sockets:
        they cost the client nothing). Afterwards the jobs are aborted so that the server
        threads are released before the next round."""
        jobs = [self.create_job(text="w") for _ in range(count)]
        sockets = []
        for i, job in enumerate(jobs):
            # From 50 loopback addresses: 200 from one would pass the per-client connection
            # cap (256 per worker) in a worker that gets more than its half.
            sock = socket.create_connection((self.client.host, self.client.port),
                                            source_address=(f"127.0.4.{i % 50 + 1}", 0))
            sock.sendall(f"GET {job}?WAIT=60 HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            sockets.append(sock)
        time.sleep(1.0)  # let every WAIT reach its server thread
        url = f"{self.opus.url}/rest/echo"
        wrk(url, post, 1, self.plan.clients, self.plan.wrk_threads)
        figures = wrk(url, post, self.plan.seconds, self.plan.clients, self.plan.wrk_threads)
        readable, _, _ = select.select(sockets, [], [], 0)
        blocked = count - len(readable)
        from opus.uws.models import Phase, utcnow

        # Wake them all at once: one burst of 200 phase changes from this process (like a
        # scheduler aborting or finishing many jobs), then read every answer.
        woken = self.release_waiters(jobs, sockets, lambda job_id: self.store.update(
            job_id, expected_phases={Phase.PENDING}, phase=Phase.ABORTED, end_time=utcnow()))
        figures["burst_woken_within_10s"] = len(woken)
        figures["burst_all_woken_s"] = max(woken.values()) if len(woken) == count else None
        missed = [i for i in range(count) if i not in woken]
        if missed:  # announce again, slowly, so that no server thread stays blocked
            log(f"  {self.backend}: {len(missed)} of {count} waiters missed the wake-up; "
                f"re-announcing their changes one by one")
            again = self.release_waiters(
                [jobs[i] for i in missed], [sockets[i] for i in missed],
                lambda job_id: (self.store.update(job_id, end_time=utcnow()),
                                time.sleep(0.005)))
            figures["missed_then_woken_by_reannounce"] = len(again)
        for sock in sockets:
            sock.close()
        return figures, blocked

    def release_waiters(self, jobs: list[str], sockets: list[socket.socket],
                        change: Callable[[str], Any]) -> dict[int, float]:
        """Apply ``change`` to every job, then collect the waiters' answers for 10 s;
        returns {index: seconds from the first change to that waiter's answer}."""
        start = time.perf_counter()
        for job in jobs:
            change(job.rsplit("/", 1)[1])
        woken: dict[int, float] = {}
        pending = {sock: i for i, sock in enumerate(sockets)}
        deadline = start + 10
        while pending and time.perf_counter() < deadline:
            readable, _, _ = select.select(list(pending), [], [],
                                           max(0, deadline - time.perf_counter()))
            for sock in readable:
                i = pending.pop(sock)
                data = sock.recv(65536)
                # The answer of a complete wake-up: the job document, not a timeout.
                if b"ABORTED" in data or b"200 OK" in data:
                    woken[i] = time.perf_counter() - start
        return woken

    # 2. WAIT wake-up ----------------------------------------------------------------------
    def wait_latency(self, kind: str, trials: int, waiters: int = 4) -> dict[str, Any]:
        """``waiters`` clients block on GET job?WAIT=30 of a PENDING job; then the job is
        aborted, by HTTP (kind "web") or by this process through JobStore (kind "store").
        Latency: from just before the change is sent to each waiter's complete response."""
        from opus.uws.models import Phase, utcnow

        clients = [Client(self.opus.url) for _ in range(waiters)]
        changer = Client(self.opus.url)
        samples: list[float] = []
        change_times: list[float] = []
        wrong = 0
        for _ in range(trials):
            job = self.create_job(text="x")
            job_id = job.rsplit("/", 1)[1]
            ends: list[tuple[float, str | None]] = []
            lock = threading.Lock()

            def waiter(client: Client) -> None:
                status, _, data = client.request("GET", f"{job}?WAIT=30")
                end = time.perf_counter()
                with lock:
                    ends.append((end, job_fields(data)["phase"] if status == 200 else None))

            threads = [threading.Thread(target=waiter, args=(c,)) for c in clients]
            for thread in threads:
                thread.start()
            time.sleep(0.25)  # the waiters are blocked in the server by now
            start = time.perf_counter()
            if kind == "web":
                status, _, _ = changer.request("POST", f"{job}/phase", body="PHASE=ABORT",
                                               headers=FORM)
                assert status == 303, status
            else:
                assert self.store.update(job_id, expected_phases={Phase.PENDING},
                                         phase=Phase.ABORTED, end_time=utcnow())
            change_times.append(time.perf_counter() - start)
            for thread in threads:
                thread.join(40)
            for end, phase in ends:
                if phase != "ABORTED":
                    wrong += 1
                samples.append(end - start)
        for client in clients + [changer]:
            client.close()
        return {"waiters_per_trial": waiters, "trials": trials, "samples": len(samples),
                "p50_ms": 1e3 * percentile(samples, 50), "p99_ms": 1e3 * percentile(samples, 99),
                "max_ms": 1e3 * max(samples),
                "change_call_p50_ms": 1e3 * percentile(change_times, 50),
                "not_aborted": wrong}

    def runner_wait_latency(self, trials: int) -> dict[str, Any]:
        """A ``sleep`` job (duration 0.3 s) run by the scheduler and the runner; a client
        follows it with WAIT=30. Latency: from the runner's endTime (taken when the
        activity exits, in the runner process) to the waiter's complete COMPLETED response,
        counted only when that waiter was blocked on EXECUTING."""
        samples: list[float] = []
        wrong = 0
        for _ in range(trials):
            job = self.create_job("sleep", run=True, duration="0.3")
            previous = "QUEUED"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status, _, data = self.client.request("GET", f"{job}?WAIT=30")
                now = time.time()
                fields = job_fields(data)
                if fields["phase"] not in {"PENDING", "QUEUED", "EXECUTING"}:
                    if fields["phase"] != "COMPLETED":
                        wrong += 1
                    elif previous == "EXECUTING":
                        samples.append(now - (parse_time(fields["endTime"]) or now))
                    break
                previous = fields["phase"]
        return {"trials": trials, "samples": len(samples),
                "p50_ms": 1e3 * percentile(samples, 50) if samples else None,
                "p99_ms": 1e3 * percentile(samples, 99) if samples else None,
                "not_completed": wrong}

    def waits(self) -> None:
        self.results["wait_web"] = self.wait_latency("web", self.plan.wait_trials)
        log(f"  {self.backend} WAIT after web ABORT: {self.results['wait_web']}")
        self.results["wait_store"] = self.wait_latency("store", self.plan.wait_trials)
        log(f"  {self.backend} WAIT after out-of-process change: {self.results['wait_store']}")
        self.results["wait_runner"] = self.runner_wait_latency(self.plan.runner_trials)
        log(f"  {self.backend} WAIT after runner end: {self.results['wait_runner']}")

    # 4. turnaround ---------------------------------------------------------------------------
    def turnaround(self) -> None:
        times: list[float] = []
        phases: dict[str, int] = {}
        requests_per_job: list[int] = []
        for _ in range(self.plan.turnaround_trials):
            start = time.perf_counter()
            job = self.create_job(run=True, text="x")
            count = 0
            while True:
                status, _, data = self.client.request("GET", f"{job}?WAIT=30")
                count += 1
                phase = job_fields(data)["phase"] or "?"
                if phase not in {"PENDING", "QUEUED", "EXECUTING"} or count > 50:
                    break
            times.append(time.perf_counter() - start)
            phases[phase] = phases.get(phase, 0) + 1
            requests_per_job.append(count)
        self.results["turnaround"] = {
            "trials": len(times), "median_ms": 1e3 * statistics.median(times),
            "p90_ms": 1e3 * percentile(times, 90), "final_phases": phases,
            "wait_requests_median": statistics.median(requests_per_job)}
        log(f"  {self.backend} turnaround: {self.results['turnaround']}")

    # 3. job lists --------------------------------------------------------------------------
    LIST_QUERIES = {"LAST=20": "LAST=20",
                    "PHASE=COMPLETED&LAST=20": "PHASE=COMPLETED&LAST=20",
                    "PHASE=PENDING&LAST=20": "PHASE=PENDING&LAST=20"}

    def lists(self) -> None:
        import sqlalchemy as sa
        from opus.storage.tables import jobs, results

        engine = self.store.engine
        rows = synthetic_jobs(100_000)
        with engine.begin() as connection:  # start from an empty table: exact sizes
            connection.execute(results.delete())
            connection.execute(jobs.delete())
        figures: dict[str, Any] = {}
        inserted = 0
        for size in (10_000, 100_000):
            started = time.perf_counter()
            with engine.begin() as connection:
                for offset in range(inserted, size, 5000):
                    connection.execute(jobs.insert(), rows[offset:min(size, offset + 5000)])
            if self.backend == "postgresql":
                # What autovacuum does within a minute of such a load.
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(sa.text("ANALYZE jobs"))
            load_s = time.perf_counter() - started
            inserted = size
            with engine.connect() as connection:
                stored = connection.execute(sa.select(sa.func.count()).select_from(jobs)).scalar()
            entry: dict[str, Any] = {"rows": stored, "bulk_load_s": load_s}
            for name, query in self.LIST_QUERIES.items():
                entry[name] = self.time_get(f"/rest/echo?{query}", self.plan.list_requests,
                                            expect_jobs=20)
            figures[str(size)] = entry
            log(f"  {self.backend} lists with {stored} rows: "
                + ", ".join(f"{k} p50 {entry[k]['p50_ms']:.2f} ms" for k in self.LIST_QUERIES))
        for name in self.LIST_QUERIES:
            figures[f"ratio {name}"] = (figures["100000"][name]["p50_ms"]
                                        / figures["10000"][name]["p50_ms"])
        self.results["lists"] = figures

    def time_get(self, path: str, count: int, expect_jobs: int | None = None,
                 client: Client | None = None) -> dict[str, Any]:
        client = client or self.client
        for _ in range(10):  # warm-up
            status, _, data = client.request("GET", path)
            assert status == 200, (status, data[:300])
        if expect_jobs is not None:
            found = len(etree.fromstring(data).findall("uws:jobref", namespaces=UWS_NS))
            assert found == expect_jobs, f"{path}: {found} jobrefs"
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            client.request("GET", path)
            samples.append(time.perf_counter() - start)
        return {"requests": count, "p50_ms": 1e3 * percentile(samples, 50),
                "p99_ms": 1e3 * percentile(samples, 99)}

    def hello_latency(self) -> None:
        client = Client(self.hello.url)
        self.results["hello_get"] = self.time_get("/hello", self.plan.list_requests,
                                                  client=client)
        client.close()

    def run(self) -> dict[str, Any]:
        try:
            self._run()
        finally:
            # "event socket ... is full; message dropped": wake-up datagrams lost (SQLite).
            self.results["event_drops_server_log"] = self.opus.log_path.read_text(
                errors="replace").count("is full; message dropped")
            self.results["event_drops_bench_process"] = DROPS.count
        return self.results

    def _run(self) -> None:
        DROPS.count = 0
        log(f"{self.backend}: creations/s")
        self.creations()
        log(f"{self.backend}: WAIT wake-up")
        self.waits()
        log(f"{self.backend}: turnaround")
        self.turnaround()
        self.hello_latency()
        log(f"{self.backend}: job lists")
        self.lists()

    def close(self) -> None:
        self.client.close()
        if self._store is not None:
            self._store.events.close()
            self._store.engine.dispose()


class _DropCounter(logging.Handler):
    """Counts the opus.events warnings of this process (datagrams it could not deliver)."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "is full" in record.getMessage():
            self.count += 1


DROPS = _DropCounter()
logging.getLogger("opus.events").addHandler(DROPS)
logging.getLogger("opus.events").propagate = False


PHASE_MIX = [("COMPLETED", 0.80), ("ERROR", 0.08), ("ABORTED", 0.07), ("PENDING", 0.03),
             ("ARCHIVED", 0.02)]


def synthetic_jobs(count: int) -> list[dict[str, Any]]:
    """``count`` job rows, oldest first (ids follow creation order), created over the last
    60 days; 90 % echo, 10 % sleep; phases mostly final (PHASE_MIX). Destruction is set in
    the future so that the scheduler leaves them alone; no QUEUED/EXECUTING rows, so that
    it has nothing to dispatch or reconcile."""
    rng = random.Random(20240601)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    first = now - dt.timedelta(days=60)
    step = dt.timedelta(days=60) / count
    phases = [p for p, _ in PHASE_MIX]
    weights = [w for _, w in PHASE_MIX]
    rows = []
    for i in range(count):
        created = first + step * i
        phase = rng.choices(phases, weights)[0]
        ran = phase != "PENDING"
        start = created + dt.timedelta(seconds=rng.uniform(0.05, 5)) if ran else None
        end = start + dt.timedelta(seconds=rng.uniform(0.1, 120)) if start else None
        rows.append({
            "job_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "activity": "echo" if rng.random() < 0.9 else "sleep",
            "owner_id": None, "run_id": f"run{i}" if rng.random() < 0.2 else None,
            "phase": phase, "creation_time": created, "start_time": start, "end_time": end,
            "destruction": now + dt.timedelta(days=30), "execution_duration": 60,
            "quote": None,
            "error_type": "fatal" if phase == "ERROR" else None,
            "error_summary": {"ERROR": "exit code 1", "ABORTED": "aborted at the client's "
                              "request"}.get(phase),
            "parameters": json.dumps({"text": f"x{i}"}), "secret_hash": None,
            "manager": "local" if ran else None,
            "native_id": str(100000 + i) if ran else None,
            "cluster_state": "ended" if ran else None, "time_limit": 70 if ran else None,
        })
    return rows


# -- report --------------------------------------------------------------------------------
def table(all_results: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    lines = []
    verdicts = []
    header = (f"{'backend':<10} {'figure':<46} {'value':>12} {'baseline':>16} {'ratio':>7} "
              f"{'target':<22} {'':4}")
    lines += [header, "-" * len(header)]

    def row(backend: str, figure: str, value: str, baseline: str, ratio: float | None,
            target: str, ok: bool | None) -> None:
        mark = "" if ok is None else ("PASS" if ok else "MISS")
        ratio_text = "" if ratio is None else f"{ratio:.2f}"
        lines.append(f"{backend:<10} {figure:<46} {value:>12} {baseline:>16} {ratio_text:>7} "
                     f"{target:<22} {mark:4}")
        verdicts.append({"backend": backend, "figure": figure, "value": value,
                         "baseline": baseline, "ratio": ratio, "target": target,
                         "result": mark or None})

    for r in all_results:
        b = r["backend"]
        c = r["creations"]
        row(b, "1. job creations/s (16 clients, wrk)", f"{c['opus_per_s']:.0f}/s",
            f"hello {c['hello_per_s']:.0f}/s", c["ratio_to_hello"], ">= 0.25 x hello",
            c["ratio_to_hello"] >= 0.25)
        row(b, "1b. creations/s with 200 blocked WAITs", f"{c['with_200_waiters_per_s']:.0f}/s",
            f"w/o {c['opus_per_s']:.0f}/s", c["ratio_with_waiters"], ">= 0.8 x without",
            c["ratio_with_waiters"] >= 0.8)
        m = c["medians"]
        for mode, label in (("keepalive", "keep-alive"), ("close", "new connection each")):
            row(b, f"1x. creations/s, {label}: OPUS / ceiling", f"{m[f'opus {mode}']:.0f}/s",
                f"ceiling {m[f'ceiling {mode}']:.0f}/s", c[f"ratio_to_ceiling_{mode}"],
                ">= 0.67 x ceiling", c[f"ratio_to_ceiling_{mode}"] >= 0.67)
            row(b, f"1x. creations/s, {label}: OPUS / hello", f"{m[f'opus {mode}']:.0f}/s",
                f"hello {m[f'hello {mode}']:.0f}/s", c[f"ratio_to_hello_{mode}"], "", None)
        burst = [run for run in c["runs"] if run["server"] == "opus+200 waiters"]
        woken = min(run["burst_woken_within_10s"] for run in burst)
        times = [run["burst_all_woken_s"] for run in burst if run["burst_all_woken_s"]]
        row(b, "1c. 200 waiters woken by a burst of 200 aborts", f"{woken}/200",
            f"all in {1e3 * max(times):.0f} ms" if times else "", None, "200/200 within 10 s",
            woken == 200)
        drops = r["event_drops_server_log"] + r["event_drops_bench_process"]
        row(b, "1d. wake-up datagrams dropped (whole run)", str(drops),
            f"server {r['event_drops_server_log']}", None, "0", drops == 0)
        hello_ms = r["hello_get"]["p50_ms"]
        for key, label in (("wait_web", "2a. WAIT wake, ABORT by web (HTTP)"),
                           ("wait_store", "2b. WAIT wake, change by other process")):
            w = r[key]
            row(b, f"{label} p50", f"{w['p50_ms']:.1f} ms", f"hello {hello_ms:.2f} ms", None,
                "", None)
            row(b, f"{label} p99", f"{w['p99_ms']:.1f} ms", f"n={w['samples']}", None,
                "< 100 ms", w["p99_ms"] < 100 and w["not_aborted"] == 0)
        w = r["wait_runner"]
        if w["samples"]:
            row(b, "2c. WAIT wake, runner end -> COMPLETED p50", f"{w['p50_ms']:.1f} ms",
                f"hello {hello_ms:.2f} ms", None, "", None)
            row(b, "2c. WAIT wake, runner end -> COMPLETED p99", f"{w['p99_ms']:.1f} ms",
                f"n={w['samples']}", None, "< 100 ms", w["p99_ms"] < 100)
        lists = r["lists"]
        for name in Bench.LIST_QUERIES:
            small, big = lists["10000"][name], lists["100000"][name]
            ratio = lists[f"ratio {name}"]
            row(b, f"3. GET ?{name} p50, 10k rows", f"{small['p50_ms']:.2f} ms",
                f"hello {hello_ms:.2f} ms", None, "", None)
            row(b, f"3. GET ?{name} p50, 100k rows", f"{big['p50_ms']:.2f} ms",
                f"10k {small['p50_ms']:.2f} ms", ratio, "<= 1.5 x 10k", ratio <= 1.5)
        t = r["turnaround"]
        row(b, "4. echo turnaround median (POST..COMPLETED)", f"{t['median_ms']:.0f} ms",
            f"p90 {t['p90_ms']:.0f} ms", None, "< 300 ms",
            t["median_ms"] < 300 and t["final_phases"].get("COMPLETED") == t["trials"])
    return "\n".join(lines), verdicts


# -- main --------------------------------------------------------------------------------
def create_pg_database() -> tuple[str, str]:
    import psycopg

    name = f"opus_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_backend(backend: str, hello: Server, plan: Plan, work: Path, workers: int,
                threads: int, worker_class: str) -> dict[str, Any]:
    data_dir = work / f"opus-{backend}"
    data_dir.mkdir()
    database_name = None
    database_url = ""
    server = bench = ceiling = None
    try:
        if backend == "postgresql":
            database_name, database_url = create_pg_database()
            log(f"postgresql: created database {database_name}")
        server = start_opus(backend, data_dir, database_url, workers, threads,
                            worker_class=worker_class)
        log(f"{backend}: opus serve on {server.url} (pid {server.process.pid})")
        ceiling = start_ceiling(work, backend, database_url, workers, threads, worker_class)
        bench = Bench(backend, server, hello, plan, work, database_url, ceiling)
        return bench.run()
    finally:
        if ceiling is not None:
            ceiling.stop()
        if bench is not None:
            bench.close()
        if server is not None:
            server.stop()
            log(f"{backend}: server stopped")
        if database_name is not None:
            drop_pg_database(database_name)
            log(f"postgresql: dropped database {database_name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OPUS UWS benchmark (see bench/README.md)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="fewer requests (~1 min/backend)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("OPUS_THREADS", "256")),
                        help="gunicorn threads per worker, for OPUS and hello (default: "
                             "OPUS_THREADS or 256, the OPUS default)")
    parser.add_argument("--worker-class", choices=["gevent", "gthread"], default="gevent",
                        help="gunicorn worker class of OPUS, hello and the ceiling "
                             "(default: gevent, the OPUS default)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench/uws.py needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    plan = Plan(quick=args.quick)
    work = Path(tempfile.mkdtemp(prefix="opus-bench-"))
    results: list[dict[str, Any]] = []
    hello = None
    started = time.time()
    try:
        hello = start_hello(work, args.workers, args.threads, args.worker_class)
        log(f"hello baseline on {hello.url} (pid {hello.process.pid})")
        for backend in backends:
            results.append(run_backend(backend, hello, plan, work, args.workers, args.threads,
                                       args.worker_class))
    finally:
        if hello is not None:
            hello.stop()
        shutil.rmtree(work, ignore_errors=True)
    text, verdicts = table(results)
    print()
    print(f"OPUS UWS benchmark ({'quick' if args.quick else 'full'}): {args.workers} gunicorn "
          f"{args.worker_class} workers (gthread: x {args.threads} threads) + scheduler; "
          f"hello and ceiling served the "
          f"same way; {os.cpu_count()} cores, 1-min load average at the end "
          f"{os.getloadavg()[0]:.2f}; {time.time() - started:.0f} s")
    print(text)
    if args.json:
        document = {"quick": args.quick, "workers": args.workers, "threads": args.threads,
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
                    "seconds": time.time() - started, "results": results, "table": verdicts}
        args.json.write_text(json.dumps(document, indent=1, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
