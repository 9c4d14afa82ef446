"""A piece of the provenance graph: the nodes and relations a walk of the record found.

ProvSAP (IVOA ProvSAP working draft, the "PROV Simple Access Protocol") asks for the
provenance of one or more nodes (entities, activities, agents) to a DEPTH in a DIRECTION:
BACK follows what a node came from (entity -> the activity that generated it -> the entities
that activity used -> ...), FORTH what came of it (entity -> the activities that used it ->
what they generated -> ...). One DEPTH step is one hop along an entity-activity relation;
DEPTH=ALL walks to the end. The walk keeps a visited set (a graph can meet itself when a
product is used twice) and stops at a node cap, so a huge or cyclic record never exhausts a
worker. Agents are attached to the nodes found (AGENT=true), not walked through.

The walk itself reads the SQL record: :mod:`opus.storage.provenance_graph`. This module is
the plain data it fills, shared by every serialisation (PROV-JSON/XML/N, VOTable, SVG).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Graph:
    """Rows of the record, keyed by local id; relations as tuples of ids and role."""

    activities: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (activity_id, entity_id, role)
    used: set[tuple[str, str, str]] = field(default_factory=set)
    #: (entity_id, activity_id, role)
    generated: set[tuple[str, str, str]] = field(default_factory=set)
    #: (activity_id, agent_id, role)
    associated: set[tuple[str, str, str]] = field(default_factory=set)
    #: (entity_id, agent_id, role)
    attributed: set[tuple[str, str, str]] = field(default_factory=set)
    #: (generated_entity_id, used_entity_id, activity_id or "")
    derived: set[tuple[str, str, str]] = field(default_factory=set)
    #: activity_id -> {name: value}
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)
    #: activity_id -> PROV-JSON text the activity wrote itself
    bundles: dict[str, str] = field(default_factory=dict)
    #: True when the node cap stopped the walk early.
    truncated: bool = False

    def node_count(self) -> int:
        return len(self.activities) + len(self.entities) + len(self.agents)
