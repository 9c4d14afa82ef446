"""The WSGI application: ``create_app(settings)`` wires the services into the routes.

Each route module gets the few objects it needs from :class:`opus.services.Services`;
every route's errors go through the one plugin of :mod:`opus.web.errors`.
"""

from __future__ import annotations

import bottle

from opus.config import Settings, load_settings
from opus.datalink.votable import LINKS_PATH
from opus.services import Services, build_services
from opus.web import datalink, discovery, openapi, provenance, provenance_templates, provsap
from opus.web import headers, job_pages, pages, tap, tap_async, uws
from opus.web.errors import ErrorPlugin, plain_error, text_body_limit
from opus.web.http import prefers, root_url, see_other
from opus.web.openapi_schemas import JSON, SERVICE, ok, responses
from opus.web.proxies import TrustedProxies
from opus.web.routing import Operation, route
from opus.web.sessions import Sessions


def create_app(settings: Settings | None = None,
               services: Services | None = None) -> bottle.Bottle:
    """The OPUS WSGI application for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    services = services or build_services(settings)
    app = bottle.Bottle(catchall=True)
    app.config["opus.services"] = services  # for tests and embedding applications
    app.default_error_handler = plain_error
    sessions = Sessions(services.authenticate, settings.base_url)
    web_client = pages.Pages(services.jobs, sessions, settings)
    app.install(ErrorPlugin(settings.max_body, services.authenticate,
                            base_url=settings.base_url,
                            proxies=TrustedProxies(settings.trusted_proxies),
                            identify=sessions.identify,
                            renderers={"html": web_client.error_page},
                            max_text_body=text_body_limit(settings.max_parameter_length)))
    headers.install(app)
    uws.install(app, services.jobs, services.reports)
    provsap.install(app, services.provenance, settings, services.policy)
    provenance.install(app, services.jobs, services.store, services.provenance, settings)
    provenance_templates.install(app, services.registry, services.provenance,
                                 services.policy)
    discovery.install(app, services.registry, services.jobs, services.authenticate,
                      services.scheduler_problem)
    openapi.install(app, services.registry)
    tap.install(app, services.provtap)
    tap_async.install(app, services.tap_async)
    datalink.install(app, services.store, services.provenance, services.registry,
                     services.policy)
    pages.install(app, web_client)
    job_pages.install(app, web_client)
    names = services.registry.names

    @route(app, "GET", "/", operation=Operation(
        "index", "the service and its job lists (a browser is sent to the web client)",
        responses(ok("the index", {JSON: {"type": "object"}}), see_other=True),
        tags=SERVICE))
    def index() -> object:
        root = root_url()
        bottle.response.set_header("Vary", "Accept")
        if prefers("text/html", JSON):
            return see_other(f"{root}{pages.UI}/", Vary="Accept")
        return {"service": "OPUS", "activities": names(),
                "job_lists": {name: f"{root}/rest/{name}" for name in names()},
                "datalink_links": f"{root}{LINKS_PATH}"}

    return app
