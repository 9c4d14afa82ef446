"""HTTP access to provenance search and replay (JSON answers).

- ``GET /provenance/search``: :mod:`opus.provenance.search`;
- ``POST /provenance/replay`` (ID, FORCE, PHASE): 303 to the new job, with a ``Link`` to
  its replay record: :mod:`opus.provenance.replay`;
- ``GET /provenance/replay/{new job id}``: the original and new runs and, once the new run
  has ended, the comparison of their products: :mod:`opus.provenance.replay_compare`.

Client mistakes are :mod:`opus.errors` exceptions, answered by :mod:`opus.web.errors`
(400 naming the parameter, 404, 409 for a refused replay).

Each answers what the caller may read (:class:`opus.auth.AccessPolicy`): the search finds
their products, the published ones and the anonymous ones; replaying a run requires reading
it; a replay record is for those who may read its new job. What they may not read is a 404
worded as for what does not exist.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import urlencode

import bottle
from bottle import HTTPResponse

from opus.config import Settings
from opus.provenance.replay import create_replay
from opus.provenance.replay_compare import replay_status
from opus.provenance.search import MAX_LIMIT, MAX_OFFSET, PHASES, hit_json, parse_search
from opus.storage.jobs import JobStore
from opus.storage.provenance import ProvenanceStore
from opus.uws.service import JobService
from opus.web.http import identity, query_parameters, root_url, see_other, submitted_parameters
from opus.web.openapi_schemas import (
    BOOLEAN_TEXT,
    JOB_ID,
    PROVENANCE,
    form_body,
    ok,
    query_param,
    responses,
)
from opus.web.routing import Operation, route

JSON = "application/json"
SEARCH_PARAMETERS = (
    query_param("activity", {"type": "string"}, "activity name"),
    query_param("version", {"type": "string"}, "activity version"),
    query_param("sha256", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                "checksum of the product"),
    query_param("agent", {"type": "string"}, "the agent who ran it"),
    query_param("after", {"type": "string", "format": "date-time"}, "ended after"),
    query_param("before", {"type": "string", "format": "date-time"}, "ended before"),
    query_param("phase", {"type": "string", "enum": list(PHASES)}, "the run's final phase"),
    query_param("ancestors", {"type": "string"}, "products this entity was made from"),
    query_param("descendants", {"type": "string"}, "products made from this entity"),
    query_param("limit", {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                "at most this many results"),
    query_param("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                "skip this many results"),
    query_param("param", {"type": "string", "pattern": "^[^:]+:"},
                "name:value of a parameter", repeated=True),
    query_param("software", {"type": "string", "maxLength": 300, "pattern":
                             "^\\s*[A-Za-z0-9][A-Za-z0-9._-]*\\s*(==\\s*\\S.*)?$"},
                "package[==version] used by the run", repeated=True),
    query_param("used", {"type": "string", "pattern": "\\S"},
                "an input of the run: entity identifier, URL or sha256", repeated=True))
REPLAY_BODY = form_body({
    "type": "object", "required": ["ID"], "properties": {
        "ID": {"type": "string", "pattern": "\\S",
               "description": "entity, activity or job id"},
        "FORCE": {"type": "string", "enum": sorted(BOOLEAN_TEXT)},
        "PHASE": {"type": "string", "enum": ["RUN", "PENDING"]}},
    "additionalProperties": False})


def json_response(document: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(body=json.dumps(document, indent=1) + "\n", status=status,
                        headers={"Content-Type": JSON})


def install(app: bottle.Bottle, jobs: JobService, store: JobStore,
            provenance: ProvenanceStore, settings: Settings) -> None:

    @route(app, "GET", "/provenance/search", operation=Operation(
        "provenanceSearch", "find recorded products by activity, parameter, software, "
                            "input, checksum, agent, time or lineage",
        responses(ok("the products found", {JSON: {"type": "object", "required": [
            "count", "offset", "limit", "more", "next", "truncated", "results"]}}), 400, 404),
        tags=PROVENANCE, parameters=SEARCH_PARAMETERS))
    def provenance_search() -> HTTPResponse:
        items = query_parameters()
        query = parse_search(items, settings.provenance_namespace)
        found = provenance.search(query, max_nodes=settings.provsap_max_nodes,
                                  viewer=jobs.policy.viewer(identity()))
        root = root_url()
        following = None
        if found.more:
            kept = [(k, v) for k, v in items if k.lower() != "offset"]
            kept.append(("offset", str(query.offset + query.limit)))
            following = f"{root}/provenance/search?{urlencode(kept)}"
        return json_response({
            "count": len(found.hits), "offset": query.offset, "limit": query.limit,
            "more": found.more, "next": following, "truncated": found.truncated,
            "results": [hit_json(row, root) for row in found.hits],
        })

    @route(app, "POST", "/provenance/replay", operation=Operation(
        "provenanceReplay", "run a recorded activity again with the same configuration and "
                            "inputs (303 to the new job)",
        responses(None, 400, 404, 409, 413, 429, see_other=True), tags=PROVENANCE,
        request_body=REPLAY_BODY))
    def provenance_replay() -> HTTPResponse:
        job, original = create_replay(jobs, provenance, identity(), submitted_parameters())
        root = root_url()
        return see_other(f"{root}/rest/{original['name']}/{job.job_id}",
                         Link=f'<{root}/provenance/replay/{job.job_id}>; rel="related"')

    @route(app, "GET", "/provenance/replay/<job_id>", operation=Operation(
        "provenanceReplayStatus", "a replay and, once it ended, its products against the "
                                  "originals",
        responses(ok("the replay", {JSON: {"type": "object"}}), 404), tags=PROVENANCE,
        parameters=(JOB_ID,)))
    def provenance_replay_status(job_id: str) -> HTTPResponse:
        may_read = functools.partial(jobs.policy.may_read, identity())
        return json_response(replay_status(provenance, store, job_id, root_url(), may_read))
