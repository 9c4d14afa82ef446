"""The OpenAPI 3.1 description of OPUS, served at ``GET /openapi.json``.

It is built per request from the routes the application really has and from the activity
registry, so it always matches the running server. Each route declares its operation
beside its handler (:func:`opus.web.routing.route`); this module only assembles them:

- the generic UWS routes (``/rest/<activity>...``, operations marked ``per_activity``)
  are spelled out per activity (``/rest/sleep``, ``/rest/sleep/{job_id}``, ...), so the
  job-creation request bodies carry that activity's parameters as a JSON Schema
  (:mod:`opus.web.openapi_schemas`), with its file inputs and an example;
- ``POST /internal/jobs/{job_id}/report`` is deliberately not described: it is the runner's
  callback, authenticated by a per-job secret only the runner holds, and not an interface
  for clients. Every other route must have an operation: :func:`undocumented` lists those
  that have none, and ``tests/test_json.py`` checks it is empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any

import bottle
from bottle import HTTPResponse

from opus.activities.model import ActivityDescription
from opus.activities.registry import ActivityRegistry
from opus.web.http import root_url
from opus.web.openapi_schemas import (
    COMMON_RESPONSES,
    COMMON_SCHEMAS,
    JSON,
    SERVICE,
    activity_name_schema,
    activity_schemas,
    component_key,
    ok,
    responses,
)
from opus.web.routing import Operation, Part, PerActivity, route

#: Routes that are no part of the public interface (see the module docstring).
INTERNAL_PREFIXES = ("/internal/",)
_RULE_PARAMETER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>")


def install(app: bottle.Bottle, registry: ActivityRegistry) -> None:
    """Add ``GET /openapi.json`` to ``app``."""

    @route(app, "GET", "/openapi.json", operation=Operation(
        "openapi", "this document", responses(ok("OpenAPI 3.1", {JSON: {"type": "object"}})),
        tags=SERVICE))
    def openapi_document() -> HTTPResponse:
        document = build(registry, root_url(), app.routes)
        return HTTPResponse(body=json.dumps(document, indent=1) + "\n",
                            headers={"Content-Type": JSON})


def openapi_path(rule: str) -> str:
    """The OpenAPI path template of a bottle rule (``<job_id>`` -> ``{job_id}``)."""
    return _RULE_PARAMETER.sub(r"{\1}", rule)


def operation_of(route_: bottle.Route) -> Operation | None:
    """The operation a route was declared with (:func:`opus.web.routing.route`)."""
    operation = route_.config.get("operation")
    return operation if isinstance(operation, Operation) else None


def undocumented(routes: Iterable[bottle.Route]) -> list[tuple[str, str]]:
    """(METHOD, rule) of the routes without an operation that are not internal: bugs."""
    return [(r.method, r.rule) for r in routes
            if operation_of(r) is None and not r.rule.startswith(INTERNAL_PREFIXES)]


def build(registry: ActivityRegistry | Iterable[ActivityDescription], server: str,
          routes: Iterable[bottle.Route]) -> dict[str, Any]:
    """The OpenAPI document of these routes and activities, served at ``server``."""
    activities = list(registry)
    paths: dict[str, dict[str, Any]] = {}
    job_routes: list[tuple[str, str, Operation]] = []
    for declared in routes:
        operation = operation_of(declared)
        if operation is None:  # internal (or a bug: see undocumented())
            continue
        method, path = declared.method.lower(), openapi_path(declared.rule)
        if operation.per_activity:
            if "{activity}" not in path:
                raise ValueError(f"{declared.rule}: a per-activity route has <activity>")
            job_routes.append((method, path, operation))
        else:
            paths.setdefault(path, {})[method] = operation_object(operation)
    schemas = {**COMMON_SCHEMAS,
               "ActivityName": activity_name_schema([a.name for a in activities])}
    for activity in activities:
        schemas.update(activity_schemas(activity))
        for method, path, operation in job_routes:
            concrete = path.replace("{activity}", activity.name, 1)
            paths.setdefault(concrete, {})[method] = operation_object(operation, activity)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OPUS",
            "version": _version(),
            "summary": "IVOA UWS 1.1 job server with provenance",
            "description": (
                "Each activity is a UWS 1.1 job list at /rest/{activity}. The UWS "
                "documents are XML by default; send Accept: application/json for the JSON "
                "equivalent. Single-valued job resources are text/plain, or JSON when "
                "Accept asks for application/json only. Errors keep their status and are "
                "text/plain, or JSON under the same rule."),
            "license": {"name": "BSD-3-Clause", "identifier": "BSD-3-Clause"},
        },
        "externalDocs": {"description": "IVOA UWS 1.1",
                         "url": "https://www.ivoa.net/documents/UWS/20161024/"},
        "servers": [{"url": server}],
        "tags": ([{"name": "service"}, {"name": "activities"}, {"name": "provenance"},
                  {"name": "pages", "description": "the web client: HTML pages for people"}]
                 + [{"name": f"jobs: {a.name}", "description": a.description or ""}
                    for a in activities]),
        "paths": paths,
        "components": {"schemas": schemas, "responses": COMMON_RESPONSES},
    }


def operation_object(operation: Operation, activity: ActivityDescription | None = None
                     ) -> dict[str, Any]:
    """The OpenAPI Operation Object of ``operation``; a per-activity one for ``activity``."""

    def part(value: Part | PerActivity) -> Part:
        if callable(value):
            assert activity is not None, operation.operation_id
            return value(activity)
        return value

    operation_id, summary, tags = operation.operation_id, operation.summary, operation.tags
    if operation.per_activity:
        if activity is None:
            raise ValueError(f"{operation_id} is spelled out per activity")
        operation_id = f"{component_key(activity)}.{operation_id}"
        summary = summary.replace("{activity}", activity.name)
        tags = (f"jobs: {activity.name}", *tags)
    document: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    description: str | Callable[[ActivityDescription], str] | None = operation.description
    if callable(description):
        assert activity is not None
        description = description(activity)
    if description is not None:
        document["description"] = description
    document["tags"] = list(tags)
    parameters: Sequence[Part | PerActivity] = operation.parameters
    if parameters:
        document["parameters"] = [part(parameter) for parameter in parameters]
    if operation.request_body is not None:
        document["requestBody"] = part(operation.request_body)
    document["responses"] = operation.responses
    if operation.deprecated:
        document["deprecated"] = True
    return document


def _version() -> str:
    try:
        return metadata.version("opus")
    except metadata.PackageNotFoundError:
        return "0.0.0"
