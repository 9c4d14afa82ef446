"""Tables and indexes added for provenance search and replay (migration 0003).

``prov_replay`` records each regeneration (``POST /provenance/replay``): which activity was
replayed, the new UWS job, whether it was forced past the checks (and which problems were
overridden), and, once the new run has ended, the comparison of its outputs with the
originals. ``prov_replay_pair`` links each new product to the product it regenerates
(PROV-DM ``alternateOf``: two entities presenting aspects of the same thing), with the
verdict of their sha256 comparison.

The indexes serve :mod:`opus.provenance.search`. Two are on expressions, identical in
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

from opus.provenance import tables as t
from opus.uws.tables import metadata

#: Length of the indexed prefix of parameter values and entity locations.
PREFIX = 128


def prefix(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``substr(column, 1, 128)`` with literal bounds: the planner matches an expression
    index only against the same expression, not one with bound parameters (PostgreSQL's
    generic plans of prepared statements would not)."""
    return sa.func.substr(column, sa.literal_column("1"), sa.literal_column(str(PREFIX)))


replay = sa.Table(
    "prov_replay", metadata,
    sa.Column("new_job_id", sa.String(64), primary_key=True),
    sa.Column("original_activity_id", sa.String(80), nullable=False, index=True),
    sa.Column("original_job_id", sa.String(64)),
    sa.Column("requested_id", sa.String(255)),
    sa.Column("owner_id", sa.String(255)),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    # JSON {"overridden": [problems FORCE=true overrode], "notes": [what was not checked]}.
    sa.Column("checks", sa.Text, nullable=False),
    # Filled once, when the comparison is first asked for after the new run ended.
    sa.Column("compared_at", sa.DateTime),
    sa.Column("verdict", sa.String(16)),
    sa.Column("comparison", sa.Text),
)

replay_pair = sa.Table(
    "prov_replay_pair", metadata,
    sa.Column("new_entity_id", sa.String(80), primary_key=True),
    sa.Column("original_entity_id", sa.String(80), primary_key=True, index=True),
    sa.Column("new_job_id", sa.String(64), nullable=False, index=True),
    sa.Column("result_id", sa.String(255)),
    sa.Column("verdict", sa.String(16)),
)

# Indexes of the search, on the tables of opus.provenance.tables.
SEARCH_INDEXES = (
    sa.Index("ix_prov_activity_end_time", t.activity.c.end_time),
    sa.Index("ix_prov_activity_name_end_time", t.activity.c.name, t.activity.c.end_time),
    sa.Index("ix_prov_activity_context_id", t.activity.c.context_id),
    sa.Index("ix_prov_context_package_lower", sa.func.lower(t.context_package.c.package),
             t.context_package.c.version),
    sa.Index("ix_prov_parameter_name_prefix", t.parameter.c.name, prefix(t.parameter.c.value)),
    sa.Index("ix_prov_entity_location_prefix", prefix(t.entity.c.location)),
    sa.Index("ix_prov_agent_name", t.agent.c.name),
)
