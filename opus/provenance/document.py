"""PROV documents (the ``prov`` package) from a provenance :class:`Graph`, in two models.

``voprov`` is not used (it breaks on current ``prov``): the IVOA classes are expressed with
``prov:type`` values in the ``voprov`` namespace and IVOA attributes as ``voprov:``
attributes. MODEL=IVOA adds what ProvenanceDM 1.0 adds to W3C PROV: parameters as
``voprov:Parameter`` entities linked to their activity through a ``prov:wasInfluencedBy``
typed ``voprov:wasConfiguredBy`` (section 2.7, ActivityConfiguration), the activity
description, and the execution context. MODEL=W3C keeps to PROV-DM: parameters become
entities the activity used with the parameter name as role.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from prov.identifier import Namespace, QualifiedName
from prov.model import PROV, PROV_ROLE, PROV_TYPE, PROV_VALUE, ProvDocument

from opus.provenance.graph import Graph

VOPROV_URI = "http://www.ivoa.net/documents/ProvenanceDM/ns/voprov/"
VOPROV = Namespace("voprov", VOPROV_URI)
MODELS = ("IVOA", "W3C")

#: Attributes of a PROV record: "prefix:name" strings or QualifiedNames (PROV_TYPE, ...).
_Attributes: TypeAlias = dict[QualifiedName | str, Any]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None else None


def _clean(attributes: Mapping[QualifiedName | str, Any]) -> _Attributes:
    return {key: value for key, value in attributes.items() if value not in (None, "")}


def build_document(graph: Graph, namespace: str, *, model: str = "IVOA",
                   descriptions: bool = False) -> ProvDocument:
    """A PROV document of ``graph``; node ids are qualified with prefix ``opus``."""
    ivoa = model == "IVOA"
    document = ProvDocument()
    document.add_namespace("opus", namespace)
    document.add_namespace(VOPROV)

    def q(local: str) -> str:
        return f"opus:{local}"

    for agent_id, row in graph.agents.items():
        attributes: _Attributes = {"prov:label": row["name"]}
        if ivoa:
            attributes.update({"voprov:name": row["name"], "voprov:email": row.get("email"),
                               "voprov:type": row.get("type")})
        if row.get("type") == "SoftwareAgent":
            attributes[PROV_TYPE] = PROV["SoftwareAgent"]
        document.agent(q(agent_id), _clean(attributes))
    for entity_id, row in graph.entities.items():
        attributes = {
            "prov:label": row.get("name"), "prov:location": row.get("location"),
            "opus:sha256": row.get("sha256"), "opus:size": row.get("size"),
            "opus:contentType": row.get("content_type"),
        }
        if ivoa:
            attributes.update({PROV_TYPE: VOPROV["DatasetEntity"],
                               "voprov:name": row.get("name"),
                               "voprov:invalidatedAtTime": row.get("invalidated_at_time")})
        document.entity(q(entity_id), _clean(attributes))
    for activity_id, row in graph.activities.items():
        attributes = {"prov:label": row["name"], "opus:phase": row.get("phase"),
                      "opus:jobId": row.get("job_id"), "opus:exitCode": row.get("exit_code"),
                      "opus:scriptSha256": row.get("script_sha256")}
        if ivoa:
            attributes.update({"voprov:name": row["name"], "voprov:comment": row.get("comment"),
                               "voprov:activityDescription": row.get("description_name"),
                               "voprov:version": row.get("description_version")})
        if descriptions:
            attributes["opus:descriptionSha256"] = row.get("description_sha256")
        document.activity(q(activity_id), _utc(row.get("start_time")),
                          _utc(row.get("end_time")), _clean(attributes))
        context_id = row.get("context_id")
        if context_id and context_id in graph.contexts:
            _context(document, q(context_id), graph.contexts[context_id], ivoa)
            document.used(q(activity_id), q(context_id), None, None,
                          {PROV_ROLE: "executionContext"})
        for name, value in graph.parameters.get(activity_id, {}).items():
            parameter = q(f"{activity_id}.par.{_local(name)}")
            if ivoa:
                document.entity(parameter, {PROV_TYPE: VOPROV["Parameter"],
                                            "voprov:name": name, PROV_VALUE: value})
                document.wasInfluencedBy(q(activity_id), parameter, None, {
                    PROV_TYPE: VOPROV["wasConfiguredBy"], "voprov:artefactType": "Parameter"})
            else:
                document.entity(parameter, {"prov:label": name, PROV_VALUE: value})
                document.used(q(activity_id), parameter, None, None, {PROV_ROLE: name})
    for activity_id, entity_id, role in sorted(graph.used):
        document.used(q(activity_id), q(entity_id), None, None, _clean({PROV_ROLE: role}))
    for entity_id, activity_id, role in sorted(graph.generated):
        time = _utc(graph.entities[entity_id].get("generated_at_time"))
        document.wasGeneratedBy(q(entity_id), q(activity_id), time, None,
                                _clean({PROV_ROLE: role}))
    for activity_id, agent_id, role in sorted(graph.associated):
        if agent_id in graph.agents:
            document.wasAssociatedWith(q(activity_id), q(agent_id), None, None,
                                       _clean({PROV_ROLE: role}))
    for entity_id, agent_id, role in sorted(graph.attributed):
        if agent_id in graph.agents:
            document.wasAttributedTo(q(entity_id), q(agent_id), None,
                                     _clean({PROV_ROLE: role}))
    for generated, used, activity_id in sorted(graph.derived):
        document.wasDerivedFrom(q(generated), q(used),
                                q(activity_id) if activity_id in graph.activities else None)
    for activity_id, content in graph.bundles.items():
        _merge_bundle(document, q(f"{activity_id}.bundle"), content)
    return document


def _local(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _context(document: ProvDocument, identifier: str, context: dict[str, Any],
             ivoa: bool) -> None:
    packages = context.get("packages") or {}
    attributes: _Attributes = {
        "prov:label": f"execution context on {context.get('host')}",
        "opus:host": context.get("host"), "opus:platform": context.get("platform"),
        "opus:cpuCount": context.get("cpu_count"), "opus:memoryBytes": context.get("memory_bytes"),
        "opus:python": context.get("python"),
        "opus:packages": " ".join(f"{name}=={version}" for name, version in packages.items()),
        "opus:environment": json.dumps(context.get("environment") or {}, sort_keys=True),
    }
    if ivoa:
        attributes[PROV_TYPE] = VOPROV["ConfigFile"]
    if document.get_record(identifier):
        return
    document.entity(identifier, _clean(attributes))


def _merge_bundle(document: ProvDocument, identifier: str, content: str) -> None:
    """The activity's own PROV-JSON, kept as a bundle; unreadable content is skipped (it is
    still stored and downloadable as written)."""
    try:
        own = ProvDocument.deserialize(content=content, format="json")
    except Exception:
        return
    bundle = document.bundle(identifier)
    for namespace in own.get_registered_namespaces():
        bundle.add_namespace(namespace)
    for record in own.get_records():
        bundle.add_record(record)
