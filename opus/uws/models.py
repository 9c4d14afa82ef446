"""The UWS job model (UWS 1.1 section 2.1) as plain data, shared by every layer."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opus.activities.model import ActivityDescription


class Phase(enum.StrEnum):
    """Execution phases, UWS 1.1 section 2.1.3. Members are strings (``Phase.QUEUED ==
    "QUEUED"``), so they go to the database, XML and JSON as they are."""

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


#: Phases in which WAIT may block (UWS 1.1 section 2.2.1.2).
ACTIVE_PHASES = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING})
#: Phases a job never leaves except by destruction.
FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED})
#: The ends of a run, each recorded in the provenance (ARCHIVED comes later, by policy).
END_PHASES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED})
#: Phases in which the cluster may still hold the job.
RUNNING_PHASES = frozenset({Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED})
#: Phases from which ABORT is allowed.
ABORTABLE_PHASES = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.HELD,
                              Phase.SUSPENDED, Phase.UNKNOWN})


class Change(enum.StrEnum):
    """Job events that are not a phase: the job was deleted, or changed without changing
    phase (parameters, destruction). Announced beside phases (:mod:`opus.storage.events`)."""

    DELETED = "DELETED"
    CHANGED = "CHANGED"


#: What a job event announces: its new phase, or another kind of change.
JobChange = Phase | Change


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
    phase: Phase
    creation_time: dt.datetime
    execution_duration: int
    parameters: dict[str, str]
    owner_id: str | None = None
    #: The owner's stable id (:class:`opus.auth.Identity` ``key``); None: anonymous.
    owner_key: str | None = None
    #: Published by its owner: readable by anyone.
    public: bool = False
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
    #: Bytes of the files uploaded with the job (counted against its owner's quota).
    upload_bytes: int = 0
    results: tuple[JobResult, ...] = field(default=())


@dataclass(frozen=True)
class JobRef:
    """A line of the job list (UWS ShortJobDescription)."""

    job_id: str
    phase: Phase
    run_id: str | None
    owner_id: str | None
    creation_time: dt.datetime


@dataclass(frozen=True)
class JobSummary:
    """A line of the web client's job list, which spans activities. ``position`` is the
    store's order of creation (newer jobs have larger positions): the paging cursor."""

    position: int
    job_id: str
    activity: str
    phase: Phase
    run_id: str | None
    owner_id: str | None
    creation_time: dt.datetime
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None


@dataclass(frozen=True)
class JobPage:
    """One page of a job list, newest first; ``older`` / ``newer``: the cursors of the
    neighbouring pages (None: there is none)."""

    jobs: tuple[JobSummary, ...]
    older: int | None = None
    newer: int | None = None


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, as the provenance record keeps it (ProvenanceDM 1.0 section 2):
    written in the transaction that moves the job to ``phase``. ``outcome`` is what the
    runner reported (times, context, inputs, hashes); an ABORT by the client reports only
    its summary. A result's location is ``{result_url}/{result_id}``."""

    job: Job
    phase: Phase
    end_time: dt.datetime
    start_time: dt.datetime | None
    results: tuple[JobResult, ...]
    result_url: str
    activity: ActivityDescription | None
    outcome: Mapping[str, Any]
