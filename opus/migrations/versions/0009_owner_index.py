"""An index of jobs by owner, for the fair dispatch between owners.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-03

The scheduler's fair order (:mod:`opus.storage.dispatch`) asks, per owner with waiting
jobs, for the last job it handed to the cluster: a walk back along (owner_key, id) that
stops at the first one, instead of a scan of every job ever run.
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_key_id", "jobs", ["owner_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_key_id", table_name="jobs")
