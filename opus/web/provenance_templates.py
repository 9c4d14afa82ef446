"""HTTP access to provenance templates and to the bindings of recorded runs.

``GET /provenance/templates/{activity}``
    the activity's PROV-Template in PROV-N (``provenance_templates/{activity}.provn``, or
    the default derived from its ActivityDescription); see :mod:`opus.provenance.templates`.
``GET /provenance/bindings/{job_id}``
    the PROV-Template bindings (v3 JSON) of the job's run, built from its provenance record
    (ProvenanceDM 1.0 section 2: the Activity ``act-<job id>``, its used and generated
    entities, parameters and Operator); expanding the template with them gives what the
    run asserts. 404 while the job has no record (not finished, or unknown).

Like ``/provsap``, these read the provenance record, which outlives the job, as the caller
may read it: a run they may not read is a 404 as a run that does not exist, and the
bindings leave out the entities they may not read.
"""

from __future__ import annotations

import logging

import bottle
from bottle import HTTPResponse

from opus.activities.registry import ActivityRegistry
from opus.auth import AccessPolicy
from opus.errors import NotFoundError, ServiceUnavailableError
from opus.provenance.templates import (
    BINDINGS_CONTENT_TYPE,
    PROVN_CONTENT_TYPE,
    TemplateSyntaxError,
    bindings_json,
    template_provn,
)
from opus.storage.provenance import ProvenanceStore, activity_id
from opus.web.http import identity
from opus.web.openapi_schemas import (
    ACTIVITY_NAME,
    JSON,
    PROVENANCE,
    ok,
    path_param,
    responses,
)
from opus.web.routing import Operation, route

log = logging.getLogger("opus.provenance")


def install(app: bottle.Bottle, registry: ActivityRegistry,
            provenance: ProvenanceStore, policy: AccessPolicy) -> None:

    @route(app, "GET", "/provenance/templates/<activity>", operation=Operation(
        "provenanceTemplate", "the PROV-Template of an activity (PROV-N)",
        responses(ok("the template", {"text/provenance-notation": {"type": "string"}}), 404),
        tags=PROVENANCE, parameters=({**ACTIVITY_NAME, "name": "activity"},)))
    def template(activity: str) -> HTTPResponse:
        description = registry.get(activity)  # NotFoundError: 404
        try:
            text = template_provn(description, provenance.templates_dir,
                                  namespace=provenance.namespace)
        except TemplateSyntaxError as error:
            # the operator's file is broken: a fault of the server, logged, until mended
            raise ServiceUnavailableError(
                f"the provenance template of {activity!r} is broken ({error}); the "
                f"operator must mend it", retry_after=3600) from None
        return HTTPResponse(body=text.encode(), headers={"Content-Type": PROVN_CONTENT_TYPE})

    @route(app, "GET", "/provenance/bindings/<job_id>", operation=Operation(
        "provenanceBindings", "the template bindings of a recorded run",
        responses(ok("the bindings", {JSON: {"type": "object"}}), 404), tags=PROVENANCE,
        parameters=(path_param("job_id", {"type": "string"}, "a job or activity id"),)))
    def bindings(job_id: str) -> HTTPResponse:
        if len(job_id) > 64 or not job_id.isprintable() or not job_id.isascii():
            raise NotFoundError(f"no provenance record for job {job_id[:64]!r}")
        run_id = job_id if job_id.startswith("act-") else activity_id(job_id)
        viewer = policy.viewer(identity())
        run = provenance.activity(run_id, viewer)
        if run is None:
            raise NotFoundError(f"no provenance record for job {job_id!r} (it has not "
                                f"finished, or does not exist)")
        description = registry.get(run["name"]) if run["name"] in registry else None
        result = provenance.bindings(run_id, description, viewer=viewer)
        if result is None:  # deleted between the two reads
            raise NotFoundError(f"no provenance record for job {job_id!r}")
        return HTTPResponse(body=bindings_json(result).encode(), headers={
            "Content-Type": BINDINGS_CONTENT_TYPE,
            "Content-Disposition": f'inline; filename="{run_id}.bindings.json"'})
