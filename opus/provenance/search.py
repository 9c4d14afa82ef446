"""Search through provenance: which products were made how (``GET /provenance/search``).

A search finds *generated* entities (ProvenanceDM 1.0 section 2.2: an Entity with a
wasGeneratedBy relation to the Activity of a job run) and the runs that made them, by any
AND-combination of:

=================  =========================================================================
``activity``       the activity's name (ActivityDescription.name)
``version``        the activity description's version
``param``          ``name:value``, a parameter of the run (ActivityConfiguration); repeatable
``software``       ``package==version`` or ``package`` (any version) in the run's execution
                   context; package names compare case-insensitively; repeatable
``used``           an input: an entity id (``opus:ent-...``), a sha256, or a URL; repeatable
``sha256``         the sha256 of the product itself
``agent``          an agent associated with the run (wasAssociatedWith), by id or name
``after/before``   the run's end time, ISO 8601, both bounds inclusive
``phase``          how the run ended: COMPLETED, ERROR or ABORTED
``ancestors``      only entities upstream of this entity (what it was made from, through
                   used / wasGeneratedBy, as ProvSAP DIRECTION=BACK DEPTH=ALL)
``descendants``    only entities downstream of this entity (DIRECTION=FORTH)
``limit/offset``   paging (limit default 100, at most 1000), newest runs first
=================  =========================================================================

Everything is one SQL statement of joins and semi-joins on indexed columns (see
:mod:`opus.provenance.replay_tables` for the indexes added for it), ordered by the run's end
time and cut by LIMIT/OFFSET in the database: nothing is filtered in Python. The lineage
filters walk the graph first, breadth-first, by ids only, with a visited set and the ProvSAP
node cap; a walk stopped by the cap is reported (``truncated``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from opus.errors import NotFoundError, ParameterError
from opus.provenance import tables as t
from opus.provenance.replay_tables import PREFIX, prefix
from opus.uws import params

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_OFFSET = 10_000_000
PHASES = ("COMPLETED", "ERROR", "ABORTED")
SINGLE = ("activity", "version", "sha256", "agent", "after", "before", "phase", "ancestors",
          "descendants", "limit", "offset")
REPEATABLE = ("param", "software", "used")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SearchQuery:
    activity: str | None = None
    version: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    #: (package, version or None for any version)
    software: tuple[tuple[str, str | None], ...] = ()
    #: (kind, value): kind is "entity", "sha256" or "url"
    used: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    agent: str | None = None
    after: dt.datetime | None = None
    before: dt.datetime | None = None
    phase: str | None = None
    ancestors: str | None = None
    descendants: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass
class SearchResult:
    hits: list[dict[str, Any]]
    #: More hits exist past this page.
    more: bool
    #: A lineage walk stopped at the node cap: some ancestors/descendants were not seen.
    truncated: bool


def entity_local_id(name: str, value: str, namespace: str) -> str:
    """``opus:ent-x``, ``{namespace}ent-x`` or ``ent-x`` -> ``ent-x``."""
    text = value.strip()
    for qualifier in (namespace, "opus:"):
        if text.startswith(qualifier):
            text = text[len(qualifier):]
            break
    if not text.startswith("ent-") or len(text) > 80:
        raise ParameterError(name, f"must be an entity identifier such as opus:ent-... "
                                   f"(got {params.shown(value)})")
    return text


def _sha256(name: str, value: str) -> str:
    text = value.strip()
    if not _SHA256.match(text):
        raise ParameterError(name, f"must be a sha256: 64 hexadecimal digits "
                                   f"(got {params.shown(value)})")
    return text.lower()


def _software(value: str) -> tuple[str, str | None]:
    package, separator, version = value.strip().partition("==")
    package, version = package.strip(), version.strip()
    if not _PACKAGE.match(package) or (separator and not version) or len(package) > 255:
        raise ParameterError("software", f"must be package==version or package "
                                         f"(got {params.shown(value)})")
    return package, (version if separator else None)


def _used(value: str, namespace: str) -> tuple[str, str]:
    text = value.strip()
    if _SHA256.match(text):
        return "sha256", text.lower()
    if text.startswith(("http://", "https://")):
        return "url", text
    return "entity", entity_local_id("used", text, namespace)


def parse_search(items: Sequence[tuple[str, str]], namespace: str) -> SearchQuery:
    """Read the search parameters (names case-insensitive, DALI 1.1 section 3.1); a bad
    value or an unknown parameter is a ParameterError that names it."""
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in REPEATABLE}
    for key, value in items:
        name = key.lower()
        if name in REPEATABLE:
            repeated[name].append(value)
        elif name in SINGLE:
            if name in single:
                raise ParameterError(name, "given more than once")
            single[name] = value
        else:
            raise ParameterError(params.shown(key), f"unknown parameter; use "
                                                    f"{', '.join(SINGLE + REPEATABLE)}")
    parameters = []
    for value in repeated["param"]:
        pname, separator, pvalue = value.partition(":")
        if not separator or not pname.strip():
            raise ParameterError("param", f"must be name:value (got {params.shown(value)})")
        parameters.append((pname.strip(), pvalue))
    phase = single.get("phase")
    if phase is not None:
        phase = phase.strip().upper()
        if phase not in PHASES:
            raise ParameterError("phase", f"must be one of {', '.join(PHASES)} "
                                          f"(got {params.shown(single['phase'])})")
    after = params.parse_datetime("after", single["after"]) if "after" in single else None
    before = params.parse_datetime("before", single["before"]) if "before" in single else None
    if after is not None and before is not None and after > before:
        raise ParameterError("before", "must not be earlier than after")
    return SearchQuery(
        activity=single.get("activity"),
        version=single.get("version"),
        parameters=tuple(parameters),
        software=tuple(_software(v) for v in repeated["software"]),
        used=tuple(_used(v, namespace) for v in repeated["used"]),
        sha256=_sha256("sha256", single["sha256"]) if "sha256" in single else None,
        agent=_agent(single.get("agent"), namespace),
        after=after, before=before, phase=phase,
        ancestors=(entity_local_id("ancestors", single["ancestors"], namespace)
                   if "ancestors" in single else None),
        descendants=(entity_local_id("descendants", single["descendants"], namespace)
                     if "descendants" in single else None),
        limit=(params.parse_int("limit", single["limit"], minimum=0, maximum=MAX_LIMIT)
               if "limit" in single else DEFAULT_LIMIT),
        offset=(params.parse_int("offset", single["offset"], minimum=0, maximum=MAX_OFFSET)
                if "offset" in single else 0),
    )


def _agent(value: str | None, namespace: str) -> str | None:
    if value is None:
        return None
    text = value.strip()
    for qualifier in (namespace, "opus:"):
        if text.startswith(qualifier):
            return text[len(qualifier):]
    if not text:
        raise ParameterError("agent", "must be an agent id or name")
    return text


# -- the lineage walk ------------------------------------------------------------------
def _chunks(ids: Iterable[str], size: int = 500) -> Iterable[list[str]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def lineage(connection: sa.Connection, start: str, direction: str,
            max_nodes: int) -> tuple[set[str], bool]:
    """Entities upstream (``BACK``) or downstream (``FORTH``) of entity ``start``, through
    used / wasGeneratedBy (ProvSAP DEPTH=ALL), ids only; (ids, truncated by the cap)."""
    if direction == "BACK":
        to_activity = (t.was_generated_by.c.activity_id, t.was_generated_by.c.entity_id)
        to_entity = (t.used.c.entity_id, t.used.c.activity_id)
    else:
        to_activity = (t.used.c.activity_id, t.used.c.entity_id)
        to_entity = (t.was_generated_by.c.entity_id, t.was_generated_by.c.activity_id)
    entities: set[str] = {start}
    activities: set[str] = set()
    frontier = {start}
    while frontier:
        if len(entities) + len(activities) >= max_nodes:
            return entities - {start}, True
        found: set[str] = set()
        for ids in _chunks(frontier):
            found.update(connection.execute(
                sa.select(to_activity[0]).where(to_activity[1].in_(ids))).scalars())
        new_activities = found - activities
        activities |= new_activities
        found = set()
        for ids in _chunks(new_activities):
            found.update(connection.execute(
                sa.select(to_entity[0]).where(to_entity[1].in_(ids))).scalars())
        frontier = found - entities
        entities |= frontier
    return entities - {start}, False


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


def _in_activities(subquery: sa.Select) -> sa.ColumnElement[bool]:
    return t.activity.c.id.in_(subquery)


def _filters(query: SearchQuery,
             agent_ids: set[str] | None) -> list[sa.ColumnElement[bool]]:
    a, e = t.activity, t.entity
    where: list[sa.ColumnElement[bool]] = []
    if query.activity is not None:
        where.append(a.c.name == query.activity)
    if query.version is not None:
        where.append(a.c.description_version == query.version)
    p = t.parameter
    for name, value in query.parameters:
        where.append(_in_activities(sa.select(p.c.activity_id).where(
            p.c.name == name, *same_text(p.c.value, value))))
    cp = t.context_package
    for package, version in query.software:
        condition = [sa.func.lower(cp.c.package) == package.lower()]
        if version is not None:
            condition.append(cp.c.version == version)
        where.append(a.c.context_id.in_(sa.select(cp.c.context_id).where(*condition)))
    u = t.used
    used_entity = t.entity.alias("used_entity")
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
        w = t.was_associated_with
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
              agent_ids: set[str] | None = None) -> sa.Select:
    """The one SELECT of a search (``entity_ids``: the lineage restriction, if any;
    ``agent_ids``: the agents ``query.agent`` names)."""
    a, e, g = t.activity, t.entity, t.was_generated_by
    where = _filters(query, agent_ids if query.agent is not None else None)
    if entity_ids is not None:
        where.append(e.c.id.in_(sorted(entity_ids)))
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


def _known_entity(connection: sa.Connection, name: str, entity_id: str) -> None:
    if connection.execute(sa.select(t.entity.c.id).where(t.entity.c.id == entity_id)).first() \
            is None:
        raise NotFoundError(f"{name}: no entity {entity_id} in the provenance record")


def search(connection: sa.Connection, query: SearchQuery, *,
           max_nodes: int = 10000) -> SearchResult:
    """Run ``query``; hits are rows as dicts, newest run first."""
    restriction: set[str] | None = None
    truncated = False
    for name, start, direction in (("ancestors", query.ancestors, "BACK"),
                                   ("descendants", query.descendants, "FORTH")):
        if start is None:
            continue
        _known_entity(connection, name, start)
        ids, cut = lineage(connection, start, direction, max_nodes)
        truncated = truncated or cut
        restriction = ids if restriction is None else restriction & ids
    agent_ids: set[str] | None = None
    if query.agent is not None:
        # The agent's ids first (an agent is named by id or by name): the planner then
        # sees plain agent ids, whose frequency it knows.
        agent_ids = set(connection.execute(sa.select(t.agent.c.id).where(
            sa.or_(t.agent.c.id == query.agent, t.agent.c.name == query.agent))).scalars())
    if (restriction is not None and not restriction) or agent_ids == set():
        return SearchResult([], False, truncated)
    rows = [dict(row._mapping) for row in
            connection.execute(statement(query, restriction, agent_ids))]
    return SearchResult(rows[:query.limit], len(rows) > query.limit, truncated)


def hit_json(row: dict[str, Any], root_url: str) -> dict[str, Any]:
    """One hit as the JSON answer shows it (identifiers qualified with ``opus:``)."""
    job_url = (f"{root_url}/rest/{row['activity']}/{row['job_id']}" if row["job_id"]
               else None)
    return {
        "id": f"opus:{row['id']}",
        "name": row["result_id"] or row["name"],
        "location": row["location"],
        "sha256": row["sha256"],
        "size": row["size"],
        "content_type": row["content_type"],
        "generated": params.format_datetime(row["generated_at_time"]) or None,
        "invalidated": params.format_datetime(row["invalidated_at_time"]) or None,
        "activity_id": f"opus:{row['activity_id']}",
        "activity": row["activity"],
        "version": row["version"],
        "phase": row["phase"],
        "end_time": params.format_datetime(row["end_time"]) or None,
        "job_id": row["job_id"],
        "job_url": job_url,
        "provenance_url": f"{root_url}/provsap?ID=opus:{row['id']}&DEPTH=ALL",
    }
