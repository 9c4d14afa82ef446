"""Users and their API tokens (``opus users add|remove|list``); only sha256 hashes of tokens
are stored, so a stolen database gives no working token."""

from __future__ import annotations

import hashlib
import re
import secrets

import sqlalchemy as sa

from opus.errors import ClientError
from opus.storage.engine import write_transaction
from opus.storage.tables import users
from opus.uws.models import utcnow

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    """The ``users`` table."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def name_for_token(self, token: str) -> str | None:
        """The user a token was issued to, None if it is no valid token."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(users.c.name).where(users.c.token_hash == token_hash(token))
            ).scalar()

    def add(self, name: str) -> str:
        """Create a user; returns the token (shown once: only its hash is kept)."""
        if not _USER_NAME.match(name):
            raise ClientError(f"user name {name!r}: letters, digits and _ . @ - only")
        token = secrets.token_urlsafe(32)
        with write_transaction(self.engine) as connection:
            if connection.execute(sa.select(users.c.name)
                                  .where(users.c.name == name)).first():
                raise ClientError(f"user {name!r} exists already")
            connection.execute(users.insert().values(name=name, token_hash=token_hash(token),
                                                     created=utcnow()))
        return token

    def remove(self, name: str) -> bool:
        with write_transaction(self.engine) as connection:
            return connection.execute(users.delete().where(users.c.name == name)
                                      ).rowcount == 1

    def names(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(users.c.name).order_by(users.c.name))
                        .scalars())
