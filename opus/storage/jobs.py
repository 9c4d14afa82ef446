"""Storage of UWS jobs: it stores and announces, it does not decide.

Which phase may follow which, and who may do what, is :mod:`opus.uws.service`'s business.
The store offers compare-and-set updates (``expected_phases``) so that those rules hold
even when two processes act on one job at once: an update that finds the job in another
phase changes nothing and says so. Every change is one transaction, announced through
:class:`opus.storage.events.JobEvents` so that waiters in any process wake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from opus.storage.dispatch import fair_queued
from opus.storage.engine import single_statement, write_transaction
from opus.storage import usage
from opus.storage.group_commit import GroupCommit
from opus.storage.tables import cleanups, jobs, results
from opus.storage.events import JobEvents, Message
from opus.uws.models import (
    Change,
    Job,
    JobPage,
    JobRef,
    JobResult,
    JobSummary,
    Phase,
    RunEnd,
    utcnow,
)

#: Written in the transaction that ends a job (the run's provenance record).
EndHook = Callable[[sa.Connection, RunEnd], None]
#: Written in the transaction that deletes or archives a job (its entities invalidated).
RemoveHook = Callable[[sa.Connection, str, dt.datetime], None]
#: Written in the transaction that publishes or withdraws a job (its run and products).
PublishHook = Callable[[sa.Connection, str, bool], None]
#: Run first in a write transaction; refuses the change by raising (a limit's check).
Guard = Callable[[sa.Connection], None]

_JOB_COLUMNS = [c for c in jobs.c if c.name not in {"id", "secret_hash", "claimed_at"}]
_INSERT_JOB = jobs.insert()


def _row_to_job(row: sa.Row[Any], job_results: Sequence[JobResult] = ()) -> Job:
    data = row._mapping
    return Job(
        job_id=data["job_id"],
        activity=data["activity"],
        phase=Phase(data["phase"]),
        creation_time=data["creation_time"],
        execution_duration=data["execution_duration"],
        parameters=json.loads(data["parameters"]),
        owner_id=data["owner_id"],
        owner_key=data["owner_key"],
        public=bool(data["public"]),
        run_id=data["run_id"],
        start_time=data["start_time"],
        end_time=data["end_time"],
        destruction=data["destruction"],
        quote=data["quote"],
        error_type=data["error_type"],
        error_summary=data["error_summary"],
        manager=data["manager"],
        native_id=data["native_id"],
        cluster_state=data["cluster_state"],
        time_limit=data["time_limit"],
        upload_bytes=data["upload_bytes"],
        results=tuple(job_results),
    )


class JobStore:
    """Jobs, results and pending cleanups in one SQL database.

    ``on_end``, ``on_remove`` and ``on_publish`` write in the same transaction as the change
    they follow (wired by :func:`opus.services.build_services` to the provenance store): a
    job never ends without its record, never goes away with its entities still valid, and
    is never published without its provenance (nor withdrawn with it left public).
    """

    def __init__(self, engine: sa.Engine, events: JobEvents, *,
                 on_end: EndHook | None = None, on_remove: RemoveHook | None = None,
                 on_publish: PublishHook | None = None) -> None:
        self.engine = engine
        self.events = events
        self.on_end = on_end
        self.on_remove = on_remove
        self.on_publish = on_publish
        #: SQLite: PENDING inserts of concurrent requests share a transaction
        #: (opus.storage.group_commit); PostgreSQL writes each in one round trip.
        self._group = GroupCommit(self._insert_rows) if engine.dialect.name == "sqlite" \
            else None

    @contextlib.contextmanager
    def _write(self, messages: list[Message]) -> Iterator[sa.Connection]:
        """One write transaction; ``messages`` (filled by the caller) are announced with it."""
        with write_transaction(self.engine) as connection:
            yield connection
            if messages:
                self.events.publish_in_transaction(connection, messages)
        if messages:
            self.events.publish_after_commit(messages)

    # -- creation and reading ----------------------------------------------------------
    def insert(self, job: Job, secret_hash: str | None = None, *,
               guard: Guard | None = None) -> None:
        values = {c.name: getattr(job, c.name) for c in _JOB_COLUMNS if c.name != "parameters"}
        values["parameters"] = json.dumps(job.parameters)
        values["secret_hash"] = secret_hash
        # Nobody can be waiting on a job that did not exist: only a QUEUED job is worth
        # announcing (it wakes the scheduler).
        messages: list[Message] = [] if job.phase == Phase.PENDING else [(job.job_id, job.phase)]
        if not messages and guard is None and not job.upload_bytes:
            if self._group is not None:
                self._group.write(values)
            else:
                self._insert_rows([values])
            return
        with self._write(messages) as connection:
            # One statement object for every insert: building .values(**row) anew costs
            # more than the INSERT itself (bench/uws.py, profile of JobService.create).
            if guard is not None:
                guard(connection)
            connection.execute(_INSERT_JOB, values)
            usage.add(connection, job.owner_key, job.upload_bytes)  # counted at once

    def _insert_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        if len(rows) == 1:  # alone: one statement, its own transaction (issue 15)
            with single_statement(self.engine) as connection:
                connection.execute(_INSERT_JOB, rows[0])
            return
        with write_transaction(self.engine) as connection:
            connection.execute(_INSERT_JOB, list(rows))

    def get(self, job_id: str, *, with_results: bool = True) -> Job | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(*_JOB_COLUMNS).where(jobs.c.job_id == job_id)
            ).first()
            if row is None:
                return None
            job_results: list[JobResult] = []
            if with_results:
                job_results = [
                    JobResult(r.result_id, r.path, r.size, r.mime_type, r.sha256)
                    for r in connection.execute(
                        sa.select(results).where(results.c.job_id == job_id)
                        .order_by(results.c.position)
                    )
                ]
        return _row_to_job(row, job_results)

    def secret_hash(self, job_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(jobs.c.secret_hash).where(jobs.c.job_id == job_id)
            ).scalar()

    def list_jobs(
        self,
        activity: str,
        *,
        owner_key: str | None = None,
        filter_owner: bool = False,
        phases: Iterable[str] | None = None,
        after: dt.datetime | None = None,
        last: int | None = None,
    ) -> list[JobRef]:
        """Job list of one activity, most recent first (UWS 1.1 section 2.2.2.1).

        Without ``phases``, ARCHIVED jobs are left out, as the standard requires.
        """
        query = sa.select(
            jobs.c.job_id, jobs.c.phase, jobs.c.run_id, jobs.c.owner_id, jobs.c.creation_time
        ).where(jobs.c.activity == activity)
        if filter_owner:
            query = query.where(
                jobs.c.owner_key.is_(None) if owner_key is None
                else jobs.c.owner_key == owner_key
            )
        if phases:
            query = query.where(jobs.c.phase.in_(sorted(set(phases))))
        else:
            query = query.where(jobs.c.phase != Phase.ARCHIVED)
        if after is not None:
            query = query.where(jobs.c.creation_time > after)
        query = query.order_by(jobs.c.id.desc())
        if last is not None:
            query = query.limit(last)
        with self.engine.connect() as connection:
            return [JobRef(row.job_id, Phase(row.phase), row.run_id, row.owner_id,
                           row.creation_time) for row in connection.execute(query)]

    def browse(
        self,
        activities: Sequence[str],
        *,
        owner_key: str | None = None,
        filter_owner: bool = False,
        phases: Iterable[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        older: int | None = None,
        newer: int | None = None,
        size: int = 25,
    ) -> JobPage:
        """A page of ``size`` jobs of these activities, newest first: the newest ones, those
        just older than position ``older``, or those just newer than ``newer``. Without
        ``phases`` ARCHIVED jobs are left out; ``created_after`` is inclusive,
        ``created_before`` exclusive.

        One query per activity, each reading at most ``size + 1`` entries of its
        (activity, owner_key, id) or (activity, phase, id) index, merged here: one query
        over several activities would sort every matching row (100,000 of them, say)."""
        upward = newer is not None and older is None
        columns = (jobs.c.id, jobs.c.job_id, jobs.c.activity, jobs.c.phase, jobs.c.run_id,
                   jobs.c.owner_id, jobs.c.creation_time, jobs.c.start_time, jobs.c.end_time)
        rows: list[sa.Row[Any]] = []
        with self.engine.connect() as connection:
            for activity in sorted(set(activities)):
                query = sa.select(*columns).where(jobs.c.activity == activity)
                if filter_owner:
                    query = query.where(jobs.c.owner_key.is_(None) if owner_key is None
                                        else jobs.c.owner_key == owner_key)
                query = query.where(jobs.c.phase.in_(sorted(set(phases))) if phases
                                    else jobs.c.phase != Phase.ARCHIVED)
                if created_after is not None:
                    query = query.where(jobs.c.creation_time >= created_after)
                if created_before is not None:
                    query = query.where(jobs.c.creation_time < created_before)
                if older is not None:
                    query = query.where(jobs.c.id < older)
                elif newer is not None:
                    query = query.where(jobs.c.id > newer)
                query = query.order_by(jobs.c.id.asc() if upward else jobs.c.id.desc())
                rows.extend(connection.execute(query.limit(size + 1)))
        rows.sort(key=lambda row: row.id, reverse=not upward)
        more = len(rows) > size
        rows = rows[:size]
        if upward:
            rows.reverse()
        found = tuple(JobSummary(row.id, row.job_id, row.activity, Phase(row.phase),
                                 row.run_id, row.owner_id, row.creation_time, row.start_time,
                                 row.end_time) for row in rows)
        if not found:
            return JobPage(found)
        if upward:
            return JobPage(found, older=found[-1].position,
                           newer=found[0].position if more else None)
        return JobPage(found, older=found[-1].position if more else None,
                       newer=found[0].position if older is not None else None)

    # -- updates -----------------------------------------------------------------------
    def update(
        self,
        job_id: str,
        *,
        expected_phases: Iterable[str] | None = None,
        announce: bool = True,
        guard: Guard | None = None,
        **values: Any,
    ) -> bool:
        """Set columns of a job if it is in one of ``expected_phases``; True if it was.
        ``guard`` runs first in the same transaction (and may refuse by raising)."""
        if "parameters" in values:
            values["parameters"] = json.dumps(values["parameters"])
        query = jobs.update().where(jobs.c.job_id == job_id).values(**values)
        if expected_phases is not None:
            query = query.where(jobs.c.phase.in_(sorted(set(expected_phases))))
        change = values.get("phase", Change.CHANGED)
        messages: list[Message] = [(job_id, change)] if announce else []
        with self._write(messages) as connection:
            if guard is not None:
                guard(connection)
            updated = connection.execute(query).rowcount == 1
            if not updated:
                messages.clear()
        return updated

    def finish(
        self,
        job_id: str,
        *,
        phase: Phase,
        expected_phases: Iterable[Phase],
        run: RunEnd,
        **values: Any,
    ) -> bool:
        """Move a job to a final phase and record its results (``run.results``) and, through
        ``on_end``, its provenance, in one transaction."""
        job_results = run.results
        query = (
            jobs.update()
            .where(jobs.c.job_id == job_id, jobs.c.phase.in_(sorted(set(expected_phases))))
            .values(phase=phase, **values)
        )
        messages: list[Message] = [(job_id, phase)]
        with self._write(messages) as connection:
            if connection.execute(query).rowcount != 1:
                messages.clear()
                return False
            replaced = usage.stored_results(connection, job_id)
            connection.execute(results.delete().where(results.c.job_id == job_id))
            usage.add(connection, run.job.owner_key,
                      sum(r.size or 0 for r in job_results) - replaced)
            if job_results:
                connection.execute(
                    results.insert(),
                    [
                        {"job_id": job_id, "result_id": r.result_id, "position": i,
                         "path": r.path, "size": r.size, "mime_type": r.mime_type,
                         "sha256": r.sha256}
                        for i, r in enumerate(job_results)
                    ],
                )
            if self.on_end is not None:
                self.on_end(connection, run)
        return True

    def publish(self, job_id: str, public: bool) -> bool:
        """Publish (``public``) or withdraw a job, and through ``on_publish`` its
        provenance, in one transaction; False if there is no such job."""
        messages: list[Message] = [(job_id, Change.CHANGED)]
        with self._write(messages) as connection:
            # The job's row first: a run ending meanwhile waits for it, then records the
            # flag it reads there (opus.storage.provenance_record.record_run).
            if connection.execute(jobs.update().where(jobs.c.job_id == job_id)
                                  .values(public=public)).rowcount != 1:
                messages.clear()
                return False
            if self.on_publish is not None:
                self.on_publish(connection, job_id, public)
        return True

    def archive(self, job_id: str) -> bool:
        """Phase ARCHIVED, results forgotten, metadata kept (UWS 1.1 section 2.1.3)."""
        messages: list[Message] = [(job_id, Phase.ARCHIVED)]
        with self._write(messages) as connection:
            usage.release_job(connection, job_id)
            updated = connection.execute(
                jobs.update().where(jobs.c.job_id == job_id).values(phase=Phase.ARCHIVED)
            ).rowcount == 1
            connection.execute(results.delete().where(results.c.job_id == job_id))
            connection.execute(cleanups.insert().values(
                job_id=job_id, manager=None, native_id=None, remove_files=True,
                created=utcnow()))
            self._removed(connection, job_id)
            if not updated:
                messages.clear()
        return updated

    def delete(self, job_id: str) -> bool:
        """Remove a job and queue the work left for the scheduler (kill, remove files)."""
        messages: list[Message] = [(job_id, Change.DELETED)]
        with self._write(messages) as connection:
            row = connection.execute(
                sa.select(jobs.c.manager, jobs.c.native_id, jobs.c.cluster_state)
                .where(jobs.c.job_id == job_id)
            ).first()
            if row is None:
                messages.clear()
                return False
            usage.release_job(connection, job_id)
            connection.execute(results.delete().where(results.c.job_id == job_id))
            connection.execute(jobs.delete().where(jobs.c.job_id == job_id))
            self._removed(connection, job_id)
            live = row.cluster_state == "submitted"
            connection.execute(cleanups.insert().values(
                job_id=job_id, manager=row.manager if live else None,
                native_id=row.native_id if live else None, remove_files=True,
                created=utcnow()))
        return True

    def _removed(self, connection: sa.Connection, job_id: str) -> None:
        if self.on_remove is not None:
            self.on_remove(connection, job_id, utcnow())

    def result_path(self, job_id: str, result_id: str) -> str | None:
        """Where a result's file is, relative to the job directory (None if no such
        result)."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(results.c.path).where(results.c.job_id == job_id,
                                                results.c.result_id == result_id)
            ).scalar()

    # -- the scheduler's bookkeeping ---------------------------------------------------
    # claims and native ids: opus/storage/claims.py (atomic against a second scheduler)
    def released(self, job_id: str) -> None:
        """The cluster holds the job no more."""
        self.update(job_id, announce=False, cluster_state="ended")

    # -- scheduler queries -------------------------------------------------------------
    def queued(self, limit: int) -> list[Job]:
        """QUEUED jobs not yet submitted, in fair order between owners (round robin,
        fewest running first, then oldest: :mod:`opus.storage.dispatch`)."""
        with self.engine.connect() as connection:
            rows = fair_queued(connection, _JOB_COLUMNS, limit)
        return [_row_to_job(row) for row in rows]

    def submitted(self) -> list[Job]:
        """Jobs the cluster may still hold."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(*_JOB_COLUMNS).where(jobs.c.cluster_state == "submitted")
            ).all()
        return [_row_to_job(row) for row in rows]

    def count_submitted(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(jobs)
                .where(jobs.c.cluster_state == "submitted")
            ).scalar_one()

    def count_queued_before(self, job_id: str | None = None) -> int:
        """QUEUED jobs created before ``job_id`` (all of them if None): for quotes."""
        query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.phase == Phase.QUEUED)
        if job_id is not None:
            query = query.where(
                jobs.c.id < sa.select(jobs.c.id).where(jobs.c.job_id == job_id).scalar_subquery()
            )
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one()

    def expired(self, now: dt.datetime, limit: int = 500) -> list[str]:
        """Jobs whose destruction time has passed (ARCHIVED ones are done with)."""
        with self.engine.connect() as connection:
            return list(connection.execute(
                sa.select(jobs.c.job_id)
                .where(jobs.c.destruction <= now, jobs.c.phase != Phase.ARCHIVED)
                .limit(limit)
            ).scalars())

    def pending_cleanups(self, limit: int = 500) -> list[sa.Row[Any]]:
        with self.engine.connect() as connection:
            return list(connection.execute(
                sa.select(cleanups).order_by(cleanups.c.id).limit(limit)
            ).all())

    def cleanup_done(self, cleanup_id: int) -> None:
        with self._write([]) as connection:
            connection.execute(cleanups.delete().where(cleanups.c.id == cleanup_id))
