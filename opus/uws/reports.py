"""What the runner reports about a job: its start and its end (callback or outcome file).

The runner (:mod:`opus.execution.runner`) posts JSON reports to
``/internal/jobs/{id}/report`` with the job's secret; the scheduler applies a runner's
``outcome.json`` the same way when a report was lost. Each report is checked before it
changes anything: a malformed one is a client error, never a half-written job.

A report is no more trusted than the activity's own code: the secret and the outcome file
lie in the job folder, which the activity can read. So the server takes from a report only
what the runner alone can know (the phase, times within bounds, exit status, resource use,
host, the execution context, the hashes of inputs fetched from URLs) and works out the rest
itself:

- results are the outputs the activity declares, at their declared file names under
  ``work/``, plus ``stdout.txt`` and ``stderr.txt``; a report only says which of them the
  runner found. A file name, a path or a media type in a report is ignored: the media type
  is the description's ``contentType``. Sizes are read from the files, and sha256 computed
  from them up to :data:`HASH_LIMIT` bytes (a larger file keeps the runner's hash);
- the program, its sha256, the description's sha256 and version, the inputs (which upload,
  which earlier result, which URL), and the activity's own provenance bundle
  (``work/provenance.json``) are the server's, never the report's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opus.activities.commands import activity_command, description_sha256
from opus.activities.model import ActivityDescription
from opus.digests import script_sha256, sha256_of
from opus.errors import ClientError, NotFoundError
from opus.storage.jobs import JobStore
from opus.uws import inputs, params
from opus.uws.models import END_PHASES, RUNNING_PHASES, Job, JobResult, Phase, utcnow
from opus.uws.service import JobService, job_directory

#: Files up to this size have their sha256 computed by the server at the job's end.
HASH_LIMIT = 256 * 1024 * 1024
#: Largest execution context and provenance bundle recorded (bytes of JSON).
CONTEXT_LIMIT = 2 * 1024 * 1024
BUNDLE_LIMIT = 5_000_000
#: The runner's own files that are results (UWS results ``stdout`` and ``stderr``).
STREAMS = ("stdout", "stderr")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class RunnerReports:
    """Applies the runner's reports through :meth:`JobService.end`."""

    def __init__(self, jobs: JobService, store: JobStore) -> None:
        self.jobs = jobs
        self.store = store

    def check_secret(self, job_id: str, secret: str) -> None:
        stored = self.store.secret_hash(job_id) if params.plausible_job_id(job_id) else None
        if stored is None or not hmac.compare_digest(stored, hash_secret(secret)):
            raise NotFoundError(f"no job {params.shown(job_id)} expecting this report")

    def apply(self, job_id: str, report: Any) -> bool:
        """Record what the runner reports (callback or outcome file); True if it changed
        the job. A report that arrives after the job ended (aborted, timed out) is
        ignored: the first final phase wins. A malformed report is a ClientError."""
        if not isinstance(report, dict):
            raise ClientError("report must be a JSON object")
        phase = report.get("phase")
        if phase == Phase.EXECUTING:
            job = self.store.get(job_id, with_results=False)
            if job is None:
                return False
            start = bounded_time("start_time", report.get("start_time"), job.creation_time)
            return self.store.update(job_id, expected_phases={Phase.QUEUED, Phase.HELD,
                                                              Phase.SUSPENDED},
                                     phase=Phase.EXECUTING, start_time=start)
        if not isinstance(phase, str) or phase not in END_PHASES:
            raise ClientError(f"phase: unexpected value {params.shown(str(phase))} in report")
        checked = checked_report(report)
        job = self.store.get(job_id, with_results=False)
        if job is None:
            return False
        start_time = job.start_time or (
            bounded_time("start_time", checked["start_time"], job.creation_time)
            if checked["start_time"] else None)
        end_time = bounded_time("end_time", checked["end_time"],
                                start_time or job.creation_time)
        values: dict[str, Any] = {"end_time": end_time, "start_time": start_time}
        if phase != Phase.COMPLETED:
            values["error_summary"] = (checked["error_summary"] or phase)[:4000]
            values["error_type"] = checked["error_type"] or "fatal"
        try:
            activity: ActivityDescription | None = self.jobs.registry.get(job.activity)
        except NotFoundError:
            activity = None
        job_dir = job_directory(self.jobs.settings, job_id)
        listed = checked["results"]
        job_results = (declared_results(activity, job_dir, listed)
                       if listed is not None else [])
        outcome = self.server_outcome(job, activity, job_dir, checked)
        return self.jobs.end(job, Phase(phase), outcome, job_results=job_results,
                             expected_phases=RUNNING_PHASES | {Phase.UNKNOWN}, **values)

    def server_outcome(self, job: Job, activity: ActivityDescription | None, job_dir: Path,
                       checked: Mapping[str, Any]) -> dict[str, Any]:
        """What the provenance record is made of: the runner's facts, the server's
        knowledge."""
        outcome = {key: checked[key] for key in ("context", "rusage", "host", "exit_code",
                                                 "error_summary")}
        if activity is not None:
            python = self.jobs.settings.runner_python or sys.executable
            command, program_sha256 = program_of(activity, job_dir, python)
            outcome.update(command=command, script_sha256=program_sha256,
                           activity_version=activity.version,
                           description_sha256=description_sha256(activity),
                           inputs=self.used_inputs(job, activity, job_dir, checked["inputs"]))
        bundle = job_dir / "work" / "provenance.json"
        if bundle.is_file() and not bundle.is_symlink() and bundle.stat().st_size < BUNDLE_LIMIT:
            outcome["bundle"] = bundle.read_text(errors="replace")
        return outcome

    def used_inputs(self, job: Job, activity: ActivityDescription, job_dir: Path,
                    reported: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The job's inputs as the server staged them; only the hash and size of a file
        fetched from a URL (which only the runner saw) come from the report."""
        by_name = {item.get("name"): item for item in reported}
        used = []
        for entity in activity.used:
            value = job.parameters.get(entity.name)
            if value is None:
                continue
            kind = inputs.kind_of(value)
            entry: dict[str, Any] = {"name": entity.name, "kind": kind,
                                     "filename": entity.default_filename or entity.name}
            if kind == "entity":
                entry["entity_id"] = value[len(inputs.ENTITY_PREFIX):]
            elif kind == "upload":
                entry["location"] = (f"{self.jobs.settings.base_url}/rest/{job.activity}/"
                                     f"{job.job_id}/parameters/{entity.name}")
                entry.update(file_facts(inputs.upload_path(job_dir, entity.name),
                                        by_name.get(entity.name, {})))
            else:
                entry["location"] = value
                fetched = by_name.get(entity.name, {})
                entry.update(size=fetched.get("size"), sha256=fetched.get("sha256"))
            used.append(entry)
        return used


def declared_results(activity: ActivityDescription | None, job_dir: Path,
                     listed: list[dict[str, Any]]) -> list[JobResult]:
    """The results of a job: each declared output and stream the runner listed, at the
    path and with the media type the server knows; sizes and hashes from the files."""
    by_id = {item["id"]: item for item in listed}
    # (result id, path in the job folder, media type, the folder it must stay in)
    candidates: list[tuple[str, str, str, Path | None]] = []
    work = job_dir / "work"
    for entity in (activity.generated if activity is not None else ()):
        filename = entity.default_filename or entity.name
        candidates.append((entity.name, f"work/{filename}",
                           entity.content_type or "application/octet-stream", work))
    candidates += [(name, f"{name}.txt", "text/plain", None) for name in STREAMS]
    found = []
    for result_id, relative, media_type, inside in candidates:
        if result_id not in by_id:
            continue
        facts = result_facts(job_dir / relative, inside, by_id[result_id])
        if facts is not None:
            found.append(JobResult(result_id=result_id, path=relative, mime_type=media_type,
                                   size=facts.get("size"), sha256=facts.get("sha256")))
    return found


def result_facts(path: Path, inside: Path | None, reported: Mapping[str, Any]
                 ) -> dict[str, Any] | None:
    """Size and sha256 of a result file; None if it is no regular file within ``inside``
    (a symlink out of the work folder, to the secret...), or, for ``inside=None`` (the
    runner's stdout and stderr), if it is a symlink at all. A file the server does not see
    (yet: a shared file system may show it later) is kept, its size and hash unknown."""
    if not path.exists() and not path.is_symlink():
        return {"size": None, "sha256": None}
    real = path.resolve()
    if inside is None:
        if path.is_symlink():
            return None
    elif not real.is_relative_to(inside.resolve()):
        return None
    return file_facts(real, reported) if real.is_file() else None


def file_facts(path: Path, reported: Mapping[str, Any]) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        digest = sha256_of(path) if size <= HASH_LIMIT else reported.get("sha256")
    except OSError:
        return {"size": None, "sha256": None}
    return {"size": size, "sha256": digest}


def program_of(activity: ActivityDescription, job_dir: Path,
               python: str) -> tuple[list[str] | None, str | None]:
    """The argv the scheduler ran and the sha256 of the program, worked out again."""
    if activity.script is not None:  # old dialect: the script text is the program
        return (["/bin/bash", str(job_dir / "activity.sh")],
                hashlib.sha256(activity.script.encode()).hexdigest())
    command = activity_command(activity, job_dir, python)
    if command is None:
        return None, None
    return list(command), script_sha256(command)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bounded_time(name: str, value: Any, earliest: dt.datetime) -> dt.datetime:
    """A time of the report, within what can be true: not before ``earliest`` (the job's
    creation or start), not in the future."""
    if value and not isinstance(value, str):
        raise ClientError(f"{name}: expected an ISO 8601 string in report "
                          f"(got {value!r:.40})")
    when = params.parse_datetime(name, value) if value else utcnow()
    return min(max(when, earliest), utcnow())


# -- the shape of a report ----------------------------------------------------------------

def _optional(kind: type | tuple[type, ...]) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
            return value
        raise ClientError(f"{name}: malformed value in report ({value!r:.60})")
    return check


def _digest(name: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and _SHA256.fullmatch(value)):
        return value
    raise ClientError(f"{name}: not a sha256 in report ({value!r:.60})")


def _size(name: str, value: Any) -> int | None:
    if value is None or (type(value) is int and value >= 0):
        return value
    raise ClientError(f"{name}: not a size in report ({value!r:.60})")


def _objects(name: str, value: Any, fields: Mapping[str, Callable[[str, Any], Any]],
             ) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ClientError(f"{name}: expected a list of objects in report")
    return [{key: check(f"{name}.{key}", item.get(key)) for key, check in fields.items()}
            for item in value]


def _rusage(name: str, value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        raise ClientError(f"{name}: expected an object of numbers in report")
    return {str(key): float(v) for key, v in value.items()}


def _context(name: str, value: Any) -> dict[str, Any] | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("packages", {}), dict):
        raise ClientError(f"{name}: expected an object (with an object of packages)")
    if len(json.dumps(value)) > CONTEXT_LIMIT:
        raise ClientError(f"{name}: larger than {CONTEXT_LIMIT} bytes")
    return value


def _error_type(name: str, value: Any) -> str | None:
    if value in (None, "transient", "fatal"):
        return value  # type: ignore[no-any-return]
    raise ClientError(f"{name}: must be transient or fatal in report ({value!r:.40})")


_text = _optional(str)
_REPORT: dict[str, Callable[[str, Any], Any]] = {
    "start_time": _text, "end_time": _text, "error_summary": _text,
    "error_type": _error_type, "host": _text, "platform": _text, "bundle": _text,
    "exit_code": _optional(int), "rusage": _rusage, "context": _context,
    "script_sha256": _text, "description_sha256": _text, "activity_version": _text,
    "command": _optional(list),
    "results": lambda name, value: _objects(name, value, {
        "id": _text, "path": _text, "mime_type": _text, "size": _size, "sha256": _digest}),
    "inputs": lambda name, value: _objects(name, value, {
        "name": _text, "size": _size, "sha256": _digest}) or [],
}


def checked_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an end report, each of the type it must have (a ClientError names
    the first that is not); unknown fields are dropped."""
    checked = {name: check(name, report.get(name)) for name, check in _REPORT.items()}
    if checked["results"] is not None and any(not item["id"] for item in checked["results"]):
        raise ClientError("results: an entry without an id in report")
    return checked
