"""Execution on the local manager: abort kills the tree, limits, failures, reconciliation."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import UWS_NS, Server, until


@pytest.fixture(scope="module")
def exec_server(module_server_factory, activities_dir: Path) -> Server:
    """One server for the module's tests with default settings."""
    return module_server_factory(activities_dir=activities_dir)


def pids_with(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def summary(document) -> str:  # type: ignore[no-untyped-def]
    return document.findtext("uws:errorSummary/uws:message", namespaces=UWS_NS) or ""


def phase_of(document) -> str:  # type: ignore[no-untyped-def]
    return document.findtext("uws:phase", namespaces=UWS_NS)


def wait_phase(server: Server, job_url: str, wanted: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        phase = phase_of(server.job(job_url, WAIT="5"))
        if phase == wanted:
            return
        assert phase in {"PENDING", "QUEUED", "EXECUTING"}, f"job went {phase}, not {wanted}"
        assert time.monotonic() < deadline, f"job still {phase}, not {wanted}"


def test_abort_kills_the_whole_process_tree(exec_server: Server) -> None:
    marker = f"opus-test-{uuid.uuid4().hex}"
    job_url = exec_server.create("tree", marker=marker)
    wait_phase(exec_server, job_url, "EXECUTING")
    until(lambda: len(pids_with(marker)) >= 3, what="the activity's three processes")
    response = exec_server.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"},
                                        allow_redirects=False)
    assert response.status_code == 303
    assert phase_of(exec_server.job(job_url)) == "ABORTED"
    until(lambda: not pids_with(marker), what="every process of the tree to end")


def test_execution_duration_is_enforced(exec_server: Server) -> None:
    job_url = exec_server.create("sleep", duration="60", EXECUTIONDURATION="1")
    started = time.monotonic()
    document = exec_server.wait_final(job_url)
    assert phase_of(document) == "ERROR"
    assert "executionDuration" in summary(document)
    assert time.monotonic() - started < 30


def test_failing_activity_ends_in_error_with_its_stderr(exec_server: Server) -> None:
    job_url = exec_server.create("fail", reason="disk full")
    document = exec_server.wait_final(job_url)
    assert phase_of(document) == "ERROR"
    assert "status 3" in summary(document)
    assert "something went wrong: disk full" in summary(document)
    stderr = exec_server.session.get(f"{job_url}/results/stderr")
    assert stderr.status_code == 200
    assert stderr.text == "something went wrong: disk full\n"
    assert exec_server.session.get(f"{job_url}/error").text == summary(document)


def _runner_pid(job_id: str) -> int:
    return until(lambda: (pids_with(f"opus.execution.runner .*{job_id}") or [None])[0],
                 what="the runner process")


def test_a_runner_killed_hard_is_reconciled_to_error(exec_server: Server) -> None:
    marker = f"opus-test-{uuid.uuid4().hex}"
    job_url = exec_server.create("tree", marker=marker)
    wait_phase(exec_server, job_url, "EXECUTING")
    until(lambda: len(pids_with(marker)) >= 3, what="the activity's processes")
    os.kill(_runner_pid(job_url.rsplit("/", 1)[1]), signal.SIGKILL)
    document = exec_server.wait_final(job_url)
    assert phase_of(document) == "ERROR"
    assert "without reporting" in summary(document)
    # The activity lost its runner; the scheduler stops it too.
    until(lambda: not pids_with(marker), what="the orphaned activity to be stopped")


def test_job_finishing_while_the_server_is_down_is_recorded(
        server_factory, activities_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = server_factory(data_dir=data_dir, activities_dir=activities_dir)
    job_url = first.create("sleep", duration="2")
    wait_phase(first, job_url, "EXECUTING")
    database_url = first.env["OPUS_DATABASE_URL"]
    first.stop()  # web and scheduler gone; the runner goes on in its own session
    job_id = job_url.rsplit("/", 1)[1]
    until(lambda: (data_dir / "jobs" / job_id / "outcome.json").exists(), timeout=30,
          what="the runner's outcome file")
    second = server_factory(data_dir=data_dir, database_url=database_url,
                            activities_dir=activities_dir)
    document = second.wait_final(f"{second.rest('sleep')}/{job_id}")
    assert phase_of(document) == "COMPLETED"
    output = second.session.get(f"{second.rest('sleep')}/{job_id}/results/output")
    assert output.text == "slept 2\n"


def test_concurrency_limit_keeps_extra_jobs_queued(server_factory,
                                                   activities_dir: Path) -> None:
    srv = server_factory(activities_dir=activities_dir, concurrency=1)
    marker = f"opus-test-{uuid.uuid4().hex}"
    first = srv.create("tree", marker=marker)
    wait_phase(srv, first, "EXECUTING")
    second = srv.create("echo", text="waiting")
    # The only slot is taken: the second job stays QUEUED until the first ends.
    assert phase_of(srv.job(second, WAIT="1")) == "QUEUED"
    srv.session.post(f"{first}/phase", data={"PHASE": "ABORT"})
    assert phase_of(srv.wait_final(second)) == "COMPLETED"
