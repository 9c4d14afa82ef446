"""The queries behind the limits on jobs: the fair order in which QUEUED jobs are dispatched,
a job's place in it (the UWS quote), an owner's active jobs and the disk space they use.

Fair order: each waiting job gets a *turn*, the number of its owner's jobs that would be on
the cluster once it starts (the owner's jobs the cluster holds now, plus its rank among the
owner's waiting jobs, oldest first); jobs are taken by turn, then the owner served longest
ago (or never) first, then oldest first. The owner with the fewest jobs running goes first,
and owners then take one slot each in turn (round robin), so one owner's 200 queued jobs
never starve another owner's single job: that one waits for at most one job of each other
owner. All anonymous callers are one owner (their
shared space, :meth:`opus.auth.Viewer.may_read`). The store still decides nothing: the
rules that use these counts are :mod:`opus.uws.limits`'.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from opus.storage.tables import jobs, results
from opus.uws.models import Phase

#: The owner a job counts for: its user's stable id, or '' for the anonymous shared space.
OWNER = sa.func.coalesce(jobs.c.owner_key, "")
#: Waiting for the scheduler: QUEUED here and not yet handed to the cluster.
WAITING = sa.and_(jobs.c.phase == Phase.QUEUED, jobs.c.cluster_state.is_(None))
#: Counted against ``max_active_jobs``: queued or running, wherever they are.
ACTIVE_PHASES = (Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED)


def _history() -> sa.Subquery:
    """Per owner: the jobs the cluster holds now (``running``) and the last one handed to
    it (``served``: its row id)."""
    held = sa.case((jobs.c.cluster_state == "submitted", 1), else_=0)
    return (sa.select(OWNER.label("owner"), sa.func.sum(held).label("running"),
                      sa.func.max(jobs.c.id).label("served"))
            .where(jobs.c.cluster_state.is_not(None)).group_by(OWNER).subquery())


def turns() -> sa.Subquery:
    """(id, owner, turn, served) of every waiting job (see the module docstring); the
    fair order is by turn, then served (owners served longest ago, or never, first), then
    id."""
    history = _history()
    turn = (sa.func.coalesce(history.c.running, 0)
            + sa.func.row_number().over(partition_by=OWNER, order_by=jobs.c.id))
    return (sa.select(jobs.c.id, OWNER.label("owner"), turn.label("turn"),
                      sa.func.coalesce(history.c.served, 0).label("served"))
            .select_from(jobs.outerjoin(history, OWNER == history.c.owner))
            .where(WAITING).subquery())


def fair_queued(connection: sa.Connection, columns: list[sa.Column[Any]],
                limit: int) -> list[sa.Row[Any]]:
    """The first ``limit`` waiting jobs in fair order (rows of ``columns``)."""
    ranked = turns()
    return list(connection.execute(
        sa.select(*columns).join(ranked, ranked.c.id == jobs.c.id)
        .order_by(ranked.c.turn, ranked.c.served, jobs.c.id).limit(limit)).all())


def ahead_of(engine: sa.Engine, job_id: str) -> int:
    """How many waiting jobs the scheduler takes before ``job_id``: for a waiting job, its
    place in the fair order; for a PENDING one, the place it would get if run now."""
    ranked = turns()
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(jobs.c.id, OWNER.label("owner"), jobs.c.cluster_state)
            .where(jobs.c.job_id == job_id)).first()
        if row is None or row.cluster_state is not None:
            return 0
        place = connection.execute(sa.select(ranked.c.turn, ranked.c.served)
                                   .where(ranked.c.id == row.id)).first()
        if place is None:  # not waiting: it would come after its owner's other jobs
            history = _history()
            found = connection.execute(
                sa.select(history.c.running, history.c.served)
                .where(history.c.owner == row.owner)).first()
            waiting = connection.execute(
                sa.select(sa.func.count()).select_from(jobs)
                .where(OWNER == row.owner, WAITING)).scalar_one()
            turn = (found.running if found else 0) + waiting + 1
            served = found.served if found else 0
        else:
            turn, served = place.turn, place.served
        return int(connection.execute(
            sa.select(sa.func.count()).select_from(ranked).where(sa.or_(
                ranked.c.turn < turn,
                sa.and_(ranked.c.turn == turn, ranked.c.served < served),
                sa.and_(ranked.c.turn == turn, ranked.c.served == served,
                        ranked.c.id < row.id))))
            .scalar_one())


def count_active(connection: sa.Connection, owner_key: str | None) -> int:
    """The owner's QUEUED and running jobs, read in ``connection``'s write transaction. On
    PostgreSQL the owner's advisory lock is taken first (held to the end of the
    transaction), so two requests of one owner cannot both see room for one more job;
    SQLite's write transactions are serial already."""
    owner = owner_key or ""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:owner))"),
                           {"owner": f"opus.active:{owner}"})
    return int(connection.execute(
        sa.select(sa.func.count()).select_from(jobs)
        .where(OWNER == owner, jobs.c.phase.in_([str(p) for p in ACTIVE_PHASES]))
    ).scalar_one())


def within_active_limit(owner_key: str | None, limit: int,
                        refusal: Callable[[int], Exception]) -> Callable[[sa.Connection], None]:
    """A guard for :meth:`opus.storage.jobs.JobStore.update` and ``insert``: raises
    ``refusal(active)`` in the transaction if the owner has ``limit`` active jobs."""
    def guard(connection: sa.Connection) -> None:
        active = count_active(connection, owner_key)
        if active >= limit:
            raise refusal(active)
    return guard


def disk_usage(engine: sa.Engine, owner_key: str | None, jobs_dir: Path,
               besides: str | None = None) -> int:
    """Bytes the owner uses: the sizes of its jobs' results (as stored; those of job
    ``besides`` left out) and of the uploads in its jobs' folders (``uploads/``, measured
    on disk: they have no row)."""
    owner = owner_key or ""
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(results.c.size), 0))
            .select_from(results.join(jobs, jobs.c.job_id == results.c.job_id))
            .where(OWNER == owner, results.c.job_id != (besides or ""))).scalar_one()
        job_ids = connection.execute(
            sa.select(jobs.c.job_id).where(OWNER == owner, jobs.c.phase != Phase.ARCHIVED)
        ).scalars().all()
    uploaded = 0
    for job_id in job_ids:
        try:
            with os.scandir(jobs_dir / job_id / "uploads") as entries:
                uploaded += sum(e.stat().st_size for e in entries if e.is_file())
        except OSError:  # no uploads (or the folder just went)
            continue
    return int(stored) + uploaded
