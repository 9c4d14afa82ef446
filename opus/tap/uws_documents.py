"""The UWS 1.1 documents of ProvTAP's async job list (UWS 1.1 appendix B, the schema's
``JobSummary`` sequence; TAP 1.1 section 2.2.2: the result of a query is the one result
``result``, its error document the DALI error VOTable at ``/error``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from lxml import etree

from opus.storage.tap_jobs import TapJob
from opus.tap.votable import VOTABLE_MEDIA_TYPE
from opus.uws.params import format_datetime
from opus.uws.xml import NSMAP, UWS, XLINK, XSI

_NIL = f"{{{XSI}}}nil"
_HREF = f"{{{XLINK}}}href"


def _el(parent: etree._Element, name: str, text: str | None = None,
        **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{UWS}}}{name}", attributes)
    if text is None:
        element.set(_NIL, "true")
    else:
        element.text = text
    return element


def _text(root: etree._Element) -> bytes:
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def parameters_of(job: TapJob) -> list[tuple[str, str]]:
    """The job's TAP parameters, as its documents list them."""
    return job.pairs


def _fill_parameters(container: etree._Element, job: TapJob) -> etree._Element:
    for name, value in parameters_of(job):
        _el(container, "parameter", value, id=name)
    return container


def _fill_results(container: etree._Element, job: TapJob, url: str) -> etree._Element:
    if job.phase == "COMPLETED":
        result = etree.SubElement(container, f"{{{UWS}}}result", id="result")
        result.set(_HREF, f"{url}/results/result")
        result.set("mime-type", VOTABLE_MEDIA_TYPE)
    return container


def job_document(job: TapJob, url: str) -> bytes:
    """The job (UWS 1.1 section 2.2.1 ``{job}``); ``url`` is the job's own."""
    root = etree.Element(f"{{{UWS}}}job", nsmap=NSMAP)
    root.set("version", "1.1")
    _el(root, "jobId", job.job_id)
    if job.run_id is not None:
        _el(root, "runId", job.run_id)
    _el(root, "ownerId", job.owner_id)
    _el(root, "phase", job.phase)
    _el(root, "quote", None)
    _el(root, "creationTime", format_datetime(job.creation_time))
    _el(root, "startTime", format_datetime(job.start_time) if job.start_time else None)
    _el(root, "endTime", format_datetime(job.end_time) if job.end_time else None)
    _el(root, "executionDuration", str(job.execution_duration))
    _el(root, "destruction", format_datetime(job.destruction) if job.destruction else None)
    _fill_parameters(_el(root, "parameters", ""), job)
    _fill_results(_el(root, "results", ""), job, url)
    if job.phase in {"ERROR", "ABORTED"} and job.error_summary:
        summary = etree.SubElement(root, f"{{{UWS}}}errorSummary", type="fatal",
                                   hasDetail="true")
        _el(summary, "message", job.error_summary)
    return _text(root)


def job_list(jobs: Iterable[TapJob], list_url: str) -> bytes:
    """The job list (UWS 1.1 section 2.2.2.1)."""
    root = etree.Element(f"{{{UWS}}}jobs", nsmap=NSMAP)
    root.set("version", "1.1")
    for job in jobs:
        ref = etree.SubElement(root, f"{{{UWS}}}jobref", id=job.job_id)
        ref.set(_HREF, f"{list_url}/{job.job_id}")
        _el(ref, "phase", job.phase)
        if job.run_id is not None:
            _el(ref, "runId", job.run_id)
        _el(ref, "ownerId", job.owner_id)
        _el(ref, "creationTime", format_datetime(job.creation_time))
    return _text(root)


def parameters_document(job: TapJob) -> bytes:
    root = etree.Element(f"{{{UWS}}}parameters", nsmap=NSMAP)
    return _text(_fill_parameters(root, job))


def results_list(job: TapJob, url: str) -> bytes:
    root = etree.Element(f"{{{UWS}}}results", nsmap=NSMAP)
    return _text(_fill_results(root, job, url))
