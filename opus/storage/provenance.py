"""The provenance store: every query of the provenance tables goes through it.

The record (ProvenanceDM 1.0 section 2, tables in :mod:`opus.storage.tables`) is written
once per run, in the transaction that ends its job (:meth:`ProvenanceStore.record_run`,
called by :class:`opus.storage.jobs.JobStore` through the hook :mod:`opus.services` wires),
and read by ProvSAP, the search, replays, DataLink, input references and staging. Rows are
only ever added; a job's entities are invalidated, never deleted, when it goes away.

The SQL of the larger readers lives beside this module: the graph walk in
:mod:`opus.storage.provenance_graph`, the search in :mod:`opus.storage.provenance_search`,
the writer in :mod:`opus.storage.provenance_record`. Callers see plain data
(:class:`EntityRecord`, dicts of an activity's columns, :class:`opus.provenance.graph.Graph`).

What answers a client directly (the ProvSAP walk and node lookup, the search, bindings, an
activity asked for by a ``viewer``) is read for a :class:`opus.auth.Viewer`, filtered in SQL
(:mod:`opus.storage.access`). The other readers return rows with their ``owner_key`` and
``public`` so that their callers ask :class:`opus.auth.AccessPolicy`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opus.activities.model import ActivityDescription
from opus.auth import Viewer
from opus.provenance.graph import Graph
from opus.provenance.search import SearchQuery, SearchResult
from opus.provenance.templates import DEFAULT_NAMESPACE, TEMPLATES_DIR
from opus.storage import provenance_graph, provenance_record, provenance_search
from opus.storage import tables as t
from opus.storage.access import only_visible
from opus.storage.engine import write_transaction
from opus.uws.models import RunEnd, utcnow

activity_id = provenance_record.activity_id


@dataclass(frozen=True)
class EntityRecord:
    """One ``prov_entity`` row (ProvenanceDM Entity): a job's result when ``job_id`` and
    ``result_id`` are set, else an input that came from outside (an upload, a URL)."""

    id: str
    name: str | None
    location: str | None
    generated_at_time: dt.datetime | None
    invalidated_at_time: dt.datetime | None
    comment: str | None
    content_type: str | None
    size: int | None
    sha256: str | None
    job_id: str | None
    result_id: str | None
    #: Whose it is (users.id; None: anonymous) and whether it was published.
    owner_key: str | None = None
    public: bool = False


@dataclass(frozen=True)
class UsedInput:
    """An entity a run used, with the role it was used in (ProvenanceDM Used)."""

    role: str
    entity: EntityRecord


def _entity(row: sa.Row[Any]) -> EntityRecord:
    return EntityRecord(**{column.name: row._mapping[column.name]
                           for column in t.prov_entity.c})


class ProvenanceStore:
    """Reads and writes the provenance record of one database."""

    def __init__(self, engine: sa.Engine, *, namespace: str = DEFAULT_NAMESPACE,
                 templates_dir: Path = TEMPLATES_DIR) -> None:
        self.engine = engine
        self.namespace = namespace
        self.templates_dir = templates_dir

    # -- writing, inside the job store's transactions -------------------------------------
    def record_run(self, connection: sa.Connection, run: RunEnd) -> None:
        """The hook of :meth:`JobStore.finish`: the run's record, in its transaction."""
        provenance_record.record_run(connection, run, namespace=self.namespace,
                                     templates_dir=self.templates_dir)

    def invalidate_job(self, connection: sa.Connection, job_id: str,
                       when: dt.datetime) -> None:
        """The hook of :meth:`JobStore.delete` and ``archive``: the job's files go away."""
        provenance_record.invalidate_job_entities(connection, job_id, when)

    def publish_job(self, connection: sa.Connection, job_id: str, public: bool) -> None:
        """The hook of :meth:`JobStore.publish`: the job's run and products follow it."""
        provenance_record.publish_run(connection, job_id, public)

    # -- entities -----------------------------------------------------------------------
    def entity(self, entity_id: str) -> EntityRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(t.prov_entity)
                                     .where(t.prov_entity.c.id == entity_id)).first()
        return _entity(row) if row is not None else None

    def entity_of_result(self, job_id: str, result_id: str) -> EntityRecord | None:
        """The entity a job's result is (its products are entities once the job ended)."""
        e = t.prov_entity
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(e).where(e.c.job_id == job_id,
                                                        e.c.result_id == result_id)).first()
        return _entity(row) if row is not None else None

    def result_path(self, entity_id: str) -> tuple[EntityRecord, str] | None:
        """(entity, its file's path relative to the job directory) while the job keeps the
        result, else None."""
        e, r = t.prov_entity, t.results
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(e, r.c.path.label("result_path"))
                .select_from(e.join(r, sa.and_(r.c.job_id == e.c.job_id,
                                               r.c.result_id == e.c.result_id)))
                .where(e.c.id == entity_id)).first()
        return (_entity(row), row.result_path) if row is not None else None

    def used_inputs(self, run_id: str) -> list[UsedInput]:
        """What the run ``act-...`` used, by role (ProvenanceDM ``used``)."""
        u, e = t.prov_used, t.prov_entity
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(u.c.role, e).join(e, e.c.id == u.c.entity_id)
                .where(u.c.activity_id == run_id).order_by(u.c.role, e.c.id)).all()
        return [UsedInput(row.role, _entity(row)) for row in rows]

    def generated(self, run_id: str) -> list[EntityRecord]:
        """What the run ``act-...`` generated (ProvenanceDM ``wasGeneratedBy``)."""
        e, g = t.prov_entity, t.prov_was_generated_by
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(e).join(g, g.c.entity_id == e.c.id)
                                      .where(g.c.activity_id == run_id)
                                      .order_by(e.c.id)).all()
        return [_entity(row) for row in rows]

    # -- activities ---------------------------------------------------------------------
    def activity(self, run_id: str, viewer: Viewer | None = None) -> dict[str, Any] | None:
        """The ``prov_activity`` row of a run, as a dict of its columns (with a ``viewer``:
        only if it may read it)."""
        query = sa.select(t.prov_activity).where(t.prov_activity.c.id == run_id)
        if viewer is not None:
            query = only_visible(query, t.prov_activity, viewer)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return dict(row._mapping) if row is not None else None

    def generating_activity(self, entity_id: str) -> str | None:
        """The run that generated ``entity_id`` (None for an input from outside)."""
        g = t.prov_was_generated_by
        with self.engine.connect() as connection:
            return connection.execute(sa.select(g.c.activity_id)
                                      .where(g.c.entity_id == entity_id)).scalar()

    def parameters(self, run_id: str) -> dict[str, str]:
        """The run's configuration (ProvenanceDM ActivityConfiguration), by name."""
        p = t.prov_parameter
        with self.engine.connect() as connection:
            return {row.name: row.value for row in connection.execute(
                sa.select(p.c.name, p.c.value).where(p.c.activity_id == run_id))}

    def bindings(self, run_id: str, activity: ActivityDescription | None, *,
                 viewer: Viewer) -> dict[str, Any] | None:
        """The PROV-Template bindings of a recorded run as ``viewer`` may read it, None if
        there is no such run (or it may not read it)."""
        with self.engine.connect() as connection:
            return provenance_record.bindings_from_record(connection, run_id,
                                                          self.namespace, activity, viewer)

    # -- ProvSAP and search -------------------------------------------------------------
    def unknown_nodes(self, ids: Sequence[str], *, viewer: Viewer) -> list[str]:
        """Those of ``ids`` that name no entity, activity or agent of the record that
        ``viewer`` may read."""
        with self.engine.connect() as connection:
            return [node for node in ids
                    if provenance_graph.node_kind(connection, node, viewer) is None]

    def walk(self, start: Sequence[str], *, depth: int | None, direction: str,
             agents: bool, configuration: bool, max_nodes: int, viewer: Viewer) -> Graph:
        """The graph around ``start`` as ``viewer`` may see it (see
        :mod:`opus.provenance.graph`)."""
        with self.engine.connect() as connection:
            return provenance_graph.walk(connection, start, depth=depth,
                                         direction=direction, agents=agents,
                                         configuration=configuration, max_nodes=max_nodes,
                                         viewer=viewer)

    def search(self, query: SearchQuery, *, max_nodes: int, viewer: Viewer) -> SearchResult:
        with self.engine.connect() as connection:
            return provenance_search.search(connection, query, viewer=viewer,
                                            max_nodes=max_nodes)

    # -- replays ------------------------------------------------------------------------
    def add_replay(self, **values: Any) -> None:
        """Record a replay (``prov_replay``) once its new job exists."""
        with write_transaction(self.engine) as connection:
            connection.execute(t.prov_replay.insert().values(**values))

    def replay(self, new_job_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(t.prov_replay)
                                     .where(t.prov_replay.c.new_job_id == new_job_id)).first()
        return dict(row._mapping) if row is not None else None

    def store_comparison(self, new_job_id: str, comparison: dict[str, Any],
                         pairs: Sequence[dict[str, Any]]) -> None:
        """Keep a replay's comparison, once: of two concurrent first readers, one stores it
        (a conditional UPDATE) with its ``alternateOf`` pairs."""
        r = t.prov_replay
        with write_transaction(self.engine) as connection:
            stored = connection.execute(
                r.update().where(r.c.new_job_id == new_job_id, r.c.compared_at.is_(None))
                .values(compared_at=utcnow(), verdict=comparison["verdict"],
                        comparison=json.dumps(comparison))).rowcount
            if stored:
                provenance_record.insert_ignore(connection, t.prov_replay_pair, pairs)
