"""Provenance templates: what a run of an activity asserts, as a PROV-Template.

A template (PROV-Template, https://openprovenance.org/prov-template/; the language and its
expansion are in :mod:`opus.provenance.template_expansion`) is a PROV document whose
``var:`` names are variables. In OPUS, ``provenance_templates/{activity}.provn`` says, for
example, which output of an activity was derived from which input (ProvenanceDM 1.0 section
2.3.4, WasDerivedFrom between entities of one Activity); where no file exists,
:func:`default_template` derives one from the ActivityDescription (ProvenanceDM 1.0 section
2.5.3: UsageDescription and GenerationDescription give the used and generated entities;
section 2.7.2: ParameterDescription, the configuration). This module loads templates,
binds them for a run (:func:`bindings_for_run`) and reads back what an expanded template
asserts (:func:`derivations`, :func:`template_pairs`).

Variables used by OPUS templates and bound by :func:`bindings_for_run`:

``var:activity``
    the run (ProvenanceDM Activity, ``opus:act-<job id>``);
``var:<entity name>``
    the entities used or generated with that role (UsageDescription / GenerationDescription
    name); a role may be bound to several entities, or to none;
``var:<parameter name>``
    a parameter value (ActivityConfiguration); ``var:param_<name>`` if the name is taken by
    an entity or by a reserved variable;
``var:agent``
    the job owner (ProvenanceDM Agent with role Operator, section 2.4.4);
``var:startTime`` / ``var:endTime``
    the run's times, given to the activity through ``tmpl:startTime`` / ``tmpl:endTime``
    attributes (PROV-N has no variables in time positions).

Reading PROV-N
--------------
The ``prov`` package (3.x; 3.2.3 is installed) has a complete PROV-N reader (recursive
descent over the whole W3C PROV-N grammar, https://www.w3.org/TR/prov-n/), so
:func:`parse_provn` uses it rather than a second, partial parser. It reads documents and
bundles, prefix and default namespace declarations, every statement (entity, activity,
agent, used, wasGeneratedBy, wasDerivedFrom, wasAssociatedWith, wasAttributedTo,
wasInformedBy and the rest), optional identifiers (``id;``), ``-`` markers, times,
attribute lists, string literals (``"..."`` with escapes, and triple-quoted), typed
literals (``"1" %% xsd:int``), language tags, qualified-name literals (``'var:x'``),
numbers and comments. Syntax errors become :class:`TemplateSyntaxError` (a ValueError)
naming the line and column.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prov.constants import (
    PROV_ATTR_GENERATED_ENTITY,
    PROV_ATTR_USED_ENTITY,
    PROV_DERIVATION,
    PROV_LABEL,
    PROV_ROLE,
)
from prov.identifier import Namespace, QualifiedName
from prov.model import ProvDocument, ProvException
# Imported here, not at the first parse: the lexer compiles its expressions on import
# (200 ms, which the first job ending in each web worker paid; issue 15).
from prov.serializers import Registry
from prov.serializers.provn_lexer import ProvNSyntaxError

from opus.activities.model import ActivityDescription
from opus.config import PROJECT_ROOT
from opus.provenance.template_expansion import TMPL, VAR, all_records, expand

log = logging.getLogger("opus.provenance")
Registry.load_serializers()

VOPROV_URI = "http://www.ivoa.net/documents/ProvenanceDM/ns/voprov/"
#: Default namespace of OPUS identifiers (settings ``provenance_namespace``).
DEFAULT_NAMESPACE = "ivo://opus.local/provenance#"
#: Where ``{activity}.provn`` files are looked for by default.
TEMPLATES_DIR = PROJECT_ROOT / "provenance_templates"
#: Variables every OPUS template may use besides entities and parameters.
RESERVED = ("activity", "agent", "startTime", "endTime")
#: The role of the job owner (ProvenanceDM 1.0 section 2.4.4, Agent roles).
OPERATOR = "Operator"
BINDINGS_CONTENT_TYPE = "application/json"
PROVN_CONTENT_TYPE = "text/provenance-notation; charset=UTF-8"

_LOCAL_BAD = re.compile(r"[^A-Za-z0-9_\-]")
_XSD_TYPES = {  # VOTable datatype of a parameter -> XSD type of its value
    "boolean": "xsd:boolean", "short": "xsd:short", "int": "xsd:int", "long": "xsd:long",
    "unsignedByte": "xsd:unsignedByte", "float": "xsd:float", "double": "xsd:double",
    "char": "xsd:string", "unicodeChar": "xsd:string",
}


class TemplateSyntaxError(ValueError):
    """A template is not valid PROV-N; ``line`` and ``column`` are 1-based (0 unknown)."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


# --------------------------------------------------------------------------- reading


def parse_provn(text: str) -> ProvDocument:
    """The PROV document written in PROV-N ``text`` (W3C PROV-N; see the module notes).

    Raises :class:`TemplateSyntaxError` (a ValueError) with the line and column of the
    first error.
    """
    try:
        return ProvDocument.deserialize(content=text, format="provn")
    except ProvNSyntaxError as error:
        raise TemplateSyntaxError(f"PROV-N syntax error at line {error.line}, column "
                                  f"{error.column}: {error.message}",
                                  error.line, error.column) from None
    except ProvException as error:  # well-formed text the model refuses
        raise TemplateSyntaxError(f"PROV-N: {error}") from None


def template_path(activity: ActivityDescription | str, directory: Path) -> Path:
    name = activity if isinstance(activity, str) else activity.name
    return Path(directory) / f"{name}.provn"


def load_template(activity: ActivityDescription, directory: Path = TEMPLATES_DIR, *,
                  namespace: str = DEFAULT_NAMESPACE) -> ProvDocument:
    """``{directory}/{activity.name}.provn`` if it exists, else :func:`default_template`.

    A broken file raises :class:`TemplateSyntaxError` whose message starts with its path.
    """
    path = template_path(activity, directory)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not path.is_file():
        return default_template(activity, namespace)
    try:
        return _parsed_file(str(path), stat.st_mtime_ns, stat.st_size)
    except TemplateSyntaxError as error:
        raise TemplateSyntaxError(f"{path}: {error}", error.line, error.column) from None


@functools.lru_cache(maxsize=128)
def _parsed_file(path: str, _mtime_ns: int, _size: int) -> ProvDocument:
    """A template file parsed once per version of it (its time and size in the key): it
    was parsed again at every job's end, a third of the time the runner's report took
    (py-spy, issue 15). Callers only read the document (expansion builds a new one)."""
    return parse_provn(Path(path).read_text(encoding="utf-8"))


def template_provn(activity: ActivityDescription, directory: Path = TEMPLATES_DIR, *,
                   namespace: str = DEFAULT_NAMESPACE) -> str:
    """The template of ``activity`` in PROV-N (as ``prov`` writes it)."""
    return load_template(activity, directory, namespace=namespace).get_provn() + "\n"


# --------------------------------------------------------------------------- default


def variable_name(name: str) -> str:
    """A variable (PROV-N local name) for an entity or parameter name."""
    local = _LOCAL_BAD.sub("_", name) or "_"
    return local if local[0].isalpha() or local[0] == "_" else f"_{local}"


def parameter_variable(name: str, taken: Iterable[str] = ()) -> str:
    """The variable of parameter ``name``: ``name`` itself unless an entity or a reserved
    variable has it, then ``param_<name>``."""
    local = variable_name(name)
    clash = {variable_name(n) for n in taken} | set(RESERVED)
    return f"param_{local}" if local in clash else local


def parameter_namespace(namespace: str = DEFAULT_NAMESPACE) -> Namespace:
    """Attribute names for parameter values: ``param:<name>`` (kept apart from the
    ``opus:`` attributes of activities so that no parameter name can shadow one)."""
    return Namespace("param", f"{namespace}param/")


def default_template(activity: ActivityDescription,
                     namespace: str = DEFAULT_NAMESPACE) -> ProvDocument:
    """A template derived from an ActivityDescription (ProvenanceDM 1.0 section 2.5).

    ``var:activity`` with its start and end time and every parameter as a ``param:``
    attribute; ``var:<name>`` for every used entity (``used``, role = name) and generated
    entity (``wasGeneratedBy``, role = name); every generated entity ``wasDerivedFrom``
    every used entity (the most a description says: it does not tell which output comes
    from which input; a hand-written template can); ``var:agent`` associated with the run
    as Operator.
    """
    document = ProvDocument()
    for ns in (VAR, TMPL, Namespace("opus", namespace), Namespace("voprov", VOPROV_URI)):
        document.add_namespace(ns)
    param = document.add_namespace(parameter_namespace(namespace))
    entity_names = [e.name for e in (*activity.used, *activity.generated)]
    attributes: list[tuple[Any, Any]] = [
        (PROV_LABEL, activity.name),
        ("voprov:activityDescription", activity.name),
        (TMPL["startTime"], VAR["startTime"]), (TMPL["endTime"], VAR["endTime"]),
    ]
    if activity.version:
        attributes.append(("voprov:version", activity.version))
    for parameter in activity.parameters:
        attributes.append((param[variable_name(parameter.name)],
                           VAR[parameter_variable(parameter.name, entity_names)]))
    act = VAR["activity"]
    document.activity(act, None, None, attributes)
    for entity in activity.used:
        document.entity(VAR[variable_name(entity.name)], {PROV_LABEL: entity.name})
        document.used(act, VAR[variable_name(entity.name)], None, None,
                      {PROV_ROLE: entity.name})
    for entity in activity.generated:
        document.entity(VAR[variable_name(entity.name)], {PROV_LABEL: entity.name})
        document.wasGeneratedBy(VAR[variable_name(entity.name)], act, None, None,
                                {PROV_ROLE: entity.name})
    for generated in activity.generated:
        for used in activity.used:
            document.wasDerivedFrom(VAR[variable_name(generated.name)],
                                    VAR[variable_name(used.name)], act)
    document.agent(VAR["agent"])
    document.wasAssociatedWith(act, VAR["agent"], None, None, {PROV_ROLE: OPERATOR})
    return document


# --------------------------------------------------------------------------- bindings


def _time_text(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:  # the record stores UTC without a zone
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


def _qualified(identifier: str, namespace: str) -> str:
    """``opus:<local>`` for a local id, an ``opus:`` name or a URI in ``namespace``."""
    if identifier.startswith(namespace):
        return f"opus:{identifier[len(namespace):]}"
    if identifier.startswith("opus:"):
        return identifier
    return f"opus:{identifier}"


def bindings_for_run(
    activity_id: str,
    used: Mapping[str, Sequence[str]],
    generated: Mapping[str, Sequence[str]],
    parameters: Mapping[str, Any],
    agent: str | None,
    start_time: dt.datetime | str | None,
    end_time: dt.datetime | str | None,
    namespace: str = DEFAULT_NAMESPACE,
    *,
    datatypes: Mapping[str, str] | None = None,
    entity_names: Iterable[str] = (),
) -> dict[str, Any]:
    """Bindings v3 (PROV-Template) for one run, from what it recorded.

    ``used`` / ``generated``: role -> entity ids (local ids such as ``ent-...`` or
    ``opus:`` names); ``parameters``: name -> value; ``agent``: the Operator's id.
    ``datatypes`` (parameter name -> VOTable datatype) types the parameter values
    (default ``xsd:string``; Python bool/int/float values are typed by themselves);
    ``entity_names``: the entity names of the activity description, so that a parameter
    named like an entity is bound as ``param_<name>`` as in :func:`default_template`.
    """
    variables: dict[str, list[Any]] = {"activity": [{"@id": _qualified(activity_id,
                                                                       namespace)}]}
    for relation in (used, generated):
        for role, ids in relation.items():
            values = variables.setdefault(variable_name(role), [])
            for entity_id in ids:
                item = {"@id": _qualified(entity_id, namespace)}
                if item not in values:
                    values.append(item)
    taken = [*entity_names, *used, *generated]
    datatypes = datatypes or {}
    for name, value in parameters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            literal = {"@value": "true" if value else "false", "@type": "xsd:boolean"}
        elif isinstance(value, int):
            literal = {"@value": str(value), "@type": "xsd:long"}
        elif isinstance(value, float):
            literal = {"@value": repr(value), "@type": "xsd:double"}
        else:
            literal = {"@value": str(value),
                       "@type": _XSD_TYPES.get(datatypes.get(name, "char"), "xsd:string")}
        variables[parameter_variable(name, taken)] = [literal]
    if agent:
        variables["agent"] = [{"@id": _qualified(agent, namespace)}]
    for key, value in (("startTime", start_time), ("endTime", end_time)):
        if value is not None:
            variables[key] = [{"@value": _time_text(value), "@type": "xsd:dateTime"}]
    return {"var": variables, "context": {"opus": namespace}}


# --------------------------------------------------------------------------- results


def derivations(expanded: ProvDocument,
                namespace: str | None = DEFAULT_NAMESPACE) -> list[tuple[str, str]]:
    """(generated entity, used entity) of every wasDerivedFrom of ``expanded`` (bundles
    included), sorted and without repeats. Identifiers in ``namespace`` are given as the
    local ids the record stores (``ent-...``); others as full URIs."""

    def text(name: Any) -> str:
        uri = name.uri if isinstance(name, QualifiedName) else str(name)
        if namespace and uri.startswith(namespace):
            return uri[len(namespace):]
        return uri

    pairs = set()
    for record in all_records(expanded):
        if record.get_type() != PROV_DERIVATION:
            continue
        attributes = dict(record.formal_attributes)
        generated = attributes.get(PROV_ATTR_GENERATED_ENTITY)
        used = attributes.get(PROV_ATTR_USED_ENTITY)
        if generated is not None and used is not None:
            pairs.add((text(generated), text(used)))
    return sorted(pairs)


def template_pairs(activity: ActivityDescription, bindings: Mapping[str, Any],
                   directory: Path = TEMPLATES_DIR,
                   namespace: str = DEFAULT_NAMESPACE) -> list[tuple[str, str]]:
    """(generated, used) entity pairs that the activity's template asserts for a run with
    ``bindings``. A broken template file or bindings that do not fit it are logged and give
    the default template's derivations (a bad template must never stop a job from ending).
    """
    try:
        return derivations(expand(load_template(activity, directory, namespace=namespace),
                                  bindings), namespace)
    except ValueError as error:
        log.error("provenance template of %s: %s; using the default template",
                  activity.name, error)
        return derivations(expand(default_template(activity, namespace), bindings),
                           namespace)


def bindings_json(bindings: Mapping[str, Any]) -> str:
    return json.dumps(bindings, indent=2, sort_keys=False) + "\n"
