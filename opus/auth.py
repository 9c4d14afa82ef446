"""Who is asking, and what they may do: the one place that decides access to jobs.

A request without credentials is anonymous (ownerId nil, UWS 1.1 section 2.1.8: the owner
exists only where access is authenticated); anonymous jobs form one public space. A
request with ``Authorization: Bearer <token>`` acts as the user the token was issued to
(`opus users add NAME`); the user's jobs carry the user's name as ownerId and nobody else
sees or changes them (UWS 1.1 section 3: 403). Tokens are stored only as sha256 hashes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Mapping

import sqlalchemy as sa

from opus.errors import AuthenticationError, ClientError, PermissionDeniedError
from opus.uws.models import Job, utcnow
from opus.uws.tables import metadata

users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.DateTime, nullable=False),
)

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


@dataclass(frozen=True)
class Identity:
    """The caller of one request. ``owner_id`` None means anonymous."""

    owner_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.owner_id is None


ANONYMOUS = Identity()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Resolves the identity of a request, once per request, from its headers. Known
    tokens are cached for ``ttl`` seconds, so a removed user loses access within that."""

    def __init__(self, engine: sa.Engine, ttl: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, headers: Mapping[str, str]) -> Identity:
        header = headers.get("Authorization")
        if not header:
            return ANONYMOUS
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Authorization: expected 'Bearer <token>'")
        digest = _hash(token.strip())
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return Identity(cached[0])
        with self.engine.connect() as connection:
            name = connection.execute(
                sa.select(users.c.name).where(users.c.token_hash == digest)).scalar()
        if name is None:
            raise AuthenticationError("Authorization: this token is not valid")
        with self._lock:
            self._cache[digest] = (name, now + self.ttl)
        return Identity(name)


def add_user(engine: sa.Engine, name: str) -> str:
    """Create a user; returns the token (shown once: only its hash is kept)."""
    if not _USER_NAME.match(name):
        raise ClientError(f"user name {name!r}: letters, digits and _ . @ - only")
    token = secrets.token_urlsafe(32)
    with engine.begin() as connection:
        if connection.execute(sa.select(users.c.name).where(users.c.name == name)).first():
            raise ClientError(f"user {name!r} exists already")
        connection.execute(users.insert().values(name=name, token_hash=_hash(token),
                                                 created=utcnow()))
    return token


def remove_user(engine: sa.Engine, name: str) -> bool:
    with engine.begin() as connection:
        return connection.execute(users.delete().where(users.c.name == name)).rowcount == 1


def list_users(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(users.c.name).order_by(users.c.name))
                    .scalars())


class AccessPolicy:
    """Decides who sees and changes which job (UWS 1.1 section 3)."""

    def owner_filter(self, identity: Identity) -> tuple[bool, str | None]:
        """(filter?, owner) for job lists: everybody sees the jobs of their own space
        (anonymous callers the public, ownerless jobs)."""
        return True, identity.owner_id

    def check_read(self, identity: Identity, job: Job) -> None:
        """Raise if ``identity`` may not see ``job``: 403, as UWS 1.1 section 3 requires."""
        if job.owner_id != identity.owner_id:
            raise PermissionDeniedError(
                f"job {job.job_id} belongs to another user" if job.owner_id else
                f"job {job.job_id} is a public job; it is not in your space")

    def check_modify(self, identity: Identity, job: Job) -> None:
        self.check_read(identity, job)
