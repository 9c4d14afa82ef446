"""Read ActivityDescription files (VOTable, ProvenanceDM 1.0 descriptions).

:func:`read_activity` and :func:`parse_activity` accept one ``RESOURCE type="meta"
utype="voprov:ActivityDescription"`` in a VOTable of version 1.1 to 1.5, in either dialect
of :mod:`opus.activities.votable_dialects` (the REC dialect, and the older OPUS dialect).
Besides the mapping, the reader checks what the rest of OPUS relies on: the activity name
(it becomes part of URLs), parameter names (they become environment variables, and none may
change how the activity's programs are found or run), datatypes and arraysize, ``VALUES``
``MIN`` / ``MAX`` / ``OPTION`` against the datatype, and defaults and options against their
ParameterDescription (as :mod:`opus.activities.validation` checks submitted values), entity
names and default file names. Every problem in a file is collected and reported together,
with its line, in :class:`ActivityDescriptionError`.

:func:`write_activity` is defined in :mod:`opus.activities.votable_writer` and re-exported
here: this module is the one entry point of the file format, for reading and writing.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TypeAlias

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
from opus.activities.obscore import field_of_utype, is_obscore_utype
from opus.activities.validation import check_value, parse_arraysize, parse_number
from opus.activities.votable_dialects import (
    ACTIVITY_FIELDS,
    ACTIVITY_UTYPE,
    ENTITY_FIELDS,
    GENERATION_UTYPES,
    USAGE_UTYPES,
    VOTABLE_NAMESPACES,
)
from opus.activities.votable_writer import write_activity
from opus.errors import ParameterError

__all__ = [
    "ActivityDescriptionError",
    "Problem",
    "parse_activity",
    "read_activity",
    "write_activity",
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
            # The parser's own log: the exception's may still hold errors of an earlier,
            # unrelated parse in this thread (libxml2 keeps them; seen under the fuzz tests).
            errors = [e for e in parser.error_log if e.level >= etree.ErrorLevels.ERROR]
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
            if (r.get("utype") or "").lower() == ACTIVITY_UTYPE
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
            field_name = _identify(param, ACTIVITY_FIELDS)
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
            elif group_name in ("used", "generated") and utype not in USAGE_UTYPES | GENERATION_UTYPES:
                target = used if group_name == "used" else generated
                target += filter(None, map(self.entity, self.children(group, "GROUP")))
            elif utype in USAGE_UTYPES:
                used += filter(None, [self.entity(group)])
            elif utype in GENERATION_UTYPES:
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

        utype = param.get("utype")
        if is_obscore_utype(utype) and field_of_utype(utype) is None:
            self.problem(param, f"{name}: utype {utype!r} is no ObsCore 1.1 field ("
                                "e.g. obscore:Access.Reference for access_url)")
        default = param.get("value")
        description = ParameterDescription(
            name=name, datatype=datatype, arraysize=arraysize,
            default=default if default not in ("", None) else None,
            unit=param.get("unit"), ucd=param.get("ucd"), utype=utype,
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
            field_name = next((f for f, keys in ENTITY_FIELDS.items() if key in keys), None)
            field_name = field_name or next(
                (f for f, keys in ENTITY_FIELDS.items() if (param.get("name") or "").lower() in keys),
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
