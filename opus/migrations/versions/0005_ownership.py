"""Ownership by stable user id, published jobs, tokens with expiry, roles.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

- users get a stable ``id`` and a ``role``; their token moves to ``tokens`` (many per user,
  each with an optional expiry and a revocation time);
- jobs, provenance activities and entities, and replays get ``owner_key`` (the owner's
  users.id, filled from the owner's name for existing rows) and jobs, activities and
  entities a ``public`` flag (false: private to the owner).
"""
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=True),
        sa.Column("revoked", sa.DateTime, nullable=True),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("role", sa.String(16), nullable=False,
                                   server_default="user"))
    users = sa.table("users", sa.column("name", sa.String), sa.column("id", sa.String),
                     sa.column("token_hash", sa.String), sa.column("created", sa.DateTime))
    tokens = sa.table("tokens", sa.column("user_id", sa.String),
                      sa.column("token_hash", sa.String), sa.column("created", sa.DateTime))
    ids: dict[str, str] = {}
    for name, token_hash, created in connection.execute(
            sa.select(users.c.name, users.c.token_hash, users.c.created)).all():
        ids[name] = uuid.uuid4().hex
        connection.execute(users.update().where(users.c.name == name).values(id=ids[name]))
        connection.execute(tokens.insert().values(user_id=ids[name], token_hash=token_hash,
                                                  created=created))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("id", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_users_id", ["id"])
        batch.drop_column("token_hash")
    with op.batch_alter_table("tokens") as batch:
        batch.create_foreign_key("fk_tokens_user_id", "users", ["user_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index("ix_tokens_user_id", ["user_id"])

    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner_key", sa.String(32), nullable=True))
        batch.add_column(sa.Column("public", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.drop_index("ix_jobs_activity_owner_id")
        batch.create_index("ix_jobs_activity_owner_key_id", ["activity", "owner_key", "id"])
    for table in ("prov_activity", "prov_entity"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner_key", sa.String(32), nullable=True))
            batch.add_column(sa.Column("public", sa.Boolean, nullable=False,
                                       server_default=sa.false()))
            batch.create_index(f"ix_{table}_owner_key", ["owner_key"])
    with op.batch_alter_table("prov_replay") as batch:
        batch.add_column(sa.Column("owner_key", sa.String(32), nullable=True))

    # Existing rows: the owner's key from the owner's name.
    jobs = sa.table("jobs", sa.column("owner_id", sa.String), sa.column("owner_key", sa.String),
                    sa.column("job_id", sa.String))
    activity = sa.table("prov_activity", sa.column("job_id", sa.String),
                        sa.column("id", sa.String), sa.column("owner_key", sa.String))
    entity = sa.table("prov_entity", sa.column("id", sa.String),
                      sa.column("owner_key", sa.String))
    for name, key in ids.items():
        connection.execute(jobs.update().where(jobs.c.owner_id == name).values(owner_key=key))
        operator = f"user-{name}"
        runs: sa.Select[Any] = sa.select(sa.literal_column("activity_id")).select_from(
            sa.table("prov_wasassociatedwith", sa.column("activity_id"),
                     sa.column("agent_id"), sa.column("role"))).where(
            sa.literal_column("agent_id") == operator,
            sa.literal_column("role") == "Operator")
        connection.execute(activity.update().where(activity.c.id.in_(runs))
                           .values(owner_key=key))
        made: sa.Select[Any] = sa.select(sa.literal_column("entity_id")).select_from(
            sa.table("prov_wasattributedto", sa.column("entity_id"), sa.column("agent_id")
                     )).where(sa.literal_column("agent_id") == operator)
        connection.execute(entity.update().where(entity.c.id.in_(made)).values(owner_key=key))


def downgrade() -> None:
    with op.batch_alter_table("prov_replay") as batch:
        batch.drop_column("owner_key")
    for table in ("prov_entity", "prov_activity"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_owner_key")
            batch.drop_column("public")
            batch.drop_column("owner_key")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_activity_owner_key_id")
        batch.create_index("ix_jobs_activity_owner_id", ["activity", "owner_id", "id"])
        batch.drop_column("public")
        batch.drop_column("owner_key")
    op.add_column("users", sa.Column("token_hash", sa.String(64), nullable=True))
    op.drop_table("tokens")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_id", type_="unique")
        batch.drop_column("role")
        batch.drop_column("id")
