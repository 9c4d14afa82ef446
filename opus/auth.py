"""Who is asking, and what they may do: the one place that decides access to jobs.

A request without credentials is anonymous (ownerId nil, UWS 1.1 section 2.1.8: the owner
exists only where access is authenticated); anonymous jobs form one public space. A request
acts as a user (`opus users add NAME`) when it carries, as the IVOA SSO profile names the
schemes (SSO 2.0 REC section 4, SSO 2.x WD section 3),

- ``Authorization: Bearer <token>`` (``ivo://ivoa.net/sso#OAuth``, WD section 3.10), or
- ``Authorization: Basic <name:token>`` (``ivo://ivoa.net/sso#BasicAA``, RFC 7617): the
  user name and one of that user's tokens as the password (no separate password is kept),
- or the user's name in the identity header of an authenticating reverse proxy, believed
  only from a trusted proxy (the web layer decides which peer is one).

The user's jobs carry the user's name as ownerId and nobody else sees or changes them (UWS
1.1 section 3: 403). Tokens are stored only as sha256 hashes.

The read rule is :meth:`Viewer.may_read`; :class:`AccessPolicy` applies it to jobs and rows
in Python, and hands the stores a :class:`Viewer`, which :func:`opus.storage.access.visible`
turns into the same rule in SQL (``tests/security/test_ownership.py`` checks they agree).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from opus.errors import AuthenticationError, PermissionDeniedError
from opus.uws.models import Job

#: securityMethod standardIDs (SSO 2.x WD, table of section 3 and section 3.10).
OAUTH = "ivo://ivoa.net/sso#OAuth"
BASIC_AA = "ivo://ivoa.net/sso#BasicAA"
#: The protection space of the challenges (RFC 7235 section 2.2).
REALM = "OPUS"


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

Lookup = Callable[[str], Identity | None]


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
    """Resolves the identity of a request, once per request, from its headers. Credentials
    found valid are cached for ``ttl`` seconds (by their sha256, never in clear), so a
    revoked or expired token, or a removed user, stops working within that time."""

    def __init__(self, lookup: Lookup, ttl: float = 30.0, *, user: Lookup | None = None,
                 basic: bool = True, proxy_header: str = "",
                 token_issuer: tuple[str, str] | None = None) -> None:
        """``lookup``: the identity of the user a valid token was issued to, or None
        (:meth:`opus.storage.users.UserStore.identity_for_token`); ``user``: the identity
        of a user by name (:meth:`~opus.storage.users.UserStore.identity_for_name`), for
        ``proxy_header``, the header a trusted proxy names the user in; ``basic``: accept
        HTTP Basic; ``token_issuer``: (standard_id, access_url) of an ``ivoa_bearer``
        challenge."""
        self.lookup = lookup
        self.ttl = ttl
        self.user = user
        self.basic = basic
        self.proxy_header = proxy_header if user is not None else ""
        self.token_issuer = token_issuer
        self._cache: dict[str, tuple[Identity, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, headers: Mapping[str, str], *, trusted_proxy: bool = False) -> Identity:
        """The identity ``headers`` prove; ``trusted_proxy``: the request comes straight
        from a trusted proxy, whose identity header (if it sets one) is believed before
        anything else. Raises :class:`AuthenticationError` (401) for bad credentials."""
        if self.proxy_header and trusted_proxy:
            name = (headers.get(self.proxy_header) or "").strip()
            if name:
                return self.for_proxy_user(name)
        header = headers.get("Authorization")
        if not header:
            return ANONYMOUS
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return self.for_token(credentials.strip())
        if scheme.lower() == "basic" and self.basic:
            return self.for_basic(credentials.strip())
        expected = "'Bearer <token>'" + (" or 'Basic <credentials>'" if self.basic else "")
        raise AuthenticationError(f"Authorization: expected {expected}")

    def for_token(self, token: str) -> Identity:
        """The user of a token (a Bearer token, or one a session cookie carries)."""
        found = self._cached(f"token {token}", lambda: self.lookup(token))
        if found is None:
            raise AuthenticationError("Authorization: this token is not valid")
        return found

    def for_basic(self, credentials: str) -> Identity:
        """The user of HTTP Basic ``credentials`` (base64 of ``name:token``, RFC 7617)."""
        try:
            pair = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("Authorization: Basic credentials are not base64 "
                                      "of UTF-8 'name:password'") from None
        name, colon, password = pair.partition(":")
        if not colon or not name or not password:
            raise AuthenticationError("Authorization: Basic credentials need a user name "
                                      "and a password")

        def check() -> Identity | None:
            found = self.lookup(password)
            return found if found is not None and found.owner_id == name else None

        identity = self._cached(f"basic {pair}", check)
        if identity is None:
            raise AuthenticationError("Authorization: wrong user name or password")
        return identity

    def for_proxy_user(self, name: str) -> Identity:
        """The user a trusted proxy names."""
        assert self.user is not None
        user = self.user
        found = self._cached(f"user {name}", lambda: user(name))
        if found is None:
            raise AuthenticationError(f"{self.proxy_header}: no user {name!r} here")
        return found

    def _cached(self, credential: str, lookup: Callable[[], Identity | None]) -> Identity | None:
        key = hashlib.sha256(credential.encode()).hexdigest()  # no secret kept in memory
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = lookup()
        if found is not None and self.ttl > 0:
            with self._lock:
                if len(self._cache) > 10000:  # expired entries of many callers
                    self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                self._cache[key] = (found, now + self.ttl)
        return found

    @property
    def challenges(self) -> list[str]:
        """One ``WWW-Authenticate`` value per accepted scheme (RFC 7235 section 4.1; SSO
        2.x WD section 2.1), for 401 answers and for ``/capabilities``."""
        found = []
        if self.token_issuer is not None:
            standard_id, access_url = self.token_issuer
            found.append(f'ivoa_bearer standard_id="{standard_id}", '
                         f'access_url="{access_url}"')
        found.append(f'Bearer realm="{REALM}"')  # RFC 6750 section 3
        if self.basic:
            found.append(f'Basic realm="{REALM}", charset="UTF-8"')  # RFC 7617 section 2
        return found

    @property
    def security_methods(self) -> list[str]:
        """The securityMethod standardIDs of the schemes a client may use, in order of
        preference (VOResource 1.1; SSO 2.0 REC section 3). The proxy header is not one:
        whatever the proxy asks of its clients is its own business."""
        return [OAUTH, BASIC_AA] if self.basic else [OAUTH]


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
