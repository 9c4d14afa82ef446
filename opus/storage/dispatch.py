"""The queries behind the limits on jobs: the fair order in which QUEUED jobs are dispatched,
a job's place in it (the UWS quote) and an owner's active jobs.

Fair order (from one read of the waiting jobs and two indexed lookups per owner that has
any): each waiting job gets a *turn*, the number of its owner's jobs that would be on the
cluster once it starts (the owner's jobs the cluster holds now, plus its rank among the
owner's waiting jobs, oldest first); jobs are taken by turn, then the owner served longest
ago (or never) first, then oldest first. The owner with the fewest jobs running goes
first, and owners then take one slot each in turn (round robin), so one owner's 200 queued
jobs never starve another owner's single job: that one waits for at most one job of each
other owner. All anonymous callers are one owner (their shared space,
:meth:`opus.auth.Viewer.may_read`). The store still decides nothing: the rules that use
these counts are :mod:`opus.uws.limits`'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from opus.storage.tables import jobs
from opus.uws.models import Phase

#: Waiting for the scheduler: QUEUED here and not yet handed to the cluster.
WAITING = sa.and_(jobs.c.phase == Phase.QUEUED, jobs.c.cluster_state.is_(None))
#: Counted against ``max_active_jobs``: queued or running, wherever they are.
ACTIVE_PHASES = (Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED)


def _of(owner: str | None) -> sa.ColumnElement[bool]:
    """The jobs of ``owner`` (None: the anonymous shared space), as an indexable test."""
    return jobs.c.owner_key.is_(None) if owner is None else jobs.c.owner_key == owner


def _owner_state(connection: sa.Connection, owner: str | None) -> tuple[int, int]:
    """(jobs the cluster holds now, row id of the last one handed to it or 0) of an owner:
    the first through ``ix_jobs_cluster`` (few rows), the second a walk back along
    ``ix_jobs_owner_key_id`` that stops at the first job handed over."""
    running = connection.execute(
        sa.select(sa.func.count()).select_from(jobs)
        .where(jobs.c.cluster_state == "submitted", _of(owner))).scalar_one()
    served = connection.execute(
        sa.select(jobs.c.id).where(_of(owner), jobs.c.cluster_state.is_not(None))
        .order_by(jobs.c.id.desc()).limit(1)).scalar()
    return int(running), int(served or 0)


def _order(connection: sa.Connection) -> list[tuple[tuple[int, int, int], str | None]]:
    """The sort key (turn, served, id) and owner of every waiting job, in fair order."""
    waiting = connection.execute(
        sa.select(jobs.c.id, jobs.c.owner_key).where(WAITING).order_by(jobs.c.id)).all()
    state = {owner: _owner_state(connection, owner) for owner in {r.owner_key for r in waiting}}
    rank: dict[str | None, int] = {}
    keyed = []
    for row in waiting:
        rank[row.owner_key] = rank.get(row.owner_key, 0) + 1
        running, served = state[row.owner_key]
        keyed.append(((running + rank[row.owner_key], served, row.id), row.owner_key))
    keyed.sort()
    return keyed


def fair_queued(connection: sa.Connection, columns: list[sa.Column[Any]],
                limit: int) -> list[sa.Row[Any]]:
    """The first ``limit`` waiting jobs in fair order (rows of ``columns``)."""
    ids = [key[2] for key, _ in _order(connection)[:max(0, limit)]]
    if not ids:
        return []
    found = {row[0]: row for row in connection.execute(
        sa.select(jobs.c.id, *columns).where(jobs.c.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def ahead_of(engine: sa.Engine, job_id: str) -> int:
    """How many waiting jobs the scheduler takes before ``job_id``: for a waiting job, its
    place in the fair order; for a PENDING one, the place it would get if run now."""
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(jobs.c.id, jobs.c.owner_key, jobs.c.phase, jobs.c.cluster_state)
            .where(jobs.c.job_id == job_id)).first()
        if row is None or row.cluster_state is not None:
            return 0
        order = _order(connection)
        for place, (key, _) in enumerate(order):
            if key[2] == row.id:
                return place
        # Not waiting: it would come after its owner's waiting jobs.
        running, served = _owner_state(connection, row.owner_key)
        mine = sum(1 for _, owner in order if owner == row.owner_key)
        key = (running + mine + 1, served, row.id)
        return sum(1 for other, _ in order if other < key)


def count_active(connection: sa.Connection, owner_key: str | None) -> int:
    """The owner's QUEUED and running jobs, read in ``connection``'s write transaction. On
    PostgreSQL the owner's advisory lock is taken first (held to the end of the
    transaction), so two requests of one owner cannot both see room for one more job;
    SQLite's write transactions are serial already."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:owner))"),
                           {"owner": f"opus.active:{owner_key or ''}"})
    return int(connection.execute(
        sa.select(sa.func.count()).select_from(jobs)
        .where(_of(owner_key), jobs.c.phase.in_([p.value for p in ACTIVE_PHASES]))
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
