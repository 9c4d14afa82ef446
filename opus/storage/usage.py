"""Disk space per owner (table ``owner_usage``, migration 0010), for the quota.

The total of an owner's uploads and results is changed in the same transaction as what
changes it: a job created with uploads, a job's results recorded, a job archived (its files
removed, UWS 1.1 section 2.1.3) or deleted. Reading it is one row, whatever the number of
jobs (summing over them cost 130-240 ms with 100,000 jobs, at every job's end).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opus.storage.tables import jobs, owner_usage, results
from opus.uws.models import Phase

ANONYMOUS = ""  # owner_usage's key of the anonymous shared space


def add(connection: sa.Connection, owner_key: str | None, delta: int) -> None:
    """Add ``delta`` bytes (negative: freed) to the owner's total, in ``connection``'s
    transaction."""
    if not delta:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(owner_usage).values(owner_key=owner_key or ANONYMOUS,
                                                   bytes=delta)
    connection.execute(statement.on_conflict_do_update(
        index_elements=[owner_usage.c.owner_key],
        set_={"bytes": owner_usage.c.bytes + statement.excluded.bytes}))


def stored_results(connection: sa.Connection, job_id: str) -> int:
    return int(connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(results.c.size), 0))
        .where(results.c.job_id == job_id)).scalar_one())


def release_job(connection: sa.Connection, job_id: str) -> None:
    """The job's files are going (archived or deleted): its bytes leave its owner's total.
    Call before its result rows are deleted. An archived job was released already."""
    row = connection.execute(
        sa.select(jobs.c.owner_key, jobs.c.upload_bytes, jobs.c.phase)
        .where(jobs.c.job_id == job_id)).first()
    if row is None or row.phase == Phase.ARCHIVED:
        return
    add(connection, row.owner_key, -(row.upload_bytes + stored_results(connection, job_id)))


def used(engine: sa.Engine, owner_key: str | None, besides: str | None = None) -> int:
    """Bytes the owner's jobs take, the stored results of job ``besides`` left out."""
    with engine.connect() as connection:
        total = connection.execute(
            sa.select(owner_usage.c.bytes)
            .where(owner_usage.c.owner_key == (owner_key or ANONYMOUS))).scalar()
        own = stored_results(connection, besides) if besides else 0
    return max(0, int(total or 0) - own)
