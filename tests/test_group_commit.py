"""Group commit of PENDING job inserts on SQLite (opus/storage/group_commit.py, issue 15):
rows of concurrent callers share a transaction, no caller returns before its row is
committed, and one bad row fails its own caller only."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import until
from opus.storage.engine import make_engine, upgrade
from opus.storage.events import make_events
from opus.storage.group_commit import GroupCommit
from opus.storage.jobs import JobStore
from opus.storage.tables import jobs
from opus.uws.models import Job, Phase, utcnow


def make_job(job_id: str) -> Job:
    return Job(job_id=job_id, activity="echo", phase=Phase.PENDING, creation_time=utcnow(),
               execution_duration=60, parameters={"text": job_id})


def test_callers_queued_behind_a_commit_share_the_next_one() -> None:
    """While one batch is being written, four callers queue; they are written together in
    one transaction, and none returns before it."""
    written: list[list[str]] = []
    first_started, release = threading.Event(), threading.Event()

    def write(rows: Sequence[dict[str, Any]]) -> None:
        if not written:
            first_started.set()
            assert release.wait(30)
        written.append([r["id"] for r in rows])

    group = GroupCommit(write)
    returned: list[str] = []

    def call(name: str) -> None:
        group.write({"id": name})
        returned.append(name)

    leader = threading.Thread(target=call, args=("a",))
    leader.start()
    assert first_started.wait(30)
    others = [threading.Thread(target=call, args=(n,)) for n in "bcde"]
    for thread in others:
        thread.start()
    until(lambda: len(group._pending) == 4, what="four callers queued")
    assert returned == []  # nobody answered before its commit
    release.set()
    for thread in [leader, *others]:
        thread.join(30)
    assert written[0] == ["a"] and sorted(written[1]) == ["b", "c", "d", "e"]
    assert sorted(returned) == ["a", "b", "c", "d", "e"]
    assert (group.rows, group.transactions) == (5, 2)


def test_a_bad_row_fails_its_caller_only() -> None:
    def write(rows: Sequence[dict[str, Any]]) -> None:
        if any(r["id"] == "bad" for r in rows):
            raise ValueError("bad row")

    outcomes: dict[str, str] = {}
    gate = threading.Event()

    def slow_write(rows: Sequence[dict[str, Any]]) -> None:
        gate.wait(30)  # the first batch waits until every caller has queued
        write(rows)

    group = GroupCommit(slow_write)

    def call(name: str) -> None:
        try:
            group.write({"id": name})
            outcomes[name] = "ok"
        except ValueError as error:
            outcomes[name] = str(error)

    threads = [threading.Thread(target=call, args=(n,)) for n in ("x", "y", "bad", "z")]
    threads[0].start()
    until(lambda: group._leading and not group._pending, what="the first batch to start")
    for queued, thread in enumerate(threads[1:], 1):  # queued in this order: bad is not first
        thread.start()
        until(lambda: len(group._pending) == queued, what="the caller queued")  # noqa: B023
    gate.set()
    for thread in threads:
        thread.join(30)
    assert outcomes == {"x": "ok", "bad": "bad row", "y": "ok", "z": "ok"}


def test_every_concurrent_insert_is_committed_when_it_returns(tmp_path: Path) -> None:
    """16 threads x 40 PENDING inserts through JobStore on a SQLite file: each row is
    visible to another connection as soon as its insert returns, all 640 are there, and a
    job id inserted twice fails only the second caller."""
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    upgrade(engine)
    events = make_events(engine, tmp_path / "run")
    store = JobStore(engine, events)
    reader = make_engine(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    missing: list[str] = []

    def client(index: int) -> None:
        for n in range(40):
            job_id = f"j{index:02d}{n:03d}"
            store.insert(make_job(job_id))
            with reader.connect() as connection:
                if connection.execute(sa.select(jobs.c.job_id).where(
                        jobs.c.job_id == job_id)).first() is None:
                    missing.append(job_id)

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert missing == []
        with reader.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(jobs)
                                      ).scalar_one() == 640
        with pytest.raises(sa.exc.IntegrityError):
            store.insert(make_job("j00000"))
        assert store.get("j00000").parameters == {"text": "j00000"}  # type: ignore[union-attr]
    finally:
        events.close()
        engine.dispose()
        reader.dispose()
