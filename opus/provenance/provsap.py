"""ProvSAP: the provenance of one or more nodes, in the format asked for.

Parameters (IVOA ProvSAP working draft): ID (repeatable: an entity, an activity — or the
UWS job id it ran as — or an agent), DEPTH (integer >= 0 or ALL), DIRECTION (BACK or FORTH;
FORWARD is accepted for FORTH), MODEL (IVOA or W3C), AGENT, MEMBERS, STEPS, DESCRIPTIONS,
CONFIGURATION (booleans), RESPONSEFORMAT. A bad value is a 400 that names the parameter;
an unknown format a 415.

The graph is the caller's view of the record (:class:`opus.auth.Viewer`): the runs and
entities they may read, and the agents attached to them. Another owner's nodes are left
out, not drawn as placeholders: a placeholder would still say that somebody ran something on
your published product, and when. An ID the caller may not read is a 404, worded as for an
ID that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from opus.auth import Viewer
from opus.errors import (
    NotFoundError,
    ParameterError,
    ServiceUnavailableError,
    UnsupportedFormatError,
)
from opus.provenance.document import build_document
from opus.provenance.graph import Graph
from opus.storage.provenance import ProvenanceStore

#: The serialisations ProvSAP answers in.
Format = Literal["json", "xml", "provn", "votable", "svg", "png"]
#: RESPONSEFORMAT values (MIME types and short names) -> internal format name.
FORMATS: dict[str, Format] = {
    "application/x-prov+json": "json", "application/json": "json", "json": "json",
    "prov-json": "json",
    "application/x-prov+xml": "xml", "application/xml": "xml", "xml": "xml",
    "prov-xml": "xml",
    "text/provenance-notation": "provn", "provn": "provn", "prov-n": "provn",
    "application/x-votable+xml": "votable", "votable": "votable", "prov-votable": "votable",
    "image/svg+xml": "svg", "svg": "svg", "prov-svg": "svg",
    "image/png": "png", "png": "png", "prov-png": "png",
}
CONTENT_TYPES: dict[Format, str] = {
    "json": "application/x-prov+json", "xml": "application/x-prov+xml",
    "provn": "text/provenance-notation; charset=UTF-8",
    "votable": "application/x-votable+xml", "svg": "image/svg+xml", "png": "image/png",
}
_BOOLEAN = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
#: Longest node id looked up (the record's ids are at most 255 characters).
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class ProvSapQuery:
    ids: tuple[str, ...]
    depth: int | None = 1
    direction: str = "BACK"
    model: str = "IVOA"
    agent: bool = True
    members: bool = False
    steps: bool = False
    descriptions: bool = False
    configuration: bool = True
    format: Format = "json"


def _one(name: str, items: Sequence[tuple[str, str]]) -> str | None:
    values = [value for key, value in items if key.upper() == name]
    if len(values) > 1:
        raise ParameterError(name, "given more than once")
    return values[0].strip() if values else None


def _boolean(name: str, items: Sequence[tuple[str, str]], default: bool) -> bool:
    text = _one(name, items)
    if text is None:
        return default
    try:
        return _BOOLEAN[text.lower()]
    except KeyError:
        raise ParameterError(name, f"must be true or false (got {text!r})") from None


def parse_query(items: Sequence[tuple[str, str]], namespace: str) -> ProvSapQuery:
    """Read ProvSAP parameters (names case-insensitive, DALI 1.1 section 3.1)."""
    ids = tuple(local_id(value, namespace) for key, value in items
                if key.upper() == "ID" and value.strip())
    for node in ids:
        if len(node) > MAX_ID_LENGTH or not node.isprintable():
            raise ParameterError("ID", f"{node[:80]!r} is no identifier of this record "
                                       f"(at most {MAX_ID_LENGTH} printable characters)")
    if not ids:
        raise ParameterError("ID", "required: the identifier of an entity, activity or agent")
    depth_text = _one("DEPTH", items)
    depth: int | None = 1
    if depth_text is not None:
        if depth_text.upper() == "ALL":
            depth = None
        else:
            try:
                depth = int(depth_text)
            except ValueError:
                raise ParameterError("DEPTH", f"must be an integer >= 0 or ALL "
                                              f"(got {depth_text!r})") from None
            if depth < 0:
                raise ParameterError("DEPTH", f"must be >= 0 or ALL (got {depth})")
    direction = (_one("DIRECTION", items) or "BACK").upper()
    if direction == "FORWARD":
        direction = "FORTH"
    if direction not in {"BACK", "FORTH"}:
        raise ParameterError("DIRECTION", f"must be BACK or FORTH (got {direction!r})")
    model = (_one("MODEL", items) or "IVOA").upper()
    if model not in {"IVOA", "W3C"}:
        raise ParameterError("MODEL", f"must be IVOA or W3C (got {model!r})")
    requested = _one("RESPONSEFORMAT", items) or "application/x-prov+json"
    fmt = FORMATS.get(requested.lower())
    if fmt is None:
        raise UnsupportedFormatError(
            f"RESPONSEFORMAT: {requested!r} is not supported; use one of "
            f"{', '.join(sorted(CONTENT_TYPES.values()))}")
    return ProvSapQuery(
        ids=ids, depth=depth, direction=direction, model=model,
        agent=_boolean("AGENT", items, True), members=_boolean("MEMBERS", items, False),
        steps=_boolean("STEPS", items, False),
        descriptions=_boolean("DESCRIPTIONS", items, False),
        configuration=_boolean("CONFIGURATION", items, True), format=fmt,
    )


def local_id(value: str, namespace: str) -> str:
    """The local id of a node given as ``opus:x``, ``{namespace}x`` or ``x``; a bare UWS
    job id stands for the activity it ran as."""
    value = value.strip()
    if value.startswith(namespace):
        value = value[len(namespace):]
    elif value.startswith("opus:"):
        value = value[len("opus:"):]
    if _HEX32.match(value):
        value = f"act-{value}"
    return value


def query_graph(provenance: ProvenanceStore, query: ProvSapQuery, max_nodes: int,
                viewer: Viewer) -> Graph:
    """The graph a ProvSAP query asks for, as ``viewer`` may see it; 404 if an ID is not in
    the record, or not for ``viewer``."""
    unknown = provenance.unknown_nodes(query.ids, viewer=viewer)
    if unknown:
        raise NotFoundError(f"ID: no provenance record for {', '.join(unknown)}")
    return provenance.walk(query.ids, depth=query.depth, direction=query.direction,
                           agents=query.agent, configuration=query.configuration,
                           max_nodes=max_nodes, viewer=viewer)


class GraphTooLargeError(ServiceUnavailableError):
    """The picture of this graph could not be laid out in time: a fault of the server (its
    layout budget), not of the request, answered 503 and logged."""


def serialize(graph: Graph, query: ProvSapQuery, namespace: str, timeout: float,
              node_url: Callable[[str], str] | None = None) -> bytes:
    """``graph`` in the query's RESPONSEFORMAT; an SVG's nodes link to ``node_url(local
    id)`` when it is given."""
    if query.format == "votable":
        from opus.provenance.votable import graph_to_votable

        return graph_to_votable(graph, namespace)
    if query.format in ("svg", "png"):
        from opus.provenance.render import RenderError, graph_to_dot, render

        try:
            picture: Literal["svg", "png"] = "svg" if query.format == "svg" else "png"
            links = node_url if picture == "svg" else None
            return render(graph_to_dot(graph, namespace, links), picture, timeout=timeout)
        except RenderError as error:
            raise GraphTooLargeError(f"{error}; ask for a smaller DEPTH or another "
                                     f"RESPONSEFORMAT", retry_after=60) from None
    document = build_document(graph, namespace, model=query.model,
                              descriptions=query.descriptions)
    if query.format == "provn":
        return str(document.get_provn()).encode()
    return str(document.serialize(format=query.format)).encode()
