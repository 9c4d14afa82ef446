"""UWS jobs, results and pending cleanups.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False, unique=True),
        sa.Column("activity", sa.String(128), nullable=False),
        sa.Column("owner_id", sa.String(255)),
        sa.Column("run_id", sa.String(255)),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("creation_time", sa.DateTime, nullable=False),
        sa.Column("start_time", sa.DateTime),
        sa.Column("end_time", sa.DateTime),
        sa.Column("destruction", sa.DateTime),
        sa.Column("execution_duration", sa.Integer, nullable=False),
        sa.Column("quote", sa.DateTime),
        sa.Column("error_type", sa.String(16)),
        sa.Column("error_summary", sa.Text),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String(64)),
        sa.Column("manager", sa.String(16)),
        sa.Column("native_id", sa.String(128)),
        sa.Column("cluster_state", sa.String(16)),
        sa.Column("time_limit", sa.Integer),
    )
    op.create_index("ix_jobs_activity_id", "jobs", ["activity", "id"])
    op.create_index("ix_jobs_activity_owner_id", "jobs", ["activity", "owner_id", "id"])
    op.create_index("ix_jobs_activity_phase_id", "jobs", ["activity", "phase", "id"])
    op.create_index("ix_jobs_phase_id", "jobs", ["phase", "id"])
    op.create_index("ix_jobs_cluster", "jobs", ["cluster_state"])
    op.create_index("ix_jobs_destruction", "jobs", ["destruction"])
    op.create_table(
        "results",
        sa.Column("job_id", sa.String(64),
                  sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("result_id", sa.String(255), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("mime_type", sa.String(255)),
        sa.Column("sha256", sa.String(64)),
    )
    op.create_table(
        "cleanups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("manager", sa.String(16)),
        sa.Column("native_id", sa.String(128)),
        sa.Column("remove_files", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cleanups")
    op.drop_table("results")
    op.drop_table("jobs")
