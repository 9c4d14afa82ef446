"""PROV-Template expansion: a template plus bindings gives the provenance of one run.

A template (PROV-Template: Moreau, Batlajery, Huynh, Michaelides, Packer, "A Templating
System to Generate Provenance", IEEE Transactions on Software Engineering 44(2), 2018;
https://openprovenance.org/prov-template/) is an ordinary PROV document in which qualified
names in the ``var:`` namespace (``http://openprovenance.org/var#``) are variables and those
in ``vargen:`` (``http://openprovenance.org/vargen#``) are identifiers generated at
expansion. A *bindings* document gives the variables their values; *expansion*
(:func:`expand`) replaces the variables and yields the provenance of one run. This module
knows nothing of OPUS: which templates an activity has and how a run is bound are in
:mod:`opus.provenance.templates`.

Bindings and expansion rules (:func:`expand`)
---------------------------------------------
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
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeGuard

from prov.constants import PROV_ATTR_ENDTIME, PROV_ATTR_STARTTIME, PROV_ATTR_TIME, XSD
from prov.identifier import Namespace, QualifiedName
from prov.model import Literal, ProvBundle, ProvDocument, ProvException, ProvRecord, parse_xsd_types

VAR_URI = "http://openprovenance.org/var#"
VARGEN_URI = "http://openprovenance.org/vargen#"
TMPL_URI = "http://openprovenance.org/tmpl#"
VAR = Namespace("var", VAR_URI)
VARGEN = Namespace("vargen", VARGEN_URI)
TMPL = Namespace("tmpl", TMPL_URI)
UUID = Namespace("uuid", "urn:uuid:")

_TEMPLATE_URIS = {VAR_URI, VARGEN_URI, TMPL_URI}


def _is_template_name(value: Any, uri: str) -> TypeGuard[QualifiedName]:
    return isinstance(value, QualifiedName) and value.namespace.uri == uri


def _is_variable(value: Any) -> TypeGuard[QualifiedName]:
    return _is_template_name(value, VAR_URI) or _is_template_name(value, VARGEN_URI)


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
        for record in all_records(template):
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
                self._generated[name] = [self._fresh_identifier(name)
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

    def _fresh_identifier(self, name: str) -> QualifiedName:
        text = f"uuid:{self._fresh()}"
        value = self.target.valid_qualified_name(text)
        if value is None:  # only with a ``fresh`` that gives no valid local name
            raise ValueError(f"vargen:{name}: {text!r} is not a valid identifier")
        return value

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



def all_records(document: ProvDocument) -> Iterable[ProvRecord]:
    """Every record of ``document``, those of its bundles included."""
    yield from document.get_records()
    for bundle in document.bundles:
        yield from bundle.get_records()


def _required(record: ProvRecord, position: int) -> bool:
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


def _expand_record(record: ProvRecord, target: ProvBundle, env: _Bindings,
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
        statement = (record.get_type(), new_identifier, tuple(new_formal),
                     frozenset((str(n), repr(v)) for n, v in extra))
        if statement in seen:
            continue
        seen.add(statement)
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
        if identifier is None:  # prov names every bundle of a document (ProvDocument.bundle)
            raise ValueError("template: a bundle without an identifier")
        target = out.bundle(identifier)
        namespaces(target, bundle)
        for record in bundle.get_records():
            _expand_record(record, target, env, seen)
    return out
