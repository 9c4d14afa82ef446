"""The DataLink 1.1 {links} response as a VOTable: its rows, its service descriptors, and
its error document. What the rows say is decided by :mod:`opus.datalink.links`.

DataLink 1.1 section 3: a VOTable whose ``RESOURCE type="results"`` holds the INFO
``standardID`` ``ivo://ivoa.net/std/DataLink#links-1.1`` (section 3.3.1, mandatory from
1.1) and one table with the fields of section 3.2: ``ID``, ``access_url``, ``service_def``,
``error_message``, ``description``, ``semantics``, ``content_type``, ``content_length``
(``long``, unit ``byte``) and the optional 1.1 fields ``content_qualifier``,
``local_semantics``, ``link_auth`` and ``link_authorized`` (``boolean``). One extra column,
``opus_input`` (``FIELD ID="opus_input"``; extra columns are allowed by section 3.2 precisely
for this), holds the value to give an activity's file input to use the result, and the
service descriptors refer to it.

Request-level problems are answered with a DALI 1.1 (section 4.4) VOTable error document
whose ``INFO name="QUERY_STATUS" value="ERROR"`` starts with the fault name
(:func:`error_document`). At most :data:`MAX_IDS` distinct IDs are processed; beyond that
the table ends with the DALI ``QUERY_STATUS`` ``OVERFLOW`` INFO (section 2.1.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from opus.activities.datalink import VOTABLE_NS, service_resource
from opus.activities.model import ActivityDescription, EntityDescription

LINKS_PATH = "/datalink/links"
LINKS_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.1"
#: Section 3.1: the preferred media type of a {links} response.
DATALINK_MEDIA_TYPE = "application/x-votable+xml;content=datalink"
VOTABLE_MEDIA_TYPE = "application/x-votable+xml"
#: Distinct IDs processed per request (section 2.1.1 lets a service set a limit).
MAX_IDS = 100
INPUT_FIELD_ID = "opus_input"

NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_XML_ID = re.compile(r"[^A-Za-z0-9._-]")

#: (name, datatype, ucd, unit, description, extra attributes) of the table's FIELDs, in
#: the order of DataLink 1.1 Table 1 (section 3.2), then the OPUS column.
FIELDS: tuple[tuple[str, str, str | None, str | None, str, dict[str, str]], ...] = (
    ("ID", "char", "meta.id;meta.main", None, "Input identifier", {}),
    ("access_url", "char", "meta.ref.url", None, "Link to data or service", {}),
    ("service_def", "char", "meta.ref", None,
     "Reference to a service descriptor resource", {}),
    ("error_message", "char", "meta.code.error", None,
     "Error if an access_url cannot be created", {}),
    ("description", "char", "meta.note", None,
     "Human-readable text describing this link", {}),
    ("semantics", "char", "meta.code", None,
     "Term from a controlled vocabulary describing the link", {}),
    ("content_type", "char", "meta.code.mime", None,
     "Mime-type of the content the link returns", {}),
    ("content_length", "long", "phys.size;meta.file", "byte",
     "Size of the download the link returns", {}),
    ("content_qualifier", "char", None, None,
     "Nature of the content the link returns (product-type vocabulary)", {}),
    ("local_semantics", "char", "meta.id.assoc", None,
     "Identifies corresponding links of different IDs: the OPUS result, input or "
     "activity name", {}),
    ("link_auth", "char", "meta.code", None,
     "Use of the link requires authentication (false, optional, true)", {}),
    ("link_authorized", "boolean", "meta.code", None,
     "The caller is authorized to use the link", {}),
    (INPUT_FIELD_ID, "char", "meta.id", None,
     "The value to give a file input of an OPUS activity to use this result (the "
     "service descriptors refer to this column)", {"ID": INPUT_FIELD_ID}),
)


@dataclass
class Link:
    """One row of the links table (DataLink 1.1 section 3.2)."""

    id: str
    semantics: str
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None
    link_auth: str | None = None
    link_authorized: bool | None = None
    opus_input: str | None = None

    def cells(self) -> list[str | None]:
        authorized = None if self.link_authorized is None else \
            ("true" if self.link_authorized else "false")
        length = None if self.content_length is None else str(self.content_length)
        return [self.id, self.access_url, self.service_def, self.error_message,
                self.description, self.semantics, self.content_type, length,
                self.content_qualifier, self.local_semantics, self.link_auth, authorized,
                self.opus_input]


@dataclass
class Links:
    """What one request produced: the rows and the service descriptors they refer to."""

    rows: list[Link] = field(default_factory=list)
    services: dict[str, etree._Element] = field(default_factory=dict)
    overflow: bool = False


# -- building the document ---------------------------------------------------------------

def _element(parent: etree._Element | None, tag: str, **attributes: str | None
             ) -> etree._Element:
    kept = {key: value for key, value in attributes.items() if value is not None}
    if parent is None:
        return etree.Element(f"{{{VOTABLE_NS}}}{tag}", kept, nsmap={None: VOTABLE_NS})
    return etree.SubElement(parent, f"{{{VOTABLE_NS}}}{tag}", kept)


def xml_text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot carry replaced by U+FFFD (an ID
    echoed back must not break the document)."""
    return NOT_XML.sub("\ufffd", value)


def _serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True))


def self_description(access_url: str) -> etree._Element:
    """The {links} endpoint describing itself (DataLink 1.1 section 4.4, ``adhoc:this``;
    the descriptor of section 4.5)."""
    resource = _element(None, "RESOURCE", ID="opus-links", name="links", type="meta",
                        utype="adhoc:this")
    _element(resource, "DESCRIPTION").text = (
        "DataLink 1.1 {links} of OPUS job results: give the identifier of a result "
        "(opus:ent-..., as ProvSAP names it) or its URL as ID to get its file, preview, "
        "inputs, provenance, logs and the activities that can process it.")
    for name, value in (("accessURL", access_url), ("standardID", LINKS_STANDARD_ID),
                        ("contentType", DATALINK_MEDIA_TYPE)):
        _element(resource, "PARAM", name=name, datatype="char", arraysize="*", value=value)
    group = _element(resource, "GROUP", name="inputParams")
    id_param = _element(group, "PARAM", name="ID", datatype="char", arraysize="*", value="",
                        ucd="meta.id;meta.main")
    _element(id_param, "DESCRIPTION").text = (
        "Identifier of a job result: opus:ent-<hex>, ent-<hex>, or the result URL "
        "(repeatable).")
    response_format = _element(group, "PARAM", name="RESPONSEFORMAT", datatype="char",
                               arraysize="*", value="")
    _element(response_format, "DESCRIPTION").text = "VOTable (the default) is the only format."
    values = _element(response_format, "VALUES")
    for option in ("votable", VOTABLE_MEDIA_TYPE, DATALINK_MEDIA_TYPE, "text/xml"):
        _element(values, "OPTION", value=option)
    return resource


def links_document(links: Links, self_url: str | None = None, *,
                   error: str | None = None) -> bytes:
    """The VOTable 1.4 {links} response (DataLink 1.1 section 3.3.1); with ``error``, the
    DALI 1.1 (section 4.4) error document: QUERY_STATUS ERROR and an empty table."""
    root = _element(None, "VOTABLE", version="1.4")
    results = _element(root, "RESOURCE", type="results")
    status = _element(results, "INFO", name="QUERY_STATUS",
                      value="OK" if error is None else "ERROR")
    if error is not None:
        status.text = xml_text(error)
    _element(results, "INFO", name="standardID", value=LINKS_STANDARD_ID)
    table = _element(results, "TABLE", name="links")
    for name, datatype, ucd, unit, description, extra in FIELDS:
        column = _element(table, "FIELD", name=name, datatype=datatype,
                          arraysize="*" if datatype == "char" else None, ucd=ucd, unit=unit,
                          **extra)
        _element(column, "DESCRIPTION").text = description
    tabledata = _element(_element(table, "DATA"), "TABLEDATA")
    for link in links.rows:
        tr = _element(tabledata, "TR")
        for cell in link.cells():
            _element(tr, "TD").text = None if cell is None else xml_text(cell)
    if links.overflow:
        _element(results, "INFO", name="QUERY_STATUS", value="OVERFLOW").text = (
            f"only the first {MAX_IDS} distinct ID values were processed")
    for resource in links.services.values():
        root.append(resource)
    if self_url is not None:
        root.append(self_description(self_url))
    return _serialize(root)


def error_document(message: str) -> bytes:
    """A DALI 1.1 (section 4.4) VOTable error document; ``message`` starts with one of the
    faults of DataLink 1.1 section 3.4. It keeps the (empty) links table, so that it is a
    well-formed {links} response for clients and validators that expect one."""
    return links_document(Links(), error=message)


def descriptor_id(activity: ActivityDescription, used: EntityDescription) -> str:
    """XML ID of the service descriptor for ``activity`` fed through ``used``: the
    ``opus-{name}`` of :mod:`opus.activities.datalink`, qualified by the input when the
    activity has several."""
    base = f"opus-{_NOT_XML_ID.sub('_', activity.name)}"
    if len(activity.used) <= 1:
        return base
    return f"{base}.{_NOT_XML_ID.sub('_', used.name)}"


def chaining_descriptor(activity: ActivityDescription, used: EntityDescription,
                        access_url: str) -> etree._Element:
    """The activity's service descriptor (DataLink 1.1 section 4), with one PARAM per used
    entity: ``used`` takes its value from the ``opus_input`` column (``ref``, section 4.3),
    the others are left to the user."""
    resource = service_resource(activity, access_url)
    resource.set("ID", descriptor_id(activity, used))
    group = resource.find(f"{{{VOTABLE_NS}}}GROUP[@name='inputParams']")
    assert group is not None
    for position, entity in enumerate(activity.used):
        param = etree.Element(f"{{{VOTABLE_NS}}}PARAM", name=entity.name, datatype="char",
                              arraysize="*", value="")
        kind = f" ({entity.content_type})" if entity.content_type else ""
        if entity is used:
            param.set("ref", INPUT_FIELD_ID)
            text = f"The result to use as the input {entity.name}{kind}: set from the " \
                   f"{INPUT_FIELD_ID} column."
        else:
            text = f"The input {entity.name}{kind}: the identifier of a result " \
                   "(opus:ent-...), its URL, or any http(s) URL (required)."
        if entity.description:
            text = f"{entity.description} {text}"
        etree.SubElement(param, f"{{{VOTABLE_NS}}}DESCRIPTION").text = text
        group.insert(position, param)
    return resource


