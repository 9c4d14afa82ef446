"""The UWS job model (UWS 1.1 section 2.1) as plain data, shared by every layer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


class Phase:
    """Execution phases, UWS 1.1 section 2.1.3."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"

    ALL = frozenset(
        {PENDING, QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED, UNKNOWN, HELD, SUSPENDED,
         ARCHIVED}
    )
    #: Phases in which WAIT may block (UWS 1.1 section 2.2.1.2).
    ACTIVE = frozenset({PENDING, QUEUED, EXECUTING})
    #: Phases a job never leaves except by destruction.
    FINAL = frozenset({COMPLETED, ERROR, ABORTED, ARCHIVED})
    #: Phases in which the cluster may still hold the job.
    RUNNING = frozenset({QUEUED, EXECUTING, HELD, SUSPENDED})
    #: Phases from which ABORT is allowed.
    ABORTABLE = frozenset({PENDING, QUEUED, EXECUTING, HELD, SUSPENDED, UNKNOWN})


def utcnow() -> dt.datetime:
    """Now, in UTC, as a naive datetime with millisecond precision (what the store keeps)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class JobResult:
    """A result of a job (UWS 1.1 section 2.1.10): ``path`` is relative to the job dir."""

    result_id: str
    path: str
    size: int | None = None
    mime_type: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Job:
    """One UWS job as stored. Times are naive UTC."""

    job_id: str
    activity: str
    phase: str
    creation_time: dt.datetime
    execution_duration: int
    parameters: dict[str, str]
    owner_id: str | None = None
    run_id: str | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    destruction: dt.datetime | None = None
    quote: dt.datetime | None = None
    error_type: str | None = None
    error_summary: str | None = None
    manager: str | None = None
    native_id: str | None = None
    cluster_state: str | None = None
    time_limit: int | None = None
    results: tuple[JobResult, ...] = field(default=())


@dataclass(frozen=True)
class JobRef:
    """A line of the job list (UWS ShortJobDescription)."""

    job_id: str
    phase: str
    run_id: str | None
    owner_id: str | None
    creation_time: dt.datetime
