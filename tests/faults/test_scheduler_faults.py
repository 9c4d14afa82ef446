"""Scheduler faults (issue 13): the scheduler SIGKILLed mid-burst, two schedulers on one
database (slurmd stopped mid-job: test_slurmd_faults.py). Every job ends once: lost = 0, duplicated = 0."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from conftest import until
from faults.conftest import Deployment, report, scale


def progressed(deployment: Deployment, urls: list[str], beyond: int) -> int:
    """How many jobs have left QUEUED, once more than ``beyond`` have (else 0)."""
    moved = sum(p not in {"PENDING", "QUEUED"} for p in deployment.phases(urls).values())
    return moved if moved > beyond else 0


def tally(name: str, deployment: Deployment, urls: list[str], phases: dict[str, str],
          started: float, allowed: Callable[[str, str], bool]) -> tuple[int, int]:
    """Report the scenario; (lost, duplicated). A job is lost if it did not end in a
    phase ``allowed(phase, summary)`` accepts, duplicated if its activity ran twice."""
    lost = [u for u, p in phases.items() if not allowed(p, deployment.summary(u))]
    duplicated = [u for u in urls if deployment.runs(u) > 1]
    errors = sum(p == "ERROR" for p in phases.values())
    report(name, jobs=len(urls), seconds=time.monotonic() - started, errors=errors,
           lost=len(lost), duplicated=len(duplicated))
    for url in lost[:5]:
        print(f"lost: {url} {phases[url]} {deployment.summary(url)!r}")
    return len(lost), len(duplicated)


def completed(phase: str, _summary: str) -> bool:
    return phase == "COMPLETED"


def test_scheduler_killed_mid_burst(deploy, backend: str) -> None:
    """SIGKILL the scheduler while jobs wait: supervision restarts it; every job ends
    COMPLETED, each run once."""
    deployment = deploy(concurrency=4)
    jobs, kills = scale(30, 200), scale(1, 5)
    started = time.monotonic()
    urls = deployment.create_many("count", jobs, duration="0.3")
    supervisor = deployment.schedulers[0]
    moved = 0
    for _ in range(kills):
        moved = int(until(lambda: progressed(deployment, urls, moved), 60,  # noqa: B023
                          "the scheduler to make progress"))
        victim = int(until(lambda: Deployment.worker_of(supervisor), 30, "a scheduler"))
        os.kill(victim, signal.SIGKILL)
        until(lambda: Deployment.worker_of(supervisor) not in (0, victim), 30,  # noqa: B023
              "the scheduler to be restarted")
    phases = deployment.wait_all(urls, timeout=scale(120, 900))
    lost, duplicated = tally(f"scheduler SIGKILLed x{kills} mid-burst [{backend}]",
                             deployment, urls, phases, started, completed)
    assert deployment.scheduler_log(0).count("killed by SIGKILL; restarting it") == kills
    assert (lost, duplicated) == (0, 0)


def test_two_schedulers_on_one_database(deploy, backend: str) -> None:
    """Two schedulers at once: one leads, the other stands by; the leader's host dies
    (supervisor and scheduler SIGKILLed) mid-burst and the standby takes over. No job runs
    twice, none is lost."""
    deployment = deploy(schedulers=2, concurrency=4, scheduler_timeout=4)
    rounds, jobs = scale(1, 3), scale(30, 100)
    started = time.monotonic()
    urls: list[str] = []
    for _ in range(rounds):
        def leader() -> int:
            for index, process in enumerate(deployment.schedulers):
                if (process.poll() is None
                        and "is the active scheduler" in deployment.scheduler_log(index)):
                    return index + 1
            return 0
        urls_now = deployment.create_many("count", jobs, duration="0.3")
        urls += urls_now
        index = int(until(leader, 30, "an active scheduler")) - 1
        until(lambda: progressed(deployment, urls_now, 2), 60,  # noqa: B023
              "the leader to make progress")
        supervisor = deployment.schedulers[index]
        worker = Deployment.worker_of(supervisor)
        supervisor.kill()
        if worker:
            os.kill(worker, signal.SIGKILL)
        supervisor.wait()
        deployment.add_scheduler()  # the replacement host comes back as a standby
        phases = deployment.wait_all(urls_now, timeout=scale(120, 600))
        assert all(p == "COMPLETED" for p in phases.values()), phases
    phases = deployment.phases(urls)
    lost, duplicated = tally(f"two schedulers, leader killed x{rounds} [{backend}]",
                             deployment, urls, phases, started, completed)
    assert (lost, duplicated) == (0, 0)
