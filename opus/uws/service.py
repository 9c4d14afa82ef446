"""The rules of UWS: which phase may follow which, who may do what, what a job looks like.

HTTP handlers (:mod:`opus.web.uws`) only translate requests into calls here; the store
(:mod:`opus.storage.jobs`) only stores. Every client mistake is a typed exception from
:mod:`opus.errors`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from opus.activities.model import ActivityDescription
from opus.activities.registry import ActivityRegistry
from opus.activities.server_paths import check_server_paths
from opus.activities.validation import validate_parameters
from opus.auth import AccessPolicy, Identity
from opus.config import Settings
from opus.errors import NotFoundError, ParameterError, PayloadTooLargeError, PhaseError
from opus.storage.engine import DATABASE_UNAVAILABLE
from opus.storage.jobs import JobStore
from opus.uws import inputs, params
from opus.uws.limits import Limits, client_key
from opus.uws.space import JobSpace
from opus.uws.models import (
    ABORTABLE_PHASES,
    ACTIVE_PHASES,
    END_PHASES,
    RUNNING_PHASES,
    Job,
    JobPage,
    JobRef,
    JobResult,
    Phase,
    RunEnd,
    utcnow,
)

log = logging.getLogger("opus.uws")

def job_directory(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


class JobService:
    """Everything a client or the runner may do with jobs."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        registry: ActivityRegistry,
        entities: inputs.EntityLookup,
        policy: AccessPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        #: The provenance record, to resolve inputs given as earlier results.
        self.entities = entities
        self.policy = policy or AccessPolicy()
        self.limits = Limits(settings, store, registry)
        self.space = JobSpace(settings)  # 507 on a full disk, deletions still possible

    # -- reading -----------------------------------------------------------------------
    def activity(self, name: str) -> ActivityDescription:
        return self.registry.get(name)

    def get(self, identity: Identity, activity: str, job_id: str,
            *, with_results: bool = True) -> Job:
        """The job, if it exists under this activity and ``identity`` may see it."""
        self.registry.get(activity)
        job = self.store.get(job_id, with_results=with_results) \
            if params.plausible_job_id(job_id) else None
        if job is None or job.activity != activity:
            raise NotFoundError(f"no job {params.shown(job_id)} in {activity}")
        self.policy.check_read(identity, job)
        return job

    def list_jobs(self, identity: Identity, activity: str, *, phases: Sequence[Phase] = (),
                  after: dt.datetime | None = None, last: int | None = None) -> list[JobRef]:
        self.registry.get(activity)
        filter_owner, owner = self.policy.owner_filter(identity)
        return self.store.list_jobs(activity, owner_key=owner, filter_owner=filter_owner,
                               phases=phases or None, after=after, last=last)

    def browse(self, identity: Identity, activity: str | None = None,
               **query: Any) -> JobPage:
        """A page of the jobs ``identity`` lists, of one activity or of all, newest first
        (the web client's list; ``query``: the filters and cursors of JobStore.browse)."""
        names = [self.registry.get(activity).name] if activity else self.registry.names()
        filter_owner, owner = self.policy.owner_filter(identity)
        return self.store.browse(names, owner_key=owner, filter_owner=filter_owner, **query)

    def find(self, identity: Identity, job_id: str, *, with_results: bool = True) -> Job:
        """The job ``job_id``, whatever its activity, if ``identity`` may see it."""
        job = self.store.get(job_id, with_results=False) \
            if params.plausible_job_id(job_id) else None
        if job is None:
            raise NotFoundError(f"no job {params.shown(job_id)}")
        return self.get(identity, job.activity, job_id, with_results=with_results)

    def wait(
        self,
        identity: Identity,
        activity: str,
        job_id: str,
        timeout: float,
        expected_phase: Phase | None = None,
        client_address: str | None = None,
    ) -> Job:
        """Block until the job changes or ``timeout`` s pass (UWS 1.1 section 2.2.1.2).

        Returns at once when the job is not in an active phase, or not in
        ``expected_phase`` when one is given. The watch is registered before the job is
        read, so a change that lands in between still wakes us. An announcement that
        changed nothing we returned (one still in flight when we read the job, such as
        that of its creation) does not end the wait: it goes on for the time left.
        A client past ``wait_per_client`` blocking WAITs in this process gets the job at
        once (UWS 1.1 section 2.2.1.1: the server may end a wait early).
        """
        deadline = time.monotonic() + timeout
        with self.limits.waits.hold(client_key(identity, client_address)) as may_block, \
                self.store.events.watch(job_id) as changed:
            timeout = timeout if may_block else 0
            job = self.get(identity, activity, job_id)
            if job.phase not in ACTIVE_PHASES or timeout <= 0:
                return job
            if expected_phase is not None and job.phase != expected_phase:
                return job
            try:  # the database lost meanwhile: the last known document, not an error
                while changed.wait(max(0.0, deadline - time.monotonic())):
                    changed.clear()  # before reading: a later change sets it again
                    current = self.get(identity, activity, job_id)
                    if current != job:
                        return current
                return self.get(identity, activity, job_id)
            except DATABASE_UNAVAILABLE:
                return job

    def quote(self, job: Job) -> dt.datetime | None:
        """When the job is expected to complete (UWS 1.1 section 2.1.6): its real place in
        the fair queue (:meth:`opus.uws.limits.Limits.quote`)."""
        return self.limits.quote(job)

    # -- creation and changes ----------------------------------------------------------
    def create(self, identity: Identity, activity_name: str,
               submitted: Sequence[tuple[str, str]],
               uploads: Mapping[str, BinaryIO] | None = None) -> Job:
        """A new job from the POSTed parameters and uploaded files; queued at once if
        PHASE=RUN. Everything is checked before anything is written: a refused request
        leaves no job and no file behind."""
        activity = self.registry.get(activity_name)
        self.limits.check_lengths(submitted)
        control, activity_params = params.split_control(submitted)
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
        check_server_paths(activity, values, self.settings.data_roots)
        may_read = functools.partial(self.policy.may_read, identity)
        references = {name: inputs.resolve_reference(self.entities, name, value, may_read)
                      for name, value in given_inputs.items()}
        upload_names = inputs.upload_names(activity, uploads or {}, references)
        missing = [e.name for e in activity.used
                   if e.name not in references and e.name not in upload_names.values()]
        if missing:
            raise ParameterError(missing[0], "required: an uploaded file, a URL, or the "
                                             "identifier of an earlier result")
        now = utcnow()
        execution_duration = self._execution_duration(activity, control.get("executionduration"))
        destruction = self._destruction(now, control.get("destruction"))
        run_id = params.run_id(control)
        self.space.check()
        job_id = uuid.uuid4().hex
        job_dir = job_directory(self.settings, job_id)
        room = self.limits.upload_room(identity) if upload_names else None
        uploaded = 0
        for part, name in upload_names.items():
            limit = self.settings.max_body if room is None else min(room, self.settings.max_body)
            try:
                size = inputs.save_upload(job_dir, name, (uploads or {})[part], limit)
            except PayloadTooLargeError:
                if room is None or room >= self.settings.max_body:
                    raise
                raise self.limits.quota_refusal(identity, name) from None
            room = None if room is None else room - size
            uploaded += size
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
            owner_key=identity.key,
            run_id=run_id,
            destruction=destruction,
            upload_bytes=uploaded,
        )
        try:
            self.store.insert(job, guard=self.limits.active_guard(
                job.owner_key, job.owner_id, activity.name) if run else None)
        except Exception:
            shutil.rmtree(job_dir, ignore_errors=True)  # no orphaned uploads
            raise
        return job

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
        return self.limits.execution_duration(activity, text)

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
        if job.phase in RUNNING_PHASES:
            return job  # already on its way: RUN again changes nothing
        if job.phase != Phase.PENDING:
            raise PhaseError(f"job {job_id} is {job.phase}; only a PENDING job can be run")
        if not self.store.update(job_id, expected_phases={Phase.PENDING}, phase=Phase.QUEUED,
                                 guard=self.limits.active_guard(job.owner_key, job.owner_id,
                                                                activity)):
            return self.run(identity, activity, job_id)  # it changed meanwhile: decide again
        return job

    def abort(self, identity: Identity, activity: str, job_id: str) -> Job:
        """PHASE=ABORT (UWS 1.1 section 2.2.3.6); the scheduler stops what runs."""
        job = self.get(identity, activity, job_id, with_results=False)
        self.policy.check_modify(identity, job)
        if job.phase not in ABORTABLE_PHASES:
            raise PhaseError(f"job {job_id} is {job.phase}; it can no longer be aborted")
        summary = "aborted at the client's request"
        if not self.end(job, Phase.ABORTED, {"error_summary": summary},
                        expected_phases=ABORTABLE_PHASES, error_summary=summary,
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
        self.limits.check_lengths(submitted)
        control, activity_params = params.split_control(submitted)
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
        check_server_paths(description, changes, self.settings.data_roots)
        may_read = functools.partial(self.policy.may_read, identity)
        changes.update({name: inputs.resolve_reference(self.entities, name, value, may_read)
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
            values["run_id"] = params.run_id(control)
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
        if not self.space.with_reserve("deletion", lambda: self.store.delete(job_id)):
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

    def follow_cluster(self, job: Job, cluster_phase: Phase) -> bool:
        """The cluster holds the job: its UWS phase says what the cluster does (QUEUED,
        HELD, SUSPENDED, EXECUTING; UWS 1.1 section 2.1.3), also when the runner's EXECUTING
        report was lost. True if the phase changed."""
        if job.phase == cluster_phase:
            return False
        values: dict[str, Any] = {"phase": cluster_phase}
        if cluster_phase == Phase.EXECUTING and job.start_time is None:
            values["start_time"] = utcnow()  # the runner's own report will not override it
        elif cluster_phase == Phase.QUEUED and job.phase == Phase.EXECUTING:
            log.warning("job %s was requeued by the cluster", job.job_id)
        changed = self.store.update(job.job_id, expected_phases={job.phase}, **values)
        if changed:
            log.info("job %s: %s -> %s (as the cluster says)", job.job_id, job.phase,
                     cluster_phase)
        return changed

    def end(self, job: Job, phase: Phase, outcome: Mapping[str, Any], *,
            expected_phases: Iterable[Phase], job_results: Sequence[JobResult] = (),
            **values: Any) -> bool:
        """Move ``job`` to the end ``phase`` if it is in one of ``expected_phases``, with its
        results and its provenance record in the same transaction, whatever the end
        (COMPLETED, ERROR, ABORTED: ProvenanceDM records every run); True if it moved."""
        assert phase in END_PHASES
        try:
            description: ActivityDescription | None = self.registry.get(job.activity)
        except NotFoundError:
            description = None
        values.setdefault("end_time", utcnow())
        refusal = self.limits.results_refusal(job, job_results) \
            if phase == Phase.COMPLETED else None
        refused = job_results if refusal is not None else ()
        if refusal is not None:  # the owner's disk quota: the results are not kept
            phase, job_results = Phase.ERROR, ()
            values.update(error_summary=refusal, error_type="fatal")
        run = RunEnd(
            job=job, phase=phase, end_time=values["end_time"],
            start_time=values.get("start_time", job.start_time), results=tuple(job_results),
            result_url=f"{self.settings.base_url}/rest/{job.activity}/{job.job_id}/results",
            activity=description, outcome=outcome)
        ended = self.store.finish(job.job_id, phase=phase, expected_phases=expected_phases,
                                  run=run, **values)
        if ended and refused:
            self.limits.remove_results(job_directory(self.settings, job.job_id), refused)
        return ended


