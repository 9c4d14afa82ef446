"""SQL tables of the UWS store (SQLAlchemy Core). Migrations in opus/migrations follow them.

Indexes are chosen for the queries the server really makes, so that a job list costs the
same with a million rows as with ten:

- job lists: ``WHERE activity = ? [AND owner_id = ?] [AND phase IN (...)] ORDER BY id DESC
  LIMIT n`` -> ``ix_jobs_activity_owner_id`` / ``ix_jobs_activity_phase_id`` (the
  autoincrement ``id`` follows creation order, so it stands for creationTime in ORDER BY);
- the scheduler: jobs submitted to the cluster and not yet released -> ``ix_jobs_cluster``
  (partial in spirit: almost every row has cluster_state 'ended' or NULL), QUEUED jobs in
  order -> ``ix_jobs_phase_id``; destruction sweep -> ``ix_jobs_destruction``.
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
    sa.Column("owner_id", sa.String(255), nullable=True),
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
    sa.Index("ix_jobs_activity_id", "activity", "id"),
    sa.Index("ix_jobs_activity_owner_id", "activity", "owner_id", "id"),
    sa.Index("ix_jobs_activity_phase_id", "activity", "phase", "id"),
    sa.Index("ix_jobs_phase_id", "phase", "id"),
    sa.Index("ix_jobs_cluster", "cluster_state"),
    sa.Index("ix_jobs_destruction", "destruction"),
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
