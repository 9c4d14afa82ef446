"""UWS 1.1 XML documents (UWS 1.1 appendix B; ../shared/schemas/UWS.xsd).

Element order follows the schema's ``JobSummary`` sequence; every document carries
``version="1.1"`` (section 2.2.1.1) and timestamps in UTC with a 'Z' (section 2.2.1).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import cast

from lxml import etree

from opus.uws.json_documents import error_summary
from opus.uws.models import Job, JobRef
from opus.uws.params import format_datetime

UWS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK = "http://www.w3.org/1999/xlink"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OPUS = "urn:opus:uws"
NSMAP = {"uws": UWS, "xlink": XLINK, "xsi": XSI}
_NIL = f"{{{XSI}}}nil"
_HREF = f"{{{XLINK}}}href"


def _el(parent: etree._Element, name: str, text: str | None = None,
        *, nillable: bool = False) -> etree._Element:
    element = etree.SubElement(parent, f"{{{UWS}}}{name}")
    if text is None:
        if nillable:
            element.set(_NIL, "true")
    else:
        element.text = text
    return element


def _time(value: dt.datetime | None) -> str | None:
    return format_datetime(value) if value is not None else None


def _tostring(root: etree._Element) -> bytes:
    # lxml has no type information: tostring() without encoding="unicode" gives bytes.
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def job_list(refs: Iterable[JobRef], job_url: Callable[[str], str]) -> bytes:
    root = etree.Element(f"{{{UWS}}}jobs", nsmap=NSMAP)
    root.set("version", "1.1")
    for ref in refs:
        jobref = etree.SubElement(root, f"{{{UWS}}}jobref", id=ref.job_id)
        jobref.set(_HREF, job_url(ref.job_id))
        _el(jobref, "phase", ref.phase)
        if ref.run_id is not None:
            _el(jobref, "runId", ref.run_id)
        _el(jobref, "ownerId", ref.owner_id, nillable=True)
        _el(jobref, "creationTime", format_datetime(ref.creation_time))
    return _tostring(root)


def _fill_parameters(container: etree._Element, job: Job,
                     references: Mapping[str, str]) -> etree._Element:
    """Parameters; inputs given by reference carry their URL and byReference="true"
    (UWS 1.1 section 2.2.2.4)."""
    for name, value in job.parameters.items():
        href = references.get(name)
        element = _el(container, "parameter", value if href is None else href)
        element.set("id", name)
        if href is not None:
            element.set("byReference", "true")
    return container


def _fill_results(container: etree._Element, job: Job,
                  result_url: Callable[[str], str]) -> etree._Element:
    for result in job.results:
        element = _el(container, "result")
        element.set("id", result.result_id)
        element.set(_HREF, result_url(result.result_id))
        if result.size is not None:
            element.set("size", str(result.size))
        if result.mime_type:
            element.set("mime-type", result.mime_type)
    return container


def job(
    job: Job,
    *,
    quote: dt.datetime | None,
    result_url: Callable[[str], str],
    provenance_url: str | None = None,
    references: Mapping[str, str] | None = None,
    access: str | None = None,
) -> bytes:
    root = etree.Element(f"{{{UWS}}}job", nsmap=NSMAP)
    root.set("version", "1.1")
    _el(root, "jobId", job.job_id)
    if job.run_id is not None:
        _el(root, "runId", job.run_id)
    _el(root, "ownerId", job.owner_id, nillable=True)
    _el(root, "phase", job.phase)
    _el(root, "quote", _time(quote), nillable=True)
    _el(root, "creationTime", _time(job.creation_time))
    _el(root, "startTime", _time(job.start_time), nillable=True)
    _el(root, "endTime", _time(job.end_time), nillable=True)
    _el(root, "executionDuration", str(int(job.execution_duration)))
    _el(root, "destruction", _time(job.destruction), nillable=True)
    _fill_parameters(_el(root, "parameters"), job, references or {})
    _fill_results(_el(root, "results"), job, result_url)
    error = error_summary(job)  # the one rule for both documents
    if error is not None:
        summary = _el(root, "errorSummary")
        summary.set("type", error["type"])
        summary.set("hasDetail", "true")
        _el(summary, "message", error["message"])
    if provenance_url is not None or access is not None:
        # UWS 1.1 section 2.2.2.2: jobInfo carries what the implementation adds: the run's
        # provenance once it ended, who may read the job (public, private).
        info = _el(root, "jobInfo")
        if provenance_url is not None:
            link = etree.SubElement(info, f"{{{OPUS}}}provenance", nsmap={"opus": OPUS})
            link.set(_HREF, provenance_url)
            link.set("mime-type", "application/x-prov+json")
        if access is not None:
            etree.SubElement(info, f"{{{OPUS}}}access", nsmap={"opus": OPUS}).text = access
    return _tostring(root)


def parameters(job: Job, references: Mapping[str, str] | None = None) -> bytes:
    root = etree.Element(f"{{{UWS}}}parameters", nsmap=NSMAP)
    return _tostring(_fill_parameters(root, job, references or {}))


def results(job: Job, result_url: Callable[[str], str]) -> bytes:
    root = etree.Element(f"{{{UWS}}}results", nsmap=NSMAP)
    return _tostring(_fill_results(root, job, result_url))
