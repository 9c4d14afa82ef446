"""Who is asking, and what they may do: the one place that decides access to jobs.

A request without credentials is anonymous (ownerId nil, UWS 1.1 section 2.1.8: the owner
exists only where access is authenticated); anonymous jobs form one public space. A
request with ``Authorization: Bearer <token>`` acts as the user the token was issued to
(`opus users add NAME`); the user's jobs carry the user's name as ownerId and nobody else
sees or changes them (UWS 1.1 section 3: 403). Tokens are stored only as sha256 hashes.

The read rule is :meth:`Viewer.may_read`; :class:`AccessPolicy` applies it to jobs and rows
in Python, and hands the stores a :class:`Viewer`, which :func:`opus.storage.access.visible`
turns into the same rule in SQL (``tests/security/test_ownership.py`` checks they agree).
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
    """The caller of one request: ``owner_id`` is the user's name (UWS ownerId), ``key`` the
    user's stable id (what access is decided on), ``admin`` whether the user may see and
    change everything. All None/False: anonymous."""

    owner_id: str | None = None
    key: str | None = None
    admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.key is None


ANONYMOUS = Identity()


@dataclass(frozen=True)
class Viewer:
    """Who reads, as the stores need to know it: a user's stable id (None: anonymous) and
    whether they see everything. :func:`opus.storage.access.visible` is its SQL form."""

    key: str | None = None
    admin: bool = False

    def may_read(self, owner_key: str | None, public: bool) -> bool:
        """THE read rule: an admin reads everything; anyone reads what is published and
        what is anonymous (one shared space); a user reads their own."""
        return self.admin or public or owner_key is None or owner_key == self.key


class Authenticator:
    """Resolves the identity of a request, once per request, from its headers. Known
    tokens are cached for ``ttl`` seconds, so a removed user loses access within that."""

    def __init__(self, lookup: Callable[[str], Identity | None], ttl: float = 30.0) -> None:
        """``lookup``: the identity of the user a valid token was issued to, or None
        (:meth:`opus.storage.users.UserStore.identity_for_token`)."""
        self.lookup = lookup
        self.ttl = ttl
        self._cache: dict[str, tuple[Identity, float]] = {}
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
            return cached[0]
        found = self.lookup(token)
        if found is None:
            raise AuthenticationError("Authorization: this token is not valid")
        with self._lock:
            self._cache[key] = (found, now + self.ttl)
        return found


class AccessPolicy:
    """Decides who sees and changes what (UWS 1.1 section 3): the one place for it.

    - A user's job, and its provenance, is private to that user (by stable id, ``key``);
      an admin sees and changes everything.
    - A job its owner published is readable by anyone, and its products may be used as
      inputs by anyone; only its owner changes it.
    - Anonymous jobs form one shared space: any anonymous caller reads and changes them,
      and users read them (they are public by nature: nobody can prove they own one).

    Provenance nodes (runs and entities), search hits, bindings, replays, DataLink rows and
    products given as inputs follow the same rule, on the ``owner_key`` and ``public`` their
    rows carry: a product may be used as an input by whoever may read it.
    """

    def viewer(self, identity: Identity) -> Viewer:
        """What the stores filter on for ``identity``."""
        return Viewer(identity.key, identity.admin)

    def owner_filter(self, identity: Identity) -> tuple[bool, str | None]:
        """(filter?, owner key) for job lists: everybody lists the jobs of their own space
        (anonymous callers the ownerless jobs); an admin lists all."""
        if identity.admin:
            return False, None
        return True, identity.key

    def may_read(self, identity: Identity, owner_key: str | None, public: bool) -> bool:
        """Whether ``identity`` may read something owned by ``owner_key`` (None: anonymous),
        published or not: jobs, results, uploads, provenance nodes, replays."""
        return self.viewer(identity).may_read(owner_key, public)

    def access_of(self, job: Job) -> str:
        """'public' if anyone may read ``job`` (published, or anonymous), else 'private'."""
        return "public" if self.may_read(ANONYMOUS, job.owner_key, job.public) else "private"

    def check_read(self, identity: Identity, job: Job) -> None:
        """Raise if ``identity`` may not see ``job``: 403, as UWS 1.1 section 3 requires."""
        if not self.may_read(identity, job.owner_key, job.public):
            raise PermissionDeniedError(f"job {job.job_id} belongs to another user")

    def check_modify(self, identity: Identity, job: Job) -> None:
        """Raise if ``identity`` may not change ``job`` (only its owner, or an admin)."""
        if identity.admin or job.owner_key == identity.key:
            return
        raise PermissionDeniedError(
            f"job {job.job_id} belongs to another user" if job.owner_key else
            f"job {job.job_id} is a public job; it is not in your space")
