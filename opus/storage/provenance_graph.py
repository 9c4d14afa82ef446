"""The ProvSAP walk over the SQL record (see :mod:`opus.provenance.graph` for the rules).

One DEPTH step is one query per relation and chunk of the frontier (ids in chunks of 500),
so a walk costs a few queries per step whatever the size of the record.

Every read is made for a :class:`opus.auth.Viewer` and sees only the runs and entities it
may read (:func:`opus.storage.access.visible`, in the SQL of each step): another owner's
nodes are left out of the graph, with their relations, and the walk does not go through
them; an agent is shown only when it is attached to a node that is shown. An id the viewer
may not read is unknown to :func:`node_kind`, as an id that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from opus.auth import Viewer
from opus.provenance.graph import Graph
from opus.storage import tables as t
from opus.storage.access import only_visible, visible


def _rows(connection: sa.Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(query)]


def _chunks(ids: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def node_kind(connection: sa.Connection, node_id: str, viewer: Viewer) -> str | None:
    """'entity', 'activity' or 'agent' for a local id ``viewer`` may read, else None."""
    for kind, table in (("entity", t.prov_entity), ("activity", t.prov_activity)):
        if connection.execute(only_visible(sa.select(table.c.id).where(table.c.id == node_id),
                                           table, viewer)).first():
            return kind
    if viewer.admin:
        known = sa.select(t.prov_agent.c.id).where(t.prov_agent.c.id == node_id)
        return "agent" if connection.execute(known).first() else None
    for relation, table, key in ((t.prov_was_associated_with, t.prov_activity, "activity_id"),
                                 (t.prov_was_attributed_to, t.prov_entity, "entity_id")):
        attached = only_visible(sa.select(relation.c.agent_id)
                                .join(table, table.c.id == relation.c[key])
                                .where(relation.c.agent_id == node_id), table, viewer)
        if connection.execute(attached.limit(1)).first():
            return "agent"
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
    viewer: Viewer,
) -> Graph:
    """The graph around ``start`` (local ids) as ``viewer`` may see it. ``depth`` None
    means ALL."""
    graph = Graph()
    entity_frontier: set[str] = set()
    activity_frontier: set[str] = set()
    agent_ids: set[str] = set()
    for node_id in start:
        kind = node_kind(connection, node_id, viewer)
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
                               "activity_id", graph, viewer)
        next_entities = _hop(connection, activity_frontier,
                             t.prov_used if back else t.prov_was_generated_by, "activity_id",
                             "entity_id", graph, viewer)
        entity_frontier = next_entities - seen_entities
        activity_frontier = next_activities - seen_activities
        seen_entities |= entity_frontier
        seen_activities |= activity_frontier
    if len(seen_entities) + len(seen_activities) > max_nodes:
        graph.truncated = True
    _load_nodes(connection, graph, sorted(seen_entities), sorted(seen_activities),
                agent_ids, agents=agents, configuration=configuration, viewer=viewer)
    return graph


def _hop(connection: sa.Connection, frontier: set[str], relation: sa.Table, key: str,
         other: str, graph: Graph, viewer: Viewer) -> set[str]:
    """Follow ``relation`` from the ``key`` nodes of ``frontier`` to the ``other`` nodes
    ``viewer`` may read; record the relations in ``graph`` and return the nodes reached."""
    target = t.prov_activity if other == "activity_id" else t.prov_entity
    condition = visible(target, viewer)
    reached: set[str] = set()
    for ids in _chunks(sorted(frontier)):
        query = sa.select(relation).where(relation.c[key].in_(ids))
        if condition is not None:
            query = query.join(target, target.c.id == relation.c[other]).where(condition)
        for row in connection.execute(query):
            if relation is t.prov_used:
                graph.used.add((row.activity_id, row.entity_id, row.role or ""))
            else:
                graph.generated.add((row.entity_id, row.activity_id, row.role or ""))
            reached.add(getattr(row, other))
    return reached


def _load_nodes(connection: sa.Connection, graph: Graph, entity_ids: list[str],
                activity_ids: list[str], agent_ids: set[str], *, agents: bool,
                configuration: bool, viewer: Viewer) -> None:
    # The walk reached only nodes the viewer may read; the filter stays, to be sure.
    for ids in _chunks(entity_ids):
        for entity in _rows(connection, only_visible(sa.select(t.prov_entity).where(
                t.prov_entity.c.id.in_(ids)), t.prov_entity, viewer)):
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
        for activity in _rows(connection, only_visible(sa.select(t.prov_activity).where(
                t.prov_activity.c.id.in_(ids)), t.prov_activity, viewer)):
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
