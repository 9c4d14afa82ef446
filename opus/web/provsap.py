"""``GET /provsap``: ProvSAP (:mod:`opus.provenance.provsap`) in every serialisation."""

from __future__ import annotations

import bottle
from bottle import HTTPResponse

from opus.config import Settings
from opus.provenance.provsap import CONTENT_TYPES, parse_query, query_graph, serialize
from opus.storage.provenance import ProvenanceStore
from opus.web.http import query_parameters


def install(app: bottle.Bottle, provenance: ProvenanceStore, settings: Settings) -> None:

    @app.get("/provsap")
    def provsap() -> HTTPResponse:
        query = parse_query(query_parameters(), settings.provenance_namespace)
        graph = query_graph(provenance, query, settings.provsap_max_nodes)
        body = serialize(graph, query, settings.provenance_namespace, settings.graph_timeout)
        headers = {"Content-Type": CONTENT_TYPES[query.format]}
        if graph.truncated:
            headers["X-OPUS-Truncated"] = f"node cap {settings.provsap_max_nodes} reached"
        return HTTPResponse(body=body, headers=headers)
