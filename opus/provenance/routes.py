"""HTTP access to provenance: ``/provsap`` (ProvSAP) in every serialisation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bottle
from bottle import HTTPResponse, request

from opus.errors import ClientError
from opus.provenance.document import build_document
from opus.provenance.graph import Graph
from opus.provenance.provsap import CONTENT_TYPES, ProvSapQuery, parse_query, query_graph

if TYPE_CHECKING:
    from opus.app import Services


class GraphTooLargeError(ClientError):
    """The picture of this graph could not be laid out in time."""

    status = 503


def serialize(graph: Graph, query: ProvSapQuery, namespace: str, timeout: float) -> bytes:
    """``graph`` in the query's RESPONSEFORMAT."""
    if query.format == "votable":
        from opus.provenance.votable import graph_to_votable

        return graph_to_votable(graph, namespace)
    if query.format in {"svg", "png"}:
        from opus.provenance.render import RenderError, graph_to_dot, render

        try:
            return render(graph_to_dot(graph, namespace), query.format, timeout=timeout)
        except RenderError as error:
            raise GraphTooLargeError(f"{error}; ask for a smaller DEPTH or another "
                                     f"RESPONSEFORMAT") from None
    document = build_document(graph, namespace, model=query.model,
                              descriptions=query.descriptions)
    if query.format == "provn":
        return document.get_provn().encode()
    return document.serialize(format=query.format).encode()


def install(app: bottle.Bottle, services: "Services") -> None:
    settings = services.settings

    @app.get("/provsap")
    def provsap() -> HTTPResponse:
        items = list(request.query.decode().allitems())
        query = parse_query(items, settings.provenance_namespace)
        graph = query_graph(services.store.engine, query, settings.provsap_max_nodes)
        body = serialize(graph, query, settings.provenance_namespace, settings.graph_timeout)
        headers = {"Content-Type": CONTENT_TYPES[query.format]}
        if graph.truncated:
            headers["X-OPUS-Truncated"] = f"node cap {settings.provsap_max_nodes} reached"
        return HTTPResponse(body=body, headers=headers)
