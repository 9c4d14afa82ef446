"""Users and their API tokens (``opus users ...``); only sha256 hashes of tokens are stored,
so a stolen database gives no working token.

A user has a stable id (uuid hex), which jobs and provenance records refer to: a user
removed and created again under the same name is a new user and starts with nothing. A
user has any number of tokens, each with an optional expiry, revoked one by one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from opus.auth import ANONYMOUS, Identity
from opus.errors import ClientError
from opus.storage.engine import write_transaction
from opus.storage.tables import tokens, users
from opus.uws.models import utcnow

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
ROLES = ("user", "admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``opus users tokens`` lists it (never the token itself)."""

    id: int
    label: str | None
    created: dt.datetime
    expires: dt.datetime | None
    revoked: dt.datetime | None


class UserStore:
    """The ``users`` and ``tokens`` tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def identity_for_token(self, token: str) -> Identity | None:
        """The user a valid token (known, not revoked, not expired) was issued to."""
        now = utcnow()
        query = (sa.select(users.c.name, users.c.id, users.c.role)
                 .join(tokens, tokens.c.user_id == users.c.id)
                 .where(tokens.c.token_hash == token_hash(token), tokens.c.revoked.is_(None),
                        sa.or_(tokens.c.expires.is_(None), tokens.c.expires > now)))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return Identity(owner_id=row.name, key=row.id, admin=row.role == "admin")

    def identity_for_name(self, name: str) -> Identity | None:
        """The user of that name (a trusted proxy names users), None if there is none."""
        query = sa.select(users.c.name, users.c.id, users.c.role).where(users.c.name == name)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return Identity(owner_id=row.name, key=row.id, admin=row.role == "admin")

    def add(self, name: str, *, role: str = "user") -> str:
        """Create a user with a first token; returns the token (shown once)."""
        if not _USER_NAME.match(name):
            raise ClientError(f"user name {name!r}: letters, digits and _ . @ - only")
        if role not in ROLES:
            raise ClientError(f"role {role!r}: one of {', '.join(ROLES)}")
        with write_transaction(self.engine) as connection:
            if connection.execute(sa.select(users.c.name)
                                  .where(users.c.name == name)).first():
                raise ClientError(f"user {name!r} exists already")
            user_id = uuid.uuid4().hex
            connection.execute(users.insert().values(name=name, id=user_id, role=role,
                                                     created=utcnow()))
            return self._new_token(connection, user_id, label="first token", expires=None)

    def add_token(self, name: str, *, label: str | None = None,
                  expires: dt.datetime | None = None) -> str:
        """Another token for ``name`` (optionally expiring); returns it (shown once)."""
        if label is not None and len(label) > 255:
            raise ClientError("a token label has at most 255 characters")
        with write_transaction(self.engine) as connection:
            user_id = connection.execute(sa.select(users.c.id)
                                         .where(users.c.name == name)).scalar()
            if user_id is None:
                raise ClientError(f"no user {name!r}")
            return self._new_token(connection, user_id, label=label, expires=expires)

    @staticmethod
    def _new_token(connection: sa.Connection, user_id: str, *, label: str | None,
                   expires: dt.datetime | None) -> str:
        token = secrets.token_urlsafe(32)
        connection.execute(tokens.insert().values(user_id=user_id, token_hash=token_hash(token),
                                                  label=label, created=utcnow(),
                                                  expires=expires))
        return token

    def tokens_of(self, name: str) -> list[TokenInfo]:
        query = (sa.select(tokens.c.id, tokens.c.label, tokens.c.created, tokens.c.expires,
                           tokens.c.revoked)
                 .join(users, users.c.id == tokens.c.user_id)
                 .where(users.c.name == name).order_by(tokens.c.id))
        with self.engine.connect() as connection:
            return [TokenInfo(*row) for row in connection.execute(query)]

    def revoke_token(self, name: str, token_id: int) -> bool:
        """Revoke one token of ``name``; False if it has no such live token."""
        owned = sa.select(users.c.id).where(users.c.name == name).scalar_subquery()
        with write_transaction(self.engine) as connection:
            return connection.execute(
                tokens.update().where(tokens.c.id == token_id, tokens.c.user_id == owned,
                                      tokens.c.revoked.is_(None))
                .values(revoked=utcnow())).rowcount == 1

    def remove(self, name: str) -> bool:
        """Remove a user and their tokens. Their jobs stay, with the old stable id: a new
        user of the same name does not get them."""
        with write_transaction(self.engine) as connection:
            user_id = connection.execute(sa.select(users.c.id)
                                         .where(users.c.name == name)).scalar()
            if user_id is None:
                return False
            connection.execute(tokens.delete().where(tokens.c.user_id == user_id))
            connection.execute(users.delete().where(users.c.id == user_id))
            return True

    def identity_of(self, key: str | None) -> Identity:
        """The identity of the user whose stable id is ``key`` (a job's owner): anonymous
        for None, a user without any role if the user was removed."""
        if key is None:
            return ANONYMOUS
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(users.c.name, users.c.role)
                                     .where(users.c.id == key)).first()
        if row is None:
            return Identity(key=key)
        return Identity(owner_id=row.name, key=key, admin=row.role == "admin")

    def names(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(users.c.name).order_by(users.c.name))
                        .scalars())
