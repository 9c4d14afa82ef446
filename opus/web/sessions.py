"""Signing in to the web client: a session cookie that stands for an API token, and the
protection of the pages' forms against cross-site requests.

- **The cookie** ``opus_session`` holds ``<nonce>.<token>``: the user's own API token
  (``opus users add``) and a random nonce drawn at sign-in. It is ``HttpOnly`` (no script
  reads it), ``SameSite=Lax`` (other sites' forms and images do not send it; a link
  followed from elsewhere does, so it opens the signed-in page), ``Path`` the application's
  root, ``Secure`` when ``base_url`` is https, and lasts at most :data:`MAX_AGE`. No session
  is stored on the server: the token is resolved by the same
  :class:`opus.auth.Authenticator` as an ``Authorization: Bearer`` header, so the cookie
  gives exactly the identity the header gives, revoking the token ends the session, and
  signing out forgets the cookie.
- **Where it counts.** On ``GET`` and ``HEAD`` of every route: the pages' images, result
  downloads, provenance pictures and the job page's WAIT long-poll read the user's jobs.
  On other methods only on the pages' own routes (``route(..., session=True)``), and only
  with the session's CSRF token in the form field :data:`CSRF_FIELD` (an HMAC of the nonce
  and the token, so it changes at every sign-in and cannot be guessed without the cookie).
  Everywhere else (UWS, DataLink, provenance replay) a cookie is ignored: a request forged
  by another site acts anonymously, never as the user. An ``Authorization`` header wins
  over the cookie.
- **Every form post of a page** (signed in or not; the sign-in form too, which ignores the
  cookie and checks this itself, against login CSRF) must come from this service: an ``Origin`` header, when the browser sends one, is this
  service's, and ``Sec-Fetch-Site`` is not ``cross-site``.
- A cookie whose token no longer works reads as anonymous (the page clears it); a change
  sent with it is refused (401), rather than done anonymously behind the user's back.

Identity resolution stays in the one plugin of :mod:`opus.web.errors`, which calls
:meth:`Sessions.identify` for every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import bottle
from bottle import HTTPResponse

from opus.auth import ANONYMOUS, Authenticator, Identity
from opus.errors import AuthenticationError, PermissionDeniedError

COOKIE = "opus_session"
#: The hidden form field of every page form that carries the session's CSRF token.
CSRF_FIELD = "csrf_token"
#: Longest life of a session cookie, in seconds.
MAX_AGE = 12 * 3600
#: Request environ key set when the request brought a cookie that no longer works.
STALE = "opus.session.stale"
_SESSION = "opus.session"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Sessions:
    """The session cookie of the web client, resolved through ``authenticate``."""

    def __init__(self, authenticate: Authenticator, base_url: str) -> None:
        self.authenticate = authenticate
        self.secure = base_url.lower().startswith("https://")
        self.base_origin = _origin(base_url)

    # -- what the error plugin calls ---------------------------------------------------
    def identify(self, request: bottle.BaseRequest, trusted_proxy: bool = False) -> Identity:
        """The identity of ``request``: its ``Authorization`` header (or a trusted proxy's
        identity header), else its session cookie where the cookie counts (see the module
        docstring), else anonymous."""
        safe = request.method.upper() in _SAFE_METHODS
        page = bool(request.route.config.get("session", False))
        if page and not safe:
            self.check_origin(request)
        cookie = request.get_cookie(COOKIE)
        if request.headers.get("Authorization") or not cookie or not (safe or page):
            return self.authenticate(request.headers, trusted_proxy=trusted_proxy)
        nonce, _, token = str(cookie).partition(".")
        try:
            if not nonce or not token:
                raise AuthenticationError("malformed session cookie")
            found = self.authenticate.for_token(token)
        except AuthenticationError:
            if not safe:
                raise AuthenticationError("your session has ended (its token is no longer "
                                          "valid): sign in again") from None
            request.environ[STALE] = True
            return ANONYMOUS
        if not safe:
            sent = str(request.forms.get(CSRF_FIELD) or "")
            if not hmac.compare_digest(sent.encode(), csrf_token(nonce, token).encode()):
                raise PermissionDeniedError(
                    "this form does not carry the token of your session (it was opened "
                    "before you signed in again, or sent by another site): reload the page "
                    "and try again")
        request.environ[_SESSION] = (nonce, token)
        return found

    def check_origin(self, request: bottle.BaseRequest) -> None:
        """Refuse (403) a form post that another site made the browser send."""
        origin = request.headers.get("Origin")
        own = {_origin(request.url), self.base_origin}
        if (origin and origin.lower() not in own) or \
                request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            raise PermissionDeniedError("this form was sent from another site")

    # -- what the pages call -----------------------------------------------------------
    def sign_in(self, response: HTTPResponse, token: str, path: str) -> Identity:
        """Check ``token`` (401 if it is not valid) and give ``response`` a new session
        cookie for it, valid under ``path``."""
        token = token.strip()
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise AuthenticationError("this is not an OPUS token")
        found = self.authenticate.for_token(token)
        response.set_cookie(COOKIE, f"{secrets.token_hex(16)}.{token}", path=path,
                            httponly=True, samesite="lax", secure=self.secure,
                            maxage=MAX_AGE)
        return found

    def sign_out(self, response: HTTPResponse, path: str) -> None:
        """Make the browser forget its session cookie."""
        response.set_cookie(COOKIE, "", path=path, httponly=True, samesite="lax",
                            secure=self.secure, maxage=0,
                            expires="Thu, 01 Jan 1970 00:00:00 GMT")


def csrf_token(nonce: str, token: str) -> str:
    """The CSRF token of the session (nonce, token)."""
    return hmac.new(nonce.encode(), token.encode(), hashlib.sha256).hexdigest()


def session_csrf(environ: Mapping[str, Any]) -> str:
    """The CSRF token of this request's session; empty without a session."""
    session = environ.get(_SESSION)
    return csrf_token(*session) if session else ""


def signed_in(environ: Mapping[str, Any]) -> bool:
    """Whether this request came with a working session cookie."""
    return _SESSION in environ
