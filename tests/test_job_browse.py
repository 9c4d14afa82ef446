"""The web client's job list across activities (JobStore.browse through JobService.browse):
order, filters, paging both ways, owners, and index-only query plans with 100,000 jobs."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from opus.activities.model import ActivityDescription
from opus.activities.registry import ActivityRegistry
from opus.auth import Identity
from opus.config import Settings
from opus.storage.events import make_events
from opus.storage.jobs import JobStore
from opus.storage.tables import jobs
from opus.uws.models import Phase
from opus.uws.service import JobService

pytestmark = pytest.mark.filterwarnings("ignore:.*expression-based index")

ALICE = Identity("alice", "k-alice")
BOB = Identity("bob", "k-bob")
ADMIN = Identity("root", "k-root", admin=True)
START = dt.datetime(2026, 1, 1)


@pytest.fixture
def service(engine: sa.Engine, tmp_path: Path) -> Iterator[JobService]:
    events = make_events(engine, tmp_path / "run")
    registry = ActivityRegistry([ActivityDescription(name) for name in ("echo", "sleep", "fits")])
    settings = Settings(data_dir=tmp_path / "data")
    yield JobService(settings, JobStore(engine, events), registry, entities=None)  # type: ignore[arg-type]
    events.close()


def insert(engine: sa.Engine, count: int, *, owner: Identity | None = None,
           activities: tuple[str, ...] = ("echo", "sleep", "fits"),
           phases: tuple[Phase, ...] = (Phase.COMPLETED, Phase.ERROR, Phase.PENDING),
           prefix: str = "j", step: dt.timedelta = dt.timedelta(minutes=1),
           start: dt.datetime = START) -> list[str]:
    """``count`` jobs in one transaction, one a ``step`` apart, cycling through activities and
    phases; their ids, oldest first."""
    rows = [{"job_id": f"{prefix}{i:06d}", "activity": activities[i % len(activities)],
             "phase": phases[i % len(phases)], "creation_time": start + i * step,
             "execution_duration": 60, "parameters": json.dumps({}),
             "owner_id": owner.owner_id if owner else None,
             "owner_key": owner.key if owner else None} for i in range(count)]
    with engine.begin() as connection:
        connection.execute(jobs.insert(), rows)
    return [row["job_id"] for row in rows]


def ids(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [job.job_id for job in page.jobs]


def test_newest_first_across_activities_and_paging_both_ways(engine: sa.Engine,
                                                             service: JobService) -> None:
    made = insert(engine, 23, owner=ALICE)
    newest = list(reversed(made))
    first = service.browse(ALICE, size=10)
    assert ids(first) == newest[:10]
    assert first.newer is None and first.older is not None
    assert {job.activity for job in first.jobs} == {"echo", "sleep", "fits"}
    second = service.browse(ALICE, size=10, older=first.older)
    assert ids(second) == newest[10:20]
    third = service.browse(ALICE, size=10, older=second.older)
    assert ids(third) == newest[20:] and third.older is None
    back = service.browse(ALICE, size=10, newer=third.newer)
    assert ids(back) == newest[10:20]
    top = service.browse(ALICE, size=10, newer=back.newer)
    assert ids(top) == newest[:10] and top.newer is None


def test_filters_owner_phase_activity_and_dates(engine: sa.Engine,
                                                service: JobService) -> None:
    alice = insert(engine, 12, owner=ALICE, prefix="a")
    bob = insert(engine, 5, owner=BOB, prefix="b")
    anonymous = insert(engine, 4, prefix="n")
    insert(engine, 2, owner=ALICE, prefix="x", phases=(Phase.ARCHIVED,))
    assert set(ids(service.browse(ALICE, size=100))) == set(alice)
    assert set(ids(service.browse(BOB, size=100))) == set(bob)
    assert set(ids(service.browse(Identity(), size=100))) == set(anonymous)
    assert len(service.browse(ADMIN, size=100).jobs) == 21
    errors = service.browse(ALICE, size=100, phases=[Phase.ERROR])
    assert {job.phase for job in errors.jobs} == {Phase.ERROR} and len(errors.jobs) == 4
    assert ids(service.browse(ALICE, size=100, phases=[Phase.ARCHIVED])) == ["x000001",
                                                                            "x000000"]
    sleeps = service.browse(ALICE, "sleep", size=100)
    assert {job.activity for job in sleeps.jobs} == {"sleep"} and len(sleeps.jobs) == 4
    window = service.browse(ALICE, size=100, created_after=START + dt.timedelta(minutes=3),
                            created_before=START + dt.timedelta(minutes=6))
    assert ids(window) == ["a000005", "a000004", "a000003"]


def test_an_unknown_activity_is_404(service: JobService) -> None:
    from opus.errors import NotFoundError

    with pytest.raises(NotFoundError):
        service.browse(ALICE, "nope")


def _plans(engine: sa.Engine, run) -> list[str]:  # type: ignore[no-untyped-def]
    """The query plans of the statements ``run()`` sends."""
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE jobs")
        for statement, parameters in captured:
            if engine.dialect.name == "sqlite":
                rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                plans.append("\n".join(str(row[-1]) for row in rows))
            else:
                rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plans.append("\n".join(row[0] for row in rows))
    return plans


#: (caller, query) of the job lists checked on 100,000 jobs.
LARGE_LIST_QUERIES = [
    (ALICE, {}),
    (ALICE, {"phases": [Phase.ERROR]}),
    (ALICE, {"activity": "sleep", "older": 50_000}),
    (Identity(), {"created_after": START + dt.timedelta(days=10)}),
    (ADMIN, {"phases": [Phase.COMPLETED], "newer": 10_000}),
]


def test_the_list_of_100000_jobs_reads_indexes_only(engine: sa.Engine,
                                                    service: JobService) -> None:
    """Each page costs a few index reads per activity, however many jobs are stored: no
    full scan, no sort of every matching row; and it answers fast."""
    insert(engine, 60_000, owner=ALICE, step=dt.timedelta(seconds=30))
    insert(engine, 40_000, prefix="n", step=dt.timedelta(seconds=45))
    for who, query in LARGE_LIST_QUERIES:
        query = dict(query)
        activity = query.pop("activity", None)
        started = time.perf_counter()
        page = service.browse(who, activity, size=25, **query)
        elapsed = time.perf_counter() - started
        assert len(page.jobs) == 25, (who, query)
        assert elapsed < 1.0, (who, query, elapsed)
        plans = _plans(engine, lambda: service.browse(who, activity, size=25, **query))
        assert len(plans) == (1 if activity else 3)
        for plan in plans:
            if engine.dialect.name == "sqlite":
                assert "USING INDEX ix_jobs_activity" in plan, (who, query, plan)
                assert "TEMP B-TREE" not in plan, (who, query, plan)
            else:
                assert "Sort" not in plan and "Seq Scan" not in plan, (who, query, plan)
