"""Who is asking, and what they may do: the one place that decides access to jobs.

A request without credentials is anonymous (ownerId nil, UWS 1.1 section 2.1.8: the owner
exists only where access is authenticated); anonymous jobs form one public space. A
request with ``Authorization: Bearer <token>`` acts as the user the token was issued to
(`opus users add NAME`); the user's jobs carry the user's name as ownerId and nobody else
sees or changes them (UWS 1.1 section 3: 403). Tokens are stored only as sha256 hashes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from opus.errors import AuthenticationError, PermissionDeniedError
from opus.uws.models import Job


@dataclass(frozen=True)
class Identity:
    """The caller of one request. ``owner_id`` None means anonymous."""

    owner_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.owner_id is None


ANONYMOUS = Identity()


class Authenticator:
    """Resolves the identity of a request, once per request, from its headers. Known
    tokens are cached for ``ttl`` seconds, so a removed user loses access within that."""

    def __init__(self, lookup: Callable[[str], str | None], ttl: float = 30.0) -> None:
        """``lookup``: the user a token was issued to, or None
        (:meth:`opus.storage.users.UserStore.name_for_token`)."""
        self.lookup = lookup
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
        token = token.strip()
        key = hashlib.sha256(token.encode()).hexdigest()  # no token kept in memory
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return Identity(cached[0])
        name = self.lookup(token)
        if name is None:
            raise AuthenticationError("Authorization: this token is not valid")
        with self._lock:
            self._cache[key] = (name, now + self.ttl)
        return Identity(name)


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
