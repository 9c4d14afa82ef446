"""Writing a run's provenance, in the same transaction that ends its UWS job.

One job run gives (ProvenanceDM 1.0 section 2): an Activity (``act-<job uuid>``) with its
parameters (ActivityConfiguration), the Entities it used and generated (each result, with
its sha256 and size), the Agents associated with it (the job owner as Operator, the
activity's contact as Curator, OPUS itself as Provider), the execution context it ran in
(stored once per distinct content), and the activity's own provenance bundle if it wrote
one. It is recorded whatever the end of the job: COMPLETED, ERROR or ABORTED.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opus.activities.model import ActivityDescription
from opus.auth import Viewer
from opus.provenance.capture import context_id
from opus.provenance.templates import (
    DEFAULT_NAMESPACE,
    OPERATOR,
    TEMPLATES_DIR,
    bindings_for_run,
    template_pairs,
)
from opus.storage import tables as t
from opus.storage.access import only_visible, visible
from opus.uws.models import Job, RunEnd

OPUS_AGENT = "opus"


def activity_id(job_id: str) -> str:
    return f"act-{job_id}"


def owner_agent_id(owner_id: str | None) -> str:
    return f"user-{owner_id}" if owner_id else "anonymous"


def _insert_ignoring(connection: sa.Connection, table: sa.Table) -> Any:
    """INSERT into ``table`` that skips rows whose primary key exists."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing()


def insert_ignore(connection: sa.Connection, table: sa.Table,
                  rows: Sequence[dict[str, Any]]) -> None:
    """INSERT rows, skipping those whose primary key exists (two processes may record the
    same context or agent at once)."""
    if rows:
        connection.execute(_insert_ignoring(connection, table), list(rows))


def insert_new(connection: sa.Connection, table: sa.Table, row: dict[str, Any]) -> bool:
    """INSERT ``row`` unless its primary key exists; whether it was new (RETURNING: a
    driver's rowcount of an INSERT ... ON CONFLICT is not always known, psycopg says -1)."""
    key = list(table.primary_key.columns)
    return connection.execute(
        _insert_ignoring(connection, table).returning(*key), row).first() is not None


def record_run(connection: sa.Connection, run: RunEnd, *,
               namespace: str = DEFAULT_NAMESPACE,
               templates_dir: Path = TEMPLATES_DIR) -> str:
    """Record one run; returns its activity id. An entity's location is
    ``{run.result_url}/{result_id}``; ``namespace`` and ``templates_dir`` are the
    settings the PROV-Template of the activity is expanded with."""
    job, phase, end_time, start_time = run.job, run.phase, run.end_time, run.start_time
    job_results, result_url, activity, outcome = (run.results, run.result_url, run.activity,
                                                  run.outcome)
    act = activity_id(job.job_id)
    if connection.execute(sa.select(t.prov_activity.c.id).where(t.prov_activity.c.id == act)).first():
        return act  # already recorded (a report and the outcome file both arrived)
    # Published or not as the job is now, in this transaction (it may have been published
    # since ``run.job`` was read).
    published = connection.execute(sa.select(t.jobs.c.public)
                                   .where(t.jobs.c.job_id == job.job_id)).scalar()
    if published is not None:
        job = dataclasses.replace(job, public=bool(published))
    context = outcome.get("context") or None
    ctx = context_id(context) if context else None
    # A context is content-addressed: its packages are recorded with it, once. (They
    # were inserted again, a hundred rows or more, at every job's end.)
    if context and insert_new(connection, t.prov_context,
                              {"id": ctx, "content": json.dumps(context, sort_keys=True)}):
        insert_ignore(connection, t.prov_context_package, [
            {"context_id": ctx, "package": name, "version": str(version)[:64]}
            for name, version in (context.get("packages") or {}).items()
        ])
    facts = {key: outcome[key] for key in ("rusage", "host", "command", "error_summary")
             if outcome.get(key) is not None}
    connection.execute(t.prov_activity.insert().values(
        id=act, name=job.activity, job_id=job.job_id, owner_key=job.owner_key,
        public=job.public, start_time=start_time,
        end_time=end_time, phase=phase, comment=outcome.get("error_summary"),
        description_name=job.activity,
        description_version=outcome.get("activity_version") or (
            activity.version if activity else None),
        description_sha256=outcome.get("description_sha256"),
        script_sha256=outcome.get("script_sha256"), exit_code=outcome.get("exit_code"),
        context_id=ctx, facts=json.dumps(facts),
    ))
    if job.parameters:
        connection.execute(t.prov_parameter.insert(), [
            {"activity_id": act, "name": name, "value": value}
            for name, value in job.parameters.items()
        ])
    agents = [{"id": OPUS_AGENT, "name": "OPUS job server", "type": "SoftwareAgent",
               "email": None, "url": None},
              {"id": owner_agent_id(job.owner_id), "name": job.owner_id or "anonymous",
               "type": "Individual", "email": None, "url": None}]
    associations = [(OPUS_AGENT, "Provider"), (owner_agent_id(job.owner_id), "Operator")]
    if activity is not None and activity.contact_name:
        contact = f"contact-{activity.contact_name}"
        agents.append({"id": contact, "name": activity.contact_name, "type": "Individual",
                       "email": activity.contact_email, "url": None})
        associations.append((contact, "Curator"))
    insert_ignore(connection, t.prov_agent, agents)
    connection.execute(t.prov_was_associated_with.insert(), [
        {"activity_id": act, "agent_id": agent, "role": role} for agent, role in associations
    ])
    _record_inputs(connection, act, outcome.get("inputs") or (), start_time, job)
    entities = []
    for result in job_results:
        entities.append({
            "id": f"ent-{uuid.uuid4().hex}", "name": result.result_id,
            "location": f"{result_url}/{result.result_id}", "generated_at_time": end_time,
            "content_type": result.mime_type, "size": result.size, "sha256": result.sha256,
            "job_id": job.job_id, "result_id": result.result_id,
            "owner_key": job.owner_key, "public": job.public,
        })
    if entities:
        connection.execute(t.prov_entity.insert(), entities)
        connection.execute(t.prov_was_generated_by.insert(), [
            {"entity_id": e["id"], "activity_id": act, "role": e["name"]} for e in entities])
        connection.execute(t.prov_was_attributed_to.insert(), [
            {"entity_id": e["id"], "agent_id": owner_agent_id(job.owner_id),
             "role": "Creator"} for e in entities])
        # What the run asserts about derivation comes from the activity's PROV-Template
        # (provenance_templates/{activity}.provn, or the default one derived from its
        # description: every declared output from every input).
        derived = (template_derivations(connection, act, activity, templates_dir, namespace)
                   if activity else [])
        if derived:
            connection.execute(t.prov_was_derived_from.insert(), derived)
    if outcome.get("bundle"):
        connection.execute(t.prov_bundle.insert().values(activity_id=act, content=outcome["bundle"]))
    return act


def _record_inputs(connection: sa.Connection, act: str, inputs: Sequence[dict[str, Any]],
                   when: dt.datetime | None, job: Job) -> None:
    """Used relations for the run's inputs: a result of an earlier job is the very entity
    that job generated (so jobs chain in the graph); an upload or a URL becomes a new
    entity with its location, sha256 and size."""
    for item in inputs:
        entity_id = item.get("entity_id")
        if not entity_id:
            entity_id = f"ent-{uuid.uuid4().hex}"
            connection.execute(t.prov_entity.insert().values(
                id=entity_id, name=item.get("name"), location=item.get("location"),
                sha256=item.get("sha256"), size=item.get("size"), owner_key=job.owner_key,
                public=job.public))
        elif not connection.execute(sa.select(t.prov_entity.c.id)
                                    .where(t.prov_entity.c.id == entity_id)).first():
            continue
        connection.execute(t.prov_used.insert().values(
            activity_id=act, entity_id=entity_id, role=item.get("name") or "input",
            time=when))


def publish_run(connection: sa.Connection, job_id: str, public: bool) -> None:
    """The job ``job_id`` was published (or withdrawn): so are its run and the entities the
    run generated or brought in (its uploads and URLs). A result of an earlier job that the
    run used keeps the flag of that job: publish that job to release it."""
    a, e = t.prov_activity, t.prov_entity
    act = activity_id(job_id)
    run = connection.execute(sa.select(a.c.owner_key).where(a.c.id == act)).first()
    if run is None:
        return  # not ended yet: record_run copies the job's flag
    connection.execute(a.update().where(a.c.id == act).values(public=public))
    generated = sa.select(t.prov_was_generated_by.c.entity_id).where(
        t.prov_was_generated_by.c.activity_id == act)
    used = sa.select(t.prov_used.c.entity_id).where(t.prov_used.c.activity_id == act)
    own = e.c.owner_key.is_(None) if run.owner_key is None else e.c.owner_key == run.owner_key
    connection.execute(e.update().where(sa.or_(
        e.c.id.in_(generated), sa.and_(e.c.id.in_(used), e.c.job_id.is_(None), own)))
        .values(public=public))


def invalidate_job_entities(connection: sa.Connection, job_id: str,
                            when: dt.datetime) -> None:
    """The job's files are going away: its entities are invalidated, never deleted."""
    connection.execute(
        t.prov_entity.update()
        .where(t.prov_entity.c.job_id == job_id, t.prov_entity.c.invalidated_at_time.is_(None))
        .values(invalidated_at_time=when)
    )


def _entities_by_role(connection: sa.Connection, relation: sa.Table, activity_id: str,
                      default_role: str, viewer: Viewer) -> dict[str, list[str]]:
    """{role: entity ids} of a run through ``relation`` (used or wasGeneratedBy), only the
    entities ``viewer`` may read."""
    found: dict[str, list[str]] = {}
    for item in connection.execute(_visible_entities(
            sa.select(relation).where(relation.c.activity_id == activity_id)
            .order_by(relation.c.role, relation.c.entity_id),
            relation.c.entity_id, viewer)):
        found.setdefault(item.role or default_role, []).append(item.entity_id)
    return found


def bindings_from_record(connection: sa.Connection, activity_id: str,
                         namespace: str = DEFAULT_NAMESPACE,
                         activity: ActivityDescription | None = None,
                         viewer: Viewer | None = None) -> dict[str, Any] | None:
    """The bindings of a recorded run, or None
    when there is no activity ``activity_id``. ``activity`` (its description) types the
    parameters and keeps parameter variables apart from entity names. With a ``viewer``,
    as it may read them: None for a run it may not read, and without the entities it may
    not read (None: the record as it is, for the server's own use)."""
    everyone = Viewer(admin=True)
    row = connection.execute(only_visible(
        sa.select(t.prov_activity).where(t.prov_activity.c.id == activity_id),
        t.prov_activity, viewer or everyone)).first()
    if row is None:
        return None
    used = _entities_by_role(connection, t.prov_used, activity_id, "input",
                             viewer or everyone)
    generated = _entities_by_role(connection, t.prov_was_generated_by, activity_id, "output",
                                  viewer or everyone)
    parameters = {item.name: item.value for item in connection.execute(
        sa.select(t.prov_parameter).where(t.prov_parameter.c.activity_id == activity_id)
        .order_by(t.prov_parameter.c.name))}
    agents = [item.agent_id for item in connection.execute(
        sa.select(t.prov_was_associated_with).where(
            t.prov_was_associated_with.c.activity_id == activity_id,
            t.prov_was_associated_with.c.role == OPERATOR).order_by(t.prov_was_associated_with.c.agent_id))]
    datatypes: dict[str, str] = {}
    names: list[str] = []
    if activity is not None:
        datatypes = {p.name: p.datatype for p in activity.parameters}
        names = [e.name for e in (*activity.used, *activity.generated)]
    return bindings_for_run(activity_id, used, generated, parameters,
                            agents[0] if agents else None, row.start_time, row.end_time,
                            namespace, datatypes=datatypes, entity_names=names)


def _visible_entities(query: sa.Select[Any], entity_id: sa.Column[Any],
                      viewer: Viewer) -> sa.Select[Any]:
    """``query`` (of a relation) kept to the rows whose entity ``viewer`` may read."""
    condition = visible(t.prov_entity, viewer)
    if condition is None:
        return query
    return query.join(t.prov_entity, t.prov_entity.c.id == entity_id).where(condition)


def template_derivations(connection: sa.Connection, activity_id: str,
                         activity: ActivityDescription | None,
                         directory: Path = TEMPLATES_DIR,
                         namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, str]]:
    """Rows for ``prov_wasderivedfrom`` that the activity's template asserts for the run
    ``activity_id``, read from the record written so far on ``connection`` (call it after
    the run's used, wasGeneratedBy, parameter and wasAssociatedWith rows are inserted).
    Only pairs of entities present in ``prov_entity`` are returned."""
    if activity is None:
        return []
    bindings = bindings_from_record(connection, activity_id, namespace, activity)
    if bindings is None:
        return []
    pairs = template_pairs(activity, bindings, directory, namespace)
    ids = {entity for pair in pairs for entity in pair}
    known: set[str] = set()
    for chunk in (sorted(ids)[i:i + 500] for i in range(0, len(ids), 500)):
        known.update(row.id for row in connection.execute(
            sa.select(t.prov_entity.c.id).where(t.prov_entity.c.id.in_(chunk))))
    return [{"generated_entity_id": generated, "used_entity_id": used,
             "activity_id": activity_id}
            for generated, used in pairs
            if generated in known and used in known and generated != used]
