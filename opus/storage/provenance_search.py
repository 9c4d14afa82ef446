"""The provenance search as SQL (the parameters: :mod:`opus.provenance.search`).

Everything is one SQL statement of joins and semi-joins on indexed columns (see
:data:`opus.storage.tables.SEARCH_INDEXES`), ordered by the run's end time and cut by
LIMIT/OFFSET in the database: nothing is filtered in Python. The lineage filters walk the
graph first, breadth-first, by ids only, with a visited set and the ProvSAP node cap; a
walk stopped by the cap is reported (``truncated``).

A search is made for a :class:`opus.auth.Viewer`: hits are the products, and runs, it may
read (:func:`opus.storage.access.visible` on both, in the statement), the lineage walks go
only through such nodes, and a lineage start it may not read is unknown (404), as one that
does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from opus.auth import Viewer
from opus.errors import NotFoundError
from opus.provenance.search import SearchQuery, SearchResult
from opus.storage import tables as t
from opus.storage.access import only_visible, visible
from opus.storage.tables import PREFIX, prefix


def _chunks(ids: Iterable[str], size: int = 500) -> Iterable[list[str]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def lineage(connection: sa.Connection, start: str, direction: str,
            max_nodes: int, viewer: Viewer) -> tuple[set[str], bool]:
    """Entities upstream (``BACK``) or downstream (``FORTH``) of entity ``start``, through
    used / wasGeneratedBy (ProvSAP DEPTH=ALL) and the nodes ``viewer`` may read, ids only;
    (ids, truncated by the cap)."""
    if direction == "BACK":
        to_activity = (t.prov_was_generated_by.c.activity_id, t.prov_was_generated_by.c.entity_id)
        to_entity = (t.prov_used.c.entity_id, t.prov_used.c.activity_id)
    else:
        to_activity = (t.prov_used.c.activity_id, t.prov_used.c.entity_id)
        to_entity = (t.prov_was_generated_by.c.entity_id, t.prov_was_generated_by.c.activity_id)
    entities: set[str] = {start}
    activities: set[str] = set()
    frontier = {start}
    while frontier:
        if len(entities) + len(activities) >= max_nodes:
            return entities - {start}, True
        found: set[str] = set()
        for ids in _chunks(frontier):
            found.update(connection.execute(_reached(
                to_activity, ids, t.prov_activity, viewer)).scalars())
        new_activities = found - activities
        activities |= new_activities
        found = set()
        for ids in _chunks(new_activities):
            found.update(connection.execute(_reached(
                to_entity, ids, t.prov_entity, viewer)).scalars())
        frontier = found - entities
        entities |= frontier
    return entities - {start}, False


def _reached(step: tuple[sa.Column[Any], sa.Column[Any]], ids: list[str], target: sa.Table,
             viewer: Viewer) -> sa.Select[Any]:
    """The ``step[0]`` nodes (rows of ``target``) related to the ``step[1]`` ones in
    ``ids``, those ``viewer`` may read."""
    query = sa.select(step[0]).where(step[1].in_(ids))
    condition = visible(target, viewer)
    if condition is None:
        return query
    return query.join(target, target.c.id == step[0]).where(condition)


# -- the query -------------------------------------------------------------------------
def same_text(column: sa.ColumnElement[str], value: str) -> list[sa.ColumnElement[bool]]:
    """``column = value``, written so that the prefix index serves it: the indexed prefix,
    then the rest. (Not ``column = value`` itself: SQLite would propagate that constant
    into ``substr(column, ...)``, which then no longer matches the indexed expression.)"""
    condition = [prefix(column) == value[:PREFIX]]
    if len(value) >= PREFIX:
        condition.append(sa.func.substr(column, sa.literal_column(str(PREFIX + 1)))
                         == value[PREFIX:])
    return condition


def _in_activities(subquery: sa.Select[Any]) -> sa.ColumnElement[bool]:
    return t.prov_activity.c.id.in_(subquery)


def _filters(query: SearchQuery,
             agent_ids: set[str] | None) -> list[sa.ColumnElement[bool]]:
    a, e = t.prov_activity, t.prov_entity
    where: list[sa.ColumnElement[bool]] = []
    if query.activity is not None:
        where.append(a.c.name == query.activity)
    if query.version is not None:
        where.append(a.c.description_version == query.version)
    p = t.prov_parameter
    for name, value in query.parameters:
        where.append(_in_activities(sa.select(p.c.activity_id).where(
            p.c.name == name, *same_text(p.c.value, value))))
    cp = t.prov_context_package
    for package, version in query.software:
        condition = [sa.func.lower(cp.c.package) == package.lower()]
        if version is not None:
            condition.append(cp.c.version == version)
        where.append(a.c.context_id.in_(sa.select(cp.c.context_id).where(*condition)))
    u = t.prov_used
    used_entity = t.prov_entity.alias("used_entity")
    for kind, value in query.used:
        if kind == "entity":
            where.append(_in_activities(sa.select(u.c.activity_id)
                                        .where(u.c.entity_id == value)))
            continue
        if kind == "sha256":
            condition = [used_entity.c.sha256 == value]
        else:
            condition = same_text(used_entity.c.location, value)
        where.append(_in_activities(
            sa.select(u.c.activity_id)
            .join(used_entity, used_entity.c.id == u.c.entity_id).where(*condition)))
    if query.sha256 is not None:
        where.append(e.c.sha256 == query.sha256)
    if agent_ids is not None:
        w = t.prov_was_associated_with
        where.append(_in_activities(sa.select(w.c.activity_id)
                                    .where(w.c.agent_id.in_(sorted(agent_ids)))))
    if query.after is not None:
        where.append(a.c.end_time >= query.after)
    if query.before is not None:
        where.append(a.c.end_time <= query.before)
    if query.phase is not None:
        where.append(a.c.phase == query.phase)
    return where


def statement(query: SearchQuery, entity_ids: set[str] | None = None,
              agent_ids: set[str] | None = None, *, viewer: Viewer) -> sa.Select[Any]:
    """The one SELECT of a search for ``viewer`` (``entity_ids``: the lineage restriction,
    if any; ``agent_ids``: the agents ``query.agent`` names)."""
    a, e, g = t.prov_activity, t.prov_entity, t.prov_was_generated_by
    where = _filters(query, agent_ids if query.agent is not None else None)
    if entity_ids is not None:
        where.append(e.c.id.in_(sorted(entity_ids)))
    where.extend(c for c in (visible(a, viewer), visible(e, viewer)) if c is not None)
    return (
        sa.select(
            e.c.id, e.c.name, e.c.location, e.c.sha256, e.c.size, e.c.content_type,
            e.c.generated_at_time, e.c.invalidated_at_time, e.c.result_id,
            a.c.id.label("activity_id"), a.c.name.label("activity"),
            a.c.description_version.label("version"), a.c.job_id, a.c.phase,
            a.c.end_time,
        )
        .select_from(a.join(g, g.c.activity_id == a.c.id).join(e, e.c.id == g.c.entity_id))
        .where(*where)
        # Newest runs first. Activity columns lead so that the end-time index (or the
        # name, end-time one) gives the order and a LIMIT stops the scan early; e.id only
        # orders the few products of one run ("right part" / incremental sort).
        .order_by(a.c.end_time.desc(), a.c.id.desc(), e.c.id)
        .limit(query.limit + 1).offset(query.offset)
    )


def _known_entity(connection: sa.Connection, name: str, entity_id: str,
                  viewer: Viewer) -> None:
    known = only_visible(sa.select(t.prov_entity.c.id).where(t.prov_entity.c.id == entity_id),
                         t.prov_entity, viewer)
    if connection.execute(known).first() is None:
        raise NotFoundError(f"{name}: no entity {entity_id} in the provenance record")


def search(connection: sa.Connection, query: SearchQuery, *, viewer: Viewer,
           max_nodes: int = 10000) -> SearchResult:
    """Run ``query`` for ``viewer``; hits are rows as dicts, newest run first."""
    restriction: set[str] | None = None
    truncated = False
    for name, start, direction in (("ancestors", query.ancestors, "BACK"),
                                   ("descendants", query.descendants, "FORTH")):
        if start is None:
            continue
        _known_entity(connection, name, start, viewer)
        ids, cut = lineage(connection, start, direction, max_nodes, viewer)
        truncated = truncated or cut
        restriction = ids if restriction is None else restriction & ids
    agent_ids: set[str] | None = None
    if query.agent is not None:
        # The agent's ids first (an agent is named by id or by name): the planner then
        # sees plain agent ids, whose frequency it knows.
        agent_ids = set(connection.execute(sa.select(t.prov_agent.c.id).where(
            sa.or_(t.prov_agent.c.id == query.agent, t.prov_agent.c.name == query.agent))).scalars())
    if (restriction is not None and not restriction) or agent_ids == set():
        return SearchResult([], False, truncated)
    rows = [dict(row._mapping) for row in
            connection.execute(statement(query, restriction, agent_ids, viewer=viewer))]
    return SearchResult(rows[:query.limit], len(rows) > query.limit, truncated)


