"""Provenance record (ProvTAP-like tables).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = sa.String


def upgrade() -> None:
    op.create_table(
        "prov_activity",
        sa.Column("id", S(80), primary_key=True), sa.Column("name", S(255), nullable=False),
        sa.Column("job_id", S(64)), sa.Column("start_time", sa.DateTime),
        sa.Column("end_time", sa.DateTime), sa.Column("phase", S(16)),
        sa.Column("comment", sa.Text), sa.Column("description_name", S(128)),
        sa.Column("description_version", S(64)), sa.Column("description_sha256", S(64)),
        sa.Column("script_sha256", S(64)), sa.Column("exit_code", sa.Integer),
        sa.Column("context_id", S(80)), sa.Column("facts", sa.Text),
    )
    op.create_index("ix_prov_activity_job_id", "prov_activity", ["job_id"])
    op.create_index("ix_prov_activity_description_name", "prov_activity", ["description_name"])
    op.create_table(
        "prov_entity",
        sa.Column("id", S(80), primary_key=True), sa.Column("name", S(255)),
        sa.Column("location", sa.Text), sa.Column("generated_at_time", sa.DateTime),
        sa.Column("invalidated_at_time", sa.DateTime), sa.Column("comment", sa.Text),
        sa.Column("content_type", S(255)), sa.Column("size", sa.BigInteger),
        sa.Column("sha256", S(64)), sa.Column("job_id", S(64)), sa.Column("result_id", S(255)),
    )
    op.create_index("ix_prov_entity_sha256", "prov_entity", ["sha256"])
    op.create_index("ix_prov_entity_job_id", "prov_entity", ["job_id"])
    op.create_table(
        "prov_agent",
        sa.Column("id", S(255), primary_key=True), sa.Column("name", S(255), nullable=False),
        sa.Column("type", S(32)), sa.Column("email", S(255)), sa.Column("url", sa.Text),
    )
    op.create_table(
        "prov_used",
        sa.Column("activity_id", S(80), primary_key=True),
        sa.Column("entity_id", S(80), primary_key=True),
        sa.Column("role", S(255), primary_key=True), sa.Column("time", sa.DateTime),
    )
    op.create_index("ix_prov_used_entity_id", "prov_used", ["entity_id"])
    op.create_table(
        "prov_wasgeneratedby",
        sa.Column("entity_id", S(80), primary_key=True),
        sa.Column("activity_id", S(80), nullable=False), sa.Column("role", S(255)),
    )
    op.create_index("ix_prov_wasgeneratedby_activity_id", "prov_wasgeneratedby",
                    ["activity_id"])
    op.create_table(
        "prov_wasassociatedwith",
        sa.Column("activity_id", S(80), primary_key=True),
        sa.Column("agent_id", S(255), primary_key=True),
        sa.Column("role", S(64), primary_key=True),
    )
    op.create_index("ix_prov_wasassociatedwith_agent_id", "prov_wasassociatedwith",
                    ["agent_id"])
    op.create_table(
        "prov_wasattributedto",
        sa.Column("entity_id", S(80), primary_key=True),
        sa.Column("agent_id", S(255), primary_key=True),
        sa.Column("role", S(64), primary_key=True),
    )
    op.create_index("ix_prov_wasattributedto_agent_id", "prov_wasattributedto", ["agent_id"])
    op.create_table(
        "prov_wasderivedfrom",
        sa.Column("generated_entity_id", S(80), primary_key=True),
        sa.Column("used_entity_id", S(80), primary_key=True),
        sa.Column("activity_id", S(80)),
    )
    op.create_index("ix_prov_wasderivedfrom_used_entity_id", "prov_wasderivedfrom",
                    ["used_entity_id"])
    op.create_table(
        "prov_parameter",
        sa.Column("activity_id", S(80), primary_key=True),
        sa.Column("name", S(255), primary_key=True), sa.Column("value", sa.Text),
    )
    op.create_index("ix_prov_parameter_name_value", "prov_parameter", ["name", "activity_id"])
    op.create_table(
        "prov_context",
        sa.Column("id", S(80), primary_key=True), sa.Column("content", sa.Text, nullable=False),
    )
    op.create_table(
        "prov_context_package",
        sa.Column("context_id", S(80), primary_key=True),
        sa.Column("package", S(255), primary_key=True), sa.Column("version", S(64)),
    )
    op.create_index("ix_prov_context_package", "prov_context_package", ["package", "version"])
    op.create_table(
        "prov_bundle",
        sa.Column("activity_id", S(80), primary_key=True),
        sa.Column("content", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in ("prov_bundle", "prov_context_package", "prov_context", "prov_parameter",
                 "prov_wasderivedfrom", "prov_wasattributedto", "prov_wasassociatedwith",
                 "prov_wasgeneratedby", "prov_used", "prov_agent", "prov_entity",
                 "prov_activity"):
        op.drop_table(name)
