"""``/tap``: ProvTAP, a TAP 1.1 service over the provenance record (:mod:`opus.tap`).

``GET|POST /tap/sync`` runs an ADQL query for the caller (only the rows the caller may read
are in the views); ``/tap/tables`` (VOSI tables 1.1), ``/tap/capabilities`` and
``/tap/availability`` describe it, ``/tap/examples`` (DALI 1.1 section 2.3) gives the
use-case queries; ``/tap/async`` is :mod:`opus.web.tap_async`. Errors are DALI error VOTables (``errors="tap"``).

On SQLite every ``/tap`` resource but availability answers **501 Not Implemented** with
the DALI error "ProvTAP needs PostgreSQL": the request is well formed and the client can
do nothing about it (not a 4xx); the server lacks the feature, which will not come back
by retrying (not a 503). Availability says ``false`` with the same note.
"""

from __future__ import annotations

import bottle
from bottle import HTTPResponse

from opus.tap.examples import examples_document
from opus.tap.service import NEEDS_POSTGRESQL, ProvTap
from opus.tap.votable import (
    VOTABLE_MEDIA_TYPE,
    XML_CONTENT_TYPE,
    capabilities,
    error_document,
    tableset,
)
from opus.web import vosi
from opus.web.http import identity, root_url, submitted_parameters
from opus.web.openapi_schemas import PROVENANCE, VOTABLE, form_body, ok, query_param
from opus.web.routing import Operation, route

TAP = PROVENANCE


def _error(description: str) -> dict[str, object]:
    return {"description": description,
            "content": {VOTABLE: {"schema": {"type": "string"}}}}


def _responses(success: dict[str, object]) -> dict[str, object]:
    return {"200": success, "400": _error("a bad parameter or query; the message says why"),
            "501": _error("ProvTAP needs PostgreSQL (this server runs on SQLite)"),
            "503": _error("the database is not available; retry later")}


SYNC_PARAMETERS = (
    query_param("LANG", {"type": "string", "enum": ["ADQL", "ADQL-2.0"]},
                "the query language", required=True),
    query_param("QUERY", {"type": "string"}, "the ADQL query", required=True),
    query_param("REQUEST", {"type": "string", "enum": ["doQuery"]}, "doQuery (optional)"),
    query_param("MAXREC", {"type": "integer", "minimum": 0},
                "most rows to return (default and hard limit: settings)"),
    query_param("RESPONSEFORMAT", {"type": "string"}, "votable (the only format)"),
)
SYNC_BODY = form_body({"type": "object", "required": ["LANG", "QUERY"], "properties": {
    "LANG": {"type": "string"}, "QUERY": {"type": "string"}, "REQUEST": {"type": "string"},
    "MAXREC": {"type": "string"}, "RESPONSEFORMAT": {"type": "string"}}})
RESULT = ok("the result table (VOTable 1.4)", {VOTABLE: {"type": "string"}})
XML_OK = ok("the document", {"text/xml": {"type": "string"}})


def _not_available() -> HTTPResponse:
    return HTTPResponse(body=error_document(NEEDS_POSTGRESQL), status=501,
                        headers={"Content-Type": VOTABLE_MEDIA_TYPE})


def install(app: bottle.Bottle, tap: ProvTap) -> None:

    def sync() -> HTTPResponse:
        if not tap.available:
            return _not_available()
        request = tap.parse(submitted_parameters())
        return HTTPResponse(body=tap.run(identity(), request),
                            headers={"Content-Type": VOTABLE_MEDIA_TYPE})

    route(app, "GET", "/tap/sync", errors="tap", operation=Operation(
        "tapSyncGet", "ProvTAP: run an ADQL query over the provenance record",
        _responses(RESULT), tags=TAP, parameters=SYNC_PARAMETERS))(sync)
    route(app, "POST", "/tap/sync", errors="tap", operation=Operation(
        "tapSyncPost", "ProvTAP: run an ADQL query (form parameters)",
        _responses(RESULT), tags=TAP, request_body=SYNC_BODY))(sync)

    @route(app, "GET", "/tap/tables", errors="tap", operation=Operation(
        "tapTables", "ProvTAP: VOSI tables (every table and column)",
        _responses(XML_OK), tags=TAP))
    def tables() -> HTTPResponse:
        if not tap.available:
            return _not_available()
        return HTTPResponse(body=tableset(tap.tap_schema()),
                            headers={"Content-Type": XML_CONTENT_TYPE})

    @route(app, "GET", "/tap/capabilities", errors="tap", operation=Operation(
        "tapCapabilities", "ProvTAP: VOSI capabilities (TAP 1.1, ADQL 2.0, limits)",
        _responses(XML_OK), tags=TAP))
    def tap_capabilities() -> HTTPResponse:
        if not tap.available:
            return _not_available()
        return HTTPResponse(body=capabilities(f"{root_url()}/tap", tap.limits),
                            headers={"Content-Type": XML_CONTENT_TYPE})

    @route(app, "GET", "/tap/examples", errors="tap", operation=Operation(
        "tapExamples", "ProvTAP: DALI examples (the use-case queries)",
        _responses(ok("the XHTML examples", {"application/xhtml+xml": {"type": "string"}})),
        tags=TAP))
    def tap_examples() -> HTTPResponse:
        if not tap.available:
            return _not_available()
        return HTTPResponse(body=examples_document(f"{root_url()}/tap"),
                            headers={"Content-Type": "application/xhtml+xml; charset=UTF-8"})

    @route(app, "GET", "/tap/availability", errors="tap", operation=Operation(
        "tapAvailability", "ProvTAP: VOSI availability", {"200": XML_OK}, tags=TAP))
    def availability() -> HTTPResponse:
        body = vosi.availability(True) if tap.available else \
            vosi.availability(False, NEEDS_POSTGRESQL)
        return HTTPResponse(body=body, headers={"Content-Type": XML_CONTENT_TYPE})
