"""The job store on SQLite and PostgreSQL: migrations, compare-and-set, lists, indexes,
and change events between hubs."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from opus.storage.engine import upgrade
from opus.storage.events import make_events
from opus.uws.models import Job, JobResult, Phase, RunEnd, utcnow
from opus.storage.jobs import JobStore
from opus.storage.tables import jobs


@pytest.fixture
def store(engine: sa.Engine, tmp_path: Path) -> Iterator[JobStore]:
    events = make_events(engine, tmp_path / "run")
    yield JobStore(engine, events)
    events.close()


def make_job(job_id: str, phase: str = Phase.PENDING, activity: str = "echo",
             created: dt.datetime | None = None) -> Job:
    return Job(job_id=job_id, activity=activity, phase=phase,
               creation_time=created or utcnow(), execution_duration=60,
               parameters={"text": "hé"}, destruction=utcnow() + dt.timedelta(days=1))


def test_upgrade_is_idempotent(engine: sa.Engine) -> None:
    upgrade(engine)
    assert {"jobs", "results", "cleanups", "alembic_version"} <= set(
        sa.inspect(engine).get_table_names())


def test_insert_and_get_round_trip(store: JobStore) -> None:
    job = make_job("a1")
    store.insert(job)
    assert store.get("a1") == job
    assert store.get("nope") is None


def test_update_is_compare_and_set(store: JobStore) -> None:
    store.insert(make_job("a1"))
    assert store.update("a1", expected_phases={Phase.PENDING}, phase=Phase.QUEUED)
    # A second writer who still believes the job is PENDING changes nothing.
    assert not store.update("a1", expected_phases={Phase.PENDING}, phase=Phase.ABORTED)
    assert store.get("a1").phase == Phase.QUEUED


def test_finish_records_results_once(store: JobStore) -> None:
    store.insert(make_job("a1", Phase.EXECUTING))
    results = [JobResult("output", "work/output.txt", 6, "text/plain", "ab" * 32)]
    job, now = store.get("a1"), utcnow()

    def run(phase: Phase) -> RunEnd:
        return RunEnd(job, phase, now, None, tuple(results), "http://x/results", None, {})

    assert store.finish("a1", phase=Phase.COMPLETED, expected_phases={Phase.EXECUTING},
                        run=run(Phase.COMPLETED), end_time=now)
    assert not store.finish("a1", phase=Phase.ERROR, expected_phases={Phase.EXECUTING},
                            run=run(Phase.ERROR))
    job = store.get("a1")
    assert job.phase == Phase.COMPLETED
    assert job.results == tuple(results)


def test_delete_leaves_a_cleanup_for_the_scheduler(store: JobStore) -> None:
    store.insert(make_job("a1"))
    store.update("a1", cluster_state="submitted", manager="local", native_id="123:4")
    assert store.delete("a1")
    assert store.get("a1") is None
    (cleanup,) = store.pending_cleanups()
    assert (cleanup.job_id, cleanup.native_id, cleanup.remove_files) == ("a1", "123:4", True)
    assert not store.delete("a1")


def test_list_filters_and_order(store: JobStore) -> None:
    base = dt.datetime(2026, 1, 1)
    phases = [Phase.PENDING, Phase.COMPLETED, Phase.ERROR, Phase.ARCHIVED, Phase.COMPLETED]
    for i, phase in enumerate(phases):
        store.insert(make_job(f"j{i}", phase, created=base + dt.timedelta(minutes=i)))
    store.insert(make_job("other", activity="sleep"))
    assert [r.job_id for r in store.list_jobs("echo")] == ["j4", "j2", "j1", "j0"]
    assert [r.job_id for r in store.list_jobs("echo", phases=[Phase.ARCHIVED])] == ["j3"]
    assert [r.job_id for r in store.list_jobs("echo", phases=[Phase.COMPLETED, Phase.ERROR])] == [
        "j4", "j2", "j1"]
    after = base + dt.timedelta(minutes=1)
    assert [r.job_id for r in store.list_jobs("echo", after=after, last=1)] == ["j4"]


def _bulk_insert(engine: sa.Engine, count: int) -> None:
    start = dt.datetime(2025, 1, 1)
    rows = [
        {"job_id": f"bulk{i}", "activity": "echo" if i % 3 else "sleep",
         "phase": [Phase.COMPLETED, Phase.ERROR, Phase.ABORTED][i % 3],
         "creation_time": start + dt.timedelta(seconds=i), "execution_duration": 60,
         "parameters": json.dumps({"text": "x"})}
        for i in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(jobs.insert(), rows)


def _plan(engine: sa.Engine, store: JobStore, **filters: object) -> str:
    """The query plan of the job-list query the store really runs."""
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        store.list_jobs("echo", **filters)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("ANALYZE jobs")
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("filters", [{"last": 20}, {"last": 20, "phases": [Phase.ERROR]}])
def test_list_queries_walk_an_index_not_the_table(engine: sa.Engine, store: JobStore,
                                                   filters: dict) -> None:
    """A LAST=20 list reads 20 index entries, however many jobs are stored: no full scan,
    no sort of all matching rows."""
    _bulk_insert(engine, 20000)
    plan = _plan(engine, store, **filters)
    if engine.dialect.name == "sqlite":
        assert "USING INDEX ix_jobs_activity" in plan or "USING COVERING INDEX" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Index" in plan and "Sort" not in plan and "Seq Scan" not in plan, plan


def test_a_change_wakes_a_watcher_of_another_hub(engine: sa.Engine, tmp_path: Path) -> None:
    """Two hubs stand for two processes: a change written through one wakes the other."""
    writer_events = make_events(engine, tmp_path / "run")
    watcher_events = make_events(engine, tmp_path / "run")
    writer_events.start()
    try:
        store = JobStore(engine, writer_events)
        store.insert(make_job("w1"))
        with watcher_events.watch("w1") as changed:
            assert not changed.is_set()
            threading.Thread(target=store.update, args=("w1",),
                             kwargs={"phase": Phase.QUEUED}).start()
            assert changed.wait(10), "the watcher was not woken"
    finally:
        writer_events.close()
        watcher_events.close()


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_build_exactly_the_declared_tables(engine: sa.Engine) -> None:
    """The schema made by `opus db upgrade` is the one the code declares: a table, column
    or index added on one side only is caught here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from opus.storage.tables import metadata

    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_each_owners_disk_usage_follows_its_uploads_results_and_removals(
        store: JobStore, engine: sa.Engine) -> None:
    """The quota's total (opus.storage.usage): uploads at creation, results at the end,
    less a job's files when it is archived or deleted; per owner, anonymous apart."""
    from dataclasses import replace

    from opus.storage.usage import used

    def end(job_id: str, *sizes: int) -> None:
        job = store.get(job_id)
        assert job is not None
        outputs = tuple(JobResult(f"r{i}", f"r{i}", size, "text/plain", None)
                        for i, size in enumerate(sizes))
        assert store.finish(job_id, phase=Phase.COMPLETED, expected_phases={job.phase},
                            run=RunEnd(job, Phase.COMPLETED, utcnow(), None, outputs,
                                       "http://x/results", None, {}), end_time=utcnow())

    store.insert(replace(make_job("a", Phase.QUEUED), owner_key="k1", upload_bytes=700))
    store.insert(replace(make_job("b"), owner_key="k1"))
    store.insert(replace(make_job("c"), upload_bytes=5))  # anonymous
    assert (used(engine, "k1"), used(engine, None)) == (700, 5)
    end("a", 100, 50)
    end("b", 30)
    assert used(engine, "k1") == 880
    assert used(engine, "k1", besides="b") == 850  # a job's own results left out
    assert store.archive("a")
    assert used(engine, "k1") == 30
    assert store.delete("a")  # archived: its bytes were released already
    assert used(engine, "k1") == 30
    assert store.delete("b") and store.delete("c")
    assert (used(engine, "k1"), used(engine, None), used(engine, "nobody")) == (0, 0, 0)


def test_an_outage_is_logged_once_even_when_a_dead_connection_turns_up_late(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """One log line when the database goes, one when it is back; a connection the restart
    killed, found dead just after, belongs to the same outage; a failure well after is a
    new one. (The windows are shortened; what is tested is their logic.)"""
    import time

    from opus.storage import health

    monkeypatch.setattr(health, "SETTLE", 0.05)
    monkeypatch.setattr(health, "REOPEN", 0.5)
    state = health.DatabaseHealth("db")
    caplog.set_level("WARNING", logger="opus.database")

    def lines(text: str) -> int:
        return sum(text in record.getMessage() for record in caplog.records)

    for _ in range(3):
        state.failed(RuntimeError("connection refused"))
    time.sleep(0.06)
    state.recovered()
    assert (lines("cannot be reached"), lines("is back after"), state.down) == (1, 1, False)
    state.failed(RuntimeError("terminating connection due to administrator command"))
    assert lines("cannot be reached") == 1 and state.down  # the same outage
    time.sleep(0.06)
    state.recovered()
    time.sleep(0.5)
    state.failed(RuntimeError("connection refused"))  # a new outage
    assert lines("cannot be reached") == 2
