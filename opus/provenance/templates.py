"""Provenance templates: what a run of an activity asserts, as a PROV-Template.

A template (PROV-Template: Moreau, Batlajery, Huynh, Michaelides, Packer, "A Templating
System to Generate Provenance", IEEE Transactions on Software Engineering 44(2), 2018;
https://openprovenance.org/prov-template/) is an ordinary PROV document in which qualified
names in the ``var:`` namespace (``http://openprovenance.org/var#``) are variables and those
in ``vargen:`` (``http://openprovenance.org/vargen#``) are identifiers generated at
expansion. A *bindings* document gives the variables their values; *expansion* replaces the
variables and yields the provenance of one run. In OPUS, ``provenance_templates/{activity}
.provn`` says, for example, which output of an activity was derived from which input
(ProvenanceDM 1.0 section 2.3.4, WasDerivedFrom between entities of one Activity); where no
file exists, :func:`default_template` derives one from the ActivityDescription (ProvenanceDM
1.0 section 2.5.3: UsageDescription and GenerationDescription give the used and generated
entities; section 2.7.2: ParameterDescription, the configuration).

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

Expansion rules implemented (:func:`expand`)
--------------------------------------------
Bindings are "bindings v3" JSON::

    {"var": {"output": [{"@id": "opus:ent-..."}],
             "text": [{"@value": "hello", "@type": "xsd:string"}]},
     "context": {"opus": "ivo://opus.local/provenance#"}}

1. Every variable is bound to a *list* of values: ``{"@id": qname}`` for identifiers,
   ``{"@value": text, "@type": xsd type}`` (or ``"@language"``) for attribute values. An
   attribute variable may instead be bound to a list of lists: the i-th list gives the
   values for the i-th instance of the statement's first variable (the v3 form). A bare
   JSON scalar is accepted as an untyped ``@value``.
2. A statement is instantiated once for every combination of values of its variables in
   identifier positions (the record's identifier and its formal arguments): the
   cartesian product over independent variables. Variables declared linked
   (``tmpl:linked='var:other'`` on a declaration; the relation is symmetric and
   transitive) form a group whose values are taken together, index by index (zipped);
   the members of a group must have the same number of values.
3. A statement with an unbound variable (absent or bound to an empty list) in a required
   position is dropped: the identifier of an element, the first two arguments of a
   relation. In an optional position (a relation's identifier, the activity, generation
   and usage of wasDerivedFrom, the plan of wasAssociatedWith ...) it becomes ``-``.
4. An attribute whose value is an unbound variable is dropped; a variable bound to several
   values gives the attribute several values (PROV attributes are multi-valued).
5. ``tmpl:startTime``, ``tmpl:endTime`` (activities) and ``tmpl:time`` (relations with a
   time) set the corresponding time; ``tmpl:linked`` and other ``tmpl:`` attributes do not
   appear in the result.
6. A ``vargen:`` variable that the bindings do not bind gets fresh identifiers
   (``uuid:<uuid4>``, prefix ``uuid`` = ``urn:uuid:``): one per value of the group it is
   linked to, else one. A ``vargen:`` identifier on a statement that expands to several
   instances should therefore be linked to the repeating variable.
7. Bundles are expanded too (their identifier may be a variable); identical expanded
   statements are written once. The ``var``, ``vargen`` and ``tmpl`` namespaces do not
   appear in the result; the bindings' context namespaces do.

Not implemented: the ``tmpl:`` value-expression extensions of later ProvToolbox versions
(``tmpl:label``, ``tmpl:value_*``), templates composed of several templates, and
variables in attribute *names*.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prov.constants import (
    PROV_ATTR_ENDTIME,
    PROV_ATTR_GENERATED_ENTITY,
    PROV_ATTR_STARTTIME,
    PROV_ATTR_TIME,
    PROV_ATTR_USED_ENTITY,
    PROV_DERIVATION,
    PROV_LABEL,
    PROV_ROLE,
    XSD,
)
from prov.identifier import Namespace, QualifiedName
from prov.model import Literal, ProvBundle, ProvDocument, ProvException, parse_xsd_types

from opus.activities.model import ActivityDescription
from opus.config import PROJECT_ROOT

log = logging.getLogger("opus.provenance")

VAR_URI = "http://openprovenance.org/var#"
VARGEN_URI = "http://openprovenance.org/vargen#"
TMPL_URI = "http://openprovenance.org/tmpl#"
VOPROV_URI = "http://www.ivoa.net/documents/ProvenanceDM/ns/voprov/"
VAR = Namespace("var", VAR_URI)
VARGEN = Namespace("vargen", VARGEN_URI)
TMPL = Namespace("tmpl", TMPL_URI)
UUID = Namespace("uuid", "urn:uuid:")
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

_TEMPLATE_URIS = {VAR_URI, VARGEN_URI, TMPL_URI}
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
    from prov.serializers.provn_lexer import ProvNSyntaxError

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
    if not path.is_file():
        return default_template(activity, namespace)
    try:
        return parse_provn(path.read_text(encoding="utf-8"))
    except TemplateSyntaxError as error:
        raise TemplateSyntaxError(f"{path}: {error}", error.line, error.column) from None


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


# --------------------------------------------------------------------------- expansion


def _is_template_name(value: Any, uri: str) -> bool:
    return isinstance(value, QualifiedName) and value.namespace.uri == uri


def _is_variable(value: Any) -> bool:
    return _is_template_name(value, VAR_URI) or _is_template_name(value, VARGEN_URI)


class _Unbound(Exception):
    pass


class _Bindings:
    """Bindings v3 resolved against an output bundle's namespaces."""

    def __init__(self, template: ProvDocument, bindings: Mapping[str, Any],
                 target: ProvDocument, fresh: Callable[[], str]) -> None:
        if not isinstance(bindings, Mapping):
            raise ValueError("bindings: expected a JSON object with 'var' and 'context'")
        variables = bindings.get("var") or {}
        if not isinstance(variables, Mapping):
            raise ValueError("bindings: 'var' must be an object of variable -> values")
        self.target = target
        self.raw = {name: (list(values) if isinstance(values, list) else [values])
                    for name, values in variables.items()}
        self._fresh = fresh
        self._parent = self._link_groups(template)
        self._generated: dict[str, list[QualifiedName]] = {}

    # Groups of linked variables (tmpl:linked), by union-find over variable local names.
    def _link_groups(self, template: ProvDocument) -> dict[str, str]:
        parent: dict[str, str] = {}

        def find(name: str) -> str:
            parent.setdefault(name, name)
            while parent[name] != name:
                parent[name] = parent[parent[name]]
                name = parent[name]
            return name

        self._find = find
        for record in _all_records(template):
            for name, value in record.extra_attributes:
                if name == TMPL["linked"] and _is_variable(value) and record.identifier:
                    if _is_variable(record.identifier):
                        a, b = find(record.identifier.localpart), find(value.localpart)
                        if a != b:
                            parent[a] = b
        return parent

    def group(self, name: str) -> str:
        return self._find(name)

    def _group_size(self, name: str) -> int:
        root = self.group(name)
        for other in sorted(self._parent):
            if other != name and self.group(other) == root and self.raw.get(other):
                return len(self.raw[other])
        return 1

    def identifiers(self, variable: QualifiedName) -> list[QualifiedName]:
        """The identifier values of ``variable`` (empty: unbound)."""
        name = variable.localpart
        if name not in self.raw and _is_template_name(variable, VARGEN_URI):
            if name not in self._generated:
                self.target.add_namespace(UUID)
                self._generated[name] = [
                    self.target.valid_qualified_name(f"uuid:{self._fresh()}")
                    for _ in range(self._group_size(name))]
            return self._generated[name]
        values = []
        for item in self.raw.get(name, []):
            if isinstance(item, list):
                raise ValueError(f"bindings: var:{name} is used as an identifier but bound "
                                 f"to a list of lists")
            if not isinstance(item, Mapping) or "@id" not in item:
                raise ValueError(f"bindings: var:{name} is used as an identifier and needs "
                                 f'{{"@id": "prefix:name"}} values, got {item!r}')
            values.append(self.qualified_name(str(item["@id"]), name))
        return values

    def qualified_name(self, text: str, name: str) -> QualifiedName:
        try:
            value = self.target.valid_qualified_name(text)
        except ProvException:
            value = None
        if not isinstance(value, QualifiedName):
            raise ValueError(f"bindings: var:{name}: {text!r} is not a qualified name with a "
                             f"prefix declared in the bindings' context")
        return value

    def attribute_values(self, variable: QualifiedName, index: int) -> list[Any]:
        """The values of an attribute variable for instance ``index`` of its statement."""
        name = variable.localpart
        if _is_template_name(variable, VARGEN_URI) or (
                self.raw.get(name) and all(isinstance(i, Mapping) and "@id" in i
                                           for i in self.raw[name])):
            values = self.identifiers(variable)
            if _is_template_name(variable, VARGEN_URI) and len(values) > 1:
                return values[index:index + 1]  # one generated id per instance
            return values
        items = self.raw.get(name, [])
        if items and all(isinstance(item, list) for item in items):
            items = items[index] if index < len(items) else []
        return [self.literal(item, name) for item in items]

    def literal(self, item: Any, name: str) -> Any:
        if isinstance(item, list):
            raise ValueError(f"bindings: var:{name} mixes values and lists of values")
        if not isinstance(item, Mapping):
            return item  # a bare JSON scalar
        if "@id" in item:
            return self.qualified_name(str(item["@id"]), name)
        if "@value" not in item:
            raise ValueError(f'bindings: var:{name}: a value needs "@value" or "@id", '
                             f"got {item!r}")
        value = item["@value"]
        if "@language" in item:
            return Literal(str(value), langtag=str(item["@language"]))
        type_name = item.get("@type")
        if type_name is None:
            return value
        datatype = self.qualified_name(str(type_name), name)
        if datatype == XSD["string"]:
            return str(value)
        if isinstance(value, str):
            try:
                parsed = parse_xsd_types(value, datatype)
            except (TypeError, ValueError):
                raise ValueError(f"bindings: var:{name}: {value!r} is not a valid "
                                 f"{type_name}") from None
            if parsed is not None:
                return parsed
        return Literal(str(value), datatype)


def _all_records(document: ProvDocument) -> Iterable[Any]:
    yield from document.get_records()
    for bundle in document.bundles:
        yield from bundle.get_records()


def _required(record: Any, position: int) -> bool:
    """Whether a variable at ``position`` (-1: the identifier) is needed by the record."""
    if position < 0:
        return record.is_element()
    return position < 2 and not record.is_element()


def _first_time(values: list[Any]) -> dt.datetime | None:
    for value in values:
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, (str, Literal)):
            try:
                return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                continue
    return None


def _expand_record(record: Any, target: ProvBundle, env: _Bindings,
                   seen: set[Any]) -> None:
    identifier = record.identifier
    formal = list(record.formal_attributes)
    positions: list[tuple[int, Any]] = [(-1, identifier)] + [
        (i, value) for i, (_, value) in enumerate(formal)]
    variables: dict[str, QualifiedName] = {}
    dropped: set[str] = set()
    values: dict[str, list[QualifiedName]] = {}
    for position, value in positions:
        if not _is_variable(value):
            continue
        key = f"{value.namespace.uri}{value.localpart}"
        if key not in values:
            values[key] = env.identifiers(value)
        if not values[key]:
            if _required(record, position):
                return  # rule 3: an unbound variable in a required position
            dropped.add(key)
        else:
            variables[key] = value
    # Rule 2: cartesian product over groups, zip within a group.
    groups: dict[str, list[str]] = {}
    for key, variable in variables.items():
        groups.setdefault(env.group(variable.localpart), []).append(key)
    order = sorted(groups)
    sizes = []
    for root in order:
        lengths = {key: len(values[key]) for key in groups[root]}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{variables[k].localpart} ({n})" for k, n in lengths.items())
            raise ValueError(f"bindings: linked variables have different numbers of values: "
                             f"{shown}")
        sizes.append(next(iter(lengths.values())))
    subject = next((f"{v.namespace.uri}{v.localpart}" for _, v in positions
                    if _is_variable(v) and f"{v.namespace.uri}{v.localpart}" in variables),
                   None)
    for combination in itertools.product(*(range(n) for n in sizes)):
        index = dict(zip(order, combination))

        def substitute(value: Any) -> Any:
            if not _is_variable(value):
                return value
            key = f"{value.namespace.uri}{value.localpart}"
            if key in dropped:
                return None
            return values[key][index[env.group(value.localpart)]]

        instance = index[env.group(variables[subject].localpart)] if subject else 0
        new_identifier = substitute(identifier)
        new_formal = [(name, substitute(value)) for name, value in formal]
        extra: list[tuple[Any, Any]] = []
        times: dict[Any, dt.datetime] = {}
        for name, value in record.extra_attributes:
            resolved = (env.attribute_values(value, instance) if _is_variable(value)
                        else [value])
            if isinstance(name, QualifiedName) and name.namespace.uri == TMPL_URI:
                slot = {"startTime": PROV_ATTR_STARTTIME, "endTime": PROV_ATTR_ENDTIME,
                        "time": PROV_ATTR_TIME}.get(name.localpart)
                time = _first_time(resolved) if slot is not None else None
                if time is not None:
                    times[slot] = time
                continue  # rule 5: tmpl: attributes are instructions, not provenance
            extra.extend((name, item) for item in resolved)  # rule 4
        new_formal = [(name, times.get(name) if value is None else value)
                      for name, value in new_formal]
        key = (record.get_type(), new_identifier, tuple(new_formal),
               frozenset((str(n), repr(v)) for n, v in extra))
        if key in seen:
            continue
        seen.add(key)
        target.new_record(record.get_type(), new_identifier,
                          [(n, v) for n, v in new_formal if v is not None], extra)


def expand(template: ProvDocument, bindings: Mapping[str, Any], *,
           fresh: Callable[[], str] | None = None) -> ProvDocument:
    """The template with its variables replaced by their bound values (PROV-Template
    expansion; the rules are in the module notes). ``fresh`` makes vargen identifiers
    (default: a random UUID). Raises ValueError for bindings that do not fit."""
    out = ProvDocument()
    context = (bindings.get("context") or {}) if isinstance(bindings, Mapping) else {}
    if not isinstance(context, Mapping):
        raise ValueError("bindings: 'context' must be an object of prefix -> namespace URI")

    def namespaces(target: ProvBundle, source: ProvBundle) -> None:
        for ns in source.get_registered_namespaces():
            if ns.uri not in _TEMPLATE_URIS:
                target.add_namespace(ns)
        for prefix, uri in context.items():
            target.add_namespace(Namespace(str(prefix), str(uri)))

    namespaces(out, template)
    env = _Bindings(template, bindings, out, fresh or (lambda: str(uuid.uuid4())))
    seen: set[Any] = set()
    for record in template.get_records():
        _expand_record(record, out, env, seen)
    for bundle in template.bundles:
        identifier = bundle.identifier
        if _is_variable(identifier):
            bound = env.identifiers(identifier)
            if not bound:
                continue  # an unbound bundle identifier: nothing to name the bundle by
            identifier = bound[0]
        target = out.bundle(identifier)
        namespaces(target, bundle)
        for record in bundle.get_records():
            _expand_record(record, target, env, seen)
    return out


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
    for record in _all_records(expanded):
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
