"""Scheduler faults (issue 13): slurmd stopped mid-job. Every job ends once, in a clear
state: lost = 0, duplicated = 0.

SQLite only: the cluster is what is under test here, and the store is tested on both
backends by the other scenarios (as tests/test_slurm_jobs.py)."""

from __future__ import annotations

import subprocess
import time

import pytest

from conftest import ROOT
from faults.conftest import scale
from conftest import until
from faults.test_scheduler_faults import tally


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only (this overrides conftest's backend parametrisation for this module)."""
    return "sqlite"


def _cluster(action: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "slurm_cluster.sh"), action], check=True,
                   capture_output=True, timeout=120)


@pytest.mark.usefixtures("slurm_available")
def test_slurmd_stopped_mid_job(deploy, backend: str) -> None:
    """slurmd stopped while jobs run on SLURM: each job ends in a clear state (COMPLETED,
    or ERROR naming the node failure), nothing stays EXECUTING, none runs twice."""
    deployment = deploy(manager="slurm")
    started = time.monotonic()
    # Two long jobs on the node when slurmd stops (short profile: they outlive slurmd and
    # report; long: they outlast slurmctld's SlurmdTimeout, the node is declared down and
    # they end with NODE_FAIL), and short ones queued behind them, which run once slurmd
    # is back.
    urls = deployment.create_many("count", 2, duration=str(scale(15, 120)))
    urls += deployment.create_many("count", scale(4, 16), duration="1")
    until(lambda: "EXECUTING" in deployment.phases(urls).values(), 90, "a job executing")
    _cluster("stop-slurmd")
    try:
        # the running ones end when slurmctld declares the node down (SlurmdTimeout)
        until(lambda: "EXECUTING" not in deployment.phases(urls).values(), 300,
              "the executing jobs to end")
    finally:
        _cluster("start-slurmd")
    phases = deployment.wait_all(urls, timeout=scale(180, 600))

    def clear(phase: str, summary: str) -> bool:
        return phase == "COMPLETED" or (phase == "ERROR" and "NODE_FAIL" in summary)
    lost, duplicated = tally(f"slurmd stopped mid-job [{backend}]", deployment, urls,
                             phases, started, clear)
    assert (lost, duplicated) == (0, 0)
