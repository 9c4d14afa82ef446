"""HTTP access to provenance templates and to the bindings of recorded runs.

``GET /provenance/templates/{activity}``
    the activity's PROV-Template in PROV-N (``provenance_templates/{activity}.provn``, or
    the default derived from its ActivityDescription); see :mod:`opus.provenance.templates`.
``GET /provenance/bindings/{job_id}``
    the PROV-Template bindings (v3 JSON) of the job's run, built from its provenance record
    (ProvenanceDM 1.0 section 2: the Activity ``act-<job id>``, its used and generated
    entities, parameters and Operator); expanding the template with them gives what the
    run asserts. 404 while the job has no record (not finished, or unknown).

Like ``/provsap``, these read the provenance record, which outlives the job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import bottle
import sqlalchemy as sa
from bottle import HTTPResponse

from opus.errors import NotFoundError
from opus.provenance import tables as t
from opus.provenance.templates import (
    BINDINGS_CONTENT_TYPE,
    PROVN_CONTENT_TYPE,
    TEMPLATES_DIR,
    TemplateSyntaxError,
    bindings_from_record,
    bindings_json,
    template_provn,
)

if TYPE_CHECKING:
    from opus.app import Services

log = logging.getLogger("opus.provenance")


def templates_dir(settings: object) -> Path:
    """The templates directory: setting ``provenance_templates_dir`` when the settings
    have one, else ``provenance_templates/`` of the project."""
    return Path(getattr(settings, "provenance_templates_dir", None) or TEMPLATES_DIR)


def install(app: bottle.Bottle, services: "Services") -> None:
    settings = services.settings
    namespace = settings.provenance_namespace

    @app.get("/provenance/templates/<activity>")
    def template(activity: str) -> HTTPResponse:
        description = services.registry.get(activity)  # NotFoundError: 404
        try:
            text = template_provn(description, templates_dir(settings), namespace=namespace)
        except TemplateSyntaxError as error:
            log.error("provenance template of %s: %s", activity, error)
            return HTTPResponse(body=f"the provenance template of {activity!r} is broken; "
                                     f"see the server log\n", status=500,
                                headers={"Content-Type": "text/plain; charset=UTF-8"})
        return HTTPResponse(body=text.encode(), headers={"Content-Type": PROVN_CONTENT_TYPE})

    @app.get("/provenance/bindings/<job_id>")
    def bindings(job_id: str) -> HTTPResponse:
        if len(job_id) > 64 or not job_id.isprintable() or not job_id.isascii():
            raise NotFoundError(f"no provenance record for job {job_id[:64]!r}")
        activity_id = job_id if job_id.startswith("act-") else f"act-{job_id}"
        with services.store.engine.connect() as connection:
            name = connection.execute(sa.select(t.activity.c.name).where(
                t.activity.c.id == activity_id)).scalar()
            if name is None:
                raise NotFoundError(f"no provenance record for job {job_id!r} (it has not "
                                    f"finished, or does not exist)")
            description = services.registry.get(name) if name in services.registry else None
            result = bindings_from_record(connection, activity_id, namespace, description)
        if result is None:  # deleted between the two reads
            raise NotFoundError(f"no provenance record for job {job_id!r}")
        return HTTPResponse(body=bindings_json(result).encode(), headers={
            "Content-Type": BINDINGS_CONTENT_TYPE,
            "Content-Disposition": f'inline; filename="{activity_id}.bindings.json"'})
