"""The work-cluster interface, in the spirit of DRMAA: submit a template, query, terminate.

The scheduler drives every cluster through this interface only, so it never knows whether a
job runs in a local process or under SLURM. Whatever the manager, what runs is the same
program, ``python -m opus.execution.runner JOB_DIR``; a manager only decides where and how.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("opus.manager")


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

    #: Seconds the cluster's own limit leaves beyond executionDuration. The runner enforces
    #: executionDuration itself (and reports it clearly); the cluster's limit is the
    #: backstop, so it must leave the runner time to stop the activity, hash the outputs and
    #: report, or the cluster kills the runner first.
    time_margin: int = 0

    #: Seconds the scheduler waits for a runner's outcome file after the cluster says the job
    #: ended, before it declares the job lost (a shared file system may show a file written
    #: on a compute node a little later).
    outcome_grace: float = 0.0

    @abc.abstractmethod
    def submit(self, template: JobTemplate) -> str:
        """Start the job; return its native identifier. Raises ManagerError."""

    @abc.abstractmethod
    def status(self, native_id: str) -> NativeStatus:
        """The current state of a submitted job."""

    def statuses(self, native_ids: Iterable[str]) -> dict[str, NativeStatus]:
        """The states of several jobs at once (the scheduler's periodic pass asks for every
        submitted job). A job that could not be queried is left out of the answer (and
        logged); the default asks :meth:`status` for each job in turn."""
        found: dict[str, NativeStatus] = {}
        for native_id in dict.fromkeys(native_ids):
            try:
                found[native_id] = self.status(native_id)
            except ManagerError as error:
                log.warning("cannot query job %s: %s", native_id, error)
        return found

    @abc.abstractmethod
    def terminate(self, native_id: str) -> None:
        """Stop the job and every process it started; no error if it has already ended."""

    def effective_time_limit(self, seconds: int | None) -> int | None:
        """The limit the cluster will really apply for a requested executionDuration:
        ``seconds`` plus :attr:`time_margin`, rounded up to :attr:`time_granularity`."""
        if not seconds:
            return None
        step = self.time_granularity
        return -(-(seconds + self.time_margin) // step) * step

    def describe(self, native_id: str, status: NativeStatus) -> str:
        """A short human text for a job the cluster ended (used in errorSummary)."""
        return status.reason or status.phase

    def release(self, native_id: str, job_dir: Path) -> None:
        """The job has ended for good: free what the cluster may still hold for it."""

    def close(self) -> None:
        """Release resources (connections, child handles)."""
