"""UWS 1.1 resources as JSON: the same information as the XML documents of :mod:`opus.uws.xml`.

UWS 1.1 defines only XML; these documents are OPUS's JSON equivalent, served when a client's
``Accept`` header prefers ``application/json`` (:mod:`opus.web.negotiation`). Names follow the
XML elements and attributes of UWS.xsd, so a client can read either with one vocabulary:

``job``
    ``{"version": "1.1", "jobId", "runId", "ownerId", "phase", "quote", "creationTime",
    "startTime", "endTime", "executionDuration", "destruction", "parameters", "results",
    "errorSummary", "jobInfo"}``. Every key is always present; what the XML leaves out or
    marks ``xsi:nil`` is ``null``. Times are the XML's text (``2026-01-31T12:00:00.000Z``),
    ``executionDuration`` an integer number of seconds.
``parameters``
    a list of ``{"id", "value", "byReference"}``; an input given by reference (an upload, a
    URL, an earlier result) has ``"byReference": true`` and ``href``, the URL the XML
    carries as the element's text (``value`` is that URL too).
``results``
    a list of ``{"id", "href", "size", "mime-type"}`` (``size`` an integer or null).
``errorSummary``
    ``{"type": "fatal"|"transient", "hasDetail": true, "message"}``, or null.
``jobInfo``
    ``{"provenance": {"href", "mime-type"}, "access": "public"|"private"}``: ``provenance``
    once the job has ended, ``access`` who may read the job (anyone, or its owner); null
    when there is neither.
``jobs`` (the job list)
    ``{"version": "1.1", "jobs": [{"id", "href", "phase", "runId", "ownerId",
    "creationTime"}]}``.

The single-valued resources (``/phase``, ``/executionduration`` ...) are objects with the
one key the job document uses for them, e.g. ``{"phase": "EXECUTING"}``; errors are
``{"error": message, "status": code}``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opus.uws.models import Job, JobRef
from opus.uws.params import format_datetime

JSON = "application/json"
#: Media types the XML documents are also known by (a client asking for text/xml gets them).
XML_TYPES = ("application/xml", "text/xml")


# -- documents ------------------------------------------------------------------------------
def _time(value: dt.datetime | None) -> str | None:
    return format_datetime(value) if value is not None else None


def dumps(document: Any) -> bytes:
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()


def job_list(refs: Iterable[JobRef], job_url: Callable[[str], str]) -> dict[str, Any]:
    return {"version": "1.1", "jobs": [{
        "id": ref.job_id,
        "href": job_url(ref.job_id),
        "phase": ref.phase,
        "runId": ref.run_id,
        "ownerId": ref.owner_id,
        "creationTime": _time(ref.creation_time),
    } for ref in refs]}


def parameter_list(job: Job, references: Mapping[str, str]) -> list[dict[str, Any]]:
    return [parameter_entry(name, value, references.get(name))
            for name, value in job.parameters.items()]


def parameter_entry(name: str, value: str, href: str | None) -> dict[str, Any]:
    if href is None:
        return {"id": name, "value": value, "byReference": False}
    return {"id": name, "value": href, "byReference": True, "href": href}


def result_list(job: Job, result_url: Callable[[str], str]) -> list[dict[str, Any]]:
    return [{
        "id": result.result_id,
        "href": result_url(result.result_id),
        "size": result.size,
        "mime-type": result.mime_type or None,
    } for result in job.results]


def error_summary(job: Job) -> dict[str, Any] | None:
    """The errorSummary of the job document (only for a job that ended in error)."""
    if job.error_summary is None or job.phase not in {"ERROR", "ABORTED"}:
        return None
    return {"type": job.error_type or "fatal", "hasDetail": True,
            "message": job.error_summary}


def job(
    job: Job,
    *,
    quote: dt.datetime | None,
    result_url: Callable[[str], str],
    provenance_url: str | None = None,
    references: Mapping[str, str] | None = None,
    access: str | None = None,
) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if provenance_url is not None:
        info["provenance"] = {"href": provenance_url, "mime-type": "application/x-prov+json"}
    if access is not None:
        info["access"] = access
    return {
        "version": "1.1",
        "jobId": job.job_id,
        "runId": job.run_id,
        "ownerId": job.owner_id,
        "phase": job.phase,
        "quote": _time(quote),
        "creationTime": _time(job.creation_time),
        "startTime": _time(job.start_time),
        "endTime": _time(job.end_time),
        "executionDuration": int(job.execution_duration),
        "destruction": _time(job.destruction),
        "parameters": parameter_list(job, references or {}),
        "results": result_list(job, result_url),
        "errorSummary": error_summary(job),
        "jobInfo": info or None,
    }


def parameters(job: Job, references: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"parameters": parameter_list(job, references or {})}


def results(job: Job, result_url: Callable[[str], str]) -> dict[str, Any]:
    return {"results": result_list(job, result_url)}


def error(message: str, status: int) -> dict[str, Any]:
    return {"error": message, "status": status}
