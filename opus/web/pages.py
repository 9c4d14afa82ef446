"""The web client: pages for people, beside the UWS resources for programs.

People get HTML under paths of their own, ``/ui/...``; ``GET /`` sends a browser (an
``Accept`` that prefers ``text/html`` to JSON) there and programs keep the JSON index. The
UWS resources are not negotiated to HTML: a UWS client sending a browser-like ``Accept``
still gets the UWS XML, the JSON forms stay as they are, and no page URL is part of the UWS
interface. The pages call the same services as the UWS routes (:class:`JobService`), so
their rules, limits and access checks are the same.

==================================  ===========================================================
``GET /ui/``                        home: the service, its activities, the API documents
``GET /ui/static/{file}``           the client's CSS and script (nothing from elsewhere)
``GET|POST /ui/activities/{name}``  the activity's form (:mod:`opus.web.forms`); a POST
                                    creates the job (303 to its page) or shows the form again,
                                    the message beside the field; ``?from=JOB`` prefills it
                                    with that job's parameters ("run again")
``GET /ui/jobs``                    the caller's jobs, newest first, filtered, paged
``/ui/jobs/{job_id}...``            the job page and its buttons (:mod:`opus.web.job_pages`)
``GET /ui/provenance``              the provenance graph (the SVG of ``/provsap``), its
                                    controls and downloads
``GET /ui/provenance/node``         where a node of that SVG links: the job page of a run,
                                    else the graph around the node
``GET|POST /ui/signin``,            the session cookie (:mod:`opus.web.sessions`)
``POST /ui/signout``
==================================  ===========================================================

Every page is declared with an OpenAPI operation tagged ``pages``: the document then lists
every URL the service answers (``tests/test_json.py`` holds every public route to it), and
a reader sees these are HTML for people. Errors on these routes are HTML pages too
(:meth:`Pages.error_page`, the ``"html"`` format of :mod:`opus.web.errors`).
"""

from __future__ import annotations

import datetime as dt
from importlib import metadata
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import bottle
from bottle import HTTPResponse, request

from opus.auth import ANONYMOUS
from opus.config import Settings
from opus.datalink.votable import LINKS_PATH
from opus.errors import ClientError, NotFoundError, ParameterError, PermissionDeniedError
from opus.provenance.provsap import CONTENT_TYPES, local_id, parse_query
from opus.uws import params
from opus.uws.models import Phase
from opus.uws.service import JobService
from opus.web import dataset_forms, forms, samp
from opus.web.html import HTML
from opus.web.http import (
    identity,
    query_parameters,
    root_url,
    see_other,
    single,
    submitted_parameters,
    uploaded_files,
)
from opus.web.openapi_schemas import ACTIVITY_NAME, FORM, ok, path_param, query_param, ref
from opus.web.provsap import NODE_PAGE
from opus.web.routing import Operation, Part, route
from opus.web.sessions import COOKIE, CSRF_FIELD, STALE, Sessions, session_csrf, signed_in
from opus.web.templates import STATIC_DIR, Markup, render

F = TypeVar("F", bound=Callable[..., Any])

UI = "/ui"
PAGES = ("pages",)
PAGE = {"text/html": {"type": "string"}}
#: Jobs per page of the job list.
PAGE_SIZE = 25
#: What the pages allow themselves (no inline script, nothing from other sites).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The provenance downloads of the provenance view: label -> RESPONSEFORMAT.
PROVENANCE_FORMATS = (("PROV-JSON", "json"), ("PROV-XML", "xml"), ("PROV-N", "provn"),
                      ("PROV-VOTABLE", "votable"), ("SVG", "svg"), ("PNG", "png"))


def page_operation(operation_id: str, summary: str, *errors: int, page: bool = True,
                   see_other: bool = False, parameters: tuple[Part, ...] = (),
                   body: Part | None = None) -> Operation:
    """The operation of a page route: HTML answers (the errors too)."""
    answers: dict[str, Any] = {"200": ok("the page", PAGE)} if page else {}
    if see_other:
        answers["303"] = ref("responses", "SeeOther")
    for status in errors:
        answers[str(status)] = ok("what went wrong, as a page", PAGE)
    return Operation(operation_id, summary, answers, tags=PAGES, parameters=parameters,
                     request_body=body)


FORM_POST = {"required": True, "content": {FORM: {"schema": {"type": "object"}}}}
ACTIVITY_POST = {"required": True, "content": {
    FORM: {"schema": {"type": "object"}},
    "multipart/form-data": {"schema": {"type": "object"}}}}


def on_page(app: bottle.Bottle, method: str, path: str, operation: Operation
            ) -> Callable[[F], F]:
    """Declare a page route: errors as HTML pages, forms acting with the session cookie."""
    return route(app, method, path, operation=operation, errors="html", session=True)


class Pages:
    """What every page needs: the services it calls and the layout around it."""

    def __init__(self, jobs: JobService, sessions: Sessions, settings: Settings) -> None:
        self.jobs = jobs
        self.registry = jobs.registry
        self.sessions = sessions
        self.settings = settings
        try:
            self.version = metadata.version("opus")
        except metadata.PackageNotFoundError:
            self.version = "dev"
        # The pages' scripts may reach the user's SAMP hub (opus/web/samp.py), nothing else.
        hub = samp.connect_source(settings.samp_hub_url)
        self.headers = dict(SECURITY_HEADERS)
        if hub:
            self.headers["Content-Security-Policy"] += f"; connect-src 'self' {hub}"

    def cookie_path(self) -> str:
        return request.script_name or "/"

    def urls(self) -> dict[str, str]:
        root = root_url()
        return {"root": root, "ui": f"{root}{UI}", "static": f"{root}{UI}/static"}

    def respond(self, template: str, status: int = 200, **context: Any) -> HTTPResponse:
        """The page ``template`` in the site's layout, for the caller of this request."""
        user = request.environ.get("opus.identity") or ANONYMOUS  # None: not resolved
        here = request.path  # below the application's root
        if request.query_string:
            here += f"?{request.query_string}"
        body = render(template, **self.urls(), user=user, version=self.version, here=here,
                      signed_in=signed_in(request.environ), csrf_field=CSRF_FIELD,
                      csrf=session_csrf(request.environ),
                      samp_hub=self.settings.samp_hub_url, **context)
        response = HTTPResponse(body=body, status=status,
                                headers={"Content-Type": HTML, **self.headers})
        if request.environ.get(STALE):
            self.sessions.sign_out(response, self.cookie_path())
        return response

    def error_page(self, message: str, status: int) -> HTTPResponse:
        """The ``"html"`` error format of :mod:`opus.web.errors`."""
        response = self.respond("error.html", status, message=message, code=status)
        if status == 401 and request.get_cookie(COOKIE):
            self.sessions.sign_out(response, self.cookie_path())
        return response


def install(app: bottle.Bottle, pages: Pages) -> None:
    """Add the pages to ``app`` (the job pages: :func:`opus.web.job_pages.install`)."""
    jobs, registry, respond = pages.jobs, pages.registry, pages.respond

    def page_route(method: str, path: str, operation: Operation) -> Callable[[F], F]:
        return on_page(app, method, path, operation)

    @page_route("GET", f"{UI}/", page_operation("home", "the web client's home page"))
    def home() -> HTTPResponse:
        return respond("home.html", activities=list(registry), links_path=LINKS_PATH)

    @page_route("GET", UI, page_operation("homeRedirect", "303 to the home page", page=False,
                                          see_other=True))
    def home_redirect() -> HTTPResponse:
        return see_other(f"{root_url()}{UI}/")

    @page_route("GET", f"{UI}/static/<filename:path>", Operation(
        "static", "a stylesheet or script of the web client",
        {"200": ok("the file", {"text/css": {"type": "string"},
                                "text/javascript": {"type": "string"}}),
         "404": ok("no such file", {"text/plain": {"type": "string"}})}, tags=PAGES,
        parameters=(path_param("filename", {"type": "string"}),)))
    def static(filename: str) -> HTTPResponse:
        response: HTTPResponse = bottle.static_file(filename, root=str(STATIC_DIR))
        response.set_header("Cache-Control", "public, max-age=3600")
        return response

    def activity_page(name: str, status: int = 200,
                      dataset: dataset_forms.DatasetForm | None = None,
                      **state: Any) -> HTTPResponse:
        activity = registry.get(name)
        action = f"{root_url()}{UI}/activities/{activity.name}"
        form = forms.form_element(activity, action, hidden={
            CSRF_FIELD: session_csrf(request.environ)} if signed_in(request.environ)
            else None, **state)
        return respond("activity.html", status, activity=activity, form=Markup(form),
                       dataset=dataset,
                       error=state.get("error"), invalid=state.get("invalid"),
                       field_id=forms.field_id(activity, state.get("invalid")))

    @page_route("GET", f"{UI}/activities/<name>", page_operation(
        "activityPage", "the activity and its form (prefilled from a job, or a dataset)",
        400, 404, 503,
        parameters=(ACTIVITY_NAME, query_param(
            "from", {"type": "string"}, "a job whose parameters fill the form"),
            *dataset_forms.DATASET_PARAMETERS)))
    def activity_form(name: str) -> HTTPResponse:
        items = query_parameters()
        source = single("from", items)
        if not source and dataset_forms.names_a_dataset(items):
            found = dataset_forms.dataset_form(registry.get(name), items, pages.settings)
            if found is not None:
                return activity_page(name, values=found.form, dataset=found)
        if not source:
            return activity_page(name)
        job = jobs.find(identity(), source, with_results=False)
        if job.activity != registry.get(name).name:
            raise NotFoundError(f"job {source} is not a {name} job")
        values = {key: value for key, value in job.parameters.items()
                  if not value.startswith("param:")}  # an upload is sent again, as a file
        values.update(RUNID=job.run_id or "", PHASE="RUN")
        return activity_page(name, values=values)

    @page_route("POST", f"{UI}/activities/<name>", page_operation(
        "activitySubmit", "create a job from the form (303 to its page; 400: the form "
                          "again, with the message)", 400, 401, 403, 404, 413, page=False,
        see_other=True, parameters=(ACTIVITY_NAME,), body=ACTIVITY_POST))
    def activity_submit(name: str) -> HTTPResponse:
        activity = registry.get(name)
        items = [(k, v) for k, v in submitted_parameters() if k != CSRF_FIELD]
        uploads = uploaded_files(named_only=True)
        try:
            job = jobs.create(identity(), activity.name,
                              forms.form_parameters(activity, items, list(uploads)), uploads)
        except ClientError as error:
            if error.status != 400:
                raise
            invalid = error.parameter if isinstance(error, ParameterError) else None
            return activity_page(name, 400, values=dict(items), error=error.message,
                                 invalid=invalid)
        return see_other(f"{root_url()}{UI}/jobs/{job.job_id}")

    @page_route("GET", f"{UI}/jobs", page_operation(
        "jobListPage", "the caller's jobs, newest first", 400, 404, parameters=(
            query_param("phase", {"type": "string"}, "only jobs in this phase"),
            query_param("activity", {"type": "string"}, "only jobs of this activity"),
            query_param("after", {"type": "string", "format": "date"},
                        "only jobs created on or after this day (UTC)"),
            query_param("before", {"type": "string", "format": "date"},
                        "only jobs created on or before this day (UTC)"),
            query_param("older", {"type": "integer"}, "the page after this position"),
            query_param("newer", {"type": "integer"}, "the page before this position"))))
    def job_list() -> HTTPResponse:
        items = query_parameters()
        filters = {key: (single(key, items) or "").strip()
                   for key in ("phase", "activity", "after", "before")}
        query: dict[str, Any] = {"size": PAGE_SIZE}
        if filters["phase"]:
            query["phases"] = params.parse_phases([filters["phase"]])
        if filters["activity"] and filters["activity"] not in registry:
            raise ParameterError("activity", f"no activity {params.shown(filters['activity'])}")
        if filters["after"]:
            query["created_after"] = params.parse_datetime("after", filters["after"])
        if filters["before"]:
            query["created_before"] = (params.parse_datetime("before", filters["before"])
                                       + dt.timedelta(days=1))
        for cursor in ("older", "newer"):
            text = single(cursor, items)
            if text:
                query[cursor] = params.parse_int(cursor, text, minimum=0,
                                                 maximum=params.INT_MAX)
        found = jobs.browse(identity(), filters["activity"] or None, **query)
        kept = {key: value for key, value in filters.items() if value}
        base = f"{root_url()}{UI}/jobs"
        older = f"{base}?{urlencode({**kept, 'older': found.older})}" if found.older else None
        newer = f"{base}?{urlencode({**kept, 'newer': found.newer})}" if found.newer else None
        newest = f"{base}?{urlencode(kept)}" if "older" in query or "newer" in query else None
        return respond("jobs.html", page=found, filters=filters, phases=list(Phase),
                       activity_names=registry.names(), older_url=older, newer_url=newer,
                       newest_url=newest)

    def provsap_url(ids: tuple[str, ...], depth: str, direction: str, fmt: str) -> str:
        query = [("ID", f"opus:{node}") for node in ids]
        query += [("DEPTH", depth), ("DIRECTION", direction),
                  ("RESPONSEFORMAT", CONTENT_TYPES[fmt].split(";")[0])]  # type: ignore[index]
        return f"{root_url()}/provsap?{urlencode(query)}"

    @page_route("GET", f"{UI}/provenance", page_operation(
        "provenancePage", "the provenance graph of a job or product", 400, parameters=(
            query_param("ID", {"type": "string"}, "an entity, activity or job id",
                        required=True),
            query_param("DEPTH", {"type": "string"}, "relations to follow, or ALL"),
            query_param("DIRECTION", {"type": "string", "enum": ["BACK", "FORTH"]},
                        "BACK to the progenitors, FORTH to the descendants"))))
    def provenance_page() -> HTTPResponse:
        items = [(k, v) for k, v in query_parameters()
                 if k.upper() in {"ID", "DEPTH", "DIRECTION"}]
        query = parse_query(items, pages.settings.provenance_namespace)
        explicit = single("DIRECTION", [(k.upper(), v) for k, v in items])
        direction = query.direction if explicit else (
            "FORTH" if query.ids[0].startswith("act-") else "BACK")
        depth = "ALL" if query.depth is None else str(query.depth)
        job_id = query.ids[0][4:] if query.ids[0].startswith("act-") else None
        return respond(
            "provenance.html", ids=query.ids, depth=depth, direction=direction,
            job_id=job_id, svg_url=provsap_url(query.ids, depth, direction, "svg"),
            downloads=[(label, provsap_url(query.ids, depth, direction, fmt))
                       for label, fmt in PROVENANCE_FORMATS])

    @page_route("GET", f"{UI}/provenance/node", page_operation(
        "provenanceNode", "303 to the job page of a run, else to the graph around the node",
        400, page=False, see_other=True, parameters=(
            query_param("ID", {"type": "string"}, "a node of the record", required=True),)))
    def provenance_node() -> HTTPResponse:
        text = single("ID", [(k.upper(), v) for k, v in query_parameters()])
        if not text or not text.strip():
            raise ParameterError("ID", "required: the identifier of a provenance node")
        node = local_id(text, pages.settings.provenance_namespace)
        if node.startswith("act-"):
            try:
                job = jobs.find(identity(), node[4:], with_results=False)
                return see_other(f"{root_url()}{UI}/jobs/{job.job_id}")
            except (NotFoundError, PermissionDeniedError):
                pass  # a run whose job is gone (or is not the caller's): its record
        return see_other(f"{root_url()}{UI}/provenance?ID={quote('opus:' + node)}")

    @page_route("GET", f"{UI}/signin", page_operation(
        "signInPage", "the sign-in form", parameters=(
            query_param("next", {"type": "string"}, "the page to go to afterwards"),)))
    def sign_in_page() -> HTTPResponse:
        return respond("signin.html", next=_page_path(single("next", query_parameters())),
                       error=None)

    @route(app, "POST", f"{UI}/signin", operation=page_operation(
        "signIn", "sign in with a token (a session cookie; 303 to the next page)", 401, 403,
        page=False, see_other=True, body=FORM_POST), errors="html")
    def sign_in() -> HTTPResponse:
        pages.sessions.check_origin(request)  # this route ignores cookies: see sessions.py
        values = submitted_parameters()
        target = _page_path(single("next", values)) or f"{UI}/jobs"
        response = see_other(f"{root_url()}{target}")
        try:
            pages.sessions.sign_in(response, single("token", values) or "", pages.cookie_path())
        except ClientError as error:
            if error.status != 401:
                raise
            return respond("signin.html", 401, next=target, error=(
                "this token is not valid: check that all of it was copied; it may have "
                "expired or been revoked"))
        return response

    @page_route("POST", f"{UI}/signout", page_operation(
        "signOut", "forget the session cookie (303 to the home page)", 401, 403, page=False,
        see_other=True, body=FORM_POST))
    def sign_out() -> HTTPResponse:
        response = see_other(f"{root_url()}{UI}/")
        pages.sessions.sign_out(response, pages.cookie_path())
        return response


def _page_path(value: str | None) -> str | None:
    """``value`` if it is the path of a page (``/ui/...``, below this application's root,
    where the redirect goes): never another site."""
    if not value or not (value == UI or value.startswith(f"{UI}/")):
        return None
    if "\\" in value or any(ord(c) < 33 or ord(c) == 127 for c in value):
        return None
    return value
