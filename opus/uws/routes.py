"""The UWS 1.1 REST binding (section 2.2): thin handlers over :class:`JobService`.

Each handler reads the request, calls the service, and shapes the answer: XML documents,
``text/plain`` for the atomic job properties, 303 after every change. Client mistakes raise
:mod:`opus.errors` exceptions; :func:`error_plugin` turns them into their status with a
plain-text message, in this one place.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import bottle
from bottle import HTTPResponse, request

from opus.auth import Identity, resolve_identity
from opus.errors import ClientError, NotFoundError, ParameterError, PayloadTooLargeError
from opus.uws import params, xml
from opus.uws.models import Job, JobResult, Phase
from opus.uws.params import format_datetime
from opus.uws.service import JobService

log = logging.getLogger("opus.http")

XML = "application/xml; charset=UTF-8"
#: Result id under which a finished job links its provenance (ProvSAP, PROV-JSON).
PROVENANCE_RESULT = "provenance"
PROVENANCE_PHASES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED})
TEXT = "text/plain; charset=UTF-8"


def text_response(body: str, status: int = 200) -> HTTPResponse:
    return HTTPResponse(body=body, status=status, headers={"Content-Type": TEXT})


def error_plugin(max_body: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap every route: refuse oversized bodies, resolve the identity once, and map
    client errors to their status (UWS 1.1 section 2.2: 404, 403; DALI: 400)."""

    def decorator(callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                length = request.content_length
                if length > max_body:
                    raise PayloadTooLargeError(
                        f"request body of {length} bytes exceeds the limit of {max_body}")
                request.environ["opus.identity"] = resolve_identity(request.headers)
                return callback(*args, **kwargs)
            except ClientError as error:
                if error.status != 413:
                    discard_unread_body()
                return text_response(error.message + "\n", error.status)
            except bottle.HTTPError as error:
                # bottle's own refusals while parsing the body (a broken multipart body,
                # an url-encoded one beyond BaseRequest.MEMFILE_MAX).
                if 400 <= error.status_code < 500:
                    discard_unread_body()
                if error.status_code == 413:
                    return text_response(
                        f"request body of {request.content_length} bytes is too large for "
                        f"form parameters (at most {request.MEMFILE_MAX} bytes)\n", 413)
                raise

        return wrapper

    return decorator


def discard_unread_body() -> None:
    """Read the body a refused request did not use (bounded by the body limit checked
    first), so that the client, still sending it, receives the error: answering and
    closing mid-upload makes it see a reset connection instead of the 4xx."""
    if "bottle.request.body" in request.environ:
        return  # bottle read it already
    stream = request.environ.get("wsgi.input")
    remaining = request.content_length
    while stream is not None and remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            break
        remaining -= len(chunk)


def identity() -> Identity:
    return request.environ["opus.identity"]


def root_url() -> str:
    """Scheme, host and mount point of this request, for absolute links."""
    parts = request.urlparts
    return f"{parts.scheme}://{parts.netloc}{request.script_name.rstrip('/')}"


def see_other(location: str) -> HTTPResponse:
    return HTTPResponse(status=303, headers={"Location": location})


def query_parameters() -> list[tuple[str, str]]:
    """Query parameters as (name, value) pairs, decoded as UTF-8."""
    try:
        return list(request.query.decode().allitems())
    except (UnicodeError, ValueError) as error:
        raise ClientError(f"the request parameters could not be decoded: {error}") from None


def submitted_parameters() -> list[tuple[str, str]]:
    """Query and form parameters as (name, value) pairs, decoded as UTF-8."""
    items = query_parameters()
    if request.method in {"POST", "PUT"}:
        try:
            items += list(request.forms.decode().allitems())
        except (UnicodeError, ValueError) as error:
            raise ClientError(f"the request parameters could not be decoded: "
                              f"{error}") from None
    return items


def uploaded_files() -> dict[str, Any]:
    """Parts of a multipart/form-data POST that carry a file, by part name (UWS 1.1
    section 2.2.3.1.1). The client's file name is ignored."""
    if request.method != "POST" or not request.content_type.startswith("multipart/"):
        return {}
    return {name: upload.file for name, upload in request.files.allitems()}


def single(name: str, values: list[tuple[str, str]]) -> str | None:
    """The one value of ``name`` (case-insensitive), None if absent."""
    found = [value for key, value in values if key.lower() == name.lower()]
    if len(found) > 1:
        raise ParameterError(name, "given more than once")
    return found[0] if found else None


def required(name: str, values: list[tuple[str, str]]) -> str:
    value = single(name, values)
    if value is None:
        raise ParameterError(name, "required")
    return value


def install(app: bottle.Bottle, service: JobService) -> None:
    """Add the UWS routes under ``/rest/{activity}``."""

    def jobs_url(activity: str) -> str:
        return f"{root_url()}/rest/{activity}"

    def job_url(activity: str, job_id: str) -> str:
        return f"{root_url()}/rest/{activity}/{job_id}"

    def xml_response(body: bytes) -> HTTPResponse:
        return HTTPResponse(body=body, headers={"Content-Type": XML})

    def job_document(job: Job) -> HTTPResponse:
        base = job_url(job.activity, job.job_id)
        provenance = None
        if job.phase in PROVENANCE_PHASES:
            # The run's provenance, linked as a result and from jobInfo (it outlives the
            # job's files).
            provenance = f"{root_url()}/provsap?ID={job.job_id}&DIRECTION=FORTH"
            job = dataclasses.replace(job, results=job.results + (
                JobResult(PROVENANCE_RESULT, "", None, "application/x-prov+json"),))
        return xml_response(xml.job(
            job, quote=service.quote(job),
            result_url=lambda rid: f"{base}/results/{rid}",
            provenance_url=provenance,
            references=service.reference_hrefs(job, base),
        ))

    @app.get("/rest/<activity>")
    def list_jobs(activity: str) -> HTTPResponse:
        items = query_parameters()
        phases = params.parse_phases([v for k, v in items if k.upper() == "PHASE"])
        after_text = single("AFTER", items)
        last_text = single("LAST", items)
        after = params.parse_datetime("AFTER", after_text) if after_text is not None else None
        last = params.parse_last(last_text) if last_text is not None else None
        refs = service.list(identity(), activity, phases=phases, after=after, last=last)
        base = jobs_url(activity)
        return xml_response(xml.job_list(refs, lambda job_id: f"{base}/{job_id}"))

    @app.post("/rest/<activity>")
    def create_job(activity: str) -> HTTPResponse:
        job = service.create(identity(), activity, submitted_parameters(), uploaded_files())
        return see_other(job_url(activity, job.job_id))

    @app.get("/rest/<activity>/<job_id>")
    def get_job(activity: str, job_id: str) -> HTTPResponse:
        items = query_parameters()
        wait = single("WAIT", items)
        if wait is None:
            return job_document(service.get(identity(), activity, job_id))
        timeout = params.parse_wait(wait, service.settings.wait_max)
        phase = single("PHASE", items)
        expected = params.parse_phases([phase])[0] if phase is not None else None
        return job_document(service.wait(identity(), activity, job_id, timeout, expected))

    @app.post("/rest/<activity>/<job_id>")
    def post_job(activity: str, job_id: str) -> HTTPResponse:
        values = submitted_parameters()
        action = single("ACTION", values)
        if action is not None:
            if action.strip().upper() != "DELETE":
                raise ParameterError("ACTION", f"must be DELETE (got {action!r})")
            service.delete(identity(), activity, job_id)
            return see_other(jobs_url(activity))
        service.update_parameters(identity(), activity, job_id, values)
        return see_other(job_url(activity, job_id))

    @app.delete("/rest/<activity>/<job_id>")
    def delete_job(activity: str, job_id: str) -> HTTPResponse:
        service.delete(identity(), activity, job_id)
        return see_other(jobs_url(activity))

    @app.get("/rest/<activity>/<job_id>/phase")
    def get_phase(activity: str, job_id: str) -> HTTPResponse:
        return text_response(service.get(identity(), activity, job_id,
                                         with_results=False).phase)

    @app.post("/rest/<activity>/<job_id>/phase")
    def post_phase(activity: str, job_id: str) -> HTTPResponse:
        service.phase_action(identity(), activity, job_id,
                             required("PHASE", submitted_parameters()))
        return see_other(job_url(activity, job_id))

    @app.get("/rest/<activity>/<job_id>/executionduration")
    def get_execution_duration(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return text_response(str(int(job.execution_duration)))

    @app.post("/rest/<activity>/<job_id>/executionduration")
    def post_execution_duration(activity: str, job_id: str) -> HTTPResponse:
        service.set_execution_duration(identity(), activity, job_id,
                                       required("EXECUTIONDURATION", submitted_parameters()))
        return see_other(job_url(activity, job_id))

    @app.get("/rest/<activity>/<job_id>/destruction")
    def get_destruction(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return text_response(format_datetime(job.destruction))

    @app.post("/rest/<activity>/<job_id>/destruction")
    def post_destruction(activity: str, job_id: str) -> HTTPResponse:
        service.set_destruction(identity(), activity, job_id,
                                required("DESTRUCTION", submitted_parameters()))
        return see_other(job_url(activity, job_id))

    @app.get("/rest/<activity>/<job_id>/error")
    def get_error(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return text_response(job.error_summary or "")

    @app.get("/rest/<activity>/<job_id>/quote")
    def get_quote(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return text_response(format_datetime(service.quote(job)))

    @app.get("/rest/<activity>/<job_id>/owner")
    def get_owner(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return text_response(job.owner_id or "")

    @app.get("/rest/<activity>/<job_id>/parameters")
    def get_parameters(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return xml_response(xml.parameters(
            job, service.reference_hrefs(job, job_url(activity, job_id))))

    @app.post("/rest/<activity>/<job_id>/parameters")
    def post_parameters(activity: str, job_id: str) -> HTTPResponse:
        service.update_parameters(identity(), activity, job_id, submitted_parameters())
        return see_other(job_url(activity, job_id))

    @app.get("/rest/<activity>/<job_id>/parameters/<name>")
    def get_parameter(activity: str, job_id: str, name: str) -> HTTPResponse:
        upload = service.upload_file(identity(), activity, job_id, name)
        if upload is not None:  # UWS 1.1 section 2.2.3.1.1: inline content is served here
            return bottle.static_file(upload.name, root=str(upload.parent),
                                      mimetype="application/octet-stream")
        job = service.get(identity(), activity, job_id, with_results=False)
        for key, value in job.parameters.items():
            if key.lower() == name.lower():
                return text_response(value)
        raise NotFoundError(f"job {job_id} has no parameter {params.shown(name)}")

    @app.put("/rest/<activity>/<job_id>/parameters/<name>")
    def put_parameter(activity: str, job_id: str, name: str) -> HTTPResponse:
        try:
            value = request.body.read().decode("utf-8", errors="strict")
        except UnicodeError as error:
            raise ParameterError(name, f"the value is not UTF-8 text: {error}") from None
        service.update_parameters(identity(), activity, job_id, [(name, value)])
        return see_other(job_url(activity, job_id))

    @app.get("/rest/<activity>/<job_id>/results")
    def get_results(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id)
        if job.phase in PROVENANCE_PHASES:
            job = dataclasses.replace(job, results=job.results + (
                JobResult(PROVENANCE_RESULT, "", None, "application/x-prov+json"),))
        base = job_url(activity, job_id)
        return xml_response(xml.results(job, lambda rid: f"{base}/results/{rid}"))

    @app.get("/rest/<activity>/<job_id>/results/<result_id>")
    def get_result(activity: str, job_id: str, result_id: str) -> HTTPResponse:
        if result_id == PROVENANCE_RESULT:
            job = service.get(identity(), activity, job_id, with_results=False)
            if job.phase in PROVENANCE_PHASES:
                return see_other(f"{root_url()}/provsap?ID={job_id}&DIRECTION=FORTH")
        result, path = service.result_file(identity(), activity, job_id, result_id)
        # bottle.static_file gives Content-Length, Range, HEAD and conditional requests.
        return bottle.static_file(path.name, root=str(path.parent),
                                  mimetype=result.mime_type or "application/octet-stream")

    @app.post("/internal/jobs/<job_id>/report")
    def runner_report(job_id: str) -> HTTPResponse:
        """Phase reports of the runner, authenticated by the job's secret."""
        secret = request.headers.get("X-OPUS-Secret", "")
        service.check_secret(job_id, secret)
        try:
            report = json.loads(request.body.read() or b"{}")
        except ValueError as error:
            raise ClientError(f"report is not JSON: {error}") from None
        if not isinstance(report, dict):
            raise ClientError("report must be a JSON object")
        changed = service.apply_report(job_id, report)
        return HTTPResponse(status=204 if changed else 409)
