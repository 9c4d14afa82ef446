"""Read and write ActivityDescription files (VOTable, ProvenanceDM 1.0 descriptions).

ProvenanceDM 1.0 (section 2.4, "Descriptions", and 2.6, "Activity configuration") defines
the classes but leaves their VOTable serialisation to ProvTAP, so OPUS fixes the mapping
below. A file holds one ``RESOURCE type="meta" utype="voprov:ActivityDescription"``
anywhere in a VOTable of version 1.1 to 1.5 (namespace ``.../VOTable/v1.1``, ``v1.2``,
``v1.3``, or none).

REC dialect (written by :func:`write_activity`; utypes are ``Class.attribute`` of the
ProvenanceDM VO-DML model, ``opus:`` marks OPUS extensions the model has no attribute for):

==================================  ===========================================================
model                               VOTable
==================================  ===========================================================
name                                ``RESOURCE/@name``, and ``PARAM name="name"``
                                    ``utype="voprov:ActivityDescription.name"`` (must agree)
description                         ``RESOURCE/DESCRIPTION`` (or ``PARAM`` utype
                                    ``voprov:ActivityDescription.description``)
version, docurl, type, subtype      ``PARAM`` utype ``voprov:ActivityDescription.<attribute>``
contact_name, contact_email         ``PARAM`` utype ``voprov:Agent.name`` / ``voprov:Agent.email``
execution_duration, quote           ``PARAM datatype="int"`` (seconds) utype
                                    ``uws:Job.executionDuration`` / ``uws:Job.quote``
command                             ``PARAM name="command"`` utype
                                    ``opus:ActivityDescription.command``: one argv line,
                                    split with :func:`shlex.split`
script                              ``PARAM name="script"`` utype
                                    ``opus:ActivityDescription.script`` (shell text)
parameters                          the ``PARAM`` s of ``GROUP name="inputParams"``;
                                    valueType = datatype/arraysize/xtype, ``value`` = default
                                    (empty: required), ``VALUES/MIN``, ``MAX``, ``OPTION``
used / generated                    ``GROUP`` utype ``voprov:UsageDescription`` /
                                    ``voprov:GenerationDescription``, ``GROUP/@name`` = entity
                                    name (the UWS result id), ``DESCRIPTION``, and ``PARAM`` s
                                    ``role``, ``multiplicity`` (utype
                                    ``voprov:UsageDescription.role`` ...), ``contentType``
                                    (``voprov:DatasetDescription.contentType``, section 2.5.2),
                                    ``defaultFileName`` (``opus:EntityDescription.defaultFileName``:
                                    the file the activity reads or writes in its directory)
==================================  ===========================================================

Older OPUS dialect (read only): ``doculink`` (renamed ``docurl`` in ProvenanceDM 1.0, see its
change log), ``GROUP name="InputParams"``, entity groups inside ``GROUP name="Used"`` /
``name="Generated"`` (utype ``voprov:UsedDescription`` / ``voprov:WasGeneratedBy``), with
``PARAM name="default"`` (utype ``voprov:Entity.id``) as default file name and
``content_type``; ``url`` and other unknown entity PARAMs are ignored.

Top-level and entity PARAMs are recognised by utype first, then by name, both compared
case-insensitively. Every problem in a file is collected and reported together, with its
line, in :class:`ActivityDescriptionError`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TypeAlias, cast

from lxml import etree

from opus.activities.model import (
    FLOAT_DATATYPES,
    INTEGER_DATATYPES,
    KNOWN_DATATYPES,
    ActivityDescription,
    EntityDescription,
    Option,
    ParameterDescription,
)
from opus.activities.validation import check_value, parse_arraysize, parse_number
from opus.errors import ParameterError

__all__ = [
    "ActivityDescriptionError",
    "Problem",
    "parse_activity",
    "read_activity",
    "write_activity",
]

VOTABLE_NAMESPACES = frozenset(
    {"", *(f"http://www.ivoa.net/xml/VOTable/v1.{minor}" for minor in (1, 2, 3))}
)
#: Namespace of VOTable 1.3 to 1.5; written with version="1.4".
VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"

_ACTIVITY_UTYPE = "voprov:activitydescription"
_USAGE_UTYPES = {"voprov:usagedescription", "voprov:useddescription", "voprov:used"}
_GENERATION_UTYPES = {
    "voprov:generationdescription",
    "voprov:wasgeneratedbydescription",
    "voprov:wasgeneratedby",
}

#: Top-level PARAMs: model field -> (utypes, names) that identify it, lower-case.
_ACTIVITY_FIELDS = {
    "name": ({"voprov:activitydescription.name"}, {"name"}),
    "description": ({"voprov:activitydescription.description"}, {"description"}),
    "version": ({"voprov:activitydescription.version"}, {"version"}),
    "docurl": (
        {"voprov:activitydescription.docurl", "voprov:activitydescription.doculink"},
        {"docurl", "doculink"},
    ),
    "type": ({"voprov:activitydescription.type"}, {"type"}),
    "subtype": ({"voprov:activitydescription.subtype"}, {"subtype"}),
    "contact_name": ({"voprov:agent.name"}, {"contact_name"}),
    "contact_email": ({"voprov:agent.email"}, {"contact_email"}),
    "execution_duration": ({"uws:job.executionduration"}, {"executionduration"}),
    "quote": ({"uws:job.quote"}, {"quote"}),
    "command": ({"opus:activitydescription.command"}, {"command"}),
    "script": ({"opus:activitydescription.script"}, {"script"}),
}
#: Entity PARAMs, identified by the attribute part of the utype or by name.
_ENTITY_FIELDS = {
    "role": {"role"},
    "multiplicity": {"multiplicity"},
    "content_type": {"contenttype", "content_type"},
    "default_filename": {"defaultfilename", "default", "id"},
}
_WRITTEN_ACTIVITY = [  # (field, PARAM name, utype) in the order they are written
    ("version", "version", "voprov:ActivityDescription.version"),
    ("docurl", "docurl", "voprov:ActivityDescription.docurl"),
    ("type", "type", "voprov:ActivityDescription.type"),
    ("subtype", "subtype", "voprov:ActivityDescription.subtype"),
    ("contact_name", "contact_name", "voprov:Agent.name"),
    ("contact_email", "contact_email", "voprov:Agent.email"),
]
_ACTIVITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Parameters reach the activity as environment variables; these names would change how
#: the activity's programs are found or run, so a description may not use them.
_RESERVED_NAMES = frozenset(
    {"path", "home", "ifs", "env", "bash_env", "shell", "pwd", "tmpdir", "user",
     "pythonpath", "pythonhome", "ld_preload", "ld_library_path"}
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an ActivityDescription file; ``line`` is None when unknown."""

    line: int | None
    message: str


class ActivityDescriptionError(Exception):
    """An ActivityDescription file that cannot be used, with every problem found in it."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(
            f"{self.path}:{p.line}: {p.message}" if p.line is not None else f"{self.path}: {p.message}"
            for p in self.problems
        )


def read_activity(path: Path) -> ActivityDescription:
    """Read an ActivityDescription file; raise ActivityDescriptionError listing every problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ActivityDescriptionError(path, [Problem(None, f"cannot read: {exc.strerror}")]) from None
    return parse_activity(data, path)


def parse_activity(data: bytes, path: Path | str = "<bytes>") -> ActivityDescription:
    """Parse the bytes of an ActivityDescription file; ``path`` names it in messages."""
    reader = _Reader()
    activity = reader.parse(data)
    if reader.problems or activity is None:
        raise ActivityDescriptionError(path, reader.problems)
    return replace(activity, source=Path(path))


def write_activity(activity: ActivityDescription) -> bytes:
    """Serialise an activity as a VOTable 1.4 document in the REC dialect (see module doc)."""
    E = _Builder(VOTABLE_NS)
    root = E("VOTABLE", version="1.4")
    resource = E.sub(root, "RESOURCE", name=activity.name, type="meta",
                     utype="voprov:ActivityDescription")
    if activity.description is not None:
        E.sub(resource, "DESCRIPTION").text = activity.description
    E.param(resource, "name", activity.name, utype="voprov:ActivityDescription.name")
    for field_name, name, utype in _WRITTEN_ACTIVITY:
        value = getattr(activity, field_name)
        if value is not None:
            E.param(resource, name, value, utype=utype)
    if activity.execution_duration is not None:
        E.param(resource, "executionDuration", str(activity.execution_duration),
                datatype="int", arraysize=None, utype="uws:Job.executionDuration", unit="s")
    if activity.quote is not None:
        E.param(resource, "quote", str(activity.quote), datatype="int", arraysize=None,
                utype="uws:Job.quote", unit="s")
    if activity.command:
        E.param(resource, "command", shlex.join(activity.command),
                utype="opus:ActivityDescription.command")
    if activity.script is not None:
        E.param(resource, "script", activity.script, utype="opus:ActivityDescription.script")

    group = E.sub(resource, "GROUP", name="inputParams")
    for p in activity.parameters:
        element = E.param(group, p.name, p.default or "", datatype=p.datatype,
                          arraysize=p.arraysize, unit=p.unit, ucd=p.ucd, utype=p.utype,
                          xtype=p.xtype)
        if p.description is not None:
            E.sub(element, "DESCRIPTION").text = p.description
        if p.minimum is not None or p.maximum is not None or p.options:
            values = E.sub(element, "VALUES")
            if p.minimum is not None:
                E.sub(values, "MIN", value=p.minimum, inclusive="yes" if p.minimum_inclusive else "no")
            if p.maximum is not None:
                E.sub(values, "MAX", value=p.maximum, inclusive="yes" if p.maximum_inclusive else "no")
            for option in p.options:
                E.sub(values, "OPTION", value=option.value, name=option.name)

    for kind, entities in (("Usage", activity.used), ("Generation", activity.generated)):
        for entity in entities:
            group = E.sub(resource, "GROUP", name=entity.name, utype=f"voprov:{kind}Description")
            if entity.description is not None:
                E.sub(group, "DESCRIPTION").text = entity.description
            for value, name, utype in (
                (entity.role, "role", f"voprov:{kind}Description.role"),
                (entity.multiplicity, "multiplicity", f"voprov:{kind}Description.multiplicity"),
                (entity.content_type, "contentType", "voprov:DatasetDescription.contentType"),
                (entity.default_filename, "defaultFileName", "opus:EntityDescription.defaultFileName"),
            ):
                if value is not None:
                    E.param(group, name, value, utype=utype)
    # lxml has no type information: tostring() without encoding="unicode" gives bytes.
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                      pretty_print=True))


class _Builder:
    """A few helpers to build VOTable elements in one namespace, skipping None attributes."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def __call__(self, tag: str, **attributes: str | None) -> etree._Element:
        return etree.Element(f"{{{self.ns}}}{tag}", _attributes(attributes), nsmap={None: self.ns})

    def sub(self, parent: etree._Element, tag: str, **attributes: str | None) -> etree._Element:
        return etree.SubElement(parent, f"{{{self.ns}}}{tag}", _attributes(attributes))

    def param(self, parent: etree._Element, name: str, value: str, *, datatype: str = "char",
              arraysize: str | None = "*", **attributes: str | None) -> etree._Element:
        """A PARAM; text by default (``char``, ``arraysize="*"``), pass None to omit one."""
        return self.sub(parent, "PARAM", name=name, datatype=datatype, arraysize=arraysize,
                        value=value, **attributes)


def _attributes(attributes: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in attributes.items() if value is not None}


#: A top-level PARAM's value (None when empty) and the PARAM element, by model field.
_Fields: TypeAlias = dict[str, tuple[str | None, etree._Element]]
#: A parameter or entity description read from a file, with the element it came from.
_Found: TypeAlias = tuple[ParameterDescription | EntityDescription, etree._Element]


class _Reader:
    """Parses one file, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.ns = ""

    def problem(self, element: etree._Element | None, message: str) -> None:
        self.problems.append(Problem(element.sourceline if element is not None else None, message))

    # -- navigation -------------------------------------------------------------------------

    def children(self, element: etree._Element, tag: str) -> list[etree._Element]:
        return [child for child in element if child.tag == self.tag(tag)]

    def child(self, element: etree._Element, tag: str) -> etree._Element | None:
        found = self.children(element, tag)
        return found[0] if found else None

    def tag(self, name: str) -> str:
        return f"{{{self.ns}}}{name}" if self.ns else name

    def description(self, element: etree._Element) -> str | None:
        found = self.child(element, "DESCRIPTION")
        if found is None:
            return None
        text = "".join(found.itertext()).strip()
        return text or None

    # -- the document -----------------------------------------------------------------------

    def parse(self, data: bytes) -> ActivityDescription | None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as exc:
            errors = [e for e in exc.error_log if e.level >= etree.ErrorLevels.ERROR] or []
            for error in errors:
                self.problems.append(Problem(error.line or None, f"XML syntax error: {error.message}"))
            if not errors:
                self.problems.append(Problem(exc.lineno, f"XML syntax error: {exc.msg}"))
            return None
        qname = etree.QName(root)
        if qname.localname != "VOTABLE" or (qname.namespace or "") not in VOTABLE_NAMESPACES:
            self.problem(root, f"not a VOTable 1.1-1.5 document (root element {root.tag})")
            return None
        self.ns = qname.namespace or ""
        resources = [
            r for r in root.iter(self.tag("RESOURCE"))
            if (r.get("utype") or "").lower() == _ACTIVITY_UTYPE
        ]
        if not resources:
            self.problem(root, 'no RESOURCE with utype="voprov:ActivityDescription"')
            return None
        for extra in resources[1:]:
            self.problem(extra, "more than one ActivityDescription RESOURCE; one per file")
        return self.activity(resources[0])

    def activity(self, resource: etree._Element) -> ActivityDescription | None:
        fields: _Fields = {}
        for param in self.children(resource, "PARAM"):
            field_name = _identify(param, _ACTIVITY_FIELDS)
            if field_name is None:
                continue
            if field_name in fields:
                self.problem(param, f"{field_name} given twice (first on line "
                                    f"{fields[field_name][1].sourceline})")
                continue
            value = param.get("value")
            fields[field_name] = (value if value not in ("", None) else None, param)

        def text(field_name: str) -> str | None:
            return fields[field_name][0] if field_name in fields else None

        name = resource.get("name") or None
        if text("name") is not None:
            if name is not None and name != text("name"):
                self.problem(fields["name"][1], f"name {text('name')!r} differs from the "
                                                f"RESOURCE name {name!r}")
            name = text("name")
        if name is None:
            self.problem(resource, "the activity has no name (RESOURCE name attribute)")
        elif not _ACTIVITY_NAME.fullmatch(name):
            self.problem(resource, f"activity name {name!r} may only contain letters, digits, "
                                   "'_', '-' and '.' (it becomes part of URLs)")

        limits = {key: self.seconds(fields, key) for key in ("execution_duration", "quote")}
        command = self.command(fields.get("command"))
        script = text("script")
        if script is not None:
            script = script.replace("\r\n", "\n").replace("\r", "\n")
        if not command and script is None:
            self.problem(resource, "no command and no script: nothing to run "
                                   '(add PARAM name="command")')
        elif command and script is not None:
            self.problem(fields["script"][1], "both command and script given; use one")

        parameters: list[tuple[ParameterDescription, etree._Element]] = []
        used: list[tuple[EntityDescription, etree._Element]] = []
        generated: list[tuple[EntityDescription, etree._Element]] = []
        for group in self.children(resource, "GROUP"):
            group_name = (group.get("name") or "").lower()
            utype = (group.get("utype") or "").lower()
            if group_name == "inputparams":
                parameters += filter(None, map(self.parameter, self.children(group, "PARAM")))
            elif group_name in ("used", "generated") and utype not in _USAGE_UTYPES | _GENERATION_UTYPES:
                target = used if group_name == "used" else generated
                target += filter(None, map(self.entity, self.children(group, "GROUP")))
            elif utype in _USAGE_UTYPES:
                used += filter(None, [self.entity(group)])
            elif utype in _GENERATION_UTYPES:
                generated += filter(None, [self.entity(group)])
        self.unique(parameters, "parameter", key=str.lower)
        self.unique(used + generated, "entity", key=str)

        if name is None:
            return None
        return ActivityDescription(
            name=name,
            description=text("description") or self.description(resource),
            version=text("version"),
            docurl=text("docurl"),
            type=text("type"),
            subtype=text("subtype"),
            contact_name=text("contact_name"),
            contact_email=text("contact_email"),
            execution_duration=limits["execution_duration"],
            quote=limits["quote"],
            command=command,
            script=script,
            parameters=tuple(p for p, _ in parameters),
            used=tuple(e for e, _ in used),
            generated=tuple(e for e, _ in generated),
        )

    def seconds(self, fields: _Fields, key: str) -> int | None:
        if key not in fields:
            return None
        value, element = fields[key]
        if value is None:
            return None
        try:
            seconds = int(value.strip())
        except ValueError:
            self.problem(element, f"{element.get('name')} must be a whole number of seconds "
                                  f"(got {value!r})")
            return None
        if seconds < 0:
            self.problem(element, f"{element.get('name')} must not be negative (got {seconds})")
            return None
        return seconds

    def command(self, found: tuple[str | None, etree._Element] | None) -> tuple[str, ...]:
        if found is None:
            return ()
        value, element = found
        try:
            argv = tuple(shlex.split(value or ""))
        except ValueError as exc:
            self.problem(element, f"command cannot be split into arguments: {exc}")
            return ()
        if not argv:
            self.problem(element, "command is empty")
        return argv

    def unique(self, items: Sequence[_Found], what: str, key: Callable[[str], str]) -> None:
        seen: dict[str, etree._Element] = {}
        for item, element in items:
            k = key(item.name)
            if k in seen:
                self.problem(element, f"duplicate {what} name {item.name!r} "
                                      f"(first on line {seen[k].sourceline})")
            else:
                seen[k] = element

    # -- parameters and entities --------------------------------------------------------------

    def parameter(self, param: etree._Element) -> tuple[ParameterDescription, etree._Element] | None:
        name = param.get("name")
        if not name:
            self.problem(param, "input PARAM without a name")
            return None
        if not _PARAMETER_NAME.fullmatch(name):
            self.problem(param, f"parameter name {name!r} must be letters, digits and '_', not "
                                "starting with a digit (it becomes an environment variable)")
        elif name.lower() in _RESERVED_NAMES or name.lower().startswith(("ld_", "opus_")):
            self.problem(param, f"parameter name {name!r} is reserved (it would change the "
                                "activity's environment)")
        datatype = param.get("datatype")
        if datatype is None:
            self.problem(param, f"{name}: no datatype")
            return None
        if datatype not in KNOWN_DATATYPES:
            self.problem(param, f"{name}: unsupported datatype {datatype!r} (use one of "
                                f"{', '.join(sorted(KNOWN_DATATYPES))})")
            return None
        arraysize = param.get("arraysize")
        try:
            parse_arraysize(arraysize)
        except ValueError as exc:
            self.problem(param, f"{name}: {exc}")
            return None

        bounds: dict[str, tuple[str | None, bool]] = {"MIN": (None, True), "MAX": (None, True)}
        options: list[Option] = []
        values = self.child(param, "VALUES")
        if values is not None:
            for tag in bounds:
                limit = self.child(values, tag)
                if limit is None:
                    continue
                inclusive = (limit.get("inclusive") or "yes").strip().lower()
                if inclusive not in ("yes", "no"):
                    self.problem(limit, f"{name}: {tag} inclusive must be yes or no")
                if datatype not in INTEGER_DATATYPES | FLOAT_DATATYPES:
                    self.problem(limit, f"{name}: {tag} applies only to numeric datatypes, "
                                        f"not {datatype}")
                    continue
                try:
                    parse_number(datatype, limit.get("value") or "")
                except ValueError as exc:
                    self.problem(limit, f"{name}: {tag} {exc}")
                    continue
                bounds[tag] = (limit.get("value").strip(), inclusive != "no")
            options = [Option(o.get("value") or "", o.get("name") or None)
                       for o in values.iter(self.tag("OPTION"))]
        (low, low_inclusive), (high, high_inclusive) = bounds["MIN"], bounds["MAX"]
        if low is not None and high is not None and \
                parse_number(datatype, low) > parse_number(datatype, high):
            self.problem(values, f"{name}: MIN {low} is greater than MAX {high}")
            high = None

        default = param.get("value")
        description = ParameterDescription(
            name=name, datatype=datatype, arraysize=arraysize,
            default=default if default not in ("", None) else None,
            unit=param.get("unit"), ucd=param.get("ucd"), utype=param.get("utype"),
            xtype=param.get("xtype"), description=self.description(param),
            minimum=low, maximum=high, minimum_inclusive=low_inclusive,
            maximum_inclusive=high_inclusive, options=tuple(options),
        )
        bare = replace(description, options=(), minimum=None, maximum=None)
        for option in options:
            try:
                check_value(bare, option.value)
            except ParameterError as exc:
                self.problem(values, f"{name}: OPTION {option.value!r} is not valid: {exc.rule}")
        if description.default is not None:
            try:
                check_value(description, description.default)
            except ParameterError as exc:
                self.problem(param, f"{name}: default {description.default!r} is not valid: "
                                    f"{exc.rule}")
        return description, param

    def entity(self, group: etree._Element) -> tuple[EntityDescription, etree._Element] | None:
        fields: dict[str, str | None] = {}
        name = group.get("name")
        for param in self.children(group, "PARAM"):
            key = (param.get("utype") or "").rsplit(".", 1)[-1].lower()
            field_name = next((f for f, keys in _ENTITY_FIELDS.items() if key in keys), None)
            field_name = field_name or next(
                (f for f, keys in _ENTITY_FIELDS.items() if (param.get("name") or "").lower() in keys),
                None,
            )
            if key == "name" or (param.get("name") or "").lower() == "name":
                name = name or param.get("value")
            elif field_name is not None:
                fields[field_name] = param.get("value") or None
        if not name:
            self.problem(group, "entity GROUP without a name")
            return None
        filename = fields.get("default_filename")
        if filename is not None:
            pure = PurePosixPath(filename)
            if pure.is_absolute() or ".." in pure.parts or "\\" in filename:
                self.problem(group, f"{name}: default file name {filename!r} must be a relative "
                                    "path inside the job directory")
        return EntityDescription(name=name, description=self.description(group), **fields), group


def _identify(param: etree._Element, table: dict[str, tuple[set[str], set[str]]]) -> str | None:
    """The model field a top-level PARAM stands for: by utype, else by name."""
    utype = (param.get("utype") or "").lower()
    name = (param.get("name") or "").lower()
    for field_name, (utypes, _) in table.items():
        if utype in utypes:
            return field_name
    for field_name, (_, names) in table.items():
        if name in names:
            return field_name
    return None
