"""The rows of ProvTAP's async job list (``tap_jobs``, migration 0007).

Phase changes are conditional updates (``WHERE phase IN (...)``), so that the worker that
ends a query and a client that aborts it cannot both win: whichever update matches first
decides the phase (UWS 1.1 section 2.1.3: a job in a final phase stays there).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from opus.storage.tables import tap_jobs

#: Phases a job may still leave (UWS 1.1 section 2.1.3).
ACTIVE = ("PENDING", "QUEUED", "EXECUTING")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class TapJob:
    """One async query, as stored."""

    job_id: str
    owner_id: str | None
    owner_key: str | None
    owner_admin: bool
    run_id: str | None
    phase: str
    parameters: str
    creation_time: dt.datetime
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    destruction: dt.datetime | None
    execution_duration: int
    error_summary: str | None
    result_rows: int | None
    backend_pid: int | None


    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The TAP parameters, (name, value) in the order given."""
        return [(str(name), str(value)) for name, value in json.loads(self.parameters)]


_COLUMNS = [tap_jobs.c[name] for name in TapJob.__dataclass_fields__]


class TapJobStore:
    """Reads and changes ``tap_jobs`` on the database of ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, job: TapJob) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.insert(tap_jobs).values(**job.__dict__))

    def get(self, job_id: str) -> TapJob | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(*_COLUMNS).where(
                tap_jobs.c.job_id == job_id)).mappings().first()
        return TapJob(**row) if row is not None else None

    def owned_by(self, owner_key: str | None, phases: Iterable[str] = (),
                 last: int | None = None) -> list[TapJob]:
        """The jobs of one owner (None: the anonymous ones), newest first."""
        query = sa.select(*_COLUMNS).where(
            tap_jobs.c.owner_key.is_(None) if owner_key is None
            else tap_jobs.c.owner_key == owner_key)
        wanted = list(phases)
        if wanted:
            query = query.where(tap_jobs.c.phase.in_(wanted))
        else:  # UWS 1.1 section 2.2.2.1: ARCHIVED jobs only when asked for
            query = query.where(tap_jobs.c.phase != "ARCHIVED")
        query = query.order_by(tap_jobs.c.id.desc())
        if last is not None:
            query = query.limit(last)
        with self.engine.connect() as connection:
            return [TapJob(**row) for row in connection.execute(query).mappings()]

    def result(self, job_id: str) -> bytes | None:
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(tap_jobs.c.result).where(
                tap_jobs.c.job_id == job_id)).scalar()
        return bytes(value) if value is not None else None

    def change(self, job_id: str, phases: Iterable[str], **values: Any) -> bool:
        """Set ``values`` if the job is in one of ``phases``; whether it was."""
        with self.engine.begin() as connection:
            done = connection.execute(sa.update(tap_jobs).where(
                tap_jobs.c.job_id == job_id, tap_jobs.c.phase.in_(list(phases))
            ).values(**values))
        return bool(done.rowcount)

    def start(self, job_id: str) -> bool:
        """QUEUED -> EXECUTING; False if the job was aborted (or deleted) meanwhile."""
        return self.change(job_id, ["QUEUED"], phase="EXECUTING", start_time=_now())

    def running_on(self, job_id: str, backend_pid: int | None) -> bool:
        return self.change(job_id, ["EXECUTING"], backend_pid=backend_pid)

    def finish(self, job_id: str, result: bytes | None, rows: int | None,
               error: str | None) -> bool:
        """EXECUTING -> COMPLETED (with the result) or ERROR (with the message)."""
        return self.change(job_id, ["EXECUTING"], phase="ERROR" if error else "COMPLETED",
                           end_time=_now(), result=result, result_rows=rows,
                           error_summary=error, backend_pid=None)

    def abort(self, job_id: str) -> tuple[bool, int | None]:
        """Any active phase -> ABORTED: whether the job was active, and the backend still
        running its query (to cancel) if any."""
        with self.engine.begin() as connection:
            pid = connection.execute(sa.select(tap_jobs.c.backend_pid).where(
                tap_jobs.c.job_id == job_id, tap_jobs.c.phase.in_(ACTIVE)
            ).with_for_update()).first()
            if pid is None:
                return False, None
            connection.execute(sa.update(tap_jobs).where(tap_jobs.c.job_id == job_id).values(
                phase="ABORTED", end_time=_now(), backend_pid=None,
                error_summary="the query was aborted"))
        return True, (int(pid[0]) if pid[0] is not None else None)

    def cancel_backend(self, backend_pid: int) -> None:
        """Cancel the statement that PostgreSQL backend runs (``pg_cancel_backend``: the
        owner of the database connection may cancel its own backends)."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_cancel_backend(:pid)"), {"pid": backend_pid})

    def delete(self, job_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(tap_jobs).where(tap_jobs.c.job_id == job_id))

    def expired(self, now: dt.datetime | None = None) -> list[str]:
        """Jobs past their destruction time (UWS 1.1 section 2.2.3.3)."""
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(tap_jobs.c.job_id).where(
                tap_jobs.c.destruction < (now or _now()))).scalars())
