"""The one error path of the web application: every route's failures are answered here.

A bottle plugin wraps every route. Before the handler it refuses bodies over the limit
(413, unread: ``max_body``, or for a body without files, which holds only parameter values,
:func:`text_body_limit`), resolves the caller's identity once (:class:`opus.auth.Authenticator`, through
the web client's session cookie when there is one: :mod:`opus.web.sessions`; the identity
header of a proxy only from a trusted one, :mod:`opus.web.proxies`) and the root of the
URLs this answer may write (``base_url``, or what a trusted proxy says); after it, an
authenticated answer names the user in ``x-vo-authenticated`` (SSO 2.x WD section 2.3) and
a 401 carries one ``WWW-Authenticate`` challenge per accepted scheme (WD section 2.1). Around
the handler it turns

- an :class:`opus.errors.ClientError` into its status (400, 401, 403, 404, 409, 413, 415,
  429 with ``Retry-After``),
- an :class:`opus.errors.ServiceUnavailableError`, or a database that cannot be reached
  (:data:`opus.storage.engine.DATABASE_UNAVAILABLE`), into 503 with
  ``Retry-After`` (the outage logged once, by :mod:`opus.storage.health`, not per request),
- no space left on the device (an :class:`opus.errors.InsufficientStorageError`, ENOSPC,
  SQLite's "database or disk is full") into 507 with ``Retry-After``,
- bottle's own refusals while it parses a body (a broken multipart body, an url-encoded
  form beyond ``MEMFILE_MAX``) into 400 / 413,

each written in the error format the route declares with ``errors=...`` in its route
config: ``"uws"`` (the default: plain text, or ``{"error", "status"}`` JSON when the client
prefers JSON to text, UWS 1.1 section 2.2), ``"dali"`` (a VOTable error document, DALI 1.1
section 4.4, for DataLink and other DALI services), ``"tap"`` (the same document without
DataLink's fault names and links table, for ProvTAP) or a format given to the plugin (the
web client's ``"html"`` pages, :mod:`opus.web.pages`). Anything else is a bug: bottle answers
it through :func:`plain_error`, which logs the traceback and says 500.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import bottle
from bottle import HTTPResponse, request

from opus.auth import Authenticator, Identity
from opus.diskspace import disk_full
from opus.datalink.votable import VOTABLE_MEDIA_TYPE, error_document
from opus.errors import (ClientError, PayloadTooLargeError, ServiceUnavailableError,
                         TooManyRequestsError)
from opus.storage.engine import DATABASE_UNAVAILABLE
from opus.tap import votable as tap_votable
from opus.uws import json_documents
from opus.web.http import (
    CLIENT_ADDRESS,
    IDENTITY,
    JSON,
    ROOT_URL,
    discard_unread_body,
    text_response,
    varying,
    wants_json,
)
from opus.web.proxies import TrustedProxies

log = logging.getLogger("opus.http")

#: Seconds a client is asked to wait after a 503 for a database that cannot be reached.
DATABASE_RETRY_AFTER = 5
#: Seconds a client is asked to wait after a 507 (no space left where jobs are kept).
STORAGE_RETRY_AFTER = 60

Renderer = Callable[[str, int], HTTPResponse]
#: The identity of a request, given whether it comes straight from a trusted proxy.
Identify = Callable[[bottle.BaseRequest, bool], Identity]


def uws_error(message: str, status: int) -> HTTPResponse:
    """Plain text, or JSON when the client prefers it to text (UWS resources)."""
    if wants_json("text/plain"):
        body = json_documents.dumps(json_documents.error(message, status))
        response = HTTPResponse(body=body, status=status,
                                headers={"Content-Type": JSON, "Vary": "Accept"})
    else:
        response = varying(text_response(message + "\n", status))
    return response


def dali_error(message: str, status: int) -> HTTPResponse:
    """A DALI 1.1 (section 4.4) VOTable error document; the message starts with a fault
    name (DataLink 1.1 section 3.4: ``UsageFault`` for the client's mistakes,
    ``ServiceUnavailableFault`` for ours)."""
    if status >= 500:
        fault = "ServiceUnavailableFault"
    elif status == 404:
        fault = "NotFoundFault"
    else:
        fault = "UsageFault"
    text = message if message.split(":", 1)[0].endswith("Fault") else f"{fault}: {message}"
    return HTTPResponse(body=error_document(text), status=status,
                        headers={"Content-Type": VOTABLE_MEDIA_TYPE})


def tap_error(message: str, status: int) -> HTTPResponse:
    """The DALI 1.1 error document of TAP (no DataLink fault names, no links table)."""
    return HTTPResponse(body=tap_votable.error_document(message), status=status,
                        headers={"Content-Type": VOTABLE_MEDIA_TYPE})


RENDERERS: Mapping[str, Renderer] = {"uws": uws_error, "dali": dali_error, "tap": tap_error}


def text_body_limit(max_parameter_length: int) -> int:
    """The largest body without files worth reading: a few parameter values of the largest
    allowed length, percent-encoded (up to 3 bytes per byte), and never under 1 MiB. A
    larger one cannot be a valid request, so it is refused unread (413)."""
    return max(1 << 20, 4 * max_parameter_length)


class ErrorPlugin:
    """The bottle plugin (API 2) of this module."""

    name = "opus.errors"
    api = 2

    def __init__(self, max_body: int, authenticate: Authenticator, *, base_url: str,
                 proxies: TrustedProxies, identify: Identify | None = None,
                 renderers: Mapping[str, Renderer] | None = None,
                 max_text_body: int | None = None) -> None:
        """``identify``: the identity of a request, when more than its headers decide it
        (the web client's session cookie); by default ``authenticate(headers)``.
        ``renderers``: more error formats (the web client's HTML pages).
        ``max_text_body``: the limit of a body that is not multipart (no file in it: form
        fields, a PUT parameter value, a runner report), refused before it is read."""
        self.max_body = max_body
        self.max_text_body = max_body if max_text_body is None else min(max_body,
                                                                        max_text_body)
        self.authenticate = authenticate
        self.base_url = base_url
        self.proxies = proxies
        self.identify: Identify = identify or (
            lambda req, trusted: authenticate(req.headers, trusted_proxy=trusted))
        self.renderers = {**RENDERERS, **(renderers or {})}

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        render = self.renderers[route.config.get("errors", "uws")]

        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            environ = request.environ
            environ[IDENTITY] = None
            try:
                return _named(handle(*args, **kwargs), environ[IDENTITY])
            except bottle.HTTPResponse as raised:  # bottle.redirect() and the like
                _named(raised, environ[IDENTITY])
                raise

        def handle(*args: Any, **kwargs: Any) -> Any:
            environ = request.environ
            try:
                length = request.content_length
                limit = self.max_body if request.content_type.startswith("multipart/") \
                    else self.max_text_body
                if length > limit:
                    raise PayloadTooLargeError(
                        f"request body of {length} bytes exceeds the limit of {limit}"
                        + ("" if limit == self.max_body else
                           " for a body without files (parameter values are limited "
                           "by the setting max_parameter_length)"))
                environ[ROOT_URL] = self.proxies.root_url(environ, self.base_url)
                environ[CLIENT_ADDRESS] = self.proxies.client_address(environ)
                environ[IDENTITY] = self.identify(
                    request, self.proxies.trusts(environ.get("REMOTE_ADDR")))
                return callback(*args, **kwargs)
            except ClientError as error:
                if error.status != 413:
                    discard_unread_body()
                response = render(error.message, error.status)
                if error.status == 401:  # RFC 7235 section 3.1: say how to authenticate
                    for challenge in self.authenticate.challenges:
                        response.add_header("WWW-Authenticate", challenge)
                if isinstance(error, TooManyRequestsError):
                    _retry_later(response, error.retry_after)
                return response
            except ServiceUnavailableError as fault:
                log.error("%s %s: %d, %s", request.method, request.path, fault.status,
                          fault.message)
                return _retry_later(render(fault.message, fault.status), fault.retry_after)
            except DATABASE_UNAVAILABLE as error:
                if disk_full(error):  # SQLite's file on a full disk
                    return _no_space(render, "the database")
                # logged once per outage, not per request (opus.storage.health)
                return _retry_later(render("the database is not available; retry later",
                                           503), DATABASE_RETRY_AFTER)
            except OSError as error:
                if not disk_full(error):
                    raise
                return _no_space(render, error.filename or "the data dir")
            except bottle.HTTPError as error:
                # bottle's own refusals while parsing the body (within max_body, checked
                # first: what is left of it is read, so the client sees the answer).
                if not 400 <= error.status_code < 500:
                    raise
                discard_unread_body()
                if error.status_code == 413:
                    return render(f"request body of {request.content_length} bytes is too "
                                  f"large for form parameters (at most "
                                  f"{request.MEMFILE_MAX} bytes)", 413)
                return render(str(error.body), error.status_code)

        return wrapper


def _named(result: Any, identity: Identity | None) -> Any:
    """``result`` (a handler's answer), with ``x-vo-authenticated: <user name>`` if the
    caller authenticated (SSO 2.x WD section 2.3). A returned HTTPResponse replaces
    bottle's response object, so the header goes to whichever is sent."""
    if identity is not None and identity.owner_id is not None:
        target = result if isinstance(result, HTTPResponse) else bottle.response
        target.set_header("x-vo-authenticated", identity.owner_id)
    return result


def _no_space(render: Renderer, where: object) -> HTTPResponse:
    """507 for a write that found no space left on the device (RFC 4918 section 11.5)."""
    message = f"no space left on device writing {where}; retry later"
    log.error("%s %s: 507, %s", request.method, request.path, message)
    return _retry_later(render(message, 507), STORAGE_RETRY_AFTER)


def _retry_later(response: HTTPResponse, seconds: int) -> HTTPResponse:
    response.set_header("Retry-After", str(seconds))
    return response


def plain_error(error: bottle.HTTPError) -> str:
    """Errors bottle raises itself (unknown route, wrong method, a bug) as plain text."""
    bottle.response.content_type = "text/plain; charset=UTF-8"
    if error.status_code >= 500:
        log.error("server error: %s", error.body, exc_info=error.exception)
        return "internal server error\n"
    return f"{error.body}\n"
