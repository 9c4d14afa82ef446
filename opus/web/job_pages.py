"""The job page of the web client and its buttons (the rest: :mod:`opus.web.pages`).

==================================  ===========================================================
``GET /ui/jobs/{job_id}``           phase, times, quote, parameters, results with previews
                                    (:mod:`opus.web.previews`; pictures first, then text,
                                    then FITS summaries), stdout/stderr, the error
                                    summary; while the job is active its script follows it
                                    with WAIT on the UWS resource and redraws the page's job
                                    part when it changes (without JavaScript the page
                                    refreshes itself)
``POST /ui/jobs/{job_id}/phase``    PHASE=RUN or ABORT (303 back to the page)
``POST /ui/jobs/{job_id}/destruction``  a new destruction time (400: the page again, the
                                    message beside the field)
``POST /ui/jobs/{job_id}/delete``   delete the job (303 to the job list)
==================================  ===========================================================

Each is a call of :class:`JobService`, with the caller's identity, as the UWS routes make.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import bottle
from bottle import HTTPResponse

from opus.errors import NotFoundError, ParameterError, PermissionDeniedError
from opus.uws.models import (
    ABORTABLE_PHASES,
    ACTIVE_PHASES,
    END_PHASES,
    FINAL_PHASES,
    Job,
    Phase,
    utcnow,
)
from opus.web.http import identity, required, root_url, see_other, submitted_parameters
from opus.web.openapi_schemas import JOB_ID, form_body
from opus.web.pages import UI, F, Pages, on_page, page_operation
from opus.web.previews import Preview, log_tail, preview
from opus.web.routing import Operation
from opus.web.samp import samp_mtype

#: Results previewed on one page (the others are listed, downloadable).
MAX_PREVIEWS = 30
#: The logs a run leaves as results, shown apart from the products.
LOGS = ("stdout", "stderr")
#: How long one WAIT of the page's script may block (the server caps it at wait_max).
WAIT_SECONDS = 60


def install(app: bottle.Bottle, pages: Pages) -> None:
    jobs = pages.jobs

    def page_url(job_id: str) -> str:
        return f"{root_url()}{UI}/jobs/{job_id}"

    def may_change(job: Job) -> bool:
        try:
            jobs.policy.check_modify(identity(), job)
        except PermissionDeniedError:
            return False
        return True

    def job_view(job: Job) -> dict[str, Any]:
        rest = f"{root_url()}/rest/{job.activity}/{job.job_id}"
        results: list[dict[str, Any]] = []
        logs: list[dict[str, Any]] = []
        for position, result in enumerate(job.results):
            entry: dict[str, Any] = {
                "result": result, "url": f"{rest}/results/{quote(result.result_id, safe='')}",
                "samp": samp_mtype(result.mime_type)}
            try:
                if position >= MAX_PREVIEWS:
                    raise NotFoundError("no preview: too many results on one page")
                _, path = jobs.result_file(identity(), job.activity, job.job_id,
                                           result.result_id)
            except NotFoundError as error:
                entry.update(preview=Preview("none", problem=error.message), text="",
                             cut=False)
            else:
                if result.result_id in LOGS:
                    text, cut = log_tail(path)
                    entry.update(text=text, cut=cut)
                else:
                    entry["preview"] = preview(path, result.mime_type)
            (logs if result.result_id in LOGS else results).append(entry)
        # Pictures first, then what reads as text, then summaries (FITS) and the rest: the
        # declared order within each.
        order = {"image": 0, "json": 1, "text": 1, "fits": 2}
        results.sort(key=lambda entry: order.get(entry["preview"].kind, 3))
        elapsed = None
        if job.start_time is not None:
            elapsed = ((job.end_time or utcnow()) - job.start_time).total_seconds()
        active = job.phase in ACTIVE_PHASES
        return {
            "job": job, "activity": jobs.activity(job.activity), "rest_url": rest,
            "prov_votable_url": f"{root_url()}/provsap?" + urlencode(
                {"ID": f"opus:act-{job.job_id}", "DEPTH": "ALL",
                 "RESPONSEFORMAT": "application/x-votable+xml"}),
            "results": results, "logs": sorted(logs, key=lambda e: e["result"].result_id,
                                               reverse=True),
            "quote": jobs.quote(job), "elapsed": elapsed,
            "running": job.phase == Phase.EXECUTING,
            "wait_url": f"{rest}?WAIT={WAIT_SECONDS}&PHASE={job.phase}" if active else None,
            "references": jobs.reference_hrefs(job, rest),
            "may_change": may_change(job), "ended": job.phase in END_PHASES,
            "can_run": job.phase == Phase.PENDING,
            "can_abort": job.phase in ABORTABLE_PHASES and job.phase != Phase.PENDING,
            "final": job.phase in FINAL_PHASES, "destruction_error": None,
            "destruction_value": job.destruction.strftime("%Y-%m-%dT%H:%M")
            if job.destruction else "",
        }

    def job_route(method: str, path: str, operation: Operation) -> Callable[[F], F]:
        return on_page(app, method, path, operation)

    @job_route("GET", f"{UI}/jobs/<job_id>", page_operation(
        "jobPage", "the job: live phase, parameters, results, logs and buttons", 403, 404,
        parameters=(JOB_ID,)))
    def job_page(job_id: str) -> HTTPResponse:
        return pages.respond("job.html", **job_view(jobs.find(identity(), job_id)))

    @job_route("POST", f"{UI}/jobs/<job_id>/phase", page_operation(
        "jobPhaseAction", "run or abort the job (303 to its page)", 400, 401, 403, 404,
        page=False, see_other=True, parameters=(JOB_ID,), body=form_body({
            "type": "object", "required": ["PHASE"],
            "properties": {"PHASE": {"type": "string", "enum": ["RUN", "ABORT"]}}})))
    def phase_action(job_id: str) -> HTTPResponse:
        job = jobs.find(identity(), job_id, with_results=False)
        jobs.phase_action(identity(), job.activity, job.job_id,
                          required("PHASE", submitted_parameters()))
        return see_other(page_url(job.job_id))

    @job_route("POST", f"{UI}/jobs/<job_id>/destruction", page_operation(
        "jobDestruction", "change when the job is destroyed (303 to its page)", 400, 401,
        403, 404, page=False, see_other=True, parameters=(JOB_ID,), body=form_body({
            "type": "object", "required": ["DESTRUCTION"],
            "properties": {"DESTRUCTION": {"type": "string"}}})))
    def destruction(job_id: str) -> HTTPResponse:
        job = jobs.find(identity(), job_id, with_results=False)
        value = required("DESTRUCTION", submitted_parameters())
        try:
            jobs.set_destruction(identity(), job.activity, job.job_id, value)
        except ParameterError as error:
            view = job_view(jobs.find(identity(), job_id))
            view.update(destruction_error=error.message, destruction_value=value)
            return pages.respond("job.html", 400, **view)
        return see_other(page_url(job.job_id))

    @job_route("POST", f"{UI}/jobs/<job_id>/delete", page_operation(
        "jobDelete", "delete the job (303 to the job list)", 401, 403, 404, page=False,
        see_other=True, parameters=(JOB_ID,), body=form_body({"type": "object"},
                                                            required=False)))
    def delete(job_id: str) -> HTTPResponse:
        job = jobs.find(identity(), job_id, with_results=False)
        jobs.delete(identity(), job.activity, job.job_id)
        return see_other(f"{root_url()}{UI}/jobs")
