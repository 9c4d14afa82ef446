"""What the runner reports about a job: its start and its end (callback or outcome file).

The runner (:mod:`opus.execution.runner`) posts JSON reports to
``/internal/jobs/{id}/report`` with the job's secret; the scheduler applies a runner's
``outcome.json`` the same way when a report was lost. Each report is checked before it
changes anything: a malformed one is a client error, never a half-written job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import PurePosixPath
from typing import Any

from opus.errors import ClientError, NotFoundError
from opus.storage.jobs import JobStore
from opus.uws import params
from opus.uws.models import END_PHASES, RUNNING_PHASES, JobResult, Phase, utcnow
from opus.uws.service import JobService


class RunnerReports:
    """Applies the runner's reports through :meth:`JobService.end`."""

    def __init__(self, jobs: JobService, store: JobStore) -> None:
        self.jobs = jobs
        self.store = store

    def check_secret(self, job_id: str, secret: str) -> None:
        stored = self.store.secret_hash(job_id) if params.plausible_job_id(job_id) else None
        if stored is None or not hmac.compare_digest(stored, hash_secret(secret)):
            raise NotFoundError(f"no job {params.shown(job_id)} expecting this report")

    def apply(self, job_id: str, report: dict[str, Any]) -> bool:
        """Record what the runner reports (callback or outcome file); True if it changed
        the job. A report that arrives after the job ended (aborted, timed out) is
        ignored: the first final phase wins."""
        phase = report.get("phase")
        if phase == Phase.EXECUTING:
            start = report_time(report.get("start_time"))
            return self.store.update(job_id, expected_phases={Phase.QUEUED, Phase.HELD,
                                                              Phase.SUSPENDED},
                                     phase=Phase.EXECUTING, start_time=start)
        if not isinstance(phase, str) or phase not in END_PHASES:
            raise ClientError(f"phase: unexpected value {params.shown(str(phase))} in report")
        job = self.store.get(job_id, with_results=False)
        if job is None:
            return False
        job_results = results_of(report)
        end_time = report_time(report.get("end_time"))
        start_time = (report_time(report["start_time"]) if report.get("start_time")
                      else job.start_time)
        values: dict[str, Any] = {"end_time": end_time, "start_time": start_time}
        if phase != Phase.COMPLETED:
            values["error_summary"] = str(report.get("error_summary") or phase)[:4000]
            values["error_type"] = report.get("error_type") or "fatal"
        return self.jobs.end(job, Phase(phase), report, job_results=job_results,
                             expected_phases=RUNNING_PHASES | {Phase.UNKNOWN}, **values)


def results_of(report: dict[str, Any]) -> list[JobResult]:
    """The results a report lists, or a ClientError if the list is malformed."""
    items = report.get("results") or ()
    try:
        return [
            JobResult(
                result_id=str(item["id"]),
                path=safe_relative(str(item["path"])),
                size=int(item["size"]) if item.get("size") is not None else None,
                mime_type=str(item["mime_type"]) if item.get("mime_type") else None,
                sha256=str(item["sha256"]) if item.get("sha256") else None,
            )
            for item in items
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ClientError(f"results: malformed entry in report ({error!r})") from None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def report_time(value: Any) -> dt.datetime:
    if not value:
        return utcnow()
    return params.parse_datetime("time", str(value))


def safe_relative(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise ClientError(f"result path {path!r} must be relative to the job directory")
    return str(pure)
