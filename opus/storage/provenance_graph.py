"""The ProvSAP walk over the SQL record (see :mod:`opus.provenance.graph` for the rules).

One DEPTH step is one query per relation and chunk of the frontier (ids in chunks of 500),
so a walk costs a few queries per step whatever the size of the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from opus.provenance.graph import Graph
from opus.storage import tables as t


def _rows(connection: sa.Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(query)]


def _chunks(ids: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def node_kind(connection: sa.Connection, node_id: str) -> str | None:
    """'entity', 'activity' or 'agent' for a known local id, else None."""
    for kind, table in (("entity", t.prov_entity), ("activity", t.prov_activity), ("agent", t.prov_agent)):
        if connection.execute(sa.select(table.c.id).where(table.c.id == node_id)).first():
            return kind
    return None


def walk(
    connection: sa.Connection,
    start: Sequence[str],
    *,
    depth: int | None,
    direction: str = "BACK",
    agents: bool = True,
    configuration: bool = True,
    max_nodes: int = 10000,
) -> Graph:
    """The graph around ``start`` (local ids). ``depth`` None means ALL."""
    graph = Graph()
    entity_frontier: set[str] = set()
    activity_frontier: set[str] = set()
    agent_ids: set[str] = set()
    for node_id in start:
        kind = node_kind(connection, node_id)
        if kind == "entity":
            entity_frontier.add(node_id)
        elif kind == "activity":
            activity_frontier.add(node_id)
        elif kind == "agent":
            agent_ids.add(node_id)
    seen_entities: set[str] = set(entity_frontier)
    seen_activities: set[str] = set(activity_frontier)
    step = 0
    while (entity_frontier or activity_frontier) and (depth is None or step < depth):
        if len(seen_entities) + len(seen_activities) >= max_nodes:
            graph.truncated = True
            break
        step += 1
        # BACK: entity -> the activity that generated it -> the entities it used;
        # FORTH: entity -> the activities that used it -> the entities they generated.
        back = direction == "BACK"
        next_activities = _hop(connection, entity_frontier,
                               t.prov_was_generated_by if back else t.prov_used, "entity_id",
                               "activity_id", graph)
        next_entities = _hop(connection, activity_frontier,
                             t.prov_used if back else t.prov_was_generated_by, "activity_id",
                             "entity_id", graph)
        entity_frontier = next_entities - seen_entities
        activity_frontier = next_activities - seen_activities
        seen_entities |= entity_frontier
        seen_activities |= activity_frontier
    if len(seen_entities) + len(seen_activities) > max_nodes:
        graph.truncated = True
    _load_nodes(connection, graph, sorted(seen_entities), sorted(seen_activities),
                agent_ids, agents=agents, configuration=configuration)
    return graph


def _hop(connection: sa.Connection, frontier: set[str], relation: sa.Table, key: str,
         other: str, graph: Graph) -> set[str]:
    """Follow ``relation`` from the ``key`` nodes of ``frontier``; record the relations in
    ``graph`` and return the ``other`` nodes reached."""
    reached: set[str] = set()
    for ids in _chunks(sorted(frontier)):
        for row in connection.execute(sa.select(relation).where(relation.c[key].in_(ids))):
            if relation is t.prov_used:
                graph.used.add((row.activity_id, row.entity_id, row.role or ""))
            else:
                graph.generated.add((row.entity_id, row.activity_id, row.role or ""))
            reached.add(getattr(row, other))
    return reached


def _load_nodes(connection: sa.Connection, graph: Graph, entity_ids: list[str],
                activity_ids: list[str], agent_ids: set[str], *, agents: bool,
                configuration: bool) -> None:
    for ids in _chunks(entity_ids):
        for entity in _rows(connection, sa.select(t.prov_entity)
                            .where(t.prov_entity.c.id.in_(ids))):
            graph.entities[entity["id"]] = entity
        for row in connection.execute(sa.select(t.prov_was_derived_from).where(
                t.prov_was_derived_from.c.generated_entity_id.in_(ids))):
            if row.used_entity_id in graph.entities or row.used_entity_id in entity_ids:
                graph.derived.add((row.generated_entity_id, row.used_entity_id,
                                   row.activity_id or ""))
        if agents:
            for row in connection.execute(sa.select(t.prov_was_attributed_to).where(
                    t.prov_was_attributed_to.c.entity_id.in_(ids))):
                graph.attributed.add((row.entity_id, row.agent_id, row.role))
                agent_ids.add(row.agent_id)
    context_ids: set[str] = set()
    for ids in _chunks(activity_ids):
        for activity in _rows(connection, sa.select(t.prov_activity)
                              .where(t.prov_activity.c.id.in_(ids))):
            activity["facts"] = json.loads(activity["facts"]) if activity.get("facts") else {}
            graph.activities[activity["id"]] = activity
            if activity.get("context_id"):
                context_ids.add(activity["context_id"])
        if agents:
            for row in connection.execute(sa.select(t.prov_was_associated_with).where(
                    t.prov_was_associated_with.c.activity_id.in_(ids))):
                graph.associated.add((row.activity_id, row.agent_id, row.role))
                agent_ids.add(row.agent_id)
        if configuration:
            for row in connection.execute(sa.select(t.prov_parameter).where(
                    t.prov_parameter.c.activity_id.in_(ids))):
                graph.parameters.setdefault(row.activity_id, {})[row.name] = row.value
        for row in connection.execute(sa.select(t.prov_bundle)
                                      .where(t.prov_bundle.c.activity_id.in_(ids))):
            graph.bundles[row.activity_id] = row.content
    # Relations to nodes outside the walk are dropped: a document names only its nodes.
    graph.used = {r for r in graph.used if r[0] in graph.activities and r[1] in graph.entities}
    graph.generated = {r for r in graph.generated
                       if r[0] in graph.entities and r[1] in graph.activities}
    for ids in _chunks(sorted(context_ids)):
        for row in connection.execute(sa.select(t.prov_context)
                                      .where(t.prov_context.c.id.in_(ids))):
            graph.contexts[row.id] = json.loads(row.content)
    for ids in _chunks(sorted(agent_ids)):
        for agent in _rows(connection, sa.select(t.prov_agent)
                           .where(t.prov_agent.c.id.in_(ids))):
            graph.agents[agent["id"]] = agent
