"""ProvTAP async (TAP 1.1 section 2.2.2): ADQL queries as the UWS 1.1 job list ``/tap/async``.

A job is a row of ``tap_jobs`` (:mod:`opus.storage.tap_jobs`), not of the activities' jobs
table: no activity, no files, nothing for the scheduler. ``PHASE=RUN`` queues it on this
web process's pool of ``tap_async_workers`` threads; a thread runs the query exactly as a
sync one (:mod:`opus.storage.provtap`: read-only transaction, statement timeout, at most
MAXREC rows, the views filtered for the job's owner), on a connection of its own whose
backend ``ABORT`` cancels (``pg_cancel_backend``), and stores the VOTable (or the error
message) in the row. Any process of the server can then answer for the job.

Who sees a job: :meth:`opus.auth.AccessPolicy.may_read` with the job private (its owner or
an admin; an anonymous job, like any anonymous job of OPUS, is in the shared space); another
user's job is 403 (UWS 1.1 section 3). A job list shows the caller's own jobs.

A job QUEUED or EXECUTING when its process stopped stays so until it is aborted or
destroyed (its thread is gone; no other process takes it over).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from opus.auth import AccessPolicy, Identity
from opus.config import Settings
from opus.errors import ClientError, NotFoundError, ParameterError, PermissionDeniedError
from opus.errors import PhaseError, ServiceUnavailableError
from opus.storage.provtap import ProvTapStore, QueryAborted, Viewer
from opus.storage.tap_jobs import ACTIVE, TapJob, TapJobStore
from opus.tap.adql import translate
from opus.tap.service import ProvTap
from opus.tap.votable import results_document
from opus.uws import params

log = logging.getLogger("opus.tap")

#: UWS job-control parameters a creation POST may carry beside the TAP ones.
CONTROL = frozenset({"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION"})
#: Longest WAIT honoured (UWS 1.1 section 2.2.1.2 lets the server cap it).
MAX_WAIT = 60.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class TapAsync:
    """The async job list: creation, phases, results, and the pool that runs queries."""

    def __init__(self, settings: Settings, tap: ProvTap, queries: ProvTapStore,
                 store: TapJobStore, policy: AccessPolicy | None = None) -> None:
        self.settings = settings
        self.tap = tap
        self.queries = queries
        self.store = store
        self.policy = policy or AccessPolicy()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------

    def job(self, identity: Identity, job_id: str) -> TapJob:
        """The job, if ``identity`` may read it (403 if another user's, 404 if none)."""
        found = self.store.get(job_id) if params.plausible_job_id(job_id) else None
        if found is None:
            raise NotFoundError(f"no async TAP job {params.shown(job_id)}")
        if not self.policy.may_read(identity, found.owner_key, False):
            raise PermissionDeniedError(f"job {job_id} belongs to another user")
        return found

    def jobs(self, identity: Identity, phases: Sequence[str], last: int | None
             ) -> list[TapJob]:
        return self.store.owned_by(identity.key, [str(p) for p in params.parse_phases(phases)],
                                   last)

    def wait(self, identity: Identity, job_id: str, seconds: float) -> TapJob:
        """The job once its phase is no longer the one it had, or after ``seconds``
        (UWS 1.1 section 2.2.1.2: only an active phase is waited on)."""
        job = self.job(identity, job_id)
        deadline = time.monotonic() + min(seconds, MAX_WAIT)
        while job.phase in ACTIVE and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            now = self.store.get(job_id)
            if now is None or now.phase != job.phase:
                return now or job
        return job

    def result(self, identity: Identity, job_id: str) -> bytes:
        job = self.job(identity, job_id)
        document = self.store.result(job_id) if job.phase == "COMPLETED" else None
        if document is None:
            raise NotFoundError(f"job {job_id} has no result (phase {job.phase})")
        return document

    # -- changing ------------------------------------------------------------------------

    def create(self, identity: Identity, submitted: Sequence[tuple[str, str]]) -> str:
        """A new PENDING job (QUEUED at once with ``PHASE=RUN``); its id. The TAP
        parameters are checked when it runs (a bad one ends it in ERROR: TAP 1.1 section
        2.2.2, and what taplint expects); the UWS control ones here."""
        tap_parameters, control = self._split(submitted)
        phase = control.get("PHASE")
        if phase is not None and phase.upper() != "RUN":
            raise ParameterError("PHASE", f"only RUN may be given at creation (got "
                                          f"{params.shown(phase)})")
        now = _now()
        latest = now + dt.timedelta(seconds=self.settings.tap_async_lifetime)
        self._sweep(now)
        job_id = uuid.uuid4().hex
        self.store.create(TapJob(
            job_id=job_id, owner_id=identity.owner_id, owner_key=identity.key,
            owner_admin=identity.admin, run_id=control.get("RUNID"), phase="PENDING",
            parameters=json.dumps(tap_parameters), creation_time=now, start_time=None,
            end_time=None, destruction=self._destruction(control.get("DESTRUCTION"), latest),
            execution_duration=self._duration(control.get("EXECUTIONDURATION")),
            error_summary=None, result_rows=None, backend_pid=None))
        if phase is not None:
            self.run(identity, job_id)
        return job_id

    @staticmethod
    def _split(submitted: Sequence[tuple[str, str]]
               ) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """TAP parameters (name, value), and the UWS control ones by upper-case name."""
        tap_parameters: list[tuple[str, str]] = []
        control: dict[str, str] = {}
        for name, value in submitted:
            params.check_text(name, value)
            if name.upper() in CONTROL:
                control[name.upper()] = value
            else:
                tap_parameters.append((name, value))
        return tap_parameters, control

    def set_parameters(self, identity: Identity, job_id: str,
                       submitted: Sequence[tuple[str, str]]) -> None:
        """UWS 1.1 section 2.2.3.1: parameters posted to a PENDING job replace those of
        the same name; control parameters (RUNID...) change the job."""
        job = self._modifiable(identity, job_id)
        tap_parameters, control = self._split(submitted)
        if "PHASE" in control:
            raise ParameterError("PHASE", "set the phase at .../phase")
        names = {name.upper() for name, _ in tap_parameters}
        kept = [(n, v) for n, v in job.pairs if n.upper() not in names] + tap_parameters
        values: dict[str, object] = {"parameters": json.dumps(kept)}
        if "RUNID" in control:
            values["run_id"] = control["RUNID"]
        if "EXECUTIONDURATION" in control:
            values["execution_duration"] = self._duration(control["EXECUTIONDURATION"])
        if "DESTRUCTION" in control:
            values["destruction"] = self._destruction(control["DESTRUCTION"], self._latest(job))
        if not self.store.change(job_id, ["PENDING"], **values):
            raise PhaseError(f"job {job_id} is {job.phase}: parameters can only be "
                             f"changed while PENDING")

    def _latest(self, job: TapJob) -> dt.datetime:
        return job.creation_time + dt.timedelta(seconds=self.settings.tap_async_lifetime)

    @staticmethod
    def _destruction(text: str | None, latest: dt.datetime) -> dt.datetime:
        """A destruction time asked for, no later than the server's limit."""
        if text is None:
            return latest
        return min(params.parse_datetime("DESTRUCTION", text), latest)

    def _duration(self, text: str | None) -> int:
        """executionDuration: at most ``tap_async_timeout`` (0, unlimited, is lowered)."""
        hard = max(1, int(self.settings.tap_async_timeout))
        if text is None:
            return hard
        value = params.parse_int("EXECUTIONDURATION", text, minimum=0)
        return hard if value == 0 else min(value, hard)

    def _modifiable(self, identity: Identity, job_id: str) -> TapJob:
        job = self.job(identity, job_id)
        if not (identity.admin or job.owner_key == identity.key):
            raise PermissionDeniedError(f"job {job_id} belongs to another user")
        return job

    def set_phase(self, identity: Identity, job_id: str, phase: str) -> None:
        """``PHASE=RUN`` or ``PHASE=ABORT`` (UWS 1.1 section 2.2.3.2)."""
        wanted = phase.strip().upper()
        if wanted == "RUN":
            self.run(identity, job_id)
        elif wanted == "ABORT":
            self.abort(identity, job_id)
        else:
            raise ParameterError("PHASE", f"must be RUN or ABORT (got {params.shown(phase)})")

    def run(self, identity: Identity, job_id: str) -> None:
        job = self._modifiable(identity, job_id)
        if job.phase in {"QUEUED", "EXECUTING"}:
            return
        if not self.store.change(job_id, ["PENDING"], phase="QUEUED"):
            raise PhaseError(f"job {job_id} is {job.phase}: only a PENDING job can be run")
        self._executor().submit(self._execute, job_id)

    def abort(self, identity: Identity, job_id: str) -> None:
        job = self._modifiable(identity, job_id)
        if not self._stop(job_id):
            raise PhaseError(f"job {job_id} is {job.phase}: it can no longer be aborted")

    def delete(self, identity: Identity, job_id: str) -> None:
        """Abort the job if it is running, then remove it (UWS 1.1 section 2.2.3.1)."""
        self._modifiable(identity, job_id)
        self._stop(job_id)
        self.store.delete(job_id)

    def _stop(self, job_id: str) -> bool:
        """ABORTED if active, its query cancelled if running; whether it was active."""
        active, backend = self.store.abort(job_id)
        if backend is not None:
            self.store.cancel_backend(backend)
        return active

    def set_execution_duration(self, identity: Identity, job_id: str, text: str) -> None:
        job = self._modifiable(identity, job_id)
        duration = self._duration(text)
        if not self.store.change(job_id, ["PENDING"], execution_duration=duration):
            raise PhaseError(f"job {job_id} is {job.phase}: executionDuration can only be "
                             f"changed while PENDING")

    def set_destruction(self, identity: Identity, job_id: str, text: str) -> None:
        """A destruction time, no later than the server's limit."""
        job = self._modifiable(identity, job_id)
        self.store.change(job_id, [job.phase],
                          destruction=self._destruction(text, self._latest(job)))

    def _sweep(self, now: dt.datetime) -> None:
        """Destroy the jobs past their destruction time (UWS 1.1 section 2.2.3.3)."""
        for job_id in self.store.expired(now):
            self._stop(job_id)
            self.store.delete(job_id)

    # -- running -------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.tap_async_workers,
                                                thread_name_prefix="opus-tap")
            return self._pool

    def _execute(self, job_id: str) -> None:
        """Run one queued job (on a pool thread); every outcome ends in the row."""
        job = self.store.get(job_id)
        if job is None or not self.store.start(job_id):
            return  # aborted or deleted while queued
        try:
            request = self.tap.parse(job.pairs)
            translated = translate(request.query)
            result = self.queries.run(
                translated.sql, Viewer(job.owner_key, job.owner_admin), request.maxrec,
                float(job.execution_duration),
                started=lambda pid: self.store.running_on(job_id, pid))
            document = results_document(result, request.query, request.maxrec)
            self.store.finish(job_id, document, len(result.rows), None)
        except QueryAborted:
            return
        except (ClientError, ServiceUnavailableError) as error:
            self.store.finish(job_id, None, None, error.message)
        except Exception as error:  # a bug: logged, the job ends in ERROR all the same
            log.exception("async TAP job %s failed", job_id)
            self.store.finish(job_id, None, None, f"internal error: {error}")
