"""The scheduler's own queries: atomic job claims, heartbeats and leadership.

Claims are a compare-and-set that changes what it compares: ``UPDATE jobs SET
cluster_state='submitted' WHERE phase='QUEUED' AND cluster_state IS NULL``, checked by its
row count. Two schedulers (even two that both believe they lead) racing for one job cannot
both win, because the winner's update makes the condition false for the loser.

Leadership (one active scheduler):

- PostgreSQL: a session-level advisory lock held on a dedicated connection. It is freed by
  the server the moment that connection closes (process killed, host gone: TCP keepalives
  bound the wait), so a standby polling for it takes over within one heartbeat.
- SQLite: a lease, the ``schedulers`` row marked ``leader`` with a heartbeat fresher than
  ``scheduler_timeout``, taken or renewed in one write transaction (the file write lock
  serialises them). A leader on this host whose process is gone is taken over at once.

Every scheduler writes its heartbeat into ``schedulers``, so every web node sees whether an
active one is alive (VOSI availability).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

import sqlalchemy as sa

from opus.storage.engine import DATABASE_UNAVAILABLE, write_transaction
from opus.storage.jobs import _JOB_COLUMNS, _row_to_job
from opus.storage.tables import jobs, schedulers
from opus.uws.models import Job, Phase

#: The advisory lock key of OPUS's scheduler leadership ("OPUS" in ASCII).
LEADER_LOCK_KEY = 0x4F505553
#: Heartbeat rows older than this many timeouts are removed (schedulers long gone).
FORGET_AFTER = 100
_CLAIM_COLUMNS = [*_JOB_COLUMNS, jobs.c.claimed_at]


class ClaimStore:
    """Claims of QUEUED jobs and the bookkeeping of a claim that lost its native id."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def claim(self, job_id: str, *, manager: str, secret_hash: str, time_limit: int | None,
              now: dt.datetime) -> bool:
        """Claim a QUEUED, never submitted job; False if another scheduler claimed it, or
        it was aborted or deleted meanwhile: then nothing must be started."""
        query = (jobs.update()
                 .where(jobs.c.job_id == job_id, jobs.c.phase == Phase.QUEUED,
                        jobs.c.cluster_state.is_(None))
                 .values(cluster_state="submitted", claimed_at=now, manager=manager,
                         secret_hash=secret_hash, time_limit=time_limit, native_id=None))
        with write_transaction(self.engine) as connection:
            return connection.execute(query).rowcount == 1

    def set_native_id(self, job_id: str, native_id: str) -> bool:
        """The cluster's id of a claimed job; False if the job was deleted meanwhile (or
        already has one)."""
        query = (jobs.update()
                 .where(jobs.c.job_id == job_id, jobs.c.cluster_state == "submitted",
                        jobs.c.native_id.is_(None))
                 .values(native_id=native_id))
        with write_transaction(self.engine) as connection:
            return connection.execute(query).rowcount == 1

    def without_native_id(self) -> list[tuple[Job, dt.datetime | None]]:
        """Claimed jobs with no native id yet, with their claim time: being submitted, or
        lost in a database blip or a crash between the submission and its record."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(*_CLAIM_COLUMNS)
                .where(jobs.c.cluster_state == "submitted", jobs.c.native_id.is_(None))
            ).all()
        return [(_row_to_job(row), row.claimed_at) for row in rows]

    def unclaim(self, job_id: str, claimed_at: dt.datetime | None) -> bool:
        """Give back a claim under which nothing was submitted (compare-and-set on the
        claim itself, so a newer claim is left alone)."""
        query = (jobs.update()
                 .where(jobs.c.job_id == job_id, jobs.c.phase == Phase.QUEUED,
                        jobs.c.cluster_state == "submitted", jobs.c.native_id.is_(None))
                 .values(cluster_state=None, claimed_at=None))
        query = query.where(jobs.c.claimed_at.is_(None) if claimed_at is None
                            else jobs.c.claimed_at == claimed_at)
        with write_transaction(self.engine) as connection:
            return connection.execute(query).rowcount == 1


class Leadership:
    """This process's heartbeat row and its claim to be the one active scheduler."""

    def __init__(self, engine: sa.Engine, timeout: float) -> None:
        self.engine = engine
        self.timeout = dt.timedelta(seconds=timeout)
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self.id = f"{self.host[:40]}:{self.pid}:{os.urandom(4).hex()}"
        self.started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self._lock_engine: sa.Engine | None = None
        self._lock_connection: sa.Connection | None = None
        self._holding = False
        if engine.dialect.name == "postgresql":
            # A connection of its own, outside the pool, that TCP keepalives watch.
            self._lock_engine = sa.create_engine(
                engine.url, poolclass=sa.pool.NullPool,
                connect_args={"keepalives": 1, "keepalives_idle": 5,
                              "keepalives_interval": 2, "keepalives_count": 3})

    def renew(self, now: dt.datetime) -> bool:
        """Take or keep the leadership and write the heartbeat; whether this process leads.
        Raises the storage layer's database-unavailable errors (then it leads no more)."""
        if self._lock_engine is None:
            return self._sqlite_lease(now)
        leading = self._advisory_lock()
        with write_transaction(self.engine) as connection:
            if leading:
                connection.execute(schedulers.update().where(
                    schedulers.c.id != self.id, schedulers.c.leader).values(leader=False))
            self._beat(connection, now, leading)
        return leading

    def _advisory_lock(self) -> bool:
        assert self._lock_engine is not None
        try:
            if self._lock_connection is None:
                self._lock_connection = self._lock_engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT")
                self._holding = False
            connection = self._lock_connection
            if self._holding:
                connection.exec_driver_sql("SELECT 1")  # the session, and the lock, live
            else:
                self._holding = bool(connection.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"),
                    {"key": LEADER_LOCK_KEY}).scalar())
            return self._holding
        except DATABASE_UNAVAILABLE:
            self._drop_lock_connection()
            raise

    def _drop_lock_connection(self) -> None:
        self._holding = False
        if self._lock_connection is not None:
            try:
                self._lock_connection.invalidate()
                self._lock_connection.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                pass
            self._lock_connection = None

    def _sqlite_lease(self, now: dt.datetime) -> bool:
        with write_transaction(self.engine) as connection:
            holders = connection.execute(
                sa.select(schedulers.c.id, schedulers.c.host, schedulers.c.pid)
                .where(schedulers.c.leader, schedulers.c.id != self.id,
                       schedulers.c.heartbeat >= now - self.timeout)).all()
            leading = all(row.host == self.host and not _process_alive(row.pid)
                          for row in holders)
            if leading:
                connection.execute(schedulers.update().where(
                    schedulers.c.id != self.id, schedulers.c.leader).values(leader=False))
            self._beat(connection, now, leading)
        return leading

    def _beat(self, connection: sa.Connection, now: dt.datetime, leading: bool) -> None:
        values: dict[str, Any] = {"heartbeat": now, "leader": leading}
        if not connection.execute(schedulers.update().where(schedulers.c.id == self.id)
                                  .values(**values)).rowcount:
            connection.execute(schedulers.insert().values(
                id=self.id, host=self.host, pid=self.pid, started=self.started, **values))
            connection.execute(schedulers.delete().where(
                schedulers.c.heartbeat < now - FORGET_AFTER * self.timeout))

    def resign(self) -> None:
        """A clean stop: free the lock and remove this process's row."""
        self._drop_lock_connection()
        try:
            with write_transaction(self.engine) as connection:
                connection.execute(schedulers.delete().where(schedulers.c.id == self.id))
        except DATABASE_UNAVAILABLE:
            pass  # the row goes stale by itself
        if self._lock_engine is not None:
            self._lock_engine.dispose()


def leader_alive(engine: sa.Engine, since: dt.datetime) -> bool:
    """Whether an active scheduler has sent a heartbeat since ``since``."""
    with engine.connect() as connection:
        return connection.execute(
            sa.select(schedulers.c.id).where(schedulers.c.leader,
                                             schedulers.c.heartbeat >= since).limit(1)
        ).first() is not None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
