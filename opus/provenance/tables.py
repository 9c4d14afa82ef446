"""SQL tables of the provenance record, named after ProvTAP / ProvenanceDM 1.0 classes.

Identifiers are local names (``act-<uuid>``, ``ent-<uuid>``, ``ctx-<sha256>``, agents by
name); documents qualify them with the configured namespace (settings
``provenance_authority``), so the record stays valid if the server's URL changes.
Rows are only ever added, and entities marked invalidated: deleting or archiving a job
keeps how its products were made (ProvenanceDM 1.0 section 2.2.1, invalidatedAtTime).
"""

from __future__ import annotations

import sqlalchemy as sa

from opus.uws.tables import metadata

activity = sa.Table(
    "prov_activity", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=True, index=True),
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

entity = sa.Table(
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
)

agent = sa.Table(
    "prov_agent", metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(32)),
    sa.Column("email", sa.String(255)),
    sa.Column("url", sa.Text),
)

used = sa.Table(
    "prov_used", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("entity_id", sa.String(80), primary_key=True, index=True),
    sa.Column("role", sa.String(255), primary_key=True),
    sa.Column("time", sa.DateTime),
)

was_generated_by = sa.Table(
    "prov_wasgeneratedby", metadata,
    sa.Column("entity_id", sa.String(80), primary_key=True),
    sa.Column("activity_id", sa.String(80), nullable=False, index=True),
    sa.Column("role", sa.String(255)),
)

was_associated_with = sa.Table(
    "prov_wasassociatedwith", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("agent_id", sa.String(255), primary_key=True, index=True),
    sa.Column("role", sa.String(64), primary_key=True),
)

was_attributed_to = sa.Table(
    "prov_wasattributedto", metadata,
    sa.Column("entity_id", sa.String(80), primary_key=True),
    sa.Column("agent_id", sa.String(255), primary_key=True, index=True),
    sa.Column("role", sa.String(64), primary_key=True),
)

was_derived_from = sa.Table(
    "prov_wasderivedfrom", metadata,
    sa.Column("generated_entity_id", sa.String(80), primary_key=True),
    sa.Column("used_entity_id", sa.String(80), primary_key=True, index=True),
    sa.Column("activity_id", sa.String(80)),
)

parameter = sa.Table(
    "prov_parameter", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Index("ix_prov_parameter_name_value", "name", "activity_id"),
)

# Execution contexts (host, platform, Python, packages, environment), stored once per
# distinct content: the id is the sha256 of the canonical JSON.
context = sa.Table(
    "prov_context", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
)

context_package = sa.Table(
    "prov_context_package", metadata,
    sa.Column("context_id", sa.String(80), primary_key=True),
    sa.Column("package", sa.String(255), primary_key=True),
    sa.Column("version", sa.String(64)),
    sa.Index("ix_prov_context_package", "package", "version"),
)

# Provenance the activity wrote itself (PROV-JSON), kept as a bundle of its activity.
bundle = sa.Table(
    "prov_bundle", metadata,
    sa.Column("activity_id", sa.String(80), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
)
