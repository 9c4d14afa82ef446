"""HTTP access to provenance search and replay (JSON answers).

- ``GET /provenance/search``: :mod:`opus.provenance.search`;
- ``POST /provenance/replay`` (ID, FORCE, PHASE): 303 to the new job, with a ``Link`` to
  its replay record: :mod:`opus.provenance.replay`;
- ``GET /provenance/replay/{new job id}``: the original and new runs and, once the new run
  has ended, the comparison of their products: :mod:`opus.provenance.replay_compare`.

Client mistakes are :mod:`opus.errors` exceptions, answered by :mod:`opus.web.errors`
(400 naming the parameter, 404, 409 for a refused replay).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import bottle
from bottle import HTTPResponse

from opus.config import Settings
from opus.provenance.replay import create_replay
from opus.provenance.replay_compare import replay_status
from opus.provenance.search import hit_json, parse_search
from opus.storage.jobs import JobStore
from opus.storage.provenance import ProvenanceStore
from opus.uws.service import JobService
from opus.web.http import identity, query_parameters, root_url, see_other, submitted_parameters

JSON = "application/json"


def json_response(document: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(body=json.dumps(document, indent=1) + "\n", status=status,
                        headers={"Content-Type": JSON})


def install(app: bottle.Bottle, jobs: JobService, store: JobStore,
            provenance: ProvenanceStore, settings: Settings) -> None:

    @app.get("/provenance/search")
    def provenance_search() -> HTTPResponse:
        items = query_parameters()
        query = parse_search(items, settings.provenance_namespace)
        found = provenance.search(query, max_nodes=settings.provsap_max_nodes)
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

    @app.post("/provenance/replay")
    def provenance_replay() -> HTTPResponse:
        job, original = create_replay(jobs, provenance, identity(), submitted_parameters())
        root = root_url()
        return see_other(f"{root}/rest/{original['name']}/{job.job_id}",
                         Link=f'<{root}/provenance/replay/{job.job_id}>; rel="related"')

    @app.get("/provenance/replay/<job_id>")
    def provenance_replay_status(job_id: str) -> HTTPResponse:
        return json_response(replay_status(provenance, store, job_id, root_url()))
