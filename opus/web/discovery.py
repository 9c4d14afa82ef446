"""Discovery, forms and DataLink routes: how people and VO clients find and call activities.

==================================  ===========================================================
``GET /activities``                 the activities, JSON (default) or HTML (when ``Accept``
                                    prefers ``text/html``, as browsers do)
``GET /activities/{name}``          the ActivityDescription VOTable
``GET|POST /activities/{name}/form``  the HTML form (:mod:`opus.web.forms`); a POST creates
                                    the job and answers 303 to it, or 400 with the form again
``GET /activities/{name}/datalink`` the DataLink 1.1 service descriptor
                                    (:mod:`opus.activities.datalink`)
``GET /capabilities``               VOSI 1.1 capabilities (:mod:`opus.web.vosi`)
``GET /availability``               VOSI 1.1 availability
``GET /jdl/{name}[/votable]``       the description, for clients of the older OPUS
==================================  ===========================================================

Handlers raise :mod:`opus.errors` exceptions like the UWS routes, answered by
:mod:`opus.web.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import bottle
from bottle import HTTPResponse

from opus.activities import datalink
from opus.activities.model import ActivityDescription
from opus.activities.registry import ActivityRegistry
from opus.activities.votable import write_activity
from opus.auth import Authenticator
from opus.errors import ClientError, ParameterError
from opus.uws.service import JobService
from opus.web import dataset_forms, forms, vosi
from opus.web.html import HTML, activity_list
from opus.web.http import (
    identity,
    prefers,
    query_parameters,
    root_url,
    see_other,
    submitted_parameters,
    uploaded_files,
)
from opus.web.openapi_schemas import (
    ACTIVITIES,
    ACTIVITY_NAME,
    FORM,
    SERVICE,
    ok,
    ref,
    responses,
)
from opus.web.routing import Operation, route

VOTABLE = "application/x-votable+xml"
JSON = "application/json"
VOTABLE_OK = ok("the VOTable", {VOTABLE: {"type": "string"}})
#: An HTML page in OpenAPI (whatever its charset).
PAGE = {"text/html": {"type": "string"}}


def wants_html() -> bool:
    """Whether the client prefers HTML to JSON; programs (no Accept, ``*/*``) get JSON."""
    return prefers("text/html", JSON)


def activity_entry(activity: ActivityDescription, root: str) -> dict[str, object]:
    """What ``/activities`` says about one activity."""
    base = f"{root}/activities/{activity.name}"
    return {
        "name": activity.name,
        "description": activity.description,
        "version": activity.version,
        "type": activity.type,
        "subtype": activity.subtype,
        "parameters": [p.name for p in activity.parameters],
        "links": {
            "jobs": f"{root}/rest/{activity.name}",
            "description": base,
            "form": f"{base}/form",
            "datalink": f"{base}/datalink",
        },
    }


def _votable(body: bytes) -> HTTPResponse:
    return HTTPResponse(body=body, headers={"Content-Type": VOTABLE})


def install(app: bottle.Bottle, registry: ActivityRegistry, service: JobService,
            authenticator: Authenticator,
            scheduler_problem: Callable[[], str | None] = lambda: None) -> None:
    """Add the discovery, form and DataLink routes to ``app``; ``authenticator`` says which
    authentication schemes ``/capabilities`` lists; ``scheduler_problem`` why jobs cannot
    run now (no active scheduler), which ``/availability`` reports."""

    @route(app, "GET", "/activities", operation=Operation(
        "listActivities", "the activities: JSON, or HTML when Accept prefers text/html",
        responses(ok("the activities", {
            JSON: {"type": "array", "items": ref("schemas", "ActivityEntry")},
            **PAGE})), tags=ACTIVITIES))
    def list_activities() -> HTTPResponse:
        entries = [activity_entry(activity, root_url()) for activity in registry]
        if wants_html():
            body, content_type = activity_list(entries), HTML
        else:
            body, content_type = json.dumps(entries, indent=2) + "\n", JSON
        return HTTPResponse(body=body, headers={"Content-Type": content_type,
                                                "Vary": "Accept"})

    @route(app, "GET", "/activities/<name>", operation=Operation(
        "getActivity", "the ActivityDescription VOTable", responses(VOTABLE_OK, 404),
        tags=ACTIVITIES, parameters=(ACTIVITY_NAME,)))
    @route(app, "GET", "/jdl/<name>", operation=Operation(
        "getJdl", "the ActivityDescription VOTable (for clients of the older OPUS)",
        responses(VOTABLE_OK, 404), tags=ACTIVITIES, parameters=(ACTIVITY_NAME,),
        deprecated=True))
    @route(app, "GET", "/jdl/<name>/votable", operation=Operation(
        "getJdlVotable", "the ActivityDescription VOTable (for clients of the older OPUS)",
        responses(VOTABLE_OK, 404), tags=ACTIVITIES, parameters=(ACTIVITY_NAME,),
        deprecated=True))
    def description(name: str) -> HTTPResponse:
        return _votable(write_activity(registry.get(name)))

    @route(app, "GET", "/activities/<name>/datalink", operation=Operation(
        "getServiceDescriptor", "the DataLink 1.1 service descriptor of the activity",
        responses(VOTABLE_OK, 400, 404, 503), tags=ACTIVITIES,
        parameters=(ACTIVITY_NAME, *dataset_forms.DATASET_PARAMETERS)))
    def service_descriptor(name: str) -> HTTPResponse:
        activity = registry.get(name)
        items = query_parameters()
        found = dataset_forms.dataset_form(activity, items, service.settings) \
            if dataset_forms.names_a_dataset(items) else None
        return _votable(datalink.service_descriptor(
            activity, f"{root_url()}/rest/{activity.name}",
            found.values if found is not None else None))

    def form_page(activity: ActivityDescription, status: int = 200, **state: object
                  ) -> HTTPResponse:
        action = f"{root_url()}/activities/{activity.name}/form"
        body = forms.render_form(activity, action, **state)  # type: ignore[arg-type]
        return HTTPResponse(body=body, status=status, headers={"Content-Type": HTML})

    @route(app, "GET", "/activities/<name>/form", operation=Operation(
        "getForm", "the HTML form that creates a job",
        responses(ok("the form", PAGE), 400, 404, 503), tags=ACTIVITIES,
        parameters=(ACTIVITY_NAME, *dataset_forms.DATASET_PARAMETERS)))
    def form(name: str) -> HTTPResponse:
        activity, items = registry.get(name), query_parameters()
        found = dataset_forms.dataset_form(activity, items, service.settings) \
            if dataset_forms.names_a_dataset(items) else None
        if found is None:
            return form_page(activity)
        return form_page(activity, values=found.form, dataset=found.dataset.rows())

    @route(app, "POST", "/activities/<name>/form", operation=Operation(
        "submitForm", "create a job from the HTML form (303 to it, or 400 with the form)",
        {**responses(None, see_other=True),
         "400": ok("the form again, with the error", PAGE),
         **responses(None, 404, 413, 429)},
        tags=ACTIVITIES, parameters=(ACTIVITY_NAME,), request_body={
            "required": True, "content": {FORM: {"schema": {"type": "object"}},
                                          "multipart/form-data": {"schema": {
                                              "type": "object"}}}}))
    def submit_form(name: str) -> HTTPResponse:
        activity = registry.get(name)
        items = submitted_parameters()
        uploads = uploaded_files(named_only=True)
        values = {key: value for key, value in items}
        try:
            job = service.create(identity(), activity.name,
                                 forms.form_parameters(activity, items, list(uploads)),
                                 uploads)
        except ClientError as error:
            if error.status != 400:
                raise
            invalid = error.parameter if isinstance(error, ParameterError) else None
            return form_page(activity, 400, values=values, error=error.message,
                             invalid=invalid)
        return see_other(f"{root_url()}/rest/{activity.name}/{job.job_id}")

    @route(app, "GET", "/capabilities", operation=Operation(
        "capabilities", "VOSI 1.1 capabilities",
        responses(ok("the capabilities", {"text/xml": {"type": "string"}})), tags=SERVICE))
    def capabilities() -> HTTPResponse:
        body = vosi.capabilities(root_url(), ((a.name, a.description) for a in registry),
                                 authenticator.security_methods)
        response = HTTPResponse(body=body, headers={"Content-Type": vosi.XML_CONTENT_TYPE})
        if identity().anonymous:  # SSO 2.x WD 2.2: 200 with challenges, auth is optional
            for challenge in authenticator.challenges:
                response.add_header("WWW-Authenticate", challenge)
        return response

    @route(app, "GET", "/availability", operation=Operation(
        "availability", "VOSI 1.1 availability",
        responses(ok("the availability", {"text/xml": {"type": "string"}})), tags=SERVICE))
    def availability() -> HTTPResponse:
        # VOSI 1.1 section 2.2: available=false, with a note saying why, while a job sent
        # now would not run (no scheduler alive).
        problem = scheduler_problem()
        return HTTPResponse(body=vosi.availability(problem is None, problem),
                            headers={"Content-Type": vosi.XML_CONTENT_TYPE})
