"""The documents of the TAP service: query results and errors as VOTable 1.4 (DALI 1.1
section 4.4), the VOSI 1.1 tableset (VODataService 1.1) and the TAP capabilities
(TAPRegExt 1.0).

A result is ``RESOURCE type="results"`` with ``INFO name="QUERY_STATUS" value="OK"``, the
table (TABLEDATA; empty cells are nulls, VOTable 1.4 section 6), and, when MAXREC cut it,
the ``QUERY_STATUS`` ``OVERFLOW`` INFO after the table. An error is the same resource with
``QUERY_STATUS`` ``ERROR`` and the message, and no table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from opus.datalink.votable import xml_text
from opus.storage.provtap import QueryResult, TapSchema

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
VOTABLE_MEDIA_TYPE = "application/x-votable+xml"
XML_CONTENT_TYPE = "text/xml; charset=UTF-8"
CAPABILITIES_NS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
TABLES_NS = "http://www.ivoa.net/xml/VOSITables/v1.0"
VR_NS = "http://www.ivoa.net/xml/VOResource/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
TR_NS = "http://www.ivoa.net/xml/TAPRegExt/v1.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{XSI_NS}}}type"

TAP_STANDARD_ID = "ivo://ivoa.net/std/TAP"
ADQL_ID = "ivo://ivoa.net/std/ADQL#v2.0"
VOTABLE_TD_ID = "ivo://ivoa.net/std/TAPRegExt#output-votable-td"

#: RESPONSEFORMAT values answered with the VOTable (TABLEDATA) of a result.
VOTABLE_FORMATS = frozenset({
    "votable", "application/x-votable+xml", "text/xml", "votable/td",
    "application/x-votable+xml;serialization=tabledata",
})


def _element(parent: etree._Element | None, tag: str, text: str | None = None,
             **attributes: str | None) -> etree._Element:
    kept = {key: value for key, value in attributes.items() if value is not None}
    if parent is None:
        element = etree.Element(f"{{{VOTABLE_NS}}}{tag}", kept, nsmap={None: VOTABLE_NS})
    else:
        element = etree.SubElement(parent, f"{{{VOTABLE_NS}}}{tag}", kept)
    if text is not None:
        element.text = xml_text(text)
    return element


def _serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(value)


def results_document(result: QueryResult, query: str, limit: int) -> bytes:
    """The VOTable of a successful query."""
    root = _element(None, "VOTABLE", version="1.4")
    resource = _element(root, "RESOURCE", type="results")
    _element(resource, "INFO", name="QUERY_STATUS", value="OK")
    _element(resource, "INFO", "the ADQL query", name="QUERY", value=xml_text(query))
    table = _element(resource, "TABLE", name="result")
    for column in result.columns:
        field = _element(table, "FIELD", name=column.name or "column",
                         datatype=column.datatype,
                         arraysize="*" if column.datatype == "char" else None,
                         xtype=column.xtype, unit=column.unit, ucd=column.ucd,
                         utype=column.utype)
        if column.description:
            _element(field, "DESCRIPTION", column.description)
    tabledata = _element(_element(table, "DATA"), "TABLEDATA")
    for row in result.rows:
        tr = _element(tabledata, "TR")
        for value in row:
            _element(tr, "TD", _cell(value))
    if result.overflow:
        _element(resource, "INFO", f"the result was cut at MAXREC={limit} rows",
                 name="QUERY_STATUS", value="OVERFLOW")
    return _serialize(root)


def error_document(message: str) -> bytes:
    """A DALI 1.1 (section 4.4) error document."""
    root = _element(None, "VOTABLE", version="1.4")
    resource = _element(root, "RESOURCE", type="results")
    _element(resource, "INFO", message, name="QUERY_STATUS", value="ERROR")
    return _serialize(root)


# -- VOSI ----------------------------------------------------------------------------------

def _sub(parent: etree._Element, tag: str, text: str | None = None,
         **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = xml_text(text)
    return element


def tableset(schema: TapSchema) -> bytes:
    """The VOSI 1.1 tables document (VODataService 1.1 ``tableset``) of TAP_SCHEMA."""
    root = etree.Element(f"{{{TABLES_NS}}}tableset",
                         nsmap={"vosi": TABLES_NS, "vs": VS_NS, "xsi": XSI_NS})
    columns: dict[str, list[dict[str, Any]]] = {}
    for column in schema.columns:
        columns.setdefault(column["table_name"], []).append(column)
    keys: dict[str, list[dict[str, Any]]] = {}
    for key in schema.keys:
        keys.setdefault(key["from_table"], []).append(key)
    key_columns: dict[str, list[dict[str, Any]]] = {}
    for pair in schema.key_columns:
        key_columns.setdefault(pair["key_id"], []).append(pair)
    for entry in schema.schemas:
        element = _sub(root, "schema")
        _sub(element, "name", entry["schema_name"])
        if entry.get("description"):
            _sub(element, "description", entry["description"])
        for table in schema.tables:
            if table["schema_name"] != entry["schema_name"]:
                continue
            table_element = _sub(element, "table", type=table["table_type"])
            _sub(table_element, "name", table["table_name"])
            if table.get("description"):
                _sub(table_element, "description", table["description"])
            for column in columns.get(table["table_name"], []):
                _column(table_element, column)
            for key in keys.get(table["table_name"], []):
                _foreign_key(table_element, key, key_columns.get(key["key_id"], []))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _column(parent: etree._Element, column: dict[str, Any]) -> None:
    element = _sub(parent, "column", std="true" if column["std"] else "false")
    _sub(element, "name", column["column_name"])
    for name in ("description", "unit", "ucd", "utype"):
        if column.get(name):
            _sub(element, name, column[name])
    datatype = _sub(element, "dataType", column["datatype"],
                    **{XSI_TYPE: "vs:VOTableType"})
    if column.get("arraysize"):
        datatype.set("arraysize", column["arraysize"])
    if column.get("xtype"):  # VODataService 1.1: the xtype is the extendedType
        datatype.set("extendedType", column["xtype"])
    for flag in ("indexed", "principal"):
        if column[flag]:
            _sub(element, "flag", flag)


def _foreign_key(parent: etree._Element, key: dict[str, Any],
                 pairs: Sequence[dict[str, Any]]) -> None:
    element = _sub(parent, "foreignKey")
    _sub(element, "targetTable", key["target_table"])
    for pair in pairs:
        fk = _sub(element, "fkColumn")
        _sub(fk, "fromColumn", pair["from_column"])
        _sub(fk, "targetColumn", pair["target_column"])
    if key.get("description"):
        _sub(element, "description", key["description"])


@dataclass(frozen=True)
class Limits:
    """What the capabilities announce: rows (MAXREC default and hard) and seconds."""

    default_rows: int
    max_rows: int
    timeout: float


def capabilities(base: str, limits: Limits) -> bytes:
    """VOSI capabilities of the TAP service at ``base`` (``.../tap``): TAP 1.1 with
    TAPRegExt's ADQL 2.0, VOTable output and limits; VOSI tables, capabilities and
    availability."""
    root = etree.Element(f"{{{CAPABILITIES_NS}}}capabilities",
                         nsmap={"vosi": CAPABILITIES_NS, "vr": VR_NS, "vs": VS_NS,
                                "tr": TR_NS, "xsi": XSI_NS})
    tap = _sub(root, "capability", standardID=TAP_STANDARD_ID, **{XSI_TYPE: "tr:TableAccess"})
    interface = _sub(tap, "interface", role="std", version="1.1",
                     **{XSI_TYPE: "vs:ParamHTTP"})
    _sub(interface, "accessURL", base, use="base")
    language = _sub(tap, "language")
    _sub(language, "name", "ADQL")
    _sub(language, "version", "2.0", **{"ivo-id": ADQL_ID})
    _sub(language, "description", "ADQL 2.0 (translated to PostgreSQL by queryparser); "
                                   "functions: the mathematical, trigonometric and "
                                   "aggregate ones")
    output = _sub(tap, "outputFormat", **{"ivo-id": VOTABLE_TD_ID})
    _sub(output, "mime", "application/x-votable+xml")
    _sub(output, "alias", "votable")
    duration = _sub(tap, "executionDuration")
    _sub(duration, "default", str(math.ceil(limits.timeout)))
    _sub(duration, "hard", str(math.ceil(limits.timeout)))
    rows = _sub(tap, "outputLimit")
    _sub(rows, "default", str(limits.default_rows), unit="row")
    _sub(rows, "hard", str(limits.max_rows), unit="row")
    for standard, path in (("ivo://ivoa.net/std/VOSI#tables-1.1", "tables"),
                           ("ivo://ivoa.net/std/VOSI#capabilities", "capabilities"),
                           ("ivo://ivoa.net/std/VOSI#availability", "availability"),
                           ("ivo://ivoa.net/std/DALI#examples", "examples")):
        capability = _sub(root, "capability", standardID=standard)
        vosi = _sub(capability, "interface", role="std", **{XSI_TYPE: "vs:ParamHTTP"})
        _sub(vosi, "accessURL", f"{base}/{path}", use="full")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True))
