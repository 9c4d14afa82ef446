"""The rules of UWS: which phase may follow which, who may do what, what a job looks like.

HTTP handlers (:mod:`opus.uws.routes`) only translate requests into calls here; the store
(:mod:`opus.uws.store`) only stores. Every client mistake is a typed exception from
:mod:`opus.errors`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import time
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import sqlalchemy as sa

from opus.activities.model import ActivityDescription
from opus.activities.registry import ActivityRegistry
from opus.activities.validation import validate_parameters
from opus.auth import AccessPolicy, Identity
from opus.config import Settings
from opus.errors import ClientError, NotFoundError, ParameterError, PhaseError
from opus.provenance.record import record_run
from opus.uws import inputs, params
from opus.uws.models import Job, JobRef, JobResult, Phase, utcnow
from opus.uws.store import JobStore

log = logging.getLogger("opus.uws")

#: UWS job-control parameters that may accompany a creation POST (UWS 1.1 section 2.2.3.1);
#: compared case-insensitively like every parameter name (DALI 1.1 section 3.1).
CONTROL_PARAMETERS = {"phase", "runid", "executionduration", "destruction", "action"}
#: Longest parameter name considered; longer ones cannot be any activity's.
MAX_NAME_LENGTH = 256
#: Characters outside XML 1.0's Char production (XML 1.0 section 2.2).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def job_directory(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


class JobService:
    """Everything a client or the runner may do with jobs."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        registry: ActivityRegistry,
        policy: AccessPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.policy = policy or AccessPolicy()

    # -- reading -----------------------------------------------------------------------
    def activity(self, name: str) -> ActivityDescription:
        return self.registry.get(name)

    def get(self, identity: Identity, activity: str, job_id: str,
            *, with_results: bool = True) -> Job:
        """The job, if it exists under this activity and ``identity`` may see it."""
        self.registry.get(activity)
        job = self.store.get(job_id, with_results=with_results) \
            if plausible_job_id(job_id) else None
        if job is None or job.activity != activity:
            raise NotFoundError(f"no job {params.shown(job_id)} in {activity}")
        self.policy.check_read(identity, job)
        return job

    def list(
        self,
        identity: Identity,
        activity: str,
        *,
        phases: Sequence[str] = (),
        after: dt.datetime | None = None,
        last: int | None = None,
    ) -> list[JobRef]:
        self.registry.get(activity)
        filter_owner, owner = self.policy.owner_filter(identity)
        return self.store.list(activity, owner_id=owner, filter_owner=filter_owner,
                               phases=phases or None, after=after, last=last)

    def wait(
        self,
        identity: Identity,
        activity: str,
        job_id: str,
        timeout: float,
        expected_phase: str | None = None,
    ) -> Job:
        """Block until the job changes or ``timeout`` s pass (UWS 1.1 section 2.2.1.2).

        Returns at once when the job is not in an active phase, or not in
        ``expected_phase`` when one is given. The watch is registered before the job is
        read, so a change that lands in between still wakes us. An announcement that
        changed nothing we returned (one still in flight when we read the job, such as
        that of its creation) does not end the wait: it goes on for the time left.
        """
        deadline = time.monotonic() + timeout
        with self.store.events.watch(job_id) as changed:
            job = self.get(identity, activity, job_id)
            if job.phase not in Phase.ACTIVE or timeout <= 0:
                return job
            if expected_phase is not None and job.phase != expected_phase:
                return job
            while changed.wait(max(0.0, deadline - time.monotonic())):
                changed.clear()  # before reading: a later change sets it again
                current = self.get(identity, activity, job_id)
                if current != job:
                    return current
        return self.get(identity, activity, job_id)

    def quote(self, job: Job) -> dt.datetime | None:
        """When the job is expected to complete: an estimate from the queue ahead of it and
        the activity's declared duration (UWS 1.1 section 2.1.6)."""
        try:
            activity = self.registry.get(job.activity)
        except NotFoundError:
            return None
        estimate = activity.quote or activity.execution_duration or job.execution_duration
        if not estimate:
            return None
        if job.phase in {Phase.PENDING, Phase.QUEUED}:
            ahead = self.store.count_queued_before(
                job.job_id if job.phase == Phase.QUEUED else None)
            slots = self.settings.effective_concurrency
            rounds = ahead // slots + 1
            return utcnow() + dt.timedelta(seconds=estimate * rounds)
        if job.phase == Phase.EXECUTING and job.start_time is not None:
            return job.start_time + dt.timedelta(seconds=estimate)
        return None

    # -- creation and changes ----------------------------------------------------------
    def create(self, identity: Identity, activity_name: str,
               submitted: Sequence[tuple[str, str]],
               uploads: Mapping[str, BinaryIO] | None = None) -> Job:
        """A new job from the POSTed parameters and uploaded files; queued at once if
        PHASE=RUN. Everything is checked before anything is written: a refused request
        leaves no job and no file behind."""
        activity = self.registry.get(activity_name)
        control, activity_params = split_control(submitted)
        run = False
        if "phase" in control:
            if control["phase"].strip().upper() != "RUN":
                raise ParameterError("PHASE", f"only RUN may be given at creation "
                                              f"(got {params.shown(control['phase'])})")
            run = True
        if "action" in control:
            raise ParameterError("ACTION", "not allowed at job creation")
        given_inputs, activity_params = inputs.split_inputs(activity, activity_params)
        values = validate_parameters(activity, activity_params)
        references = {name: inputs.resolve_reference(self.store.engine, name, value)
                      for name, value in given_inputs.items()}
        upload_names = self._upload_names(activity, uploads or {}, references)
        missing = [e.name for e in activity.used
                   if e.name not in references and e.name not in upload_names.values()]
        if missing:
            raise ParameterError(missing[0], "required: an uploaded file, a URL, or the "
                                             "identifier of an earlier result")
        now = utcnow()
        execution_duration = self._execution_duration(activity, control.get("executionduration"))
        destruction = self._destruction(now, control.get("destruction"))
        run_id = _run_id(control)
        job_id = uuid.uuid4().hex
        job_dir = job_directory(self.settings, job_id)
        for part, name in upload_names.items():
            inputs.save_upload(job_dir, name, (uploads or {})[part], self.settings.max_body)
            references[name] = inputs.UPLOAD_PREFIX + name
        values.update(references)
        job = Job(
            job_id=job_id,
            activity=activity.name,
            phase=Phase.QUEUED if run else Phase.PENDING,
            creation_time=now,
            execution_duration=execution_duration,
            parameters=values,
            owner_id=identity.owner_id,
            run_id=run_id,
            destruction=destruction,
        )
        try:
            self.store.insert(job)
        except Exception:
            shutil.rmtree(job_dir, ignore_errors=True)  # no orphaned uploads
            raise
        return job

    @staticmethod
    def _upload_names(activity: ActivityDescription, uploads: Mapping[str, BinaryIO],
                      references: Mapping[str, str]) -> dict[str, str]:
        """{multipart part name: used entity name}, refusing parts that are no file input
        of the activity or that duplicate an input given by reference."""
        names: dict[str, str] = {}
        for part in uploads:
            entity = inputs.used_entity(activity, part)
            if entity is None:
                accepted = ", ".join(e.name for e in activity.used) or "none"
                raise ParameterError(part[:100], f"is not a file input of {activity.name} "
                                                 f"(file inputs: {accepted})")
            if entity.name in references or entity.name in names.values():
                raise ParameterError(entity.name, "given more than once")
            names[part] = entity.name
        return names

    def reference_hrefs(self, job: Job, job_url: str) -> dict[str, str]:
        """{parameter: URL} of the job's inputs given by reference, for byReference
        parameters (UWS 1.1 section 2.2.2.4)."""
        try:
            activity = self.registry.get(job.activity)
        except NotFoundError:
            return {}
        hrefs = {}
        for entity in activity.used:
            value = job.parameters.get(entity.name)
            if value is None:
                continue
            kind = inputs.kind_of(value)
            if kind == "upload":
                hrefs[entity.name] = f"{job_url}/parameters/{entity.name}"
            elif kind == "entity":
                hrefs[entity.name] = (f"{self.settings.base_url}/provsap?ID="
                                      f"{value[len(inputs.ENTITY_PREFIX):]}")
            else:
                hrefs[entity.name] = value
        return hrefs

    def upload_file(self, identity: Identity, activity: str, job_id: str,
                    name: str) -> Path | None:
        """The uploaded file behind parameter ``name``, or None if it is no upload."""
        job = self.get(identity, activity, job_id, with_results=False)
        for key, value in job.parameters.items():
            if key.lower() == name.lower() and inputs.kind_of(value) == "upload":
                path = inputs.upload_path(job_directory(self.settings, job_id), key)
                if not path.is_file():
                    raise NotFoundError(f"the upload {key} of job {job_id} is no longer "
                                        f"available")
                return path
        return None

    def _execution_duration(self, activity: ActivityDescription, text: str | None) -> int:
        if text is None:
            value = activity.execution_duration or self.settings.default_execution_duration
        else:
            value = params.parse_int("EXECUTIONDURATION", text, minimum=0,
                                     maximum=params.INT_MAX)
        limit = self.settings.max_execution_duration
        # UWS 1.1 section 2.1.4: 0 means unlimited; the server may override a request.
        if limit and (value == 0 or value > limit):
            value = limit
        return value

    def _destruction(self, now: dt.datetime, text: str | None) -> dt.datetime:
        latest = now + dt.timedelta(seconds=self.settings.max_destruction)
        if text is None:
            return now + dt.timedelta(seconds=self.settings.default_destruction)
        value = params.parse_datetime("DESTRUCTION", text)
        if value <= now:
            raise ParameterError("DESTRUCTION", f"must be in the future (got {text!r})")
        # UWS 1.1 section 2.2.3.3: the service may substitute a value of its choosing.
        return min(value, latest)

    def run(self, identity: Identity, activity: str, job_id: str) -> Job:
        job = self.get(identity, activity, job_id, with_results=False)
        self.policy.check_modify(identity, job)
        if job.phase in Phase.RUNNING:
            return job  # already on its way: RUN again changes nothing
        if job.phase != Phase.PENDING:
            raise PhaseError(f"job {job_id} is {job.phase}; only a PENDING job can be run")
        if not self.store.update(job_id, expected_phases={Phase.PENDING}, phase=Phase.QUEUED):
            return self.run(identity, activity, job_id)  # it changed meanwhile: decide again
        return job

    def abort(self, identity: Identity, activity: str, job_id: str) -> Job:
        """PHASE=ABORT (UWS 1.1 section 2.2.3.6); the scheduler stops what runs."""
        job = self.get(identity, activity, job_id, with_results=False)
        self.policy.check_modify(identity, job)
        if job.phase not in Phase.ABORTABLE:
            raise PhaseError(f"job {job_id} is {job.phase}; it can no longer be aborted")
        if not self.store.update(job_id, expected_phases=Phase.ABORTABLE,
                                 phase=Phase.ABORTED, end_time=utcnow(),
                                 error_summary="aborted at the client's request",
                                 error_type=None):
            return self.abort(identity, activity, job_id)
        return job

    def phase_action(self, identity: Identity, activity: str, job_id: str, action: str) -> Job:
        action = action.strip().upper()
        if action == "RUN":
            return self.run(identity, activity, job_id)
        if action == "ABORT":
            return self.abort(identity, activity, job_id)
        raise ParameterError("PHASE", f"must be RUN or ABORT (got {params.shown(action)})")

    def set_execution_duration(self, identity: Identity, activity: str, job_id: str,
                               text: str) -> Job:
        job = self.get(identity, activity, job_id, with_results=False)
        self.policy.check_modify(identity, job)
        value = self._execution_duration(self.registry.get(activity), text)
        if job.phase != Phase.PENDING:
            raise PhaseError(f"job {job_id} is {job.phase}; executionDuration can only "
                             f"change while PENDING")
        if not self.store.update(job_id, expected_phases={Phase.PENDING},
                                 execution_duration=value):
            raise PhaseError(f"job {job_id} left PENDING; executionDuration not changed")
        return job

    def set_destruction(self, identity: Identity, activity: str, job_id: str,
                        text: str) -> Job:
        job = self.get(identity, activity, job_id, with_results=False)
        self.policy.check_modify(identity, job)
        value = self._destruction(utcnow(), text)
        if job.phase == Phase.ARCHIVED:
            raise PhaseError(f"job {job_id} is ARCHIVED")
        self.store.update(job_id, destruction=value)
        return job

    def update_parameters(self, identity: Identity, activity: str, job_id: str,
                          submitted: Sequence[tuple[str, str]]) -> Job:
        """Change parameters of a PENDING job (UWS 1.1 section 2.1.11)."""
        job = self.get(identity, activity, job_id, with_results=False)
        self.policy.check_modify(identity, job)
        control, activity_params = split_control(submitted)
        if "action" in control:
            # ACTION=DELETE is a request to the job itself (UWS 1.1 section 2.2.3.2),
            # handled before this; anywhere else it is a mistake, not a parameter.
            raise ParameterError("ACTION", "only DELETE, POSTed to the job itself")
        # PHASE=RUN / ABORT along with the parameters (UWS 1.1 section 2.1.11 allows the
        # job control parameters there): checked before anything changes, applied last.
        action = control.pop("phase", None)
        if action is not None and action.strip().upper() not in {"RUN", "ABORT"}:
            raise ParameterError("PHASE", f"must be RUN or ABORT (got {params.shown(action)})")
        description = self.registry.get(activity)
        given_inputs, activity_params = inputs.split_inputs(description, activity_params)
        changes = validate_parameters(description, activity_params, partial=True)
        changes.update({name: inputs.resolve_reference(self.store.engine, name, value)
                        for name, value in given_inputs.items()})
        values: dict[str, Any] = {}
        if changes:
            values["parameters"] = {**job.parameters, **changes}
        if "executionduration" in control:
            values["execution_duration"] = self._execution_duration(
                description, control["executionduration"])
        if "destruction" in control:
            values["destruction"] = self._destruction(utcnow(), control["destruction"])
        if "runid" in control:
            values["run_id"] = _run_id(control)
        if values:
            if job.phase != Phase.PENDING:
                raise PhaseError(f"job {job_id} is {job.phase}; parameters can only change "
                                 f"while PENDING")
            if not self.store.update(job_id, expected_phases={Phase.PENDING}, **values):
                raise PhaseError(f"job {job_id} left PENDING; parameters not changed")
        if action is not None:
            self.phase_action(identity, activity, job_id, action)
        return job

    def delete(self, identity: Identity, activity: str, job_id: str) -> None:
        """DELETE (UWS 1.1 section 2.2.3.2): gone at once; the scheduler stops what runs
        and removes the files."""
        job = self.get(identity, activity, job_id, with_results=False)
        self.policy.check_modify(identity, job)
        if not self.store.delete(job_id):
            raise NotFoundError(f"no job {params.shown(job_id)} in {activity}")

    def result_file(self, identity: Identity, activity: str, job_id: str,
                    result_id: str) -> tuple[JobResult, Path]:
        job = self.get(identity, activity, job_id)
        for result in job.results:
            if result.result_id == result_id:
                path = self._inside_job_dir(job_id, result.path)
                if path is None or not path.is_file():
                    raise NotFoundError(f"result {result_id!r} of job {job_id} is no longer "
                                        f"available")
                return result, path
        raise NotFoundError(f"job {job_id} has no result {params.shown(result_id)}")

    def _inside_job_dir(self, job_id: str, relative: str) -> Path | None:
        """The real path of a job file, or None if it would leave the job directory
        (a symlink written by an activity must not expose other files)."""
        base = job_directory(self.settings, job_id).resolve()
        path = (base / relative).resolve()
        return path if path.is_relative_to(base) else None

    # -- reports from the runner -------------------------------------------------------
    def check_secret(self, job_id: str, secret: str) -> None:
        stored = self.store.secret_hash(job_id) if plausible_job_id(job_id) else None
        if stored is None or not hmac.compare_digest(stored, hash_secret(secret)):
            raise NotFoundError(f"no job {params.shown(job_id)} expecting this report")

    def apply_report(self, job_id: str, report: dict[str, Any]) -> bool:
        """Record what the runner reports (callback or outcome file); True if it changed
        the job. A report that arrives after the job ended (aborted, timed out) is
        ignored: the first final phase wins."""
        phase = report.get("phase")
        if phase == Phase.EXECUTING:
            start = _report_time(report.get("start_time"))
            return self.store.update(job_id, expected_phases={Phase.QUEUED, Phase.HELD,
                                                              Phase.SUSPENDED},
                                     phase=Phase.EXECUTING, start_time=start)
        if phase not in {Phase.COMPLETED, Phase.ERROR, Phase.ABORTED}:
            raise ClientError(f"phase: unexpected value {phase!r} in report")
        job = self.store.get(job_id, with_results=False)
        if job is None:
            return False
        job_results = [
            JobResult(
                result_id=str(item["id"]),
                path=_safe_relative(str(item["path"])),
                size=int(item["size"]) if item.get("size") is not None else None,
                mime_type=item.get("mime_type"),
                sha256=item.get("sha256"),
            )
            for item in report.get("results", ())
        ]
        end_time = _report_time(report.get("end_time"))
        start_time = (_report_time(report["start_time"]) if report.get("start_time")
                      else job.start_time)
        values: dict[str, Any] = {"end_time": end_time, "start_time": start_time}
        if phase != Phase.COMPLETED:
            values["error_summary"] = str(report.get("error_summary") or phase)[:4000]
            values["error_type"] = report.get("error_type") or "fatal"
        try:
            description: ActivityDescription | None = self.registry.get(job.activity)
        except NotFoundError:
            description = None
        result_url = f"{self.settings.base_url}/rest/{job.activity}/{job.job_id}/results"

        def provenance(connection: sa.Connection) -> None:
            record_run(connection, job=job, phase=phase, end_time=end_time,
                       start_time=start_time, job_results=job_results,
                       result_url=result_url, activity=description, outcome=report)

        return self.store.finish(job_id, phase=phase,
                                 expected_phases=Phase.RUNNING | {Phase.UNKNOWN},
                                 job_results=job_results, also=provenance, **values)


def plausible_job_id(job_id: str) -> bool:
    """Whether ``job_id`` could name a stored job; anything else is not looked up (the
    database may refuse it: PostgreSQL rejects NUL characters in a query)."""
    return len(job_id) <= 64 and _NOT_XML.search(job_id) is None


def split_control(submitted: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Separate UWS control parameters from the activity's own; a name given twice is a
    mistake (these parameters take one value)."""
    control: dict[str, str] = {}
    activity: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in submitted:
        if len(name) > MAX_NAME_LENGTH:
            raise ParameterError(params.shown(name), f"unknown parameter (a name of "
                                                     f"{len(name)} characters)")
        _check_text(name, value)
        key = name.lower()
        if key in seen:
            raise ParameterError(name, "given more than once")
        seen.add(key)
        if key in CONTROL_PARAMETERS:
            control[key] = value
        else:
            activity[name] = value
    return control, activity


def _check_text(name: str, value: str) -> None:
    """Every value reappears in the UWS XML documents (UWS 1.1 section 2.2.2.4: a value
    that cannot be represented legally within XML would have to be passed by reference),
    so characters XML 1.0 does not allow are refused here, not met as a 500 later."""
    match = _NOT_XML.search(value)
    if match is not None:
        raise ParameterError(name, f"contains the character U+{ord(match.group()):04X}, "
                                   f"which XML documents cannot carry")


def _run_id(control: dict[str, str]) -> str | None:
    """RUNID as given (UWS 1.1 section 2.1.9: no processing), within the stored length."""
    run_id = control.get("runid")
    if run_id is not None and len(run_id) > 255:
        raise ParameterError("RUNID", "must be at most 255 characters")
    return run_id


def _report_time(value: Any) -> dt.datetime:
    if not value:
        return utcnow()
    return params.parse_datetime("time", str(value))


def _safe_relative(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise ClientError(f"result path {path!r} must be relative to the job directory")
    return str(pure)
