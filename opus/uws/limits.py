"""The limits that keep one client from taking the service down (README, Limits).

Each is a setting; hitting one is a clear client error, or a lowered value where UWS lets
the server choose:

- ``wait_per_client``: blocking WAITs per client. A WAIT past it answers at once with the
  job as it is, which UWS 1.1 section 2.2.1.1 allows (the server may return before the wait
  ends). Counted per web worker process (:class:`WaitSlots`): with ``workers`` processes a
  client may hold up to ``workers * wait_per_client`` threads in all.
- ``max_active_jobs``: QUEUED and running jobs per owner; PHASE=RUN past it is a 429 with
  ``Retry-After`` (RFC 6585 section 4) and the job stays PENDING. All anonymous callers are
  one owner, their shared space. Checked in the write transaction that queues the job.
- executionDuration: at most the activity's own (its description's), else the setting
  ``max_execution_duration``; a larger request is lowered (UWS 1.1 section 2.2.3.4 lets the
  server change it) and the job shows the value used.
- ``max_parameter_length``: a longer value is a 400 naming the parameter and the limit.
- ``quota_bytes``: an owner's uploads and results together; an upload past it is a 413, a
  job whose results would pass it ends in ERROR saying so (its result files removed).

The order of the queue, fair between owners, and a job's place in it (the quote) are
:mod:`opus.storage.dispatch`'s queries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from opus.activities.model import ActivityDescription
from opus.activities.registry import ActivityRegistry
from opus.auth import Identity
from opus.config import Settings
from opus.errors import NotFoundError, ParameterError, PayloadTooLargeError, \
    TooManyRequestsError
from opus.storage import dispatch, usage
from opus.storage.engine import DATABASE_UNAVAILABLE
from opus.storage.jobs import JobStore
from opus.uws import params
from opus.uws.models import Job, JobResult, Phase, utcnow


class WaitSlots:
    """Blocking WAITs per client in this process. A client is a user's stable id, or for
    anonymous callers their address (as :mod:`opus.web.proxies` resolves it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[bool]:
        """A slot for ``client`` while the block runs: True if one was free (the WAIT
        may block), False if the client holds ``limit`` already (answer at once)."""
        with self._lock:
            held = self._held.get(client, 0)
            granted = held < self.limit
            if granted:
                self._held[client] = held + 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    left = self._held[client] - 1
                    if left:
                        self._held[client] = left
                    else:
                        del self._held[client]


def client_key(identity: Identity, address: str | None) -> str:
    """Whom a WAIT counts for: the user, else the anonymous caller's address."""
    return f"user:{identity.key}" if identity.key is not None else f"address:{address}"


class Limits:
    """The checks of :mod:`opus.uws.service` that a limit decides."""

    def __init__(self, settings: Settings, store: JobStore, registry: ActivityRegistry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.waits = WaitSlots(settings.wait_per_client)

    # -- parameters --------------------------------------------------------------------
    def check_lengths(self, submitted: Sequence[tuple[str, str]]) -> None:
        """No value longer than ``max_parameter_length`` UTF-8 bytes (the description's
        arraysize, checked by the validation, may allow fewer characters)."""
        limit = self.settings.max_parameter_length
        for name, value in submitted:
            if len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
                raise ParameterError(name, f"must be at most {limit} bytes long (got "
                                           f"{len(value.encode('utf-8', 'surrogatepass'))}; "
                                           f"the server's max_parameter_length)")

    def execution_duration(self, activity: ActivityDescription, text: str | None) -> int:
        """The executionDuration a job gets: asked for (or the default), at most the
        activity's own, else ``max_execution_duration``; 0 (unlimited, UWS 1.1 section
        2.1.4) only where neither sets a maximum. UWS 1.1 section 2.2.3.4: the server may
        lower the value asked for; the job document shows the one used."""
        if text is None:
            value = activity.execution_duration or self.settings.default_execution_duration
        else:
            value = params.parse_int("EXECUTIONDURATION", text, minimum=0,
                                     maximum=params.INT_MAX)
        limit = activity.execution_duration or self.settings.max_execution_duration
        if limit and (value == 0 or value > limit):
            value = limit
        return value

    # -- active jobs -------------------------------------------------------------------
    def active_guard(self, owner_key: str | None, owner_id: str | None, activity: str) -> Any:
        """The check, run in the transaction that queues a job, that its owner (not the
        caller: an admin may run another's job) has fewer than ``max_active_jobs`` active
        jobs (None: no limit)."""
        limit = self.settings.max_active_jobs
        if not limit:
            return None
        who = owner_id or "the anonymous callers (one shared owner)"
        retry = max(5, min(600, self._estimate(activity) or 60))

        def refusal(active: int) -> Exception:
            return TooManyRequestsError(
                f"PHASE: {who} already has {active} jobs queued or executing, the limit "
                f"(max_active_jobs) is {limit}; the job stays PENDING: run it again when "
                f"one has ended", retry_after=retry)

        return dispatch.within_active_limit(owner_key, limit, refusal)

    # -- disk quota --------------------------------------------------------------------
    def upload_room(self, identity: Identity) -> int | None:
        """Bytes the owner may still upload (None: no quota)."""
        if not self.settings.quota_bytes:
            return None
        used = usage.used(self.store.engine, identity.key)
        return max(0, self.settings.quota_bytes - used)

    def quota_refusal(self, identity: Identity, name: str) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"{name}: the upload would take {identity.owner_id or 'the anonymous callers'} "
            f"past the disk quota of {self.settings.quota_bytes} bytes (quota_bytes: "
            f"uploads and results of all their jobs); delete jobs to make room")

    def results_refusal(self, job: Job, job_results: Sequence[JobResult]) -> str | None:
        """Why the results of ``job`` may not be kept (its owner's quota), or None."""
        quota = self.settings.quota_bytes
        size = sum(r.size or 0 for r in job_results)
        if not quota or not size:
            return None
        used = usage.used(self.store.engine, job.owner_key, besides=job.job_id)
        if used + size <= quota:
            return None
        return (f"the results ({size} bytes) would take the owner past the disk quota of "
                f"{quota} bytes (quota_bytes; {used} bytes used): they were not kept")

    @staticmethod
    def remove_results(job_dir: Path, job_results: Sequence[JobResult]) -> None:
        base = job_dir.resolve()
        for result in job_results:
            path = (base / result.path).resolve()
            if path.is_relative_to(base) and path.is_file():
                path.unlink()

    # -- quote -------------------------------------------------------------------------
    def _estimate(self, activity: str) -> int | None:
        try:
            found = self.registry.get(activity)
        except NotFoundError:
            return None
        return found.quote or found.execution_duration

    def quote(self, job: Job) -> dt.datetime | None:
        """When the job is expected to complete (UWS 1.1 section 2.1.6): its place in the
        fair order of the queue (:func:`opus.storage.dispatch.ahead_of`), in rounds of
        the cluster's slots, times the activity's declared duration."""
        try:
            activity = self.registry.get(job.activity)
        except NotFoundError:
            return None
        estimate = activity.quote or activity.execution_duration or job.execution_duration
        if not estimate:
            return None
        if job.phase in {Phase.PENDING, Phase.QUEUED}:
            try:
                ahead = dispatch.ahead_of(self.store.engine, job.job_id)
            except DATABASE_UNAVAILABLE:  # a quote may be unknown (section 2.1.6)
                return None
            rounds = ahead // self.settings.effective_concurrency + 1
            return utcnow() + dt.timedelta(seconds=estimate * rounds)
        if job.phase == Phase.EXECUTING and job.start_time is not None:
            return job.start_time + dt.timedelta(seconds=estimate)
        return None
