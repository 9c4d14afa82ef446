"""Scheduler faults (issue 13): slurmd stopped mid-job. Every job ends once, in a clear
state: lost = 0, duplicated = 0; a job only the node failure can end (it runs until stopped)
ends in ERROR naming NODE_FAIL, never stays EXECUTING, and its processes are killed once
slurmd is back.

This is also tests/test_slurm_jobs.py's node-failure test (merged here so that slurmd is
stopped once per run: each stop costs slurmctld's SlurmdTimeout, 30 s, and more).

SQLite only: the cluster is what is under test here, and the store is tested on both
backends by the other scenarios (as tests/test_slurm_jobs.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import ROOT
from faults.conftest import scale
from conftest import until
from faults.test_scheduler_faults import tally
from test_execution import pids_with


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only (this overrides conftest's backend parametrisation for this module)."""
    return "sqlite"


def _cluster(action: str) -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "slurm_cluster.sh"), action],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"slurm_cluster.sh {action}: {proc.stderr}"


@pytest.mark.usefixtures("slurm_available")
@pytest.mark.skipif(os.geteuid() != 0, reason="stopping slurmd needs root")
def test_slurmd_stopped_mid_job(deploy, backend: str) -> None:
    """slurmd stopped while jobs run on SLURM: each job ends in a clear state (COMPLETED,
    or ERROR naming the node failure), nothing stays EXECUTING, none runs twice.

    slurmctld declares the node down after SlurmdTimeout (30 s here) and its jobs NODE_FAIL
    (they are submitted with --no-requeue): the "tree" job, which never ends by itself,
    must end in ERROR naming it (a re-queue would be acceptable too), not stay EXECUTING,
    and the restarted slurmd kills what is left of its processes."""
    deployment = deploy(manager="slurm")
    started = time.monotonic()
    marker = f"opus-slurm-test-{uuid.uuid4().hex}"
    (tree,) = deployment.create_many("tree", 1, clients=1, marker=marker)
    # Long jobs on the node when slurmd stops (short profile: they outlive slurmd and
    # report; long: they outlast slurmctld's SlurmdTimeout, the node is declared down and
    # they end with NODE_FAIL), and short ones queued behind them, which run once slurmd
    # is back.
    urls = deployment.create_many("count", 2, duration=str(scale(15, 120)))
    urls += deployment.create_many("count", scale(4, 16), duration="1")
    try:
        until(lambda: deployment.phases([tree])[tree] == "EXECUTING", 60, "the tree job executing")
        until(lambda: len(pids_with(marker)) >= 3, 30, "the tree activity's three processes")
        until(lambda: "EXECUTING" in deployment.phases(urls).values(), 90, "a job executing")
        _cluster("stop-slurmd")
        stopped = time.monotonic()
        try:
            until(lambda: deployment.phases([tree])[tree] != "EXECUTING", 150,
                  "the tree job to leave EXECUTING (150 s after slurmd stopped)", interval=0.5)
            tree_phase = deployment.phases([tree])[tree]
            print(f"slurmd stopped -> {tree_phase} in {time.monotonic() - stopped:.1f} s")
            assert tree_phase in {"ERROR", "QUEUED"}, (tree_phase, deployment.summary(tree))
            if tree_phase == "ERROR":
                assert "NODE_FAIL" in deployment.summary(tree)
            # the running ones end when slurmctld declares the node down (SlurmdTimeout)
            until(lambda: "EXECUTING" not in deployment.phases(urls).values(), 300,
                  "the executing jobs to end")
        finally:
            _cluster("start-slurmd")
        # the restarted slurmd kills what is left of a job slurmctld has ended
        until(lambda: not pids_with(marker), 60, "the failed job's processes to be killed")
    finally:
        if deployment.phases([tree])[tree] in {"PENDING", "QUEUED", "EXECUTING"}:
            deployment.server.session.post(f"{tree}/phase", data={"PHASE": "ABORT"})
        for pid in pids_with(marker):
            os.kill(pid, signal.SIGKILL)
    phases = deployment.wait_all(urls, timeout=scale(180, 600))

    def clear(phase: str, summary: str) -> bool:
        return phase == "COMPLETED" or (phase == "ERROR" and "NODE_FAIL" in summary)
    lost, duplicated = tally(f"slurmd stopped mid-job [{backend}]", deployment, urls,
                             phases, started, clear)
    assert (lost, duplicated) == (0, 0)
