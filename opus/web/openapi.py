"""The OpenAPI 3.1 description of OPUS, served at ``GET /openapi.json``.

It is built per request from the activity registry and the routes the application really
has, so it always matches the running server:

- every UWS job list is spelled out per activity (``/rest/sleep``, ``/rest/sleep/{job_id}``,
  ...), so the job-creation request bodies carry that activity's parameters as a JSON
  Schema (:func:`parameter_schema`: datatype -> ``type``, ``MIN`` / ``MAX`` ->
  ``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum``, ``OPTION`` ->
  ``enum``, ``arraysize`` -> ``maxLength``, the default, the description, and the unit and
  UCD as ``x-unit`` / ``x-ucd``), its file inputs (an upload, ``format: binary``, in
  ``multipart/form-data``; a URL or earlier result, ``format: uri``) and an example;
- a documented operation whose route is not installed is left out, so the document never
  promises what the server does not do;
- ``POST /internal/jobs/{job_id}/report`` is deliberately not described: it is the runner's
  callback, authenticated by a per-job secret only the runner holds, and not an interface
  for clients. ``tests/test_json.py`` checks that every other route is described.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import bottle
from bottle import HTTPResponse

from opus.activities.model import (
    BOOLEAN_DATATYPES,
    FLOAT_DATATYPES,
    INTEGER_DATATYPES,
    TEXT_DATATYPES,
    ActivityDescription,
    EntityDescription,
    ParameterDescription,
)
from opus.activities.registry import ActivityRegistry
from opus.activities.validation import INTEGER_RANGES, parse_arraysize, parse_number
from opus.provenance.provsap import FORMATS as PROVSAP_FORMATS
from opus.provenance.search import MAX_LIMIT, MAX_OFFSET
from opus.provenance.search import PHASES as SEARCH_PHASES
from opus.uws.models import Phase
from opus.uws.params import INT_MAX
from opus.web.http import root_url

JSON = "application/json"
XML = "application/xml"
TEXT = "text/plain"
HTML = "text/html"
VOTABLE = "application/x-votable+xml"
#: Routes that are no part of the public interface (see the module docstring).
INTERNAL_PREFIXES = ("/internal/",)
_BOOLEAN_TEXT = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_COMPONENT = re.compile(r"[^A-Za-z0-9._-]")
_RULE_PARAMETER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>")
#: Text without the control characters XML 1.0 cannot carry (refused with a 400, since
#: every value reappears in the UWS documents); valid as an ECMA and a Python regex.
XML_TEXT = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\uFFFE\\uFFFF]*$"


def install(app: bottle.Bottle, registry: ActivityRegistry) -> None:
    """Add ``GET /openapi.json`` to ``app``."""

    @app.get("/openapi.json")
    def openapi_document() -> HTTPResponse:
        document = build(registry, root_url(), installed_operations(app))
        return HTTPResponse(body=json.dumps(document, indent=1) + "\n",
                            headers={"Content-Type": JSON})


def installed_operations(app: bottle.Bottle) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path template) of every route of ``app``."""
    return {(route.method.upper(), _RULE_PARAMETER.sub(r"{\1}", route.rule))
            for route in app.routes}


def build(registry: ActivityRegistry | Iterable[ActivityDescription], server: str,
          installed: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The OpenAPI document for these activities, served at ``server``; only operations in
    ``installed`` (None: all) are described."""
    activities = list(registry)
    paths: dict[str, dict[str, Any]] = {}

    def add(method: str, rule: str, operation: dict[str, Any], path: str | None = None
            ) -> None:
        if installed is not None and (method.upper(), rule) not in installed:
            return
        paths.setdefault(path or rule, {})[method.lower()] = operation

    _service_paths(add, [a.name for a in activities])
    schemas = dict(COMMON_SCHEMAS)
    for activity in activities:
        schemas.update(_activity_paths(add, activity))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OPUS",
            "version": _version(),
            "summary": "IVOA UWS 1.1 job server with provenance",
            "description": (
                "Each activity is a UWS 1.1 job list at /rest/{activity}. The UWS "
                "documents are XML by default; send Accept: application/json for the JSON "
                "equivalent. Single-valued job resources are text/plain, or JSON when "
                "Accept asks for application/json only. Errors keep their status and are "
                "text/plain, or JSON under the same rule."),
            "license": {"name": "BSD-3-Clause", "identifier": "BSD-3-Clause"},
        },
        "externalDocs": {"description": "IVOA UWS 1.1",
                         "url": "https://www.ivoa.net/documents/UWS/20161024/"},
        "servers": [{"url": server}],
        "tags": ([{"name": "service"}, {"name": "activities"}, {"name": "provenance"}]
                 + [{"name": f"jobs: {a.name}", "description": a.description or ""}
                    for a in activities]),
        "paths": paths,
        "components": {"schemas": schemas, "responses": COMMON_RESPONSES},
    }


def _version() -> str:
    try:
        return metadata.version("opus")
    except metadata.PackageNotFoundError:
        return "0.0.0"


# -- activity parameters as JSON Schema -----------------------------------------------------
def _number(datatype: str, text: str | None) -> int | float | None:
    if text is None:
        return None
    try:
        value = parse_number(datatype, text)
    except ValueError:
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def parameter_schema(parameter: ParameterDescription) -> dict[str, Any]:
    """The JSON Schema of one activity parameter, as it is sent in a form field."""
    datatype = parameter.datatype
    try:
        count = parse_arraysize(parameter.arraysize)
    except ValueError:
        count = None
    schema: dict[str, Any]
    default: Any = parameter.default
    scalar = count is None or count == (1, True)
    if datatype in TEXT_DATATYPES:
        schema = {"type": "string"}
        if count is not None and count[0] is not None:
            schema["maxLength"] = count[0]
        if parameter.options:
            schema["enum"] = [option.value for option in parameter.options]
        else:
            schema["pattern"] = XML_TEXT
    elif not scalar:
        # A numeric or boolean array travels as one field of space-separated values.
        schema = {"type": "string", "x-arraysize": parameter.arraysize}
        if parameter.options:
            schema["enum"] = [option.value for option in parameter.options]
    elif datatype in BOOLEAN_DATATYPES:
        schema = {"type": "boolean"}
        default = _BOOLEAN_TEXT.get((default or "").strip().lower()) \
            if default is not None else None
    elif datatype in INTEGER_DATATYPES or datatype in FLOAT_DATATYPES:
        integer = datatype in INTEGER_DATATYPES
        schema = {"type": "integer" if integer else "number"}
        if integer:
            schema["minimum"], schema["maximum"] = INTEGER_RANGES[datatype]
        low, high = _number(datatype, parameter.minimum), _number(datatype, parameter.maximum)
        if low is not None:
            if parameter.minimum_inclusive:
                schema["minimum"] = max(low, schema.get("minimum", low))
            else:
                schema["exclusiveMinimum"] = low
        if high is not None:
            if parameter.maximum_inclusive:
                schema["maximum"] = min(high, schema.get("maximum", high))
            else:
                schema["exclusiveMaximum"] = high
        if parameter.options:
            values = [_number(datatype, option.value) for option in parameter.options]
            schema["enum"] = [value for value in values if value is not None]
        default = _number(datatype, default) if default is not None else None
    else:
        schema = {"type": "string"}
    if default is not None:
        schema["default"] = default
    if parameter.description:
        schema["description"] = parameter.description
    if parameter.options and any(option.name for option in parameter.options):
        schema["x-options"] = {option.value: option.name or option.value
                               for option in parameter.options}
    for key, value in (("x-unit", parameter.unit), ("x-ucd", parameter.ucd),
                       ("x-utype", parameter.utype), ("x-xtype", parameter.xtype),
                       ("x-datatype", datatype)):
        if value:
            schema[key] = value
    return schema


def _example(parameter: ParameterDescription, schema: dict[str, Any]) -> Any:
    """A value that passes validation: the default, else an option, else a value in range."""
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema["type"] == "boolean":
        return False
    if schema["type"] in {"integer", "number"}:
        for key in ("minimum", "maximum"):
            if key in schema and (schema["type"] == "number" or key == "minimum"):
                return schema[key]
        low = schema.get("exclusiveMinimum")
        return low + 1 if low is not None else 0
    return "example"


def entity_schema(entity: EntityDescription, *, upload: bool) -> dict[str, Any]:
    """A file input: an uploaded part (multipart only), or a URL / earlier result."""
    reference = {"type": "string", "format": "uri",
                 "description": "an http(s) URL fetched by the server, the identifier of a "
                                "result of an earlier job (opus:ent-...), or its result URL"}
    about = entity.description or f"the {entity.name} input"
    if not upload:
        return {**reference, "description": f"{about}: {reference['description']}",
                "x-content-type": entity.content_type or "application/octet-stream"}
    return {"description": f"{about}: an uploaded file, or (as a text part) a reference",
            "anyOf": [{"type": "string", "format": "binary",
                       "contentMediaType": entity.content_type or "application/octet-stream"},
                      reference]}


def creation_schema(activity: ActivityDescription, *, multipart: bool) -> dict[str, Any]:
    """What ``POST /rest/{activity}`` accepts: the activity's parameters and file inputs
    and the UWS control parameters."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in activity.parameters:
        properties[parameter.name] = parameter_schema(parameter)
        if parameter.required:
            required.append(parameter.name)
    for entity in activity.used:
        properties[entity.name] = entity_schema(entity, upload=multipart)
        required.append(entity.name)
    properties.update(CONTROL_PROPERTIES)
    properties["PHASE"] = {"type": "string", "enum": ["RUN"],
                           "description": "RUN queues the job at once"}
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False,
            "description": f"Parameters of a new {activity.name} job (names are "
                           f"case-insensitive)."}


def update_schema(activity: ActivityDescription) -> dict[str, Any]:
    """What ``POST /rest/{activity}/{job_id}[/parameters]`` accepts (a PENDING job)."""
    properties: dict[str, Any] = {p.name: parameter_schema(p) for p in activity.parameters}
    for entity in activity.used:
        properties[entity.name] = entity_schema(entity, upload=False)
    properties.update(CONTROL_PROPERTIES)
    properties["PHASE"] = {"type": "string", "enum": ["RUN", "ABORT"],
                           "description": "applied after the other changes"}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def creation_example(activity: ActivityDescription) -> dict[str, Any]:
    """Values that create a valid job (file inputs excepted: they have no example)."""
    return {p.name: _example(p, parameter_schema(p)) for p in activity.parameters}


CONTROL_PROPERTIES: dict[str, Any] = {
    "RUNID": {"type": "string", "maxLength": 255, "pattern": XML_TEXT,
              "description": "the client's label for the job (UWS 1.1 section 2.1.9)"},
    "EXECUTIONDURATION": {"type": "integer", "minimum": 0, "maximum": INT_MAX,
                          "description": "seconds the job may run; 0 for no limit (the "
                                         "server may lower it)"},
    "DESTRUCTION": {"type": "string", "format": "date-time",
                    "description": "when the job is destroyed: in the future (the server "
                                   "may bring it forward)"},
}


# -- shared pieces ----------------------------------------------------------------------------
def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


TIMESTAMP: dict[str, Any] = {
    "type": "string", "format": "date-time",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
    "description": "UTC, milliseconds, 'Z' (UWS 1.1 section 2.2.1)"}
PHASE: dict[str, Any] = {"type": "string", "enum": sorted(Phase)}

COMMON_SCHEMAS: dict[str, Any] = {
    "Timestamp": TIMESTAMP,
    "Phase": PHASE,
    "Parameter": {
        "type": "object", "required": ["id", "value", "byReference"],
        "properties": {
            "id": {"type": "string"}, "value": {"type": "string"},
            "byReference": {"type": "boolean"},
            "href": {"type": "string", "format": "uri",
                     "description": "where an input given by reference is (= value)"}},
        "additionalProperties": False},
    "Result": {
        "type": "object", "required": ["id", "href", "size", "mime-type"],
        "properties": {
            "id": {"type": "string"}, "href": {"type": "string", "format": "uri"},
            "size": {"type": ["integer", "null"], "minimum": 0},
            "mime-type": {"type": ["string", "null"]}},
        "additionalProperties": False},
    "ErrorSummary": {
        "type": "object", "required": ["type", "hasDetail", "message"],
        "properties": {"type": {"type": "string", "enum": ["fatal", "transient"]},
                       "hasDetail": {"type": "boolean"}, "message": {"type": "string"}},
        "additionalProperties": False},
    "Job": {
        "type": "object",
        "description": "The UWS job document (uws:job) in JSON.",
        "required": ["version", "jobId", "runId", "ownerId", "phase", "quote",
                     "creationTime", "startTime", "endTime", "executionDuration",
                     "destruction", "parameters", "results", "errorSummary", "jobInfo"],
        "properties": {
            "version": {"const": "1.1"},
            "jobId": {"type": "string"},
            "runId": {"type": ["string", "null"]},
            "ownerId": {"type": ["string", "null"]},
            "phase": _ref("schemas", "Phase"),
            "quote": _nullable(_ref("schemas", "Timestamp")),
            "creationTime": _ref("schemas", "Timestamp"),
            "startTime": _nullable(_ref("schemas", "Timestamp")),
            "endTime": _nullable(_ref("schemas", "Timestamp")),
            "executionDuration": {"type": "integer", "minimum": 0},
            "destruction": _nullable(_ref("schemas", "Timestamp")),
            "parameters": {"type": "array", "items": _ref("schemas", "Parameter")},
            "results": {"type": "array", "items": _ref("schemas", "Result")},
            "errorSummary": _nullable(_ref("schemas", "ErrorSummary")),
            "jobInfo": {"type": ["object", "null"], "properties": {"provenance": {
                "type": "object", "properties": {
                    "href": {"type": "string", "format": "uri"},
                    "mime-type": {"type": "string"}}}}},
        },
        "additionalProperties": False},
    "JobRef": {
        "type": "object",
        "required": ["id", "href", "phase", "runId", "ownerId", "creationTime"],
        "properties": {
            "id": {"type": "string"}, "href": {"type": "string", "format": "uri"},
            "phase": _ref("schemas", "Phase"), "runId": {"type": ["string", "null"]},
            "ownerId": {"type": ["string", "null"]},
            "creationTime": _ref("schemas", "Timestamp")},
        "additionalProperties": False},
    "JobList": {
        "type": "object", "required": ["version", "jobs"],
        "description": "The UWS job list (uws:jobs) in JSON.",
        "properties": {"version": {"const": "1.1"},
                       "jobs": {"type": "array", "items": _ref("schemas", "JobRef")}},
        "additionalProperties": False},
    "Parameters": {
        "type": "object", "required": ["parameters"],
        "properties": {"parameters": {"type": "array",
                                      "items": _ref("schemas", "Parameter")}},
        "additionalProperties": False},
    "Results": {
        "type": "object", "required": ["results"],
        "properties": {"results": {"type": "array", "items": _ref("schemas", "Result")}},
        "additionalProperties": False},
    "Error": {
        "type": "object", "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
        "additionalProperties": False},
    "UwsXml": {"type": "string", "description": "a UWS 1.1 XML document (UWS.xsd)"},
    "ActivityEntry": {
        "type": "object", "required": ["name", "parameters", "links"],
        "properties": {
            "name": {"type": "string"}, "description": {"type": ["string", "null"]},
            "version": {"type": ["string", "null"]}, "type": {"type": ["string", "null"]},
            "subtype": {"type": ["string", "null"]},
            "parameters": {"type": "array", "items": {"type": "string"}},
            "links": {"type": "object",
                      "additionalProperties": {"type": "string", "format": "uri"}}}},
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        TEXT: {"schema": {"type": "string"}},
        JSON: {"schema": _ref("schemas", "Error")}}}


COMMON_RESPONSES: dict[str, Any] = {
    "BadRequest": _error_response("a parameter breaks a rule; the message names it"),
    "Forbidden": _error_response("not allowed in the job's phase, or not the owner's"),
    "NotFound": _error_response("no such activity, job, parameter or result"),
    "Conflict": _error_response("refused: the request conflicts with what is recorded"),
    "PayloadTooLarge": _error_response("the body or an upload exceeds the server's limit"),
    "UnsupportedFormat": _error_response("the requested RESPONSEFORMAT is not supported"),
    "Unavailable": _error_response("the answer could not be made in time"),
    "SeeOther": {"description": "done; the Location is the resource to read next",
                 "headers": {"Location": {"required": True, "schema": {
                     "type": "string", "format": "uri"}}}},
}
_ERRORS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
           413: "PayloadTooLarge", 415: "UnsupportedFormat", 503: "Unavailable"}


def _responses(ok: dict[str, Any] | None, *errors: int, see_other: bool = False
               ) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if ok is not None:
        responses["200"] = ok
    if see_other:
        responses["303"] = _ref("responses", "SeeOther")
    for status in errors:
        responses[str(status)] = _ref("responses", _ERRORS[status])
    return responses


def _ok(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"description": description,
            "content": {media: {"schema": schema} for media, schema in content.items()}}


def _uws_ok(description: str, schema: str) -> dict[str, Any]:
    """200 with the XML document, or its JSON form when Accept prefers JSON."""
    return _ok(description, {XML: _ref("schemas", "UwsXml"), JSON: _ref("schemas", schema)})


def _atomic_ok(description: str, key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return _ok(description, {TEXT: {"type": "string"}, JSON: {
        "type": "object", "required": [key], "properties": {key: schema},
        "additionalProperties": False}})


def _query(name: str, schema: dict[str, Any], description: str, *,
           required: bool = False, repeated: bool = False) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "description": description,
                                 "required": required}
    if repeated:
        parameter.update(schema={"type": "array", "items": schema}, style="form",
                         explode=True)
    else:
        parameter["schema"] = schema
    return parameter


def _path(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _form_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _operation(operation_id: str, summary: str, tag: str, responses: dict[str, Any],
               **more: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary, "tags": [tag],
            "responses": responses, **more}


# -- the paths -------------------------------------------------------------------------------
JOB_ID = _path("job_id", {"type": "string", "pattern": "^[0-9a-f]{32}$"},
               "the job identifier")
RESULT_ID = _path("result_id", {"type": "string"},
                  "a result identifier; 'provenance' redirects to the run's provenance")


def _activity_paths(add: Any, activity: ActivityDescription) -> dict[str, Any]:
    """The UWS operations of one activity's job list; returns its component schemas."""
    name = activity.name
    key = _COMPONENT.sub("_", name)
    tag = f"jobs: {name}"
    jobs = f"/rest/{name}"
    created, multipart, updated = f"{key}.JobCreation", f"{key}.JobCreationUpload", \
        f"{key}.JobUpdate"
    schemas = {created: creation_schema(activity, multipart=False),
               multipart: creation_schema(activity, multipart=True),
               updated: update_schema(activity)}

    def op(suffix: str, summary: str, responses: dict[str, Any], **more: Any
           ) -> dict[str, Any]:
        return _operation(f"{key}.{suffix}", summary, tag, responses, **more)

    def rest(method: str, suffix: str, operation: dict[str, Any]) -> None:
        add(method, "/rest/{activity}" + suffix, operation, path=jobs + suffix)

    example = creation_example(activity)
    rest("GET", "", op("listJobs", f"the {name} jobs this caller may see", _responses(
        _uws_ok("the job list", "JobList"), 400, 404), parameters=[
        _query("PHASE", PHASE, "only jobs in these phases", repeated=True),
        _query("AFTER", {"type": "string", "format": "date-time"},
               "only jobs created after this instant"),
        _query("LAST", {"type": "integer", "minimum": 1},
               "only the most recent LAST jobs (by creation time)")]))
    encoding = {entity.name: {"contentType": entity.content_type or "application/octet-stream"}
                for entity in activity.used}
    upload_media: dict[str, Any] = {"schema": _ref("schemas", multipart)}
    if encoding:
        upload_media["encoding"] = encoding
    # Without a required parameter or input, an empty POST creates a job of defaults.
    body_required = bool(schemas[created]["required"])
    rest("POST", "", op("createJob", f"create a {name} job (PENDING, or QUEUED with "
                                     f"PHASE=RUN)", _responses(None, 400, 404, 413,
                                                               see_other=True),
         description=activity.description or "",
         requestBody={"required": body_required, "content": {
             "application/x-www-form-urlencoded": {"schema": _ref("schemas", created),
                                                   "example": example},
             "multipart/form-data": upload_media}}))
    rest("GET", "/{job_id}", op("getJob", "the job; WAIT blocks until it changes",
                                _responses(_uws_ok("the job", "Job"), 400, 403, 404),
                                parameters=[JOB_ID, _query(
                                    "WAIT", {"anyOf": [{"const": -1}, {"type": "number",
                                                                       "minimum": 0}]},
                                    "seconds to wait for a change of an active job (-1: "
                                    "as long as the server allows)"), _query(
                                    "PHASE", PHASE, "wait only while the job is in this "
                                                    "phase")]))
    rest("POST", "/{job_id}", op(
        "updateJob", "ACTION=DELETE deletes the job (303 to the list); other fields "
                     "change a PENDING job (303 to the job)",
        _responses(None, 400, 403, 404, 413, see_other=True), parameters=[JOB_ID],
        requestBody=_form_body({"anyOf": [
            {"type": "object", "required": ["ACTION"], "properties": {
                "ACTION": {"type": "string", "enum": ["DELETE"]}},
             "additionalProperties": False},
            _ref("schemas", updated)]}, required=False)))
    rest("DELETE", "/{job_id}", op("deleteJob", "delete the job (303 to the job list)",
                                   _responses(None, 403, 404, see_other=True),
                                   parameters=[JOB_ID]))
    rest("GET", "/{job_id}/phase", op("getPhase", "the phase", _responses(
        _atomic_ok("the phase", "phase", PHASE), 403, 404), parameters=[JOB_ID]))
    rest("POST", "/{job_id}/phase", op("changePhase", "PHASE=RUN queues, PHASE=ABORT stops",
                                       _responses(None, 400, 403, 404, see_other=True),
                                       parameters=[JOB_ID], requestBody=_form_body({
                                           "type": "object", "required": ["PHASE"],
                                           "properties": {"PHASE": {
                                               "type": "string",
                                               "enum": ["RUN", "ABORT"]}}})))
    rest("GET", "/{job_id}/executionduration", op(
        "getExecutionDuration", "seconds the job may run (0: no limit)", _responses(
            _atomic_ok("the duration", "executionDuration", {"type": "integer",
                                                             "minimum": 0}), 403, 404),
        parameters=[JOB_ID]))
    rest("POST", "/{job_id}/executionduration", op(
        "setExecutionDuration", "change the duration of a PENDING job",
        _responses(None, 400, 403, 404, see_other=True), parameters=[JOB_ID],
        requestBody=_form_body({"type": "object", "required": ["EXECUTIONDURATION"],
                                "properties": {"EXECUTIONDURATION":
                                               CONTROL_PROPERTIES["EXECUTIONDURATION"]}})))
    rest("GET", "/{job_id}/destruction", op(
        "getDestruction", "when the job will be destroyed", _responses(_atomic_ok(
            "the instant", "destruction", _nullable(_ref("schemas", "Timestamp"))),
            403, 404), parameters=[JOB_ID]))
    rest("POST", "/{job_id}/destruction", op(
        "setDestruction", "change the destruction time",
        _responses(None, 400, 403, 404, see_other=True), parameters=[JOB_ID],
        requestBody=_form_body({"type": "object", "required": ["DESTRUCTION"],
                                "properties": {"DESTRUCTION":
                                               CONTROL_PROPERTIES["DESTRUCTION"]}})))
    rest("GET", "/{job_id}/error", op("getError", "the error message of a failed job",
                                      _responses(_atomic_ok(
                                          "the message", "errorSummary",
                                          _nullable(_ref("schemas", "ErrorSummary"))),
                                          403, 404), parameters=[JOB_ID]))
    rest("GET", "/{job_id}/quote", op("getQuote", "when the job is expected to end",
                                      _responses(_atomic_ok(
                                          "the estimate", "quote",
                                          _nullable(_ref("schemas", "Timestamp"))),
                                          403, 404), parameters=[JOB_ID]))
    rest("GET", "/{job_id}/owner", op("getOwner", "the owner (empty: anonymous)",
                                      _responses(_atomic_ok(
                                          "the owner", "ownerId",
                                          {"type": ["string", "null"]}), 403, 404),
                                      parameters=[JOB_ID]))
    rest("GET", "/{job_id}/parameters", op("getParameters", "the job's parameters",
                                           _responses(_uws_ok("the parameters",
                                                              "Parameters"), 403, 404),
                                           parameters=[JOB_ID]))
    rest("POST", "/{job_id}/parameters", op(
        "setParameters", "change parameters of a PENDING job",
        _responses(None, 400, 403, 404, 413, see_other=True), parameters=[JOB_ID],
        requestBody=_form_body(_ref("schemas", updated), required=False)))
    names = [p.name for p in activity.parameters] + [e.name for e in activity.used]
    parameter_name = _path("name", {"type": "string", "enum": names} if names
                           else {"type": "string"}, "a parameter name (case-insensitive)")
    rest("GET", "/{job_id}/parameters/{name}", op(
        "getParameter", "one parameter's value; an uploaded input's bytes",
        _responses(_ok("the value", {
            TEXT: {"type": "string"}, JSON: _ref("schemas", "Parameter"),
            "application/octet-stream": {"type": "string", "format": "binary"}}), 403, 404),
        parameters=[JOB_ID, parameter_name]))
    rest("PUT", "/{job_id}/parameters/{name}", op(
        "putParameter", "set one parameter of a PENDING job (the body is the value)",
        _responses(None, 400, 403, 404, 413, see_other=True),
        parameters=[JOB_ID, parameter_name],
        requestBody={"required": True, "content": {TEXT: {"schema": {"type": "string"}}}}))
    rest("GET", "/{job_id}/results", op("getResults", "the job's results", _responses(
        _uws_ok("the results", "Results"), 403, 404), parameters=[JOB_ID]))
    rest("GET", "/{job_id}/results/{result_id}", op(
        "getResult", "a result file (Range requests supported)",
        _responses(_ok("the file", {"*/*": {"type": "string", "format": "binary"}}),
                   403, 404, see_other=True), parameters=[JOB_ID, RESULT_ID]))
    return schemas


def _service_paths(add: Any, activities: list[str]) -> None:
    name = _path("name", {"type": "string", "enum": activities} if activities
                 else {"type": "string"}, "an activity name")
    activity = {**name, "name": "activity"}
    votable = _ok("the VOTable", {VOTABLE: {"type": "string"}})
    add("GET", "/", _operation("index", "the service and its job lists", "service",
                               _responses(_ok("the index", {JSON: {"type": "object"}}))))
    add("GET", "/openapi.json", _operation("openapi", "this document", "service",
                                           _responses(_ok("OpenAPI 3.1", {
                                               JSON: {"type": "object"}}))))
    add("GET", "/capabilities", _operation("capabilities", "VOSI 1.1 capabilities",
                                           "service", _responses(_ok("the capabilities", {
                                               "text/xml": {"type": "string"}}))))
    add("GET", "/availability", _operation("availability", "VOSI 1.1 availability",
                                           "service", _responses(_ok("the availability", {
                                               "text/xml": {"type": "string"}}))))
    add("GET", "/activities", _operation(
        "listActivities", "the activities: JSON, or HTML when Accept prefers text/html",
        "activities", _responses(_ok("the activities", {
            JSON: {"type": "array", "items": _ref("schemas", "ActivityEntry")},
            HTML: {"type": "string"}}))))
    for rule, operation_id, deprecated in (("/activities/{name}", "getActivity", False),
                                           ("/jdl/{name}", "getJdl", True),
                                           ("/jdl/{name}/votable", "getJdlVotable", True)):
        add("GET", rule, _operation(operation_id, "the ActivityDescription VOTable"
                                    + (" (for clients of the older OPUS)" if deprecated
                                       else ""), "activities",
                                    _responses(votable, 404), parameters=[name],
                                    deprecated=deprecated))
    add("GET", "/activities/{name}/datalink", _operation(
        "getServiceDescriptor", "the DataLink 1.1 service descriptor of the activity",
        "activities", _responses(votable, 404), parameters=[name]))
    add("GET", "/activities/{name}/form", _operation(
        "getForm", "the HTML form that creates a job", "activities",
        _responses(_ok("the form", {HTML: {"type": "string"}}), 404), parameters=[name]))
    add("POST", "/activities/{name}/form", _operation(
        "submitForm", "create a job from the HTML form (303 to it, or 400 with the form)",
        "activities", {"303": _ref("responses", "SeeOther"),
                       "400": _ok("the form again, with the error", {HTML: {
                           "type": "string"}}),
                       "404": _ref("responses", "NotFound"),
                       "413": _ref("responses", "PayloadTooLarge")},
        parameters=[name], requestBody={"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            "multipart/form-data": {"schema": {"type": "object"}}}}))
    links_parameters = [
        _query("ID", {"type": "string"}, "a job result: its entity identifier "
                                         "(opus:ent-...) or its result URL", repeated=True),
        _query("RESPONSEFORMAT", {"type": "string", "enum": [
            "votable", VOTABLE, "application/x-votable+xml;content=datalink", "text/xml"]},
               "the output format (default: the DataLink VOTable)")]
    datalink_error = {"description": "UsageFault, as a DataLink error VOTable",
                      "content": {VOTABLE: {"schema": {"type": "string"}}}}
    links_responses = {
        "200": _ok("the links of each ID (DataLink 1.1 section 3)", {
            "application/x-votable+xml;content=datalink": {"type": "string"},
            VOTABLE: {"type": "string"}, "text/xml": {"type": "string"}}),
        "400": datalink_error, "413": _ref("responses", "PayloadTooLarge"),
        "415": datalink_error}
    add("GET", "/datalink/links", _operation(
        "datalinkLinks", "DataLink 1.1 {links} of job results", "activities",
        links_responses, parameters=links_parameters))
    add("POST", "/datalink/links", _operation(
        "datalinkLinksPost", "DataLink 1.1 {links} of job results (parameters in the body)",
        "activities", links_responses, requestBody=_form_body({
            "type": "object", "properties": {
                "ID": {"type": "array", "items": {"type": "string"}},
                "RESPONSEFORMAT": links_parameters[1]["schema"]}}, required=False)))
    add("GET", "/provsap", _operation(
        "provsap", "ProvSAP: the provenance graph around entities, activities or agents",
        "provenance", _responses(_ok("the graph", {
            "application/x-prov+json": {"type": "object"},
            "application/x-prov+xml": {"type": "string"},
            "text/provenance-notation": {"type": "string"},
            "application/x-votable+xml": {"type": "string"},
            "image/svg+xml": {"type": "string"},
            "image/png": {"type": "string", "format": "binary"}}), 400, 404, 415, 503),
        parameters=[
            _query("ID", {"type": "string", "minLength": 1},
                   "an entity, activity or agent identifier (opus:..., or a job id)",
                   required=True, repeated=True),
            _query("DEPTH", {"type": "string", "pattern": "^([0-9]+|ALL|all)$"},
                   "how many relations to follow, or ALL (default 1)"),
            _query("DIRECTION", {"type": "string", "enum": ["BACK", "FORTH", "FORWARD"]},
                   "BACK to the progenitors (default), FORTH to the descendants"),
            _query("MODEL", {"type": "string", "enum": ["IVOA", "W3C"]},
                   "IVOA ProvenanceDM (default) or plain W3C PROV"),
            _query("RESPONSEFORMAT", {"type": "string", "enum": sorted(PROVSAP_FORMATS)},
                   "the serialisation (default PROV-JSON)"),
            *[_query(flag, {"type": "string", "enum": sorted(_BOOLEAN_TEXT)}, description)
              for flag, description in (
                  ("AGENT", "include agents (default true)"),
                  ("MEMBERS", "include collection members (default false)"),
                  ("STEPS", "include the steps of activities (default false)"),
                  ("DESCRIPTIONS", "include the description classes (default false)"),
                  ("CONFIGURATION", "include parameters (default true)"))]]))
    add("GET", "/provenance/search", _operation(
        "provenanceSearch", "find recorded products by activity, parameter, software, "
                            "input, checksum, agent, time or lineage", "provenance",
        _responses(_ok("the products found", {JSON: {"type": "object", "required": [
            "count", "offset", "limit", "more", "next", "truncated", "results"]}}),
            400, 404), parameters=[
            _query("activity", {"type": "string"}, "activity name"),
            _query("version", {"type": "string"}, "activity version"),
            _query("sha256", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                   "checksum of the product"),
            _query("agent", {"type": "string"}, "the agent who ran it"),
            _query("after", {"type": "string", "format": "date-time"}, "ended after"),
            _query("before", {"type": "string", "format": "date-time"}, "ended before"),
            _query("phase", {"type": "string", "enum": list(SEARCH_PHASES)},
                   "the run's final phase"),
            _query("ancestors", {"type": "string"}, "products this entity was made from"),
            _query("descendants", {"type": "string"}, "products made from this entity"),
            _query("limit", {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                   "at most this many results"),
            _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                   "skip this many results"),
            _query("param", {"type": "string", "pattern": "^[^:]+:"},
                   "name:value of a parameter", repeated=True),
            _query("software", {"type": "string", "maxLength": 300, "pattern":
                                "^\\s*[A-Za-z0-9][A-Za-z0-9._-]*\\s*(==\\s*\\S.*)?$"},
                   "package[==version] used by the run", repeated=True),
            _query("used", {"type": "string", "pattern": "\\S"},
                   "an input of the run: entity identifier, URL or sha256", repeated=True)]))
    add("POST", "/provenance/replay", _operation(
        "provenanceReplay", "run a recorded activity again with the same configuration "
                            "and inputs (303 to the new job)", "provenance",
        _responses(None, 400, 404, 409, see_other=True), requestBody=_form_body({
            "type": "object", "required": ["ID"], "properties": {
                "ID": {"type": "string", "pattern": "\\S",
                       "description": "entity, activity or job id"},
                "FORCE": {"type": "string", "enum": sorted(_BOOLEAN_TEXT)},
                "PHASE": {"type": "string", "enum": ["RUN", "PENDING"]}},
            "additionalProperties": False})))
    add("GET", "/provenance/replay/{job_id}", _operation(
        "provenanceReplayStatus", "a replay and, once it ended, its products against the "
                                  "originals", "provenance",
        _responses(_ok("the replay", {JSON: {"type": "object"}}), 404),
        parameters=[JOB_ID]))
    add("GET", "/provenance/templates/{activity}", _operation(
        "provenanceTemplate", "the PROV-Template of an activity (PROV-N)", "provenance",
        _responses(_ok("the template", {"text/provenance-notation": {"type": "string"}}),
                   404), parameters=[activity]))
    add("GET", "/provenance/bindings/{job_id}", _operation(
        "provenanceBindings", "the template bindings of a recorded run", "provenance",
        _responses(_ok("the bindings", {JSON: {"type": "object"}}), 404),
        parameters=[_path("job_id", {"type": "string"}, "a job or activity id")]))
