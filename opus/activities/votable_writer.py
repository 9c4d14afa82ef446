"""Write ActivityDescription files: VOTable 1.4 in the REC dialect.

:func:`write_activity` serialises an :class:`~opus.activities.model.ActivityDescription`
with the utypes of the ProvenanceDM 1.0 VO-DML model (``opus:`` for the OPUS extensions),
as the REC table of :mod:`opus.activities.votable_dialects` lays out; the reader
(:mod:`opus.activities.votable`) reads it back.
"""

from __future__ import annotations

import shlex
from typing import cast

from lxml import etree

from opus.activities.model import ActivityDescription
from opus.activities.votable_dialects import VOTABLE_NS

_WRITTEN_ACTIVITY = [  # (field, PARAM name, utype) in the order they are written
    ("version", "version", "voprov:ActivityDescription.version"),
    ("docurl", "docurl", "voprov:ActivityDescription.docurl"),
    ("type", "type", "voprov:ActivityDescription.type"),
    ("subtype", "subtype", "voprov:ActivityDescription.subtype"),
    ("contact_name", "contact_name", "voprov:Agent.name"),
    ("contact_email", "contact_email", "voprov:Agent.email"),
]


def write_activity(activity: ActivityDescription) -> bytes:
    """Serialise an activity as a VOTable 1.4 document in the REC dialect."""
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
