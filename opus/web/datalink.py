"""``GET|POST /datalink/links?ID=...``: the DataLink 1.1 {links} endpoint (a DALI-sync
resource, section 2: both methods). The rows come from :mod:`opus.datalink.links`, the
VOTable from :mod:`opus.datalink.votable`; request-level errors are DALI VOTable error
documents (route config ``errors="dali"``, :mod:`opus.web.errors`)."""

from __future__ import annotations

from collections.abc import Iterable

import bottle
from bottle import HTTPResponse

from opus.activities.registry import ActivityRegistry
from opus.auth import AccessPolicy
from opus.datalink.links import LinksBuilder, media_type
from opus.datalink.votable import (
    DATALINK_MEDIA_TYPE,
    LINKS_PATH,
    VOTABLE_MEDIA_TYPE,
    links_document,
)
from opus.errors import ClientError, UnsupportedFormatError
from opus.storage.jobs import JobStore
from opus.storage.provenance import ProvenanceStore
from opus.web.http import identity, root_url, submitted_parameters
from opus.web.openapi_schemas import ACTIVITIES, form_body, ok, query_param, ref
from opus.web.routing import Operation, route

RESPONSEFORMAT = query_param("RESPONSEFORMAT", {"type": "string", "enum": [
    "votable", VOTABLE_MEDIA_TYPE, DATALINK_MEDIA_TYPE, "text/xml"]},
    "the output format (default: the DataLink VOTable)")
_DALI_ERROR = {"description": "UsageFault, as a DataLink error VOTable",
               "content": {VOTABLE_MEDIA_TYPE: {"schema": {"type": "string"}}}}
LINKS_RESPONSES = {
    "200": ok("the links of each ID (DataLink 1.1 section 3)", {
        DATALINK_MEDIA_TYPE: {"type": "string"}, VOTABLE_MEDIA_TYPE: {"type": "string"},
        "text/xml": {"type": "string"}}),
    "400": _DALI_ERROR, "413": ref("responses", "PayloadTooLarge"), "415": _DALI_ERROR}


def response_media_type(items: Iterable[tuple[str, str]]) -> str:
    """The Content-Type the RESPONSEFORMAT asks for (DataLink 1.1 section 2.1.2: strip MIME
    parameters; no value, ``votable`` and ``application/x-votable+xml`` give VOTable)."""
    values = [value for key, value in items if key.upper() == "RESPONSEFORMAT"]
    if len(values) > 1:
        raise ClientError("UsageFault: RESPONSEFORMAT given more than once")
    if not values or not values[0].strip():
        return DATALINK_MEDIA_TYPE
    requested = values[0].strip()
    bare = media_type(requested)
    if bare == "votable":
        return DATALINK_MEDIA_TYPE
    if bare in {VOTABLE_MEDIA_TYPE, "text/xml"}:
        # DALI 1.1 section 3.2.5: a media type asked for is the Content-Type given.
        return requested if "content=datalink" in requested.replace(" ", "") else bare
    raise UnsupportedFormatError(f"UsageFault: RESPONSEFORMAT={requested!r} is not "
                                 f"supported; use votable or {VOTABLE_MEDIA_TYPE}")


def install(app: bottle.Bottle, store: JobStore, provenance: ProvenanceStore,
            registry: ActivityRegistry, policy: AccessPolicy) -> None:
    """Add ``GET|POST /datalink/links``."""

    @route(app, "GET", LINKS_PATH, errors="dali", operation=Operation(
        "datalinkLinks", "DataLink 1.1 {links} of job results", LINKS_RESPONSES,
        tags=ACTIVITIES, parameters=(
            query_param("ID", {"type": "string"}, "a job result: its entity identifier "
                        "(opus:ent-...) or its result URL", repeated=True),
            RESPONSEFORMAT)))
    @route(app, "POST", LINKS_PATH, errors="dali", operation=Operation(
        "datalinkLinksPost", "DataLink 1.1 {links} of job results (parameters in the body)",
        LINKS_RESPONSES, tags=ACTIVITIES, request_body=form_body({
            "type": "object", "properties": {
                "ID": {"type": "array", "items": {"type": "string"}},
                "RESPONSEFORMAT": RESPONSEFORMAT["schema"]}}, required=False)))
    def links() -> HTTPResponse:
        items = submitted_parameters()
        content_type = response_media_type(items)
        ids = [value for key, value in items if key.upper() == "ID" and value.strip()]
        root = root_url()
        built = LinksBuilder(store, provenance, registry, policy, identity(), root).add(ids)
        body = links_document(built, f"{root}{LINKS_PATH}" if not ids else None)
        return HTTPResponse(body=body, headers={"Content-Type": content_type})
