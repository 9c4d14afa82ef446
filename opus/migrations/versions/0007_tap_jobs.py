"""ProvTAP async: the ``tap_jobs`` table of the UWS job list ``/tap/async``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A table of its own rather than rows of ``jobs``: a TAP query has no activity, no job
directory and no cluster state, and keeping it apart keeps it out of the activities' job
lists, quotas and fair dispatch without a special case in any of them. Created on both
dialects (the schema stays one), used on PostgreSQL only.
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tap_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner_id", sa.String(255), nullable=True),
        sa.Column("owner_key", sa.String(32), nullable=True),
        sa.Column("owner_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("creation_time", sa.DateTime, nullable=False),
        sa.Column("start_time", sa.DateTime, nullable=True),
        sa.Column("end_time", sa.DateTime, nullable=True),
        sa.Column("destruction", sa.DateTime, nullable=True),
        sa.Column("execution_duration", sa.Integer, nullable=False),
        sa.Column("error_summary", sa.Text, nullable=True),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("result_rows", sa.Integer, nullable=True),
        sa.Column("backend_pid", sa.Integer, nullable=True),
    )
    op.create_index("ix_tap_jobs_owner_key_id", "tap_jobs", ["owner_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_tap_jobs_owner_key_id", table_name="tap_jobs")
    op.drop_table("tap_jobs")
