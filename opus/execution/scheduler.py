"""The scheduler: the one process that talks to the work cluster (DESIGN.md, principle 2).

It wakes on job events (a job queued, aborted, deleted, finished) and at a regular interval,
and each time it

1. carries out pending cleanups (stop what a deleted job left running, remove its files);
2. reconciles jobs the cluster may hold with what the cluster says: a job whose runner
   ended without reporting gets its outcome file applied, or ERROR if there is none; an
   aborted job still running is terminated; a job past executionDuration (plus a grace)
   is stopped and marked ERROR;
3. destroys jobs whose destruction time has passed (delete or archive);
4. dispatches QUEUED jobs to the manager while it has free slots.

Everything it knows is in the database, so a restarted scheduler picks up where the last
one stopped. Several may run (standbys): only the leader works
(:mod:`opus.execution.heartbeat`), and claims are atomic (:mod:`opus.storage.claims`).
A database outage never ends the process: it is logged once and every pass retried.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from opus.config import Settings
from opus.errors import ClientError, NotFoundError
from opus.activities.commands import activity_command, description_sha256
from opus.execution.heartbeat import Heartbeat
from opus.execution.recovery import NATIVE_ID_FILE, recover_claims
from opus.execution.manager import JobTemplate, Manager, ManagerError, NativeStatus
from opus.execution.staging import StagingError, hold_for_space, stage_inputs
from opus.services import Services
from opus.storage.claims import ClaimStore, Leadership
from opus.storage.engine import DATABASE_UNAVAILABLE
from opus.storage.health import health_of
from opus.uws.models import RUNNING_PHASES, Change, Job, Phase, utcnow
from opus.uws.params import format_datetime
from opus.uws.reports import hash_secret
from opus.uws.service import job_directory

log = logging.getLogger("opus.scheduler")

#: Phases in which the cluster holds a job.
CLUSTER_ACTIVE = RUNNING_PHASES
#: Events after which the scheduler looks at a submitted job again.
WATCHED_CHANGES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED,
                             Change.DELETED})


def make_manager(settings: Settings, on_exit: Any = None) -> Manager:
    if settings.manager == "slurm":
        from opus.execution.slurm import SlurmManager

        return SlurmManager(
            login_host=settings.slurm_login_host or None,
            partition=settings.slurm_partition or None,
            account=settings.slurm_account or None,
            extra_sbatch_args=tuple(settings.slurm_sbatch_args),
            login_environment=settings.slurm_login_environment,
        )
    from opus.execution.local import LocalManager

    return LocalManager(settings.effective_concurrency, on_exit=on_exit)


def activity_resources(settings: Settings, activity: str) -> dict[str, str]:
    """Cluster resources for a job of ``activity``, from the setting ``resources``::

        resources:
          "*":          {partition: short}             # every activity
          gammapy_maps: {cpus: 4, memory: 8000}        # memory in MB

    The activity's entry overrides the ``"*"`` one. The SLURM manager turns them into
    sbatch options (and refuses invalid values, which ends the job in ERROR); the local
    manager ignores them.
    """
    merged: dict[str, str] = {}
    for key in ("*", activity):
        entry = settings.resources.get(key)
        if entry is not None:
            merged.update({name: str(value) for name, value
                           in entry.model_dump(exclude_none=True).items()})
    return merged


class Scheduler:
    """Dispatch and reconciliation loop over one manager."""

    def __init__(self, services: Services, manager: Manager | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.store
        self.manager = manager or make_manager(self.settings, on_exit=self._on_runner_exit)
        self._wake = threading.Event()
        self._changed: set[str] = set()
        self._runner_exited = False
        self._lock = threading.Lock()
        self.python = self.settings.runner_python or sys.executable
        #: job_id -> when the cluster was first seen done with a job that left no outcome.
        self._missing_outcome: dict[str, float] = {}
        self.claims = ClaimStore(self.store.engine)
        self.heartbeat = Heartbeat(
            Leadership(self.store.engine, self.settings.scheduler_timeout),
            max(0.2, self.settings.scheduler_timeout / 4), on_lead=self.wake)
        #: Outages are logged once by opus.storage.health; the loop only paces itself.
        self.health = health_of(self.store.engine)

    # -- waking --------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def _on_event(self, job_id: str, phase: str) -> None:
        """Job events that concern the cluster: a job to dispatch, or one to stop."""
        if phase == Phase.QUEUED:
            self._wake.set()
        elif phase in WATCHED_CHANGES:
            with self._lock:
                self._changed.add(job_id)
            self._wake.set()

    def _on_runner_exit(self) -> None:
        with self._lock:
            self._runner_exited = True
        self._wake.set()

    def run_forever(self, stop: threading.Event) -> None:
        self.services.events.subscribe(self._on_event)
        def wake_on_stop() -> None:
            stop.wait()
            self.wake()

        threading.Thread(target=wake_on_stop, daemon=True, name="scheduler-stop").start()
        beating = self.heartbeat.start(stop)
        full = True  # start-up (and after an outage): reconcile everything left behind
        while not stop.is_set():
            if self.heartbeat.leading.is_set():
                full = not self._pass(full)
            else:
                full = True  # a new leader starts with everything
            pause = 1.0 if self.health.down else self.settings.scheduler_interval
            woke = self._wake.wait(pause)
            self._wake.clear()
            full = full or not woke
        beating.join(self.settings.scheduler_timeout)

    def _pass(self, full: bool) -> bool:
        """One pass; False if it must be done again in full (the database was down)."""
        try:
            self.pass_all() if full else self.pass_changed()
        except DATABASE_UNAVAILABLE:  # logged once per outage (opus.storage.health)
            return False
        except Exception:
            log.exception("scheduler pass failed; retrying at the next wake-up")
        return True

    def pass_all(self) -> None:
        """The periodic pass: everything, also what no event announced."""
        with self._lock:
            self._changed.clear()
        self.cleanups()
        recover_claims(self)
        self.reconcile_all(self.store.submitted())
        self.destroy_expired()
        self.dispatch()

    def pass_changed(self) -> None:
        """The pass after events: only the jobs that changed, plus dispatch."""
        with self._lock:
            changed, self._changed = self._changed, set()
            runner_exited, self._runner_exited = self._runner_exited, False
        self.cleanups()
        if runner_exited:  # a slot may have freed: look at every submitted job
            self.reconcile_all(self.store.submitted())
        else:
            for job_id in changed:
                job = self.store.get(job_id, with_results=False)
                if job is not None and job.cluster_state == "submitted":
                    self.reconcile(job)
        self.dispatch()

    # -- dispatch -----------------------------------------------------------------------
    def dispatch(self) -> None:
        if hold_for_space(self.settings):  # a full data dir: QUEUED jobs wait for space
            return
        free = self.manager.max_active - self.store.count_submitted()
        if free <= 0:
            return
        for job in self.store.queued(free):
            if not self.heartbeat.leading.is_set():
                return  # lost the lead meanwhile
            self.submit(job)

    def submit(self, job: Job) -> None:
        try:
            activity = self.services.registry.get(job.activity)
        except NotFoundError:
            self._fail(job, f"activity {job.activity!r} is no longer available")
            return
        job_dir = job_directory(self.settings, job.job_id)
        secret = secrets.token_urlsafe(32)
        # The cluster's own limit (SLURM: executionDuration + a margin, in whole minutes);
        # the runner enforces executionDuration itself.
        time_limit = self.manager.effective_time_limit(job.execution_duration)
        # Claim the job first: if it was aborted or deleted meanwhile, nothing is started.
        if not self.claims.claim(job.job_id, manager=self.manager.name, now=utcnow(),
                                 secret_hash=hash_secret(secret), time_limit=time_limit):
            return  # another scheduler has it, or it was aborted or deleted
        try:
            job_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            secret_file = job_dir / "secret"
            secret_file.touch(mode=0o600)
            secret_file.write_text(secret)
            command = activity_command(activity, job_dir, self.python)
            if command is None:
                raise ManagerError(f"activity {activity.name} declares nothing to run")
            spec = {
                "job_id": job.job_id,
                "activity": activity.name,
                "activity_version": activity.version,
                "callback_url": f"{self.settings.base_url}/internal/jobs/{job.job_id}/report",
                "parameters": job.parameters,
                "command": command,
                "execution_duration": job.execution_duration,
                "manager": self.manager.name,
                "cluster_time_limit": time_limit,
                "generated": [{"name": e.name, "filename": e.default_filename,
                               "content_type": e.content_type} for e in activity.generated],
                "submitted": format_datetime(utcnow()),
                "description_sha256": description_sha256(activity),
                "context_cache": str(self.settings.run_dir / "packages-cache.json"),
                "data_dir": str(self.settings.data_dir),  # what the activity must not write
                "inputs": stage_inputs(self.settings, self.services.provenance, activity,
                                       job, job_dir, self.services.policy.viewer(
                                           self.services.users.identity_of(job.owner_key))),
                "fetch": {"max_bytes": self.settings.fetch_max_bytes,
                          "timeout": self.settings.fetch_timeout,
                          "block_private": self.settings.fetch_block_private},
            }
            (job_dir / "job.json").write_text(json.dumps(spec, indent=1))
            template = JobTemplate(
                job_id=job.job_id,
                command=(self.python, "-m", "opus.execution.runner", str(job_dir)),
                working_directory=job_dir,
                time_limit=time_limit,
                resources=activity_resources(self.settings, activity.name),
                stdout_path=job_dir / "runner.log",
                stderr_path=job_dir / "runner.log",
            )
            native_id = self.manager.submit(template)
        except StagingError as error:
            self._fail(job, str(error))
            return
        except (ManagerError, OSError) as error:
            log.error("job %s could not be submitted: %s", job.job_id, error)
            self._fail(job, f"could not be submitted to the {self.manager.name} cluster: "
                            f"{error}")
            return
        try:  # before the database: what recovers the id if the database loses it
            (job_dir / NATIVE_ID_FILE).write_text(native_id)
        except OSError as error:  # submitted all the same; the runner writes runner.id
            log.warning("job %s: cannot write its %s file: %s", job.job_id, NATIVE_ID_FILE,
                        error)
        if not self.claims.set_native_id(job.job_id, native_id):
            current = self.store.get(job.job_id, with_results=False)
            if current is None or current.native_id != native_id:
                self.manager.terminate(native_id)  # deleted while we were submitting it
        log.info("job %s submitted as %s", job.job_id, native_id)

    def _fail(self, job: Job, message: str) -> None:
        """End a job in ERROR (recording its provenance like any other end)."""
        self.services.reports.apply(job.job_id, {"phase": Phase.ERROR,
                                                     "error_summary": message})
        self.store.released(job.job_id)

    # -- reconciliation -----------------------------------------------------------------
    def reconcile_all(self, jobs: list[Job]) -> None:
        """Reconcile every job in ``jobs``, asking the cluster about all of them at once."""
        native_ids = [job.native_id for job in jobs if job.native_id is not None]
        statuses = self.manager.statuses(native_ids) if native_ids else {}
        for job in jobs:
            if job.native_id is not None and job.native_id not in statuses:
                continue  # the cluster did not answer for it (logged): next pass
            try:
                self.reconcile(job, statuses.get(job.native_id or ""))
            except ManagerError as error:
                log.warning("reconciling job %s (%s): %s", job.job_id, job.native_id, error)

    def reconcile(self, job: Job, status: NativeStatus | None = None) -> None:
        """Bring a submitted job in line with what the cluster says about it (``status``,
        or asked now)."""
        if job.native_id is None:
            if job.phase not in CLUSTER_ACTIVE:
                self.store.released(job.job_id)
            return  # still being submitted
        if status is None:
            try:
                status = self.manager.status(job.native_id)
            except ManagerError as error:
                log.warning("cannot query job %s (%s): %s", job.job_id, job.native_id, error)
                return
        job_dir = job_directory(self.settings, job.job_id)
        cluster_running = status.phase in CLUSTER_ACTIVE
        if job.phase not in CLUSTER_ACTIVE:
            self._missing_outcome.pop(job.job_id, None)
            if cluster_running:
                # aborted, timed out or deleted: stop it; but a runner that wrote its outcome
                # has finished and is only exiting (it may be reporting an ERROR)
                if job.phase != Phase.COMPLETED and not (job_dir / "outcome.json").exists():
                    self.manager.terminate(job.native_id)
                return  # ended in the database: wait for the cluster to let go
            self.manager.release(job.native_id, job_dir)
            self.store.released(job.job_id)
            return
        if cluster_running:
            self.services.jobs.follow_cluster(job, Phase(status.phase))
            self._enforce_duration(job)
            return
        # The cluster is done with it but the database still thinks it runs: the runner's
        # report was lost, or the runner died. Its outcome file is the truth if it exists.
        outcome = read_outcome(job_dir)
        if outcome is None and self.manager.outcome_grace > 0:
            first_seen = self._missing_outcome.setdefault(job.job_id, time.monotonic())
            if time.monotonic() - first_seen < self.manager.outcome_grace:
                return  # a shared file system may show the file a little later
        self._missing_outcome.pop(job.job_id, None)
        ended = self.manager.describe(job.native_id, status)
        if outcome is not None:
            if status.phase == Phase.ERROR and outcome.get("phase") == Phase.ABORTED:
                # the runner was signalled by the cluster (time limit, node failure), not
                # by an ABORT (that would have ended the job in the database already)
                outcome = {**outcome, "phase": Phase.ERROR, "error_summary":
                           f"{ended}; {outcome.get('error_summary') or 'stopped'}"}
            try:
                self.services.reports.apply(job.job_id, outcome)
            except ClientError as error:  # the activity can write the file too
                self.services.reports.apply(job.job_id, {
                    "phase": Phase.ERROR,
                    "error_summary": f"the runner's outcome file is malformed: {error}"})
        elif status.phase == Phase.ABORTED:
            self.services.reports.apply(job.job_id, {
                "phase": Phase.ABORTED,
                "error_summary": f"the job was cancelled on the cluster ({ended})"})
        else:
            self.services.reports.apply(job.job_id, {
                "phase": Phase.ERROR,
                "error_summary": f"the job ended without reporting an outcome ({ended}); "
                                 f"see runner.log in the job directory"})
        self.manager.release(job.native_id, job_dir)
        self.store.released(job.job_id)

    def _enforce_duration(self, job: Job) -> None:
        """Backstop of the runner's own limit: stop a job far past its executionDuration."""
        if not job.execution_duration or job.start_time is None:
            return
        limit = job.start_time + dt.timedelta(
            seconds=(job.time_limit or job.execution_duration) + self.settings.kill_grace)
        if utcnow() > limit:
            log.warning("job %s exceeded its executionDuration; stopping it", job.job_id)
            self.services.reports.apply(job.job_id, {
                "phase": Phase.ERROR,
                "error_summary": f"executionDuration of {job.execution_duration} s "
                                 f"exceeded; the job was stopped"})
            if job.native_id:
                self.manager.terminate(job.native_id)

    # -- destruction and cleanup --------------------------------------------------------
    def destroy_expired(self) -> None:
        """UWS 1.1 section 2.1.5: at destruction time the job and its results go away."""
        for job_id in self.store.expired(utcnow()):
            if self.settings.destruction_policy == "archive":
                self.store.archive(job_id)
            else:
                self.store.delete(job_id)
            log.info("job %s destroyed (%s)", job_id, self.settings.destruction_policy)

    def cleanups(self) -> None:
        for row in self.store.pending_cleanups():
            job_dir = job_directory(self.settings, row.job_id)
            if row.native_id and row.manager == self.manager.name:
                try:
                    if self.manager.status(row.native_id).phase in CLUSTER_ACTIVE:
                        self.manager.terminate(row.native_id)
                        continue  # come back when it has stopped
                    self.manager.release(row.native_id, job_dir)
                except ManagerError as error:
                    log.warning("cleanup of job %s: %s", row.job_id, error)
                    continue
            if row.remove_files and job_dir.exists():
                shutil.rmtree(job_dir, ignore_errors=True)
            self.store.cleanup_done(row.id)


def read_outcome(job_dir: Path) -> dict[str, Any] | None:
    try:
        outcome = json.loads((job_dir / "outcome.json").read_text())
    except (OSError, ValueError):
        return None
    return outcome if isinstance(outcome, dict) and "phase" in outcome else None


def main_loop(services: Services, stop: threading.Event | None = None) -> None:
    """Run the scheduler until ``stop`` is set (or forever)."""
    stop = stop or threading.Event()
    scheduler = Scheduler(services)
    log.info("scheduler started (manager %s, %d slots, pid %d)", scheduler.manager.name,
             scheduler.manager.max_active, os.getpid())
    try:
        scheduler.run_forever(stop)
    finally:
        scheduler.manager.close()
