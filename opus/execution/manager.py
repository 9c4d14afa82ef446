"""The work-cluster interface, in the spirit of DRMAA: submit a template, query, terminate.

The scheduler drives every cluster through this interface only, so it never knows whether a
job runs in a local process or under SLURM. Whatever the manager, what runs is the same
program, ``python -m opus.execution.runner JOB_DIR``; a manager only decides where and how.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class JobTemplate:
    """What to run for one UWS job (DRMAA JobTemplate, reduced to what OPUS needs).

    ``time_limit`` is the job's executionDuration in seconds (None or 0: unlimited);
    ``resources`` holds cluster hints such as ``cpus``, ``memory`` (MB), ``partition``,
    ``account``; a manager ignores the ones it cannot honour.
    """

    job_id: str
    command: tuple[str, ...]
    working_directory: Path
    environment: dict[str, str] = field(default_factory=dict)
    time_limit: int | None = None
    resources: dict[str, str] = field(default_factory=dict)
    stdout_path: Path | None = None
    stderr_path: Path | None = None


@dataclass(frozen=True)
class NativeStatus:
    """What the cluster says of a job, already expressed as a UWS phase.

    ``phase`` is one of QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED, HELD, SUSPENDED, or
    UNKNOWN when the cluster no longer knows the job (finished and forgotten, or never
    there). ``reason`` is a short human text for ERROR (for example "TIMEOUT").
    """

    phase: str
    reason: str | None = None
    exit_code: int | None = None


class ManagerError(RuntimeError):
    """The cluster refused or failed an operation (submission, query or cancel)."""


class Manager(abc.ABC):
    """A work cluster. Implementations: :class:`opus.execution.local.LocalManager`,
    :class:`opus.execution.slurm.SlurmManager`."""

    #: Short name used in settings (``OPUS_MANAGER``) and stored with each job.
    name: str = "abstract"

    #: How many jobs the scheduler may have submitted and not yet finished at once.
    max_active: int = 1

    #: Effective time limit granularity in seconds (SLURM counts minutes).
    time_granularity: int = 1

    @abc.abstractmethod
    def submit(self, template: JobTemplate) -> str:
        """Start the job; return its native identifier. Raises ManagerError."""

    @abc.abstractmethod
    def status(self, native_id: str) -> NativeStatus:
        """The current state of a submitted job."""

    @abc.abstractmethod
    def terminate(self, native_id: str) -> None:
        """Stop the job and every process it started; no error if it has already ended."""

    def effective_time_limit(self, seconds: int | None) -> int | None:
        """The limit the cluster will really apply for a requested executionDuration."""
        if not seconds:
            return None
        step = self.time_granularity
        return -(-seconds // step) * step

    def release(self, native_id: str, job_dir: Path) -> None:
        """The job has ended for good: free what the cluster may still hold for it."""

    def close(self) -> None:
        """Release resources (connections, child handles)."""
