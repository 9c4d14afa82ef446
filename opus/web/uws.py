"""The UWS 1.1 REST binding (section 2.2): thin handlers over :class:`JobService`.

Each handler reads the request, calls the service, and shapes the answer: XML documents,
``text/plain`` for the atomic job properties, 303 after every change. Client mistakes raise
:mod:`opus.errors` exceptions, answered by :mod:`opus.web.errors`.

Every resource also has a JSON form (:mod:`opus.uws.json_documents`), chosen by ``Accept``:

- the XML documents (job, job list, parameters, results) are answered in JSON when the
  client prefers ``application/json`` to ``application/xml`` and ``text/xml`` (q values
  respected). No ``Accept``, ``*/*``, or a tie give XML, as UWS requires;
- the ``text/plain`` resources (phase, executionduration, destruction, error, quote,
  owner, access, a parameter's value) stay plain text unless the client prefers JSON to
  ``text/plain`` (``Accept: application/json``): then ``{"phase": "QUEUED"}`` and so on;
- errors keep their status and are plain text, or ``{"error": ..., "status": ...}`` under
  the same rule as the plain-text resources. Result files and uploads are served as they
  are, whatever ``Accept`` says.

Negotiated answers carry ``Vary: Accept``.

Each route declares its OpenAPI operation beside it (:func:`opus.web.routing.route`), spelled
out per activity in ``/openapi.json``; the runner's ``/internal/`` callback has none.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import bottle
from bottle import HTTPResponse, request

from opus.activities.model import ActivityDescription
from opus.errors import ClientError, NotFoundError, ParameterError
from opus.uws import json_documents, params, publishing, xml
from opus.uws.models import END_PHASES, Job, JobResult
from opus.uws.params import format_datetime
from opus.uws.reports import RunnerReports
from opus.uws.service import JobService
from opus.web.headers import serve_file
from opus.web.http import (
    XML,
    client_address,
    identity,
    query_parameters,
    required,
    root_url,
    see_other,
    single,
    submitted_parameters,
    text_response,
    uploaded_files,
    varying,
    wants_json,
)
from opus.web.openapi_schemas import (
    CONTROL_PROPERTIES,
    JOB_ID,
    JSON,
    PHASE,
    RESULT_ID,
    TEXT,
    atomic_ok,
    creation_body,
    form_body,
    job_update,
    nullable,
    ok,
    parameter_name,
    query_param,
    ref,
    responses,
    uws_ok,
)
from opus.web.routing import Operation, Part, PerActivity, route

#: Result id under which a finished job links its provenance (ProvSAP, PROV-JSON).
PROVENANCE_RESULT = "provenance"


def json_response(document: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(body=json_documents.dumps(document), status=status,
                        headers={"Content-Type": json_documents.JSON, "Vary": "Accept"})


def negotiated(render_xml: Callable[[], bytes], render_json: Callable[[], Any]
               ) -> HTTPResponse:
    """A UWS document in XML, or in JSON when the client prefers it."""
    if wants_json(*json_documents.XML_TYPES):
        return json_response(render_json())
    return HTTPResponse(body=render_xml(), headers={"Content-Type": XML, "Vary": "Accept"})


def atomic(text: str, key: str, value: Any) -> HTTPResponse:
    """A single-valued job resource: ``text`` as text/plain, or ``{key: value}`` when the
    client prefers JSON to plain text."""
    if wants_json("text/plain"):
        return json_response({key: value})
    return varying(text_response(text))


def provenance_url(job_id: str) -> str:
    """The run's provenance (ProvSAP), linked as a result and from jobInfo."""
    return f"{root_url()}/provsap?ID={job_id}&DIRECTION=FORTH"


#: A UWS instant that may be unknown (quote, destruction).
INSTANT = nullable(ref("schemas", "Timestamp"))
#: Who may read a job (``.../access``, jobInfo).
ACCESS = {"type": "string", "enum": list(publishing.ACCESS)}
#: ``ACTION=DELETE`` in the body of ``POST /rest/{activity}/{job_id}``.
DELETE_ACTION = {"type": "object", "required": ["ACTION"], "additionalProperties": False,
                 "properties": {"ACTION": {"type": "string", "enum": ["DELETE"]}}}


def _job(operation_id: str, summary: str, answers: Part, *parameters: Part | PerActivity,
         body: Part | PerActivity | None = None,
         description: Callable[[ActivityDescription], str] | None = None) -> Operation:
    """The operation of a job-list route, spelled out per activity."""
    return Operation(operation_id, summary, answers, parameters=parameters,
                     request_body=body, description=description, per_activity=True)


def _form_field(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A form body of one required field."""
    return form_body({"type": "object", "required": [name], "properties": {name: schema}})


def install(app: bottle.Bottle, service: JobService, reports: RunnerReports) -> None:
    """Add the UWS routes under ``/rest/{activity}`` and the runner's report route."""

    def jobs_url(activity: str) -> str:
        return f"{root_url()}/rest/{activity}"

    def job_url(activity: str, job_id: str) -> str:
        return f"{root_url()}/rest/{activity}/{job_id}"

    def with_provenance_result(job: Job) -> Job:
        """An ended job lists its provenance as a result (it outlives the job's files)."""
        if job.phase not in END_PHASES:
            return job
        return dataclasses.replace(job, results=job.results + (
            JobResult(PROVENANCE_RESULT, "", None, "application/x-prov+json"),))

    def job_document(job: Job) -> HTTPResponse:
        base = job_url(job.activity, job.job_id)
        provenance = provenance_url(job.job_id) if job.phase in END_PHASES else None
        job = with_provenance_result(job)
        content: dict[str, Any] = dict(
            quote=service.quote(job),
            result_url=lambda rid: f"{base}/results/{rid}",
            provenance_url=provenance,
            references=service.reference_hrefs(job, base),
            access=service.policy.access_of(job),
        )
        return negotiated(lambda: xml.job(job, **content),
                          lambda: json_documents.job(job, **content))

    @route(app, "GET", "/rest/<activity>", operation=_job(
        "listJobs", "the {activity} jobs this caller may see",
        responses(uws_ok("the job list", "JobList"), 400, 404),
        query_param("PHASE", PHASE, "only jobs in these phases", repeated=True),
        query_param("AFTER", {"type": "string", "format": "date-time"},
                    "only jobs created after this instant"),
        query_param("LAST", {"type": "integer", "minimum": 1},
                    "only the most recent LAST jobs (by creation time)")))
    def list_jobs(activity: str) -> HTTPResponse:
        items = query_parameters()
        phases = params.parse_phases([v for k, v in items if k.upper() == "PHASE"])
        after_text = single("AFTER", items)
        last_text = single("LAST", items)
        after = params.parse_datetime("AFTER", after_text) if after_text is not None else None
        last = params.parse_last(last_text) if last_text is not None else None
        refs = service.list_jobs(identity(), activity, phases=phases, after=after, last=last)
        base = jobs_url(activity)

        def href(job_id: str) -> str:
            return f"{base}/{job_id}"

        return negotiated(lambda: xml.job_list(refs, href),
                          lambda: json_documents.job_list(refs, href))

    @route(app, "POST", "/rest/<activity>", operation=_job(
        "createJob", "create a {activity} job (PENDING, or QUEUED with PHASE=RUN)",
        responses(None, 400, 404, 413, 429, see_other=True), body=creation_body,
        description=lambda activity: activity.description or ""))
    def create_job(activity: str) -> HTTPResponse:
        job = service.create(identity(), activity, submitted_parameters(), uploaded_files())
        return see_other(job_url(activity, job.job_id))

    @route(app, "GET", "/rest/<activity>/<job_id>", operation=_job(
        "getJob", "the job; WAIT blocks until it changes",
        responses(uws_ok("the job", "Job"), 400, 403, 404), JOB_ID,
        query_param("WAIT", {"anyOf": [{"const": -1}, {"type": "number", "minimum": 0}]},
                    "seconds to wait for a change of an active job (-1: as long as the "
                    "server allows)"),
        query_param("PHASE", PHASE, "wait only while the job is in this phase")))
    def get_job(activity: str, job_id: str) -> HTTPResponse:
        items = query_parameters()
        wait = single("WAIT", items)
        if wait is None:
            return job_document(service.get(identity(), activity, job_id))
        timeout = params.parse_wait(wait, service.settings.wait_max)
        phase = single("PHASE", items)
        expected = params.parse_phases([phase])[0] if phase is not None else None
        return job_document(service.wait(identity(), activity, job_id, timeout, expected,
                                          client_address()))

    @route(app, "POST", "/rest/<activity>/<job_id>", operation=_job(
        "updateJob", "ACTION=DELETE deletes the job (303 to the list); other fields change "
                     "a PENDING job (303 to the job)",
        responses(None, 400, 403, 404, 413, 429, see_other=True), JOB_ID,
        body=lambda activity: form_body({"anyOf": [DELETE_ACTION, job_update(activity)]},
                                        required=False)))
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

    @route(app, "DELETE", "/rest/<activity>/<job_id>", operation=_job(
        "deleteJob", "delete the job (303 to the job list)",
        responses(None, 403, 404, see_other=True), JOB_ID))
    def delete_job(activity: str, job_id: str) -> HTTPResponse:
        service.delete(identity(), activity, job_id)
        return see_other(jobs_url(activity))

    @route(app, "GET", "/rest/<activity>/<job_id>/phase", operation=_job(
        "getPhase", "the phase", responses(atomic_ok("the phase", "phase", PHASE), 403, 404),
        JOB_ID))
    def get_phase(activity: str, job_id: str) -> HTTPResponse:
        phase = service.get(identity(), activity, job_id, with_results=False).phase
        return atomic(phase, "phase", phase)

    @route(app, "POST", "/rest/<activity>/<job_id>/phase", operation=_job(
        "changePhase", "PHASE=RUN queues, PHASE=ABORT stops",
        responses(None, 400, 403, 404, 429, see_other=True), JOB_ID,
        body=_form_field("PHASE", {"type": "string", "enum": ["RUN", "ABORT"]})))
    def post_phase(activity: str, job_id: str) -> HTTPResponse:
        service.phase_action(identity(), activity, job_id,
                             required("PHASE", submitted_parameters()))
        return see_other(job_url(activity, job_id))

    @route(app, "GET", "/rest/<activity>/<job_id>/executionduration", operation=_job(
        "getExecutionDuration", "seconds the job may run (0: no limit)",
        responses(atomic_ok("the duration", "executionDuration",
                            {"type": "integer", "minimum": 0}), 403, 404), JOB_ID))
    def get_execution_duration(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        duration = int(job.execution_duration)
        return atomic(str(duration), "executionDuration", duration)

    @route(app, "POST", "/rest/<activity>/<job_id>/executionduration", operation=_job(
        "setExecutionDuration", "change the duration of a PENDING job",
        responses(None, 400, 403, 404, see_other=True), JOB_ID,
        body=_form_field("EXECUTIONDURATION", CONTROL_PROPERTIES["EXECUTIONDURATION"])))
    def post_execution_duration(activity: str, job_id: str) -> HTTPResponse:
        service.set_execution_duration(identity(), activity, job_id,
                                       required("EXECUTIONDURATION", submitted_parameters()))
        return see_other(job_url(activity, job_id))

    @route(app, "GET", "/rest/<activity>/<job_id>/destruction", operation=_job(
        "getDestruction", "when the job will be destroyed",
        responses(atomic_ok("the instant", "destruction", INSTANT), 403, 404), JOB_ID))
    def get_destruction(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return atomic(format_datetime(job.destruction), "destruction",
                      format_datetime(job.destruction) if job.destruction else None)

    @route(app, "POST", "/rest/<activity>/<job_id>/destruction", operation=_job(
        "setDestruction", "change the destruction time",
        responses(None, 400, 403, 404, see_other=True), JOB_ID,
        body=_form_field("DESTRUCTION", CONTROL_PROPERTIES["DESTRUCTION"])))
    def post_destruction(activity: str, job_id: str) -> HTTPResponse:
        service.set_destruction(identity(), activity, job_id,
                                required("DESTRUCTION", submitted_parameters()))
        return see_other(job_url(activity, job_id))

    @route(app, "GET", "/rest/<activity>/<job_id>/error", operation=_job(
        "getError", "the error message of a failed job",
        responses(atomic_ok("the message", "errorSummary",
                            nullable(ref("schemas", "ErrorSummary"))), 403, 404), JOB_ID))
    def get_error(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return atomic(job.error_summary or "", "errorSummary",
                      json_documents.error_summary(job))

    @route(app, "GET", "/rest/<activity>/<job_id>/quote", operation=_job(
        "getQuote", "when the job is expected to end",
        responses(atomic_ok("the estimate", "quote", INSTANT), 403, 404), JOB_ID))
    def get_quote(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        quote = service.quote(job)
        return atomic(format_datetime(quote), "quote",
                      format_datetime(quote) if quote else None)

    @route(app, "GET", "/rest/<activity>/<job_id>/owner", operation=_job(
        "getOwner", "the owner (empty: anonymous)",
        responses(atomic_ok("the owner", "ownerId", {"type": ["string", "null"]}), 403, 404),
        JOB_ID))
    def get_owner(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        return atomic(job.owner_id or "", "ownerId", job.owner_id)

    @route(app, "GET", "/rest/<activity>/<job_id>/parameters", operation=_job(
        "getParameters", "the job's parameters",
        responses(uws_ok("the parameters", "Parameters"), 403, 404), JOB_ID))
    def get_parameters(activity: str, job_id: str) -> HTTPResponse:
        job = service.get(identity(), activity, job_id, with_results=False)
        references = service.reference_hrefs(job, job_url(activity, job_id))
        return negotiated(lambda: xml.parameters(job, references),
                          lambda: json_documents.parameters(job, references))

    @route(app, "POST", "/rest/<activity>/<job_id>/parameters", operation=_job(
        "setParameters", "change parameters of a PENDING job",
        responses(None, 400, 403, 404, 413, 429, see_other=True), JOB_ID,
        body=lambda activity: form_body(job_update(activity), required=False)))
    def post_parameters(activity: str, job_id: str) -> HTTPResponse:
        service.update_parameters(identity(), activity, job_id, submitted_parameters())
        return see_other(job_url(activity, job_id))

    @route(app, "GET", "/rest/<activity>/<job_id>/parameters/<name>", operation=_job(
        "getParameter", "one parameter's value; an uploaded input's bytes",
        responses(ok("the value", {TEXT: {"type": "string"}, JSON: ref("schemas", "Parameter"),
                                   "application/octet-stream": {"type": "string",
                                                                "format": "binary"}}),
                  403, 404), JOB_ID, parameter_name))
    def get_parameter(activity: str, job_id: str, name: str) -> HTTPResponse:
        upload = service.upload_file(identity(), activity, job_id, name)
        if upload is not None:  # UWS 1.1 section 2.2.3.1.1: inline content is served here
            return serve_file(upload, "application/octet-stream")
        job = service.get(identity(), activity, job_id, with_results=False)
        for key, value in job.parameters.items():
            if key.lower() == name.lower():
                if wants_json("text/plain"):
                    href = service.reference_hrefs(
                        job, job_url(activity, job_id)).get(key)
                    return json_response(json_documents.parameter_entry(key, value, href))
                return varying(text_response(value))
        raise NotFoundError(f"job {job_id} has no parameter {params.shown(name)}")

    @route(app, "PUT", "/rest/<activity>/<job_id>/parameters/<name>", operation=_job(
        "putParameter", "set one parameter of a PENDING job (the body is the value)",
        responses(None, 400, 403, 404, 413, see_other=True), JOB_ID, parameter_name,
        body={"required": True, "content": {TEXT: {"schema": {"type": "string"}}}}))
    def put_parameter(activity: str, job_id: str, name: str) -> HTTPResponse:
        try:
            value = request.body.read().decode("utf-8", errors="strict")
        except UnicodeError as error:
            raise ParameterError(name, f"the value is not UTF-8 text: {error}") from None
        service.update_parameters(identity(), activity, job_id, [(name, value)])
        return see_other(job_url(activity, job_id))

    @route(app, "GET", "/rest/<activity>/<job_id>/access", operation=_job(
        "getAccess", "who may read the job: public (anyone) or private (its owner)",
        responses(atomic_ok("the access", "access", ACCESS), 403, 404), JOB_ID))
    def get_access(activity: str, job_id: str) -> HTTPResponse:
        access = service.policy.access_of(service.get(identity(), activity, job_id,
                                                      with_results=False))
        return atomic(access, "access", access)

    @route(app, "POST", "/rest/<activity>/<job_id>/access", operation=_job(
        "setAccess", "ACCESS=public publishes the job and its provenance: anyone may read "
                     "them and use its products as inputs; ACCESS=private withdraws it. "
                     "Owner only; an anonymous job is public and stays so (409)",
        responses(None, 400, 403, 404, 409, see_other=True), JOB_ID,
        body=_form_field("ACCESS", ACCESS)))
    def post_access(activity: str, job_id: str) -> HTTPResponse:
        publishing.set_access(service, identity(), activity, job_id,
                              required("ACCESS", submitted_parameters()))
        return see_other(job_url(activity, job_id))

    @route(app, "GET", "/rest/<activity>/<job_id>/results", operation=_job(
        "getResults", "the job's results",
        responses(uws_ok("the results", "Results"), 403, 404), JOB_ID))
    def get_results(activity: str, job_id: str) -> HTTPResponse:
        job = with_provenance_result(service.get(identity(), activity, job_id))
        base = job_url(activity, job_id)

        def href(rid: str) -> str:
            return f"{base}/results/{rid}"

        return negotiated(lambda: xml.results(job, href),
                          lambda: json_documents.results(job, href))

    @route(app, "GET", "/rest/<activity>/<job_id>/results/<result_id>", operation=_job(
        "getResult", "a result file (Range requests supported)",
        responses(ok("the file", {"*/*": {"type": "string", "format": "binary"}}), 403, 404,
                  see_other=True), JOB_ID, RESULT_ID))
    def get_result(activity: str, job_id: str, result_id: str) -> HTTPResponse:
        if result_id == PROVENANCE_RESULT:
            job = service.get(identity(), activity, job_id, with_results=False)
            if job.phase in END_PHASES:
                return see_other(provenance_url(job_id))
        result, path = service.result_file(identity(), activity, job_id, result_id)
        return serve_file(path, result.mime_type or "application/octet-stream")

    @route(app, "POST", "/internal/jobs/<job_id>/report", operation=None)
    def runner_report(job_id: str) -> HTTPResponse:
        """Phase reports of the runner, authenticated by the job's secret."""
        secret = request.headers.get("X-OPUS-Secret", "")
        reports.check_secret(job_id, secret)
        try:
            report = json.loads(request.body.read() or b"{}")
        except ValueError as error:
            raise ClientError(f"report is not JSON: {error}") from None
        if not isinstance(report, dict):
            raise ClientError("report must be a JSON object")
        # the end of a job on a full disk: written with the space reserve if need be
        changed = service.space.with_reserve("report", lambda: reports.apply(job_id, report))
        return HTTPResponse(status=204 if changed else 409)
