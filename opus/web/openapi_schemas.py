"""Building blocks of the OpenAPI document (:mod:`opus.web.openapi`): the JSON Schema of
activity parameters, the shared component schemas and responses, and short constructors
of parameters, bodies and responses for the route declarations (:mod:`opus.web.routing`).

Activity parameters become JSON Schema (:func:`parameter_schema`): datatype -> ``type``,
``MIN`` / ``MAX`` -> ``minimum`` / ``maximum`` / ``exclusiveMinimum`` /
``exclusiveMaximum``, ``OPTION`` -> ``enum``, ``arraysize`` -> ``maxLength``, the default,
the description, and the unit and UCD as ``x-unit`` / ``x-ucd``; file inputs are an upload
(``format: binary``, in ``multipart/form-data``) or a URL or earlier result
(``format: uri``); every job-creation body has an example (:func:`creation_example`).
"""

from __future__ import annotations

import re
from typing import Any

from opus.activities.model import (
    BOOLEAN_DATATYPES,
    FLOAT_DATATYPES,
    INTEGER_DATATYPES,
    TEXT_DATATYPES,
    ActivityDescription,
    EntityDescription,
    ParameterDescription,
)
from opus.activities.validation import INTEGER_RANGES, parse_arraysize, parse_number
from opus.uws.models import Phase
from opus.uws.params import INT_MAX

JSON = "application/json"
XML = "application/xml"
TEXT = "text/plain"
HTML = "text/html"
VOTABLE = "application/x-votable+xml"
FORM = "application/x-www-form-urlencoded"
#: The tags of the operations that are not a job list's.
SERVICE, ACTIVITIES, PROVENANCE = ("service",), ("activities",), ("provenance",)
BOOLEAN_TEXT = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_COMPONENT = re.compile(r"[^A-Za-z0-9._-]")
#: Text without the control characters XML 1.0 cannot carry (refused with a 400, since
#: every value reappears in the UWS documents); valid as an ECMA and a Python regex.
XML_TEXT = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\uFFFE\\uFFFF]*$"


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
        default = BOOLEAN_TEXT.get((default or "").strip().lower()) \
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
def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
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
            "phase": ref("schemas", "Phase"),
            "quote": nullable(ref("schemas", "Timestamp")),
            "creationTime": ref("schemas", "Timestamp"),
            "startTime": nullable(ref("schemas", "Timestamp")),
            "endTime": nullable(ref("schemas", "Timestamp")),
            "executionDuration": {"type": "integer", "minimum": 0},
            "destruction": nullable(ref("schemas", "Timestamp")),
            "parameters": {"type": "array", "items": ref("schemas", "Parameter")},
            "results": {"type": "array", "items": ref("schemas", "Result")},
            "errorSummary": nullable(ref("schemas", "ErrorSummary")),
            "jobInfo": {"type": ["object", "null"], "properties": {"provenance": {
                "type": "object", "properties": {
                    "href": {"type": "string", "format": "uri"},
                    "mime-type": {"type": "string"}}},
                "access": {"enum": ["public", "private"]}}},
        },
        "additionalProperties": False},
    "JobRef": {
        "type": "object",
        "required": ["id", "href", "phase", "runId", "ownerId", "creationTime"],
        "properties": {
            "id": {"type": "string"}, "href": {"type": "string", "format": "uri"},
            "phase": ref("schemas", "Phase"), "runId": {"type": ["string", "null"]},
            "ownerId": {"type": ["string", "null"]},
            "creationTime": ref("schemas", "Timestamp")},
        "additionalProperties": False},
    "JobList": {
        "type": "object", "required": ["version", "jobs"],
        "description": "The UWS job list (uws:jobs) in JSON.",
        "properties": {"version": {"const": "1.1"},
                       "jobs": {"type": "array", "items": ref("schemas", "JobRef")}},
        "additionalProperties": False},
    "Parameters": {
        "type": "object", "required": ["parameters"],
        "properties": {"parameters": {"type": "array",
                                      "items": ref("schemas", "Parameter")}},
        "additionalProperties": False},
    "Results": {
        "type": "object", "required": ["results"],
        "properties": {"results": {"type": "array", "items": ref("schemas", "Result")}},
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
        JSON: {"schema": ref("schemas", "Error")}}}


COMMON_RESPONSES: dict[str, Any] = {
    "BadRequest": _error_response("a parameter breaks a rule; the message names it"),
    "Forbidden": _error_response("not allowed in the job's phase, or not the owner's"),
    "NotFound": _error_response("no such activity, job, parameter or result"),
    "Conflict": _error_response("refused: the request conflicts with what is recorded"),
    "PayloadTooLarge": _error_response("the body or an upload exceeds the server's limit"),
    "UnsupportedFormat": _error_response("the requested RESPONSEFORMAT is not supported"),
    "TooManyRequests": {**_error_response("past one of the caller's limits (README, Limits: "
                                          "max_active_jobs); the job stays PENDING"),
                        "headers": {"Retry-After": {"required": True, "schema": {
                            "type": "integer", "minimum": 0}}}},
    "Unavailable": _error_response("the answer could not be made in time"),
    "SeeOther": {"description": "done; the Location is the resource to read next",
                 "headers": {"Location": {"required": True, "schema": {
                     "type": "string", "format": "uri"}}}},
}
_ERRORS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
           413: "PayloadTooLarge", 415: "UnsupportedFormat", 429: "TooManyRequests",
           503: "Unavailable"}


def responses(success: dict[str, Any] | None, *errors: int, see_other: bool = False
              ) -> dict[str, Any]:
    """The Responses Object: ``success`` as 200, 303 when ``see_other``, then the shared
    responses of the ``errors`` statuses."""
    answers: dict[str, Any] = {}
    if success is not None:
        answers["200"] = success
    if see_other:
        answers["303"] = ref("responses", "SeeOther")
    for status in errors:
        answers[str(status)] = ref("responses", _ERRORS[status])
    return answers


def ok(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"description": description,
            "content": {media: {"schema": schema} for media, schema in content.items()}}


def uws_ok(description: str, schema: str) -> dict[str, Any]:
    """200 with the XML document, or its JSON form when Accept prefers JSON."""
    return ok(description, {XML: ref("schemas", "UwsXml"), JSON: ref("schemas", schema)})


def atomic_ok(description: str, key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return ok(description, {TEXT: {"type": "string"}, JSON: {
        "type": "object", "required": [key], "properties": {key: schema},
        "additionalProperties": False}})


def query_param(name: str, schema: dict[str, Any], description: str, *,
                required: bool = False, repeated: bool = False) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "description": description,
                                 "required": required}
    if repeated:
        parameter.update(schema={"type": "array", "items": schema}, style="form",
                         explode=True)
    else:
        parameter["schema"] = schema
    return parameter


def path_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def form_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {FORM: {"schema": schema}}}


JOB_ID = path_param("job_id", {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "the job identifier")
RESULT_ID = path_param("result_id", {"type": "string"},
                       "a result identifier; 'provenance' redirects to the run's provenance")


#: ``{name}`` of the discovery routes: one of the activities (``ActivityName`` is built
#: from the registry with the document).
ACTIVITY_NAME = path_param("name", ref("schemas", "ActivityName"), "an activity name")


def activity_name_schema(names: list[str]) -> dict[str, Any]:
    return {"type": "string", "enum": names} if names else {"type": "string"}


# -- the pieces of one activity's job list ------------------------------------------------
def component_key(activity: ActivityDescription) -> str:
    """The prefix of the activity's component schemas and operationIds."""
    return _COMPONENT.sub("_", activity.name)


def activity_schemas(activity: ActivityDescription) -> dict[str, Any]:
    """The component schemas of one activity: its job creation (form and multipart) and
    job update bodies."""
    key = component_key(activity)
    return {f"{key}.JobCreation": creation_schema(activity, multipart=False),
            f"{key}.JobCreationUpload": creation_schema(activity, multipart=True),
            f"{key}.JobUpdate": update_schema(activity)}


def job_update(activity: ActivityDescription) -> dict[str, str]:
    """What changes a PENDING job of the activity (component ``<key>.JobUpdate``)."""
    return ref("schemas", f"{component_key(activity)}.JobUpdate")


def creation_body(activity: ActivityDescription) -> dict[str, Any]:
    """The request body of ``POST /rest/{activity}``: a form, or multipart with uploads."""
    key = component_key(activity)
    encoding = {entity.name: {"contentType": entity.content_type or "application/octet-stream"}
                for entity in activity.used}
    upload_media: dict[str, Any] = {"schema": ref("schemas", f"{key}.JobCreationUpload")}
    if encoding:
        upload_media["encoding"] = encoding
    # Without a required parameter or input, an empty POST creates a job of defaults.
    required = bool(creation_schema(activity, multipart=False)["required"])
    return {"required": required, "content": {
        FORM: {"schema": ref("schemas", f"{key}.JobCreation"),
               "example": creation_example(activity)},
        "multipart/form-data": upload_media}}


def parameter_name(activity: ActivityDescription) -> dict[str, Any]:
    """``{name}`` of ``/rest/{activity}/{job_id}/parameters/{name}``."""
    names = [p.name for p in activity.parameters] + [e.name for e in activity.used]
    return path_param("name", {"type": "string", "enum": names} if names
                      else {"type": "string"}, "a parameter name (case-insensitive)")
