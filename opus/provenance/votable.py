"""PROV-VOTABLE: a provenance :class:`Graph` as a VOTable 1.4 document, one TABLE per class.

ProvenanceDM 1.0 leaves the VOTable serialisation to ProvTAP; OPUS writes one
``RESOURCE type="results" name="provenance"`` holding a TABLE for each class that has rows
(empty ones are left out), in TABLEDATA. TABLE and FIELD utypes are the vodml-ids of the
``voprov`` VO-DML model (Provenance.vo-dml.xml), prefixed ``voprov:``; ``opus:`` marks OPUS
columns the model has no attribute for.

TABLEs (name: TABLE utype; FIELD utypes; ProvenanceDM 1.0 section):

- Activity: ``voprov:Activity``; ``voprov:Activity.id/name/startTime/endTime/comment``,
  ``voprov:ActivityDescription.name/version`` (2.5.1), ``opus:Activity.jobId/phase/exitCode/
  scriptSha256/context/facts``, ``opus:ActivityDescription.sha256``; 2.2.2 Activity class.
- Entity: ``voprov:Entity``; ``voprov:Entity.id/name/location/generatedAtTime/
  invalidatedAtTime/comment``, ``voprov:DatasetDescription.contentType`` (2.6.1),
  ``opus:Entity.size`` (long, bytes), ``opus:Entity.sha256/jobId/resultId``; 2.2.1.
- Agent: ``voprov:Agent``; ``voprov:Agent.id/name/type/email/url``; 2.4.1 Agent class.
- Used: ``voprov:Used``; ``voprov:Activity.id``, ``voprov:Used.entity/role``; 2.3.1.
- WasGeneratedBy: ``voprov:WasGeneratedBy``; ``voprov:Entity.id``,
  ``voprov:WasGeneratedBy.activity/role``; 2.3.2.
- WasAssociatedWith: ``voprov:WasAssociatedWith``; ``voprov:Activity.id``,
  ``voprov:WasAssociatedWith.agent/role``; 2.4.2.
- WasAttributedTo: ``voprov:WasAttributedTo``; ``voprov:Entity.id``,
  ``voprov:WasAttributedTo.agent/role``; 2.4.3.
- WasDerivedFrom: ``voprov:Entity.usedEntity`` (the model has no WasDerivedFrom class, 2.3.4:
  the relation is this reference of the derived Entity); ``voprov:Entity.id``,
  ``voprov:Entity.usedEntity``, ``opus:WasDerivedFrom.activity`` (PROV's optional activity).
- Parameter: ``voprov:ActivityConfiguration.Parameter``; ``voprov:Activity.id``,
  ``voprov:ActivityConfiguration.Parameter.name/value``; 2.7.2 Parameter class.

In the model, relations are composed in the class they start from (Activity.used,
Entity.wasGeneratedBy, ...); the column naming that owner has the owner's id utype
(``voprov:Activity.id``, ``voprov:Entity.id``). Ids are qualified ``opus:<local id>``; the
prefixes are declared by ``INFO name="prefix:opus"`` / ``"prefix:voprov"``. A walk stopped
by the node cap gives ``INFO name="QUERY_STATUS" value="OVERFLOW"`` (DALI). Agent types
follow the model's AgentType (2.4.1): OPUS's ``Individual`` is written ``Person``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, cast

from lxml import etree

from opus.provenance.graph import Graph

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
VOPROV_URI = "http://www.ivoa.net/documents/ProvenanceDM/ns/voprov/"
AGENT_TYPES = {"individual": "Person", "person": "Person", "organization": "Organization",
               "organisation": "Organization", "softwareagent": "SoftwareAgent"}
# Characters XML 1.0 cannot carry at all (a cell keeps the rest, newlines included).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# Column kinds: how a value is written, and the FIELD attributes that go with it.
# ASCII columns (generated ids, hashes, UWS phases, MIME types) are char; those that may
# hold any text (names, comments, roles, agent ids made of user names) are unicodeChar,
# since VOTable 1.4 char is ASCII.
ID, AGENT_ID, ASCII, TEXT = "id", "agent", "ascii", "text"
TIME, INT, LONG = "time", "int", "long"
_FIELD_ATTRS = {
    ID: {"datatype": "char", "arraysize": "*"},
    AGENT_ID: {"datatype": "unicodeChar", "arraysize": "*"},
    ASCII: {"datatype": "char", "arraysize": "*"},
    TEXT: {"datatype": "unicodeChar", "arraysize": "*"},
    TIME: {"datatype": "char", "arraysize": "*", "xtype": "timestamp"},
    INT: {"datatype": "int"},
    LONG: {"datatype": "long"},
}

Column = tuple[str, str, str, str]  # FIELD name, utype, kind, row key (or tuple index)

ACTIVITY: list[Column] = [
    ("id", "voprov:Activity.id", ID, "id"),
    ("name", "voprov:Activity.name", TEXT, "name"),
    ("startTime", "voprov:Activity.startTime", TIME, "start_time"),
    ("endTime", "voprov:Activity.endTime", TIME, "end_time"),
    ("comment", "voprov:Activity.comment", TEXT, "comment"),
    ("activityDescription", "voprov:ActivityDescription.name", TEXT, "description_name"),
    ("activityDescriptionVersion", "voprov:ActivityDescription.version", TEXT,
     "description_version"),
    ("activityDescriptionSha256", "opus:ActivityDescription.sha256", ASCII,
     "description_sha256"),
    ("scriptSha256", "opus:Activity.scriptSha256", ASCII, "script_sha256"),
    ("jobId", "opus:Activity.jobId", ASCII, "job_id"),
    ("phase", "opus:Activity.phase", ASCII, "phase"),
    ("exitCode", "opus:Activity.exitCode", INT, "exit_code"),
    ("context", "opus:Activity.context", ID, "context_id"),
    ("facts", "opus:Activity.facts", TEXT, "facts"),
]
ENTITY: list[Column] = [
    ("id", "voprov:Entity.id", ID, "id"),
    ("name", "voprov:Entity.name", TEXT, "name"),
    ("location", "voprov:Entity.location", TEXT, "location"),
    ("generatedAtTime", "voprov:Entity.generatedAtTime", TIME, "generated_at_time"),
    ("invalidatedAtTime", "voprov:Entity.invalidatedAtTime", TIME, "invalidated_at_time"),
    ("comment", "voprov:Entity.comment", TEXT, "comment"),
    ("contentType", "voprov:DatasetDescription.contentType", ASCII, "content_type"),
    ("size", "opus:Entity.size", LONG, "size"),
    ("sha256", "opus:Entity.sha256", ASCII, "sha256"),
    ("jobId", "opus:Entity.jobId", ASCII, "job_id"),
    ("resultId", "opus:Entity.resultId", TEXT, "result_id"),
]
AGENT: list[Column] = [
    ("id", "voprov:Agent.id", AGENT_ID, "id"),
    ("name", "voprov:Agent.name", TEXT, "name"),
    ("type", "voprov:Agent.type", TEXT, "type"),
    ("email", "voprov:Agent.email", TEXT, "email"),
    ("url", "voprov:Agent.url", TEXT, "url"),
]


def _relation(owner: tuple[str, str], other: tuple[str, str, str],
              third: tuple[str, str, str]) -> list[Column]:
    """Columns of a relation tuple: owner id, the other end, and role (or activity)."""
    return [(owner[0], owner[1], ID, "0"), (other[0], other[1], other[2], "1"),
            (third[0], third[1], third[2], "2")]


USED = _relation(("activity", "voprov:Activity.id"), ("entity", "voprov:Used.entity", ID),
                 ("role", "voprov:Used.role", TEXT))
GENERATED = _relation(("entity", "voprov:Entity.id"),
                      ("activity", "voprov:WasGeneratedBy.activity", ID),
                      ("role", "voprov:WasGeneratedBy.role", TEXT))
ASSOCIATED = _relation(("activity", "voprov:Activity.id"),
                       ("agent", "voprov:WasAssociatedWith.agent", AGENT_ID),
                       ("role", "voprov:WasAssociatedWith.role", TEXT))
ATTRIBUTED = _relation(("entity", "voprov:Entity.id"),
                       ("agent", "voprov:WasAttributedTo.agent", AGENT_ID),
                       ("role", "voprov:WasAttributedTo.role", TEXT))
DERIVED = _relation(("generatedEntity", "voprov:Entity.id"),
                    ("usedEntity", "voprov:Entity.usedEntity", ID),
                    ("activity", "opus:WasDerivedFrom.activity", ID))
PARAMETER = _relation(("activity", "voprov:Activity.id"),
                      ("name", "voprov:ActivityConfiguration.Parameter.name", TEXT),
                      ("value", "voprov:ActivityConfiguration.Parameter.value", TEXT))


def _timestamp(value: object) -> str:
    """ISO 8601 UTC (DALI timestamp); naive datetimes from the record are UTC."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return str(value)


def _cell(kind: str, value: Any) -> str:
    if value is None or value == "":
        return ""  # an empty TD is null (VOTable 1.4 section 6)
    if kind in (ID, AGENT_ID):
        return f"opus:{value}"
    if kind == TIME:
        return _timestamp(value)
    if kind in (INT, LONG):
        return str(int(value))
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False) if value else ""
    return _NOT_XML.sub("\ufffd", str(value))


def _table(parent: etree._Element, name: str, utype: str, description: str,
           columns: list[Column], rows: Iterable[Any],
           get: Callable[[Any, str], Any]) -> None:
    rows = list(rows)
    if not rows:
        return
    table = etree.SubElement(parent, f"{{{VOTABLE_NS}}}TABLE", name=name, utype=utype,
                             nrows=str(len(rows)))
    etree.SubElement(table, f"{{{VOTABLE_NS}}}DESCRIPTION").text = description
    for field_name, field_utype, kind, _ in columns:
        field = etree.SubElement(table, f"{{{VOTABLE_NS}}}FIELD", name=field_name,
                                 utype=field_utype, **_FIELD_ATTRS[kind])
        if field_name == "size":
            field.set("unit", "byte")
    tabledata = etree.SubElement(etree.SubElement(table, f"{{{VOTABLE_NS}}}DATA"),
                                 f"{{{VOTABLE_NS}}}TABLEDATA")
    for row in rows:
        tr = etree.SubElement(tabledata, f"{{{VOTABLE_NS}}}TR")
        for _, _, kind, key in columns:
            etree.SubElement(tr, f"{{{VOTABLE_NS}}}TD").text = _cell(kind, get(row, key))


def _agent_row(row: dict[str, Any]) -> dict[str, Any]:
    kind = row.get("type")
    return {**row, "type": AGENT_TYPES.get(str(kind).lower(), kind) if kind else None}


def graph_to_votable(graph: Graph, namespace: str) -> bytes:
    """``graph`` as a PROV-VOTABLE document (UTF-8 bytes); ids are ``opus:`` + local id."""
    root = etree.Element(f"{{{VOTABLE_NS}}}VOTABLE", nsmap={None: VOTABLE_NS},
                         version="1.4")
    resource = etree.SubElement(root, f"{{{VOTABLE_NS}}}RESOURCE", type="results",
                                name="provenance")
    etree.SubElement(resource, f"{{{VOTABLE_NS}}}DESCRIPTION").text = (
        "Provenance (IVOA ProvenanceDM 1.0), one table per class")
    etree.SubElement(resource, f"{{{VOTABLE_NS}}}INFO", name="QUERY_STATUS",
                     value="OVERFLOW" if graph.truncated else "OK")
    etree.SubElement(resource, f"{{{VOTABLE_NS}}}INFO", name="prefix:opus",
                     value=namespace).text = "namespace of the opus: prefix of ids"
    etree.SubElement(resource, f"{{{VOTABLE_NS}}}INFO", name="prefix:voprov",
                     value=VOPROV_URI).text = "IVOA ProvenanceDM 1.0 (VO-DML model voprov)"

    def by_key(row: dict[str, Any], key: str) -> Any:
        return row.get(key)

    def by_index(row: tuple[str, ...], key: str) -> Any:
        return row[int(key)]

    def nodes(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return [rows[key] for key in sorted(rows)]

    parameters = [(activity, name, value)
                  for activity in sorted(graph.parameters)
                  for name, value in sorted(graph.parameters[activity].items())]
    for args in (
        ("Activity", "voprov:Activity", "Activities (2.2.2)", ACTIVITY,
         nodes(graph.activities), by_key),
        ("Entity", "voprov:Entity", "Entities (2.2.1)", ENTITY, nodes(graph.entities), by_key),
        ("Agent", "voprov:Agent", "Agents (2.4.1)", AGENT,
         [_agent_row(row) for row in nodes(graph.agents)], by_key),
        ("Used", "voprov:Used", "Usage (2.3.1)", USED, sorted(graph.used), by_index),
        ("WasGeneratedBy", "voprov:WasGeneratedBy", "Generation (2.3.2)", GENERATED,
         sorted(graph.generated), by_index),
        ("WasAssociatedWith", "voprov:WasAssociatedWith", "Association (2.4.2)", ASSOCIATED,
         sorted(graph.associated), by_index),
        ("WasAttributedTo", "voprov:WasAttributedTo", "Attribution (2.4.3)", ATTRIBUTED,
         sorted(graph.attributed), by_index),
        ("WasDerivedFrom", "voprov:Entity.usedEntity", "Derivation (2.3.4)", DERIVED,
         sorted(graph.derived), by_index),
        ("Parameter", "voprov:ActivityConfiguration.Parameter",
         "Activity parameters (2.7.2)", PARAMETER, parameters, by_index),
    ):
        _table(resource, *args)
    # lxml has no type information: tostring() without encoding="unicode" gives bytes.
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                      pretty_print=True))
