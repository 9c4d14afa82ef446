"""The WSGI application: ``create_app(settings)`` wires store, registry and routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import bottle

from opus.activities.registry import ActivityRegistry
from opus.auth import Authenticator
from opus.config import Settings, load_settings
from opus.db import make_engine
from opus.provenance import routes as provenance_routes
from opus.provenance import search_routes as provenance_search_routes
from opus.provenance import template_routes as provenance_template_routes
from opus.uws import routes
from opus.uws.events import JobEvents, make_events
from opus.uws.service import JobService
from opus.uws.store import JobStore
from opus.web import links as datalink_links
from opus.web import openapi
from opus.web import routes as web_routes

log = logging.getLogger("opus")


@dataclass
class Services:
    """The long-lived objects of one process, shared by the web app and the scheduler."""

    settings: Settings
    store: JobStore
    events: JobEvents
    registry: ActivityRegistry
    jobs: JobService


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings.effective_database_url)
    events = make_events(engine, settings.run_dir)
    store = JobStore(engine, events)
    registry = ActivityRegistry.load(settings.activities_dir)
    for path, problem in registry.problems.items():
        log.error("activity description %s skipped: %s", path, problem)
    return Services(settings, store, events, registry,
                    JobService(settings, store, registry))


def _plain_error(error: bottle.HTTPError) -> str:
    """Errors bottle raises itself (unknown route, wrong method) as plain text."""
    bottle.response.content_type = "text/plain; charset=UTF-8"
    if error.status_code >= 500:
        log.error("server error: %s", error.body, exc_info=error.exception)
        return "internal server error\n"
    return f"{error.body}\n"


def create_app(settings: Settings | None = None, services: Services | None = None) -> bottle.Bottle:
    """The OPUS WSGI application for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    services = services or build_services(settings)
    app = bottle.Bottle(catchall=True)
    app.config["opus.services"] = services
    app.default_error_handler = _plain_error  # type: ignore[method-assign]
    app.install(routes.error_plugin(settings.max_body,
                                    Authenticator(services.store.engine)))
    routes.install(app, services.jobs)
    provenance_routes.install(app, services)
    provenance_search_routes.install(app, services)
    provenance_template_routes.install(app, services)
    web_routes.install(app, services.registry, services.jobs)
    openapi.install(app, services.registry)
    datalink_links.install(app, services)

    @app.get("/")
    def index() -> dict[str, object]:
        return {"service": "OPUS", "activities": services.registry.names(),
                "job_lists": {name: f"{routes.root_url()}/rest/{name}"
                              for name in services.registry.names()},
                "datalink_links": f"{routes.root_url()}{datalink_links.LINKS_PATH}"}

    return app
