"""Every SQL table of OPUS (SQLAlchemy Core), in one metadata; the migrations in
opus/migrations follow it, and a test checks that they build exactly this schema.

Only the stores (:mod:`opus.storage.jobs`, :mod:`opus.storage.provenance`,
:mod:`opus.storage.users`) query these tables.

UWS jobs
--------
Indexes are chosen for the queries the server really makes, so that a job list costs the
same with a million rows as with ten:

- job lists: ``WHERE activity = ? [AND owner_key = ?] [AND phase IN (...)] ORDER BY id DESC
  LIMIT n`` -> ``ix_jobs_activity_owner_key_id`` / ``ix_jobs_activity_phase_id`` (the
  autoincrement ``id`` follows creation order, so it stands for creationTime in ORDER BY);
- the scheduler: jobs submitted to the cluster and not yet released -> ``ix_jobs_cluster``
  (partial in spirit: almost every row has cluster_state 'ended' or NULL), QUEUED jobs in
  order -> ``ix_jobs_phase_id``; destruction sweep -> ``ix_jobs_destruction``.

Provenance
----------
SQL tables of the provenance record, named after ProvTAP / ProvenanceDM 1.0 classes.

Identifiers are local names (``act-<uuid>``, ``ent-<uuid>``, ``ctx-<sha256>``, agents by
name); documents qualify them with the configured namespace (setting
``provenance_namespace``), so the record stays valid if the server's URL changes.
Rows are only ever added, and entities marked invalidated: deleting or archiving a job
keeps how its products were made (ProvenanceDM 1.0 section 2.2.1, invalidatedAtTime).

Search and replay
-----------------
Tables and indexes added for provenance search and replay (migration 0003).

``prov_replay`` records each regeneration (``POST /provenance/replay``): which activity was
replayed, the new UWS job, whether it was forced past the checks (and which problems were
overridden), and, once the new run has ended, the comparison of its outputs with the
originals. ``prov_replay_pair`` links each new product to the product it regenerates
(PROV-DM ``alternateOf``: two entities presenting aspects of the same thing), with the
verdict of their sha256 comparison.

The indexes serve the provenance search (:mod:`opus.storage.provenance_search`). Two are on expressions, identical in
SQLite (3.9 and later) and PostgreSQL, and the search writes the very same expressions:

- ``lower(package), version`` on execution-context packages: the software filter matches
  package names case-insensitively (``SQLAlchemy`` and ``sqlalchemy`` are one
  distribution);
- ``name, substr(value, 1, 128)`` on parameters: a parameter value is free text and may be
  long, and PostgreSQL refuses B-tree entries beyond ~2.7 kB, so only a prefix is indexed
  and the full value is compared on the few rows it finds. The same for entity locations
  (the ``used=URL`` filter).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False, unique=True),
    sa.Column("activity", sa.String(128), nullable=False),
    # ownerId as UWS shows it (the user's name); NULL for an anonymous job.
    sa.Column("owner_id", sa.String(255), nullable=True),
    # The owner's stable id (users.id): what access is decided on, so that a user removed
    # and created again under the same name starts with nothing.
    sa.Column("owner_key", sa.String(32), nullable=True),
    # Published by its owner: anyone may read it and use its products as inputs.
    sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("run_id", sa.String(255), nullable=True),
    sa.Column("phase", sa.String(16), nullable=False),
    # Naive datetimes, always UTC (SQLite has no time zones).
    sa.Column("creation_time", sa.DateTime, nullable=False),
    sa.Column("start_time", sa.DateTime, nullable=True),
    sa.Column("end_time", sa.DateTime, nullable=True),
    sa.Column("destruction", sa.DateTime, nullable=True),
    sa.Column("execution_duration", sa.Integer, nullable=False),
    sa.Column("quote", sa.DateTime, nullable=True),
    sa.Column("error_type", sa.String(16), nullable=True),
    sa.Column("error_summary", sa.Text, nullable=True),
    # JSON object {name: value} of the job's effective parameters.
    sa.Column("parameters", sa.Text, nullable=False),
    # sha256 of the per-job secret the runner presents with its reports.
    sa.Column("secret_hash", sa.String(64), nullable=True),
    sa.Column("manager", sa.String(16), nullable=True),
    sa.Column("native_id", sa.String(128), nullable=True),
    # NULL: never submitted; 'submitted': the cluster may hold it; 'ended': released.
    sa.Column("cluster_state", sa.String(16), nullable=True),
    sa.Column("time_limit", sa.Integer, nullable=True),
    # When a scheduler claimed it (migration 0008): a claim that never got its native id
    # (lost in a database blip) is recovered after ``claim_timeout``.
    sa.Column("claimed_at", sa.DateTime, nullable=True),
    # Bytes of the files uploaded with the job (migration 0010; 0 for a job created before).
    sa.Column("upload_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_jobs_activity_id", "activity", "id"),
    sa.Index("ix_jobs_activity_owner_key_id", "activity", "owner_key", "id"),
    sa.Index("ix_jobs_activity_phase_id", "activity", "phase", "id"),
    sa.Index("ix_jobs_phase_id", "phase", "id"),
    sa.Index("ix_jobs_cluster", "cluster_state"),
    sa.Index("ix_jobs_destruction", "destruction"),
    sa.Index("ix_jobs_owner_key_id", "owner_key", "id"),  # fair dispatch (0009)
)

results = sa.Table(
    "results",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("result_id", sa.String(255), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    # Path relative to the job directory.
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("mime_type", sa.String(255), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
)

# Work the scheduler owes the cluster and the file system for jobs already removed from
# ``jobs``: the web process deletes the job row and adds a row here in one transaction, so a
# DELETE is never lost even when the scheduler is down at that moment.
cleanups = sa.Table(
    "cleanups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("manager", sa.String(16), nullable=True),
    sa.Column("native_id", sa.String(128), nullable=True),
    sa.Column("remove_files", sa.Boolean, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
)

# Disk space each owner's jobs take, uploads and results (migration 0010), kept up to date
# in the transactions that add or remove them (opus.storage.jobs), so that the quota
# (``quota_bytes``) is read in one row instead of summed over every job of the owner
# (100,000 jobs: 240 ms on SQLite, 130 ms on PostgreSQL, at every job's end).
# ``owner_key`` '' is the anonymous shared space.
owner_usage = sa.Table(
    "owner_usage", metadata,
    sa.Column("owner_key", sa.String(32), primary_key=True),
    sa.Column("bytes", sa.BigInteger, nullable=False),
)

# Schedulers alive (migration 0008): each writes its heartbeat here, so that every web node
# sees whether one is alive (VOSI availability); on SQLite the fresh ``leader`` row is the
# leadership lease (on PostgreSQL an advisory lock decides, the row only reports it).
schedulers = sa.Table(
    "schedulers", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", sa.DateTime, nullable=False),
    sa.Column("heartbeat", sa.DateTime, nullable=False),
    sa.Column("leader", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Facts about this installation (migration 0008): ``data_dir_id``, the id written in the
# data dir the database was created with, so a node pointed at another data dir says so.
installation = sa.Table(
    "installation", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)


# -- users ---------------------------------------------------------------------------------
# ``opus users ...``. A user has a stable ``id`` (uuid hex) that jobs and provenance refer
# to, a unique name (UWS ownerId), a role ("user" or "admin", who sees everything), and any
# number of API tokens, kept only as sha256 hashes, each with an optional expiry.
users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False, server_default="user"),
    sa.Column("created", sa.DateTime, nullable=False),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(255), nullable=True),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("expires", sa.DateTime, nullable=True),
    sa.Column("revoked", sa.DateTime, nullable=True),
)


# -- provenance ----------------------------------------------------------------------------
prov_activity = sa.Table(
    "prov_activity", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=True, index=True),
    # Whose run this is (users.id; NULL: anonymous) and whether it was published: the
    # record outlives the job, so it keeps what access to it is decided on.
    sa.Column("owner_key", sa.String(32), nullable=True, index=True),
    sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("start_time", sa.DateTime), sa.Column("end_time", sa.DateTime),
    sa.Column("phase", sa.String(16)),
    sa.Column("comment", sa.Text),
    sa.Column("description_name", sa.String(128), index=True),
    sa.Column("description_version", sa.String(64)),
    sa.Column("description_sha256", sa.String(64)),
    sa.Column("script_sha256", sa.String(64)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("context_id", sa.String(80)),
    # JSON: resource usage and other run facts that are not worth a column.
    sa.Column("facts", sa.Text),
)

prov_entity = sa.Table(
    "prov_entity", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(255)),
    sa.Column("location", sa.Text),
    sa.Column("generated_at_time", sa.DateTime),
    sa.Column("invalidated_at_time", sa.DateTime),
    sa.Column("comment", sa.Text),
    sa.Column("content_type", sa.String(255)),
    sa.Column("size", sa.BigInteger),
    sa.Column("sha256", sa.String(64), index=True),
    # The UWS job and result this entity is (NULL for inputs from outside).
    sa.Column("job_id", sa.String(64), index=True),
    sa.Column("result_id", sa.String(255)),
    # The owner of the run that generated (or, for an input from outside, used) it.
    sa.Column("owner_key", sa.String(32), nullable=True, index=True),
    sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
)

prov_agent = sa.Table(
    "prov_agent", metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(32)),
    sa.Column("email", sa.String(255)),
    sa.Column("url", sa.Text),
)

prov_used = sa.Table(
    "prov_used", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("entity_id", sa.String(80), primary_key=True, index=True),
    sa.Column("role", sa.String(255), primary_key=True),
    sa.Column("time", sa.DateTime),
)

prov_was_generated_by = sa.Table(
    "prov_wasgeneratedby", metadata,
    sa.Column("entity_id", sa.String(80), primary_key=True),
    sa.Column("activity_id", sa.String(80), nullable=False, index=True),
    sa.Column("role", sa.String(255)),
)

prov_was_associated_with = sa.Table(
    "prov_wasassociatedwith", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("agent_id", sa.String(255), primary_key=True, index=True),
    sa.Column("role", sa.String(64), primary_key=True),
)

prov_was_attributed_to = sa.Table(
    "prov_wasattributedto", metadata,
    sa.Column("entity_id", sa.String(80), primary_key=True),
    sa.Column("agent_id", sa.String(255), primary_key=True, index=True),
    sa.Column("role", sa.String(64), primary_key=True),
)

prov_was_derived_from = sa.Table(
    "prov_wasderivedfrom", metadata,
    sa.Column("generated_entity_id", sa.String(80), primary_key=True),
    sa.Column("used_entity_id", sa.String(80), primary_key=True, index=True),
    sa.Column("activity_id", sa.String(80)),
)

prov_parameter = sa.Table(
    "prov_parameter", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Index("ix_prov_parameter_name_value", "name", "activity_id"),
)

# Execution contexts (host, platform, Python, packages, environment), stored once per
# distinct content: the id is the sha256 of the canonical JSON.
prov_context = sa.Table(
    "prov_context", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
)

prov_context_package = sa.Table(
    "prov_context_package", metadata,
    sa.Column("context_id", sa.String(80), primary_key=True),
    sa.Column("package", sa.String(255), primary_key=True),
    sa.Column("version", sa.String(64)),
    sa.Index("ix_prov_context_package", "package", "version"),
)

# Provenance the activity wrote itself (PROV-JSON), kept as a bundle of its activity.
prov_bundle = sa.Table(
    "prov_bundle", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
)


# -- search and replay -----------------------------------------------------------------------
#: Length of the indexed prefix of parameter values and entity locations.
PREFIX = 128


def prefix(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``substr(column, 1, 128)`` with literal bounds: the planner matches an expression
    index only against the same expression, not one with bound parameters (PostgreSQL's
    generic plans of prepared statements would not)."""
    return sa.func.substr(column, sa.literal_column("1"), sa.literal_column(str(PREFIX)))


prov_replay = sa.Table(
    "prov_replay", metadata,
    sa.Column("new_job_id", sa.String(64), primary_key=True),
    sa.Column("original_activity_id", sa.String(80), nullable=False, index=True),
    sa.Column("original_job_id", sa.String(64)),
    sa.Column("requested_id", sa.String(255)),
    sa.Column("owner_id", sa.String(255)),
    sa.Column("owner_key", sa.String(32), nullable=True),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    # JSON {"overridden": [problems FORCE=true overrode], "notes": [what was not checked]}.
    sa.Column("checks", sa.Text, nullable=False),
    # Filled once, when the comparison is first asked for after the new run ended.
    sa.Column("compared_at", sa.DateTime),
    sa.Column("verdict", sa.String(16)),
    sa.Column("comparison", sa.Text),
)

prov_replay_pair = sa.Table(
    "prov_replay_pair", metadata,
    sa.Column("new_entity_id", sa.String(80), primary_key=True),
    sa.Column("original_entity_id", sa.String(80), primary_key=True, index=True),
    sa.Column("new_job_id", sa.String(64), nullable=False, index=True),
    sa.Column("result_id", sa.String(255)),
    sa.Column("verdict", sa.String(16)),
)

# Indexes of the search, on the tables of opus.provenance.tables.
SEARCH_INDEXES = (
    sa.Index("ix_prov_activity_end_time", prov_activity.c.end_time),
    sa.Index("ix_prov_activity_name_end_time", prov_activity.c.name, prov_activity.c.end_time),
    sa.Index("ix_prov_activity_context_id", prov_activity.c.context_id),
    sa.Index("ix_prov_context_package_lower", sa.func.lower(prov_context_package.c.package),
             prov_context_package.c.version),
    sa.Index("ix_prov_parameter_name_prefix", prov_parameter.c.name, prefix(prov_parameter.c.value)),
    sa.Index("ix_prov_entity_location_prefix", prefix(prov_entity.c.location)),
    sa.Index("ix_prov_agent_name", prov_agent.c.name),
)

# ProvTAP async queries (/tap/async, migration 0007): a UWS job list of their own, apart from
# the activities' jobs (no activity, no files, not dispatched by the scheduler).
tap_jobs = sa.Table(
    "tap_jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False, unique=True),
    sa.Column("owner_id", sa.String(255), nullable=True),
    sa.Column("owner_key", sa.String(32), nullable=True),
    # Whether the owner was an admin when the job was created: the query runs as that.
    sa.Column("owner_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("run_id", sa.String(255), nullable=True),
    sa.Column("phase", sa.String(16), nullable=False),
    # JSON list of the [name, value] pairs of the TAP parameters, as given: checked when
    # the job runs (a bad one ends it in ERROR, TAP 1.1 section 2.2.2).
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("creation_time", sa.DateTime, nullable=False),
    sa.Column("start_time", sa.DateTime, nullable=True),
    sa.Column("end_time", sa.DateTime, nullable=True),
    sa.Column("destruction", sa.DateTime, nullable=True),
    sa.Column("execution_duration", sa.Integer, nullable=False),
    sa.Column("error_summary", sa.Text, nullable=True),
    # The result VOTable (bounded by tap_max_rows), and how many rows it holds.
    sa.Column("result", sa.LargeBinary, nullable=True),
    sa.Column("result_rows", sa.Integer, nullable=True),
    # The PostgreSQL backend running the query: ABORT cancels it (pg_cancel_backend).
    sa.Column("backend_pid", sa.Integer, nullable=True),
    sa.Index("ix_tap_jobs_owner_key_id", "owner_key", "id"),
)
