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

Handlers raise :mod:`opus.errors` exceptions like the UWS routes; the error plugin the app
installs turns them into plain-text statuses.
"""

from __future__ import annotations

import json

import bottle
from bottle import HTTPResponse, request

from opus.activities import datalink
from opus.activities.model import ActivityDescription
from opus.activities.registry import ActivityRegistry
from opus.activities.votable import write_activity
from opus.errors import ClientError, ParameterError
from opus.uws.routes import identity, root_url, see_other, submitted_parameters
from opus.uws.service import JobService
from opus.web import forms, vosi
from opus.web.html import HTML, activity_list

VOTABLE = "application/x-votable+xml"
JSON = "application/json"


def _quality(accept: str, wanted: str) -> float:
    """The q value ``accept`` gives to the media type ``wanted`` (exact, ``type/*`` or
    ``*/*``; the most specific range wins, RFC 9110 section 12.5.1)."""
    best, best_specificity = 0.0, -1
    major = wanted.split("/")[0]
    for item in accept.split(","):
        media, *params = [part.strip() for part in item.split(";")]
        media = media.lower()
        specificity = {wanted: 2, f"{major}/*": 1, "*/*": 0}.get(media)
        if specificity is None or specificity < best_specificity:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best, best_specificity = q, specificity
    return best


def wants_html() -> bool:
    """Whether the client prefers HTML to JSON; programs (no Accept, ``*/*``) get JSON."""
    accept = request.headers.get("Accept", "")
    return bool(accept) and _quality(accept, "text/html") > _quality(accept, JSON)


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


def install(app: bottle.Bottle, registry: ActivityRegistry, service: JobService) -> None:
    """Add the discovery, form and DataLink routes to ``app``."""

    @app.get("/activities")
    def list_activities() -> HTTPResponse:
        entries = [activity_entry(activity, root_url()) for activity in registry]
        if wants_html():
            body, content_type = activity_list(entries), HTML
        else:
            body, content_type = json.dumps(entries, indent=2) + "\n", JSON
        return HTTPResponse(body=body, headers={"Content-Type": content_type,
                                                "Vary": "Accept"})

    @app.get("/activities/<name>")
    @app.get("/jdl/<name>")
    @app.get("/jdl/<name>/votable")
    def description(name: str) -> HTTPResponse:
        return _votable(write_activity(registry.get(name)))

    @app.get("/activities/<name>/datalink")
    def service_descriptor(name: str) -> HTTPResponse:
        activity = registry.get(name)
        return _votable(datalink.service_descriptor(activity,
                                                    f"{root_url()}/rest/{activity.name}"))

    def form_page(activity: ActivityDescription, status: int = 200, **state: object
                  ) -> HTTPResponse:
        action = f"{root_url()}/activities/{activity.name}/form"
        body = forms.render_form(activity, action, **state)  # type: ignore[arg-type]
        return HTTPResponse(body=body, status=status, headers={"Content-Type": HTML})

    @app.get("/activities/<name>/form")
    def form(name: str) -> HTTPResponse:
        return form_page(registry.get(name))

    @app.post("/activities/<name>/form")
    def submit_form(name: str) -> HTTPResponse:
        activity = registry.get(name)
        items = submitted_parameters()
        uploads = {key: upload.file for key, upload in request.files.allitems()
                   if upload.filename}
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

    @app.get("/capabilities")
    def capabilities() -> HTTPResponse:
        body = vosi.capabilities(root_url(), ((a.name, a.description) for a in registry))
        return HTTPResponse(body=body, headers={"Content-Type": vosi.XML_CONTENT_TYPE})

    @app.get("/availability")
    def availability() -> HTTPResponse:
        return HTTPResponse(body=vosi.availability(),
                            headers={"Content-Type": vosi.XML_CONTENT_TYPE})
