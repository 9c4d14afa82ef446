"""OPUS jobs run through a real SLURM cluster (``scripts/slurm_cluster.sh start``), end to end.

The scenarios of tests/test_execution.py, through the OPUS API of a server started with
``OPUS_MANAGER=slurm``: the scheduler submits the runner with sbatch, the runner reports
back to the server, ABORT becomes scancel, and the scheduler reconciles with squeue /
scontrol / the runner's outcome file. Skipped without a working cluster, except with
OPUS_REQUIRE_SLURM=1 (CI), where they fail instead.

SQLite only: the store is tested on both backends elsewhere; here the cluster is what is
under test, and every scenario costs real SLURM time. The node-failure test (slurmd stopped
mid-job: the job ends in ERROR naming NODE_FAIL, its processes killed) is part of the fault
scenario tests/faults/test_slurmd_faults.py, so that slurmd is stopped once per run.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import Server
from test_execution import (
    phase_of,
    pids_with,
    summary,
    until,
    wait_phase,
)

pytestmark = pytest.mark.usefixtures("slurm_available")


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only (this overrides conftest's backend parametrisation for this module)."""
    return "sqlite"


@pytest.fixture(scope="module")
def slurm_server(module_server_factory, activities_dir: Path) -> Server:
    """One server for the module's tests that need no special settings."""
    return module_server_factory(manager="slurm", activities_dir=activities_dir)


def job_id_of(job_url: str) -> str:
    return job_url.rsplit("/", 1)[1]


def squeue_ids(job_id: str) -> list[str]:
    """SLURM job ids of an OPUS job that squeue still shows (pending, running, completing)."""
    proc = subprocess.run(["squeue", "-h", "-n", f"opus-{job_id}", "-o", "%i"],
                          capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.split()


def test_echo_job_completes_with_its_result(slurm_server: Server) -> None:
    started = time.monotonic()
    job_url = slurm_server.create("echo", text="hello from SLURM")
    document = slurm_server.wait_final(job_url, timeout=60)
    assert phase_of(document) == "COMPLETED", summary(document) + slurm_server.log()[-2000:]
    output = slurm_server.session.get(f"{job_url}/results/output")
    assert output.status_code == 200
    assert output.content == b"hello from SLURM\n"
    print(f"echo through SLURM: {time.monotonic() - started:.2f} s")
    # it really ran as a SLURM batch job, in the job directory
    job_dir = slurm_server.data_dir / "jobs" / job_id_of(job_url)
    assert (job_dir / "opus-slurm-job.sh").is_file()
    assert "scheduler started (manager slurm" in slurm_server.log()
    until(lambda: not squeue_ids(job_id_of(job_url)), timeout=30,
          what="the SLURM job to leave squeue")


def test_abort_cancels_the_slurm_job(slurm_server: Server) -> None:
    marker = f"opus-slurm-test-{uuid.uuid4().hex}"
    job_url = slurm_server.create("tree", marker=marker)
    wait_phase(slurm_server, job_url, "EXECUTING", timeout=60)
    until(lambda: len(pids_with(marker)) >= 3, what="the activity's three processes")
    assert squeue_ids(job_id_of(job_url)), "the job is not in squeue"
    response = slurm_server.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"},
                                         allow_redirects=False)
    assert response.status_code == 303
    assert phase_of(slurm_server.job(job_url)) == "ABORTED"
    until(lambda: not squeue_ids(job_id_of(job_url)), timeout=30,
          what="scancel to remove the job from squeue")
    until(lambda: not pids_with(marker), timeout=30, what="every process of the tree to end")
    assert phase_of(slurm_server.job(job_url)) == "ABORTED"


def test_execution_duration_is_enforced(slurm_server: Server) -> None:
    job_url = slurm_server.create("sleep", duration="60", EXECUTIONDURATION="2")
    started = time.monotonic()
    document = slurm_server.wait_final(job_url, timeout=60)
    assert phase_of(document) == "ERROR"
    assert "executionDuration" in summary(document)
    assert time.monotonic() - started < 30


def test_failing_job_ends_in_error_with_its_stderr(slurm_server: Server) -> None:
    job_url = slurm_server.create("fail", reason="disk full")
    document = slurm_server.wait_final(job_url, timeout=60)
    assert phase_of(document) == "ERROR"
    assert "status 3" in summary(document)
    assert "something went wrong: disk full" in summary(document)
    stderr = slurm_server.session.get(f"{job_url}/results/stderr")
    assert stderr.status_code == 200
    assert stderr.text == "something went wrong: disk full\n"


def test_job_finishing_while_the_server_is_down_is_recorded(
        server_factory, activities_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = server_factory(data_dir=data_dir, manager="slurm", activities_dir=activities_dir)
    job_url = first.create("sleep", duration="3")
    wait_phase(first, job_url, "EXECUTING", timeout=60)
    database_url = first.env["OPUS_DATABASE_URL"]
    first.stop()  # web and scheduler gone; the SLURM job goes on
    job_id = job_id_of(job_url)
    until(lambda: (data_dir / "jobs" / job_id / "outcome.json").exists(), timeout=60,
          what="the runner's outcome file")
    until(lambda: not squeue_ids(job_id), timeout=30, what="the SLURM job to end")
    # a new server on another port: the runner's callback to the old one was lost
    second = server_factory(data_dir=data_dir, database_url=database_url, manager="slurm",
                            activities_dir=activities_dir)
    document = second.wait_final(f"{second.rest('sleep')}/{job_id}", timeout=60)
    assert phase_of(document) == "COMPLETED", summary(document)
    output = second.session.get(f"{second.rest('sleep')}/{job_id}/results/output")
    assert output.text == "slept 3\n"


def test_held_and_suspended_slurm_jobs_show_in_the_uws_phase(
        server_factory, activities_dir: Path, tmp_path: Path) -> None:
    """Settings from the YAML file: per-activity resources and extra sbatch options (here
    --hold). A held SLURM job is HELD in UWS, released it runs; a suspended one is
    SUSPENDED, resumed EXECUTING again."""
    config = tmp_path / "opus.yaml"
    config.write_text("resources:\n  '*': {cpus: 1}\n  echo: {memory: 100}\n"
                      "  tree: {memory: 200}\nslurm_sbatch_args: ['--hold']\n")
    srv = server_factory(manager="slurm", activities_dir=activities_dir, config=config)
    job_url = srv.create("echo", text="held")
    job_id = job_id_of(job_url)
    until(lambda: srv.phase(job_url) == "HELD", timeout=30, what="phase HELD")
    (native_id,) = squeue_ids(job_id)
    record = subprocess.run(["scontrol", "show", "job", "-o", native_id], capture_output=True,
                            text=True, check=True).stdout
    assert "MinMemoryNode=100M" in record and "NumCPUs=1" in record, record
    subprocess.run(["scontrol", "release", native_id], check=True)
    until(lambda: srv.phase(job_url) != "HELD", timeout=30, what="the released job to leave HELD")
    document = srv.wait_final(job_url, timeout=60)
    assert phase_of(document) == "COMPLETED", summary(document)
    assert srv.session.get(f"{job_url}/results/output").text == "held\n"

    marker = f"opus-slurm-test-{uuid.uuid4().hex}"
    job_url = srv.create("tree", marker=marker)
    until(lambda: srv.phase(job_url) == "HELD", timeout=30, what="phase HELD")
    (native_id,) = squeue_ids(job_id_of(job_url))
    subprocess.run(["scontrol", "release", native_id], check=True)
    until(lambda: srv.phase(job_url) == "EXECUTING", timeout=60, what="phase EXECUTING")
    until(lambda: len(pids_with(marker)) >= 3, what="the activity's processes")
    subprocess.run(["scontrol", "suspend", native_id], check=True)
    until(lambda: srv.phase(job_url) == "SUSPENDED", timeout=30, what="phase SUSPENDED")
    subprocess.run(["scontrol", "resume", native_id], check=True)
    until(lambda: srv.phase(job_url) == "EXECUTING", timeout=30, what="EXECUTING again")
    srv.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"})
    assert phase_of(srv.job(job_url)) == "ABORTED"
    until(lambda: not pids_with(marker), timeout=30, what="the aborted job's processes to end")
