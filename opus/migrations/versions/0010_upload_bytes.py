"""Disk usage per owner: the size of each job's uploads, and a running total per owner.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

The owner's disk quota (``quota_bytes``) counts uploads and results. Result sizes were in
the database but upload sizes were not, so every check (each upload, and each job's end)
walked the ``uploads/`` folder of every job of the owner and summed its results: with
17,000 anonymous jobs a job's end took 0.5 s longer (bench/uws.py, runner's end ->
COMPLETED), with 100,000 the sums alone took 130-240 ms. ``owner_usage`` holds the total,
kept in the transactions that add or remove files. It starts from the results stored now;
uploads of jobs created before this revision are not known to the database and are left
out (``upload_bytes`` 0), so older jobs count for less than they take until deleted.
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("upload_bytes", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.create_table(
        "owner_usage",
        sa.Column("owner_key", sa.String(32), primary_key=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO owner_usage (owner_key, bytes) "
        "SELECT COALESCE(jobs.owner_key, ''), SUM(results.size) FROM results "
        "JOIN jobs ON jobs.job_id = results.job_id WHERE results.size IS NOT NULL "
        "GROUP BY COALESCE(jobs.owner_key, '')")


def downgrade() -> None:
    op.drop_table("owner_usage")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("upload_bytes")
