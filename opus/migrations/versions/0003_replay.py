"""Provenance search indexes and the replay record.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = sa.String


# SQLite plans without statistics (no server runs ANALYZE) assume an equality on any
# indexed column is selective, so a search for a common value (software=numpy==1.26.4,
# activity=echo) fetched every match and sorted it, and an unfiltered search sorted the
# whole record (0.1-0.5 s with 100k runs, bench/provenance.py). These figures, typical of a
# large record (about 3 products, 5 parameters and 2 agents per run; tens of contexts and
# activities), make it walk the end-time index and stop at LIMIT instead; SQLite documents
# writing sqlite_stat1 for this ("Manual Control Of Query Plans Using SQLITE_STAT Tables").
# Real statistics (ANALYZE, PRAGMA optimize) replace them; existing rows are kept.
SQLITE_STATS = [
    ("prov_activity", "sqlite_autoindex_prov_activity_1", "1000000 1"),
    ("prov_activity", "ix_prov_activity_end_time", "1000000 1"),
    ("prov_activity", "ix_prov_activity_name_end_time", "1000000 20000 1"),
    ("prov_activity", "ix_prov_activity_context_id", "1000000 20000"),
    ("prov_activity", "ix_prov_activity_job_id", "1000000 1"),
    ("prov_activity", "ix_prov_activity_description_name", "1000000 20000"),
    ("prov_entity", "sqlite_autoindex_prov_entity_1", "3000000 1"),
    ("prov_entity", "ix_prov_entity_sha256", "3000000 2"),
    ("prov_entity", "ix_prov_entity_job_id", "3000000 3"),
    ("prov_entity", "ix_prov_entity_location_prefix", "3000000 1"),
    ("prov_wasgeneratedby", "sqlite_autoindex_prov_wasgeneratedby_1", "3000000 1"),
    ("prov_wasgeneratedby", "ix_prov_wasgeneratedby_activity_id", "3000000 3"),
    ("prov_used", "sqlite_autoindex_prov_used_1", "1000000 2 1 1"),
    ("prov_used", "ix_prov_used_entity_id", "1000000 2"),
    ("prov_wasderivedfrom", "sqlite_autoindex_prov_wasderivedfrom_1", "1000000 2 1"),
    ("prov_wasderivedfrom", "ix_prov_wasderivedfrom_used_entity_id", "1000000 2"),
    ("prov_parameter", "sqlite_autoindex_prov_parameter_1", "5000000 5 1"),
    ("prov_parameter", "ix_prov_parameter_name_value", "5000000 50000 1"),
    ("prov_parameter", "ix_prov_parameter_name_prefix", "5000000 50000 10"),
    ("prov_context_package", "sqlite_autoindex_prov_context_package_1", "10000 200 1"),
    ("prov_context_package", "ix_prov_context_package", "10000 50 2"),
    ("prov_context_package", "ix_prov_context_package_lower", "10000 50 2"),
    ("prov_wasassociatedwith", "sqlite_autoindex_prov_wasassociatedwith_1", "2000000 2 1 1"),
    ("prov_wasassociatedwith", "ix_prov_wasassociatedwith_agent_id", "2000000 20000"),
    ("prov_wasattributedto", "sqlite_autoindex_prov_wasattributedto_1", "3000000 1 1 1"),
    ("prov_wasattributedto", "ix_prov_wasattributedto_agent_id", "3000000 30000"),
    ("prov_agent", "sqlite_autoindex_prov_agent_1", "100 1"),
    ("prov_agent", "ix_prov_agent_name", "100 1"),
]


def seed_sqlite_stats() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return  # PostgreSQL: autovacuum's ANALYZE keeps real statistics
    bind.exec_driver_sql("ANALYZE prov_context")  # creates sqlite_stat1 if need be (cheap)
    present = {(row[0], row[1]) for row in bind.exec_driver_sql(
        "SELECT tbl, idx FROM sqlite_stat1")}
    for table, index, stat in SQLITE_STATS:
        if (table, index) not in present:
            bind.exec_driver_sql("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
                                 (table, index, stat))


def upgrade() -> None:
    # Search (opus/provenance/search.py): the expressions must be written exactly as the
    # queries write them (opus/storage/tables.py).
    op.create_index("ix_prov_activity_end_time", "prov_activity", ["end_time"])
    op.create_index("ix_prov_activity_name_end_time", "prov_activity", ["name", "end_time"])
    op.create_index("ix_prov_activity_context_id", "prov_activity", ["context_id"])
    op.create_index("ix_prov_context_package_lower", "prov_context_package",
                    [sa.text("lower(package)"), "version"])
    op.create_index("ix_prov_parameter_name_prefix", "prov_parameter",
                    ["name", sa.text("substr(value, 1, 128)")])
    op.create_index("ix_prov_entity_location_prefix", "prov_entity",
                    [sa.text("substr(location, 1, 128)")])
    op.create_index("ix_prov_agent_name", "prov_agent", ["name"])
    # Replay (opus/provenance/replay.py).
    op.create_table(
        "prov_replay",
        sa.Column("new_job_id", S(64), primary_key=True),
        sa.Column("original_activity_id", S(80), nullable=False),
        sa.Column("original_job_id", S(64)), sa.Column("requested_id", S(255)),
        sa.Column("owner_id", S(255)), sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("checks", sa.Text, nullable=False),
        sa.Column("compared_at", sa.DateTime), sa.Column("verdict", S(16)),
        sa.Column("comparison", sa.Text),
    )
    op.create_index("ix_prov_replay_original_activity_id", "prov_replay",
                    ["original_activity_id"])
    op.create_table(
        "prov_replay_pair",
        sa.Column("new_entity_id", S(80), primary_key=True),
        sa.Column("original_entity_id", S(80), primary_key=True),
        sa.Column("new_job_id", S(64), nullable=False),
        sa.Column("result_id", S(255)), sa.Column("verdict", S(16)),
    )
    op.create_index("ix_prov_replay_pair_original_entity_id", "prov_replay_pair",
                    ["original_entity_id"])
    op.create_index("ix_prov_replay_pair_new_job_id", "prov_replay_pair", ["new_job_id"])
    seed_sqlite_stats()


def downgrade() -> None:
    op.drop_table("prov_replay_pair")
    op.drop_table("prov_replay")
    for name, table in (("ix_prov_agent_name", "prov_agent"),
                        ("ix_prov_entity_location_prefix", "prov_entity"),
                        ("ix_prov_parameter_name_prefix", "prov_parameter"),
                        ("ix_prov_context_package_lower", "prov_context_package"),
                        ("ix_prov_activity_context_id", "prov_activity"),
                        ("ix_prov_activity_name_end_time", "prov_activity"),
                        ("ix_prov_activity_end_time", "prov_activity")):
        op.drop_index(name, table_name=table)
    if op.get_bind().dialect.name == "sqlite":
        op.get_bind().exec_driver_sql(
            "DELETE FROM sqlite_stat1 WHERE idx IN (SELECT idx FROM sqlite_stat1 WHERE idx "
            "NOT IN (SELECT name FROM sqlite_master WHERE type = 'index'))")
