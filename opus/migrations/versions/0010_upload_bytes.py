"""The size of each job's uploads, kept with the job.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

The owner's disk quota (``quota_bytes``) counts uploads and results. Result sizes were in
the database but upload sizes were not, so every check (each upload, and each job's end)
walked the ``uploads/`` folder of every job the owner had: 17,000 anonymous jobs made a
job's end 0.5 s slower (bench/uws.py, runner's end -> COMPLETED). Jobs created before this
revision keep NULL and are still measured on disk.
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("upload_bytes", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("upload_bytes")
