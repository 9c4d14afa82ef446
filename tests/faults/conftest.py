"""Fault scenarios (issue 13) against OPUS as deployed: ``opus serve --no-scheduler`` with
two gunicorn workers, plus separate ``opus scheduler`` processes (each a supervisor and its
scheduler), on SQLite and PostgreSQL.

Profiles: ``OPUS_FAULTS_PROFILE=short`` (default, what CI runs) or ``long`` (more jobs,
repeated faults): scenarios size themselves with :func:`scale`. Each scenario calls
:func:`report`; the figures are printed in pytest's terminal summary as
``faults: SCENARIO[backend]: jobs=N time=S s errors=E lost=0 duplicated=0``.

The ``count`` activity records every run of a job (a line per run in ``work/runs.log``,
which all runs of one job share), so a job run twice is seen, not guessed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import ROOT, UWS_NS, Server, write_activities
from opus.activities.model import ActivityDescription, EntityDescription, ParameterDescription

PROFILE = os.environ.get("OPUS_FAULTS_PROFILE", "short")
FINAL = {"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"}
_REPORTS: list[str] = []


def scale(short: int, long: int) -> int:
    """A size for the profile: ``short`` in CI, ``long`` with OPUS_FAULTS_PROFILE=long."""
    return long if PROFILE == "long" else short


def report(name: str, *, jobs: int, seconds: float, errors: int, lost: int,
           duplicated: int) -> None:
    line = (f"faults: {name}: jobs={jobs} time={seconds:.1f} s errors={errors} "
            f"lost={lost} duplicated={duplicated} (profile {PROFILE})")
    print(line)
    _REPORTS.append(line)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _REPORTS:
        terminalreporter.section("fault scenarios")
        for line in _REPORTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def faults_activities(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fault-activities")
    count = ActivityDescription(
        name="count", description="records each run of the job, sleeps, returns the record",
        command=(str(Path(__file__).parent / "bin" / "count.sh"),), execution_duration=600,
        parameters=(ParameterDescription("duration", datatype="double", default="0.2"),),
        generated=(EntityDescription("output", content_type="text/plain",
                                     default_filename="output.txt"),))
    # "tree" (tests/bin/tree.sh): a process tree that runs until stopped, for the job that
    # only a node failure ends (test_slurmd_faults.py).
    tree = ActivityDescription(
        name="tree", description="a process tree that runs until stopped",
        command=(str(Path(__file__).parents[1] / "bin" / "tree.sh"),), execution_duration=600,
        parameters=(ParameterDescription("marker", arraysize="*"),))
    return write_activities(directory, [count, tree], ("echo",))


@dataclass
class Deployment:
    """One web node and its separate schedulers, on one database and data dir."""

    server: Server
    logs: Path
    schedulers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_scheduler(self, **settings: object) -> subprocess.Popen[bytes]:
        env = {**self.server.env, **{f"OPUS_{k.upper()}": str(v) for k, v in settings.items()}}
        path = self.logs / f"scheduler{len(self.schedulers)}.log"
        with open(path, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "opus.cli", "scheduler"],
                                       env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.schedulers.append(process)
        return process

    def scheduler_log(self, index: int) -> str:
        return (self.logs / f"scheduler{index}.log").read_text(errors="replace")

    @staticmethod
    def worker_of(supervisor: subprocess.Popen[bytes]) -> int:
        """The scheduler process a supervisor runs (0 between a death and its restart)."""
        path = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children")
        pids = path.read_text().split() if path.exists() else []
        return int(pids[0]) if pids else 0

    def create_many(self, activity: str, count: int, clients: int = 8,
                    **params: str) -> list[str]:
        """``count`` jobs created by ``clients`` concurrent clients; their URLs."""
        def create(_: int) -> str:
            with requests.Session() as session:
                answer = session.post(self.server.rest(activity),
                                      data={**params, "PHASE": "RUN"}, allow_redirects=False)
            assert answer.status_code == 303, answer.text
            return answer.headers["Location"]
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(create, range(count)))

    def phases(self, urls: list[str]) -> dict[str, str]:
        return {url: self.server.session.get(f"{url}/phase").text for url in urls}

    def wait_all(self, urls: list[str], timeout: float,
                 tick: Callable[[], None] = lambda: None) -> dict[str, str]:
        """Poll until every job is final or ``timeout``; ``tick`` runs between polls."""
        deadline = time.monotonic() + timeout
        while True:
            phases = self.phases(urls)
            if all(p in FINAL for p in phases.values()) or time.monotonic() > deadline:
                return phases
            tick()
            time.sleep(0.5)

    def runs(self, url: str) -> int:
        """How many times the job's activity started (lines of work/runs.log)."""
        path = self.server.data_dir / "jobs" / url.rsplit("/", 1)[1] / "work" / "runs.log"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def summary(self, url: str) -> str:
        from lxml import etree

        document = etree.fromstring(self.server.session.get(url).content)
        return document.findtext("uws:errorSummary/uws:message", namespaces=UWS_NS) or ""

    def stop(self) -> None:
        for process in self.schedulers:
            if process.poll() is None:
                process.terminate()
        for process in self.schedulers:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def deploy(server_factory, faults_activities: Path, tmp_path: Path
           ) -> Iterator[Callable[..., Deployment]]:
    """``deploy(schedulers=1, **settings)``: a web node (2 workers, ``--no-scheduler``) and
    that many ``opus scheduler`` processes with ``settings``."""
    made: list[Deployment] = []

    def make(schedulers: int = 1, **settings: object) -> Deployment:
        # The bursts are one anonymous owner's: they test faults, not the active-job limit
        # (README, Limits), which tests/security/test_limits.py covers.
        settings.setdefault("max_active_jobs", 0)
        server = server_factory(scheduler=False, activities_dir=faults_activities,
                                **settings)
        deployment = Deployment(server, tmp_path)
        for _ in range(schedulers):
            deployment.add_scheduler()
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.stop()
