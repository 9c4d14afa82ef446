"""``/tap/async``: ProvTAP's asynchronous queries, a UWS 1.1 job list (TAP 1.1 section
2.2.2; :mod:`opus.tap.async_jobs`).

``POST /tap/async`` (LANG, QUERY, MAXREC..., and optionally PHASE=RUN) creates a job and
answers 303 to it; the job's resources are those of UWS 1.1 section 2.2.1 (phase, quote,
executionduration, destruction, error, parameters, results, owner), its one result
``results/result`` the VOTable of the query. A job that failed has its DALI 1.1 error
VOTable at ``error`` (TAP 1.1 section 2.2.2: "the error document"). Parameter mistakes are
answered like sync ones (a DALI error VOTable, 400); the UWS resources answer theirs in
plain text, like OPUS's other job lists. On SQLite every resource is 501 (as ``/tap/sync``).
"""

from __future__ import annotations

import bottle
from bottle import HTTPResponse

from opus.errors import NotFoundError, ParameterError
from opus.tap.async_jobs import MAX_WAIT, TapAsync
from opus.tap.service import NEEDS_POSTGRESQL
from opus.tap.uws_documents import job_document, job_list, parameters_document, results_list
from opus.tap.votable import VOTABLE_MEDIA_TYPE, error_document
from opus.uws.params import format_datetime, parse_last, parse_wait
from opus.web.http import identity, required, root_url, single, submitted_parameters
from opus.web.http import query_parameters, see_other, text_response
from opus.web.openapi_schemas import (
    JOB_ID,
    PROVENANCE,
    TEXT,
    VOTABLE,
    XML,
    form_body,
    ok,
    query_param,
    responses,
)
from opus.web.routing import Operation, route

TAP = PROVENANCE
XML_OK = ok("the UWS document", {XML: {"type": "string"}})
TEXT_OK = ok("the value", {TEXT: {"type": "string"}})
VOTABLE_OK = ok("the VOTable", {VOTABLE: {"type": "string"}})
CREATE_BODY = form_body({"type": "object", "required": ["LANG", "QUERY"], "properties": {
    name: {"type": "string"} for name in ("LANG", "QUERY", "REQUEST", "MAXREC",
                                          "RESPONSEFORMAT", "PHASE", "RUNID",
                                          "EXECUTIONDURATION", "DESTRUCTION")}})


def _field(name: str) -> dict[str, object]:
    return form_body({"type": "object", "required": [name],
                      "properties": {name: {"type": "string"}}})


def _op(operation_id: str, summary: str, success: dict[str, object] | None, *,
        see: bool = False, body: dict[str, object] | None = None,
        extra: tuple[dict[str, object], ...] = ()) -> Operation:
    return Operation(operation_id, f"ProvTAP async: {summary}",
                     responses(success, 400, 403, 404, see_other=see), tags=TAP,
                     parameters=(JOB_ID, *extra), request_body=body)


def install(app: bottle.Bottle, service: TapAsync) -> None:

    def list_url() -> str:
        return f"{root_url()}/tap/async"

    def job_url(job_id: str) -> str:
        return f"{list_url()}/{job_id}"

    def check() -> None:
        if not service.tap.available:
            raise HTTPResponse(body=error_document(NEEDS_POSTGRESQL), status=501,
                               headers={"Content-Type": VOTABLE_MEDIA_TYPE})

    def xml(body: bytes) -> HTTPResponse:
        return HTTPResponse(body=body, headers={"Content-Type": "text/xml; charset=UTF-8"})

    @route(app, "GET", "/tap/async", operation=Operation(
        "tapAsyncList", "ProvTAP async: the caller's jobs", responses(XML_OK, 400),
        tags=TAP, parameters=(
            query_param("PHASE", {"type": "string"}, "only jobs in these phases",
                        repeated=True),
            query_param("LAST", {"type": "integer", "minimum": 1}, "the newest n jobs"))))
    def jobs() -> HTTPResponse:
        check()
        items = query_parameters()
        phases = [value for key, value in items if key.upper() == "PHASE"]
        last = single("LAST", items)
        found = service.jobs(identity(), phases, parse_last(last) if last else None)
        return xml(job_list(found, list_url()))

    @route(app, "POST", "/tap/async", errors="tap", operation=Operation(
        "tapAsyncCreate", "ProvTAP async: create a query job (303 to it)",
        responses(None, 400, see_other=True), tags=TAP, request_body=CREATE_BODY))
    def create() -> HTTPResponse:
        check()
        return see_other(job_url(service.create(identity(), submitted_parameters())))

    @route(app, "GET", "/tap/async/<job_id>", operation=_op(
        "tapAsyncJob", "the job; WAIT blocks until its phase changes", XML_OK,
        extra=(query_param("WAIT", {"type": "number"}, "seconds to wait (-1: the most)"),
               query_param("PHASE", {"type": "string"}, "the phase the client knows"))))
    def job(job_id: str) -> HTTPResponse:
        check()
        items = query_parameters()
        wait = single("WAIT", items)
        if wait is None:
            found = service.job(identity(), job_id)
        else:
            found = service.job(identity(), job_id)
            known = single("PHASE", items)
            if known is None or known.upper() == found.phase:
                found = service.wait(identity(), job_id, parse_wait(wait, MAX_WAIT))
        return xml(job_document(found, job_url(job_id)))

    def delete(job_id: str) -> HTTPResponse:
        check()
        service.delete(identity(), job_id)
        return see_other(list_url())

    route(app, "DELETE", "/tap/async/<job_id>", operation=_op(
        "tapAsyncDelete", "delete the job (303 to the list)", None, see=True))(delete)

    @route(app, "POST", "/tap/async/<job_id>", operation=_op(
        "tapAsyncJobPost", "ACTION=DELETE deletes the job", None, see=True,
        body=_field("ACTION")))
    def post_job(job_id: str) -> HTTPResponse:
        check()
        action = required("ACTION", submitted_parameters())
        if action.upper() != "DELETE":
            raise ParameterError("ACTION", f"must be DELETE (got {action!r})")
        return delete(job_id)

    @route(app, "GET", "/tap/async/<job_id>/phase", operation=_op(
        "tapAsyncPhase", "the phase", TEXT_OK))
    def phase(job_id: str) -> HTTPResponse:
        check()
        return text_response(service.job(identity(), job_id).phase)

    @route(app, "POST", "/tap/async/<job_id>/phase", operation=_op(
        "tapAsyncSetPhase", "PHASE=RUN or ABORT", None, see=True, body=_field("PHASE")))
    def set_phase(job_id: str) -> HTTPResponse:
        check()
        service.set_phase(identity(), job_id, required("PHASE", submitted_parameters()))
        return see_other(job_url(job_id))

    @route(app, "GET", "/tap/async/<job_id>/executionduration", operation=_op(
        "tapAsyncDuration", "the execution duration (seconds)", TEXT_OK))
    def duration(job_id: str) -> HTTPResponse:
        check()
        return text_response(str(service.job(identity(), job_id).execution_duration))

    @route(app, "POST", "/tap/async/<job_id>/executionduration", operation=_op(
        "tapAsyncSetDuration", "change the execution duration", None, see=True,
        body=_field("EXECUTIONDURATION")))
    def set_duration(job_id: str) -> HTTPResponse:
        check()
        service.set_execution_duration(identity(), job_id, required(
            "EXECUTIONDURATION", submitted_parameters()))
        return see_other(job_url(job_id))

    @route(app, "GET", "/tap/async/<job_id>/destruction", operation=_op(
        "tapAsyncDestruction", "the destruction time", TEXT_OK))
    def destruction(job_id: str) -> HTTPResponse:
        check()
        return text_response(format_datetime(service.job(identity(), job_id).destruction))

    @route(app, "POST", "/tap/async/<job_id>/destruction", operation=_op(
        "tapAsyncSetDestruction", "change the destruction time", None, see=True,
        body=_field("DESTRUCTION")))
    def set_destruction(job_id: str) -> HTTPResponse:
        check()
        service.set_destruction(identity(), job_id, required("DESTRUCTION",
                                                             submitted_parameters()))
        return see_other(job_url(job_id))

    @route(app, "GET", "/tap/async/<job_id>/quote", operation=_op(
        "tapAsyncQuote", "the quote (none: unknown)", TEXT_OK))
    def quote(job_id: str) -> HTTPResponse:
        check()
        service.job(identity(), job_id)
        return text_response("")

    @route(app, "GET", "/tap/async/<job_id>/owner", operation=_op(
        "tapAsyncOwner", "the owner", TEXT_OK))
    def owner(job_id: str) -> HTTPResponse:
        check()
        return text_response(service.job(identity(), job_id).owner_id or "")

    @route(app, "GET", "/tap/async/<job_id>/parameters", operation=_op(
        "tapAsyncParameters", "the parameters", XML_OK))
    def parameters(job_id: str) -> HTTPResponse:
        check()
        return xml(parameters_document(service.job(identity(), job_id)))

    @route(app, "POST", "/tap/async/<job_id>/parameters", operation=_op(
        "tapAsyncSetParameters", "change parameters of a PENDING job", None, see=True,
        body=form_body({"type": "object"})))
    def set_parameters(job_id: str) -> HTTPResponse:
        check()
        service.set_parameters(identity(), job_id, submitted_parameters())
        return see_other(job_url(job_id))

    @route(app, "GET", "/tap/async/<job_id>/results", operation=_op(
        "tapAsyncResults", "the results (the one 'result' once COMPLETED)", XML_OK))
    def results(job_id: str) -> HTTPResponse:
        check()
        return xml(results_list(service.job(identity(), job_id), job_url(job_id)))

    @route(app, "GET", "/tap/async/<job_id>/results/result", errors="tap", operation=_op(
        "tapAsyncResult", "the result VOTable", VOTABLE_OK))
    def result(job_id: str) -> HTTPResponse:
        check()
        return HTTPResponse(body=service.result(identity(), job_id),
                            headers={"Content-Type": VOTABLE_MEDIA_TYPE})

    @route(app, "GET", "/tap/async/<job_id>/error", errors="tap", operation=_op(
        "tapAsyncError", "the error document (DALI error VOTable)", VOTABLE_OK))
    def error(job_id: str) -> HTTPResponse:
        check()
        found = service.job(identity(), job_id)
        if found.phase not in {"ERROR", "ABORTED"} or not found.error_summary:
            raise NotFoundError(f"job {job_id} has no error (phase {found.phase})")
        return HTTPResponse(body=error_document(found.error_summary),
                            headers={"Content-Type": VOTABLE_MEDIA_TYPE})
