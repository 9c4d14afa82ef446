"""Recovery of claims that lost their cluster id (issue 13).

The scheduler claims a job in the database, prepares its folder, submits it, writes the
cluster's id into the folder (``native_id``) and then records it in the database. A
database blip or a crash between the submission and that record would leave the job
``submitted`` with no id: skipped by reconciliation, it would hold a slot forever. So every
periodic pass looks at such claims:

- the id is in the folder (``native_id``, or ``runner.id``, which the runner writes first
  thing): recorded, and the job is reconciled like any other;
- ``claim_timeout`` after the claim, no id anywhere: without ``job.json`` nothing was
  submitted, so the claim is given back (the job is dispatched again; nothing ran); else the
  outcome file is applied if there is one, or a job still QUEUED ends in ERROR (its runner
  never started: it would have written ``runner.id``), and an EXECUTING one is left to its
  runner and to the executionDuration backstop.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from opus.uws.models import RUNNING_PHASES, Phase, utcnow
from opus.uws.service import job_directory

if TYPE_CHECKING:
    from opus.execution.scheduler import Scheduler

log = logging.getLogger("opus.scheduler")

#: The cluster id, written by the scheduler into the job's folder before the database.
NATIVE_ID_FILE = "native_id"
#: The cluster id, written by the runner at its start (opus.execution.runner).
RUNNER_ID_FILE = "runner.id"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def recover_claims(scheduler: Scheduler) -> None:
    """Give every claimed job without a cluster id in the database its id, or an end."""
    from opus.execution.scheduler import read_outcome

    horizon = utcnow() - dt.timedelta(seconds=scheduler.settings.claim_timeout)
    for job, claimed_at in scheduler.claims.without_native_id():
        job_dir = job_directory(scheduler.settings, job.job_id)
        native_id = _read(job_dir / NATIVE_ID_FILE) or _read(job_dir / RUNNER_ID_FILE)
        if native_id:
            if scheduler.claims.set_native_id(job.job_id, native_id):
                log.warning("job %s: cluster id %s recovered from its folder", job.job_id,
                            native_id)
            continue
        if claimed_at is not None and claimed_at > horizon:
            continue  # being submitted
        if job.phase not in RUNNING_PHASES:
            scheduler.store.released(job.job_id)
        elif not (job_dir / "job.json").exists():
            if scheduler.claims.unclaim(job.job_id, claimed_at):
                log.warning("job %s: claim without a submission given back", job.job_id)
        elif (outcome := read_outcome(job_dir)) is not None:
            scheduler.services.reports.apply(job.job_id, outcome)
            scheduler.store.released(job.job_id)
        elif job.phase == Phase.QUEUED:
            scheduler._fail(job, "the scheduler lost track of the job while submitting it "
                                 "(no cluster id recorded, the runner never started)")
        else:
            scheduler._enforce_duration(job)  # EXECUTING: its runner reports; backstop
