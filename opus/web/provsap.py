"""``GET /provsap``: ProvSAP (:mod:`opus.provenance.provsap`) in every serialisation, of the
record as the caller may read it (:class:`opus.auth.AccessPolicy`).

In the SVG every node links to the web client's page for it (:data:`NODE_PAGE`: the job
page of a run, else the provenance view of the node)."""

from __future__ import annotations

from urllib.parse import quote

import bottle
from bottle import HTTPResponse

from opus.auth import AccessPolicy
from opus.config import Settings
from opus.provenance.provsap import (
    CONTENT_TYPES,
    FORMATS,
    parse_query,
    query_graph,
    serialize,
)
from opus.storage.provenance import ProvenanceStore
from opus.web.headers import own_document
from opus.web.http import identity, query_parameters, root_url
from opus.web.openapi_schemas import (
    BOOLEAN_TEXT,
    PROVENANCE,
    ok,
    query_param,
    responses,
)
from opus.web.routing import Operation, route

#: The web client's page of a provenance node (:mod:`opus.web.pages`), ``?ID=opus:...``.
NODE_PAGE = "/ui/provenance/node"
#: What ``GET /provsap`` answers, by RESPONSEFORMAT.
GRAPH_OK = ok("the graph", {
    "application/x-prov+json": {"type": "object"},
    "application/x-prov+xml": {"type": "string"},
    "text/provenance-notation": {"type": "string"},
    "application/x-votable+xml": {"type": "string"},
    "image/svg+xml": {"type": "string"},
    "image/png": {"type": "string", "format": "binary"}})
PROVSAP_PARAMETERS = (
    query_param("ID", {"type": "string", "minLength": 1},
                "an entity, activity or agent identifier (opus:..., or a job id)",
                required=True, repeated=True),
    query_param("DEPTH", {"type": "string", "pattern": "^([0-9]+|ALL|all)$"},
                "how many relations to follow, or ALL (default 1)"),
    query_param("DIRECTION", {"type": "string", "enum": ["BACK", "FORTH", "FORWARD"]},
                "BACK to the progenitors (default), FORTH to the descendants"),
    query_param("MODEL", {"type": "string", "enum": ["IVOA", "W3C"]},
                "IVOA ProvenanceDM (default) or plain W3C PROV"),
    query_param("RESPONSEFORMAT", {"type": "string", "enum": sorted(FORMATS)},
                "the serialisation (default PROV-JSON)"),
    *[query_param(flag, {"type": "string", "enum": sorted(BOOLEAN_TEXT)}, description)
      for flag, description in (
          ("AGENT", "include agents (default true)"),
          ("MEMBERS", "include collection members (default false)"),
          ("STEPS", "include the steps of activities (default false)"),
          ("DESCRIPTIONS", "include the description classes (default false)"),
          ("CONFIGURATION", "include parameters (default true)"))])


def install(app: bottle.Bottle, provenance: ProvenanceStore, settings: Settings,
            policy: AccessPolicy) -> None:

    @route(app, "GET", "/provsap", operation=Operation(
        "provsap", "ProvSAP: the provenance graph around entities, activities or agents",
        responses(GRAPH_OK, 400, 404, 415, 503), tags=PROVENANCE,
        parameters=PROVSAP_PARAMETERS))
    def provsap() -> HTTPResponse:
        query = parse_query(query_parameters(), settings.provenance_namespace)
        graph = query_graph(provenance, query, settings.provsap_max_nodes,
                            policy.viewer(identity()))
        root = root_url()
        body = serialize(graph, query, settings.provenance_namespace, settings.graph_timeout,
                         lambda local: f"{root}{NODE_PAGE}?ID={quote('opus:' + local)}")
        headers = {"Content-Type": CONTENT_TYPES[query.format]}
        if graph.truncated:
            headers["X-OPUS-Truncated"] = f"node cap {settings.provsap_max_nodes} reached"
        answer = HTTPResponse(body=body, headers=headers)
        # The picture is OPUS's own (graphviz from the record, every text escaped): the web
        # client embeds it and its node links navigate, so it is not sandboxed; no script
        # may run in it all the same.
        return own_document(answer) if query.format == "svg" else answer
