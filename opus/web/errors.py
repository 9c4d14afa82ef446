"""The one error path of the web application: every route's failures are answered here.

A bottle plugin wraps every route. Before the handler it refuses bodies over the limit
(413) and resolves the caller's identity once (:class:`opus.auth.Authenticator`, through
the web client's session cookie when there is one: :mod:`opus.web.sessions`); around it
it turns

- an :class:`opus.errors.ClientError` into its status (400, 401, 403, 404, 409, 413, 415),
- an :class:`opus.errors.ServiceUnavailableError`, or a database that cannot be reached
  (:data:`opus.storage.engine.DATABASE_UNAVAILABLE`), into 503 with
  ``Retry-After``, logged once with its cause,
- bottle's own refusals while it parses a body (a broken multipart body, an url-encoded
  form beyond ``MEMFILE_MAX``) into 400 / 413,

each written in the error format the route declares with ``errors=...`` in its route
config: ``"uws"`` (the default: plain text, or ``{"error", "status"}`` JSON when the client
prefers JSON to text, UWS 1.1 section 2.2), ``"dali"`` (a VOTable error document, DALI 1.1
section 4.4, for DataLink and other DALI services) or a format given to the plugin (the web
client's ``"html"`` pages, :mod:`opus.web.pages`). Anything else is a bug: bottle answers
it through :func:`plain_error`, which logs the traceback and says 500.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import bottle
from bottle import HTTPResponse, request

from opus.auth import Identity
from opus.datalink.votable import VOTABLE_MEDIA_TYPE, error_document
from opus.errors import ClientError, PayloadTooLargeError, ServiceUnavailableError
from opus.storage.engine import DATABASE_UNAVAILABLE
from opus.uws import json_documents
from opus.web.http import (
    JSON,
    discard_unread_body,
    text_response,
    varying,
    wants_json,
)

log = logging.getLogger("opus.http")

#: Seconds a client is asked to wait after a 503 for a database that cannot be reached.
DATABASE_RETRY_AFTER = 5

Renderer = Callable[[str, int], HTTPResponse]


def uws_error(message: str, status: int) -> HTTPResponse:
    """Plain text, or JSON when the client prefers it to text (UWS resources)."""
    if wants_json("text/plain"):
        body = json_documents.dumps(json_documents.error(message, status))
        response = HTTPResponse(body=body, status=status,
                                headers={"Content-Type": JSON, "Vary": "Accept"})
    else:
        response = varying(text_response(message + "\n", status))
    if status == 401:  # RFC 6750 section 3: say how to authenticate
        response.set_header("WWW-Authenticate", 'Bearer realm="OPUS"')
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


RENDERERS: Mapping[str, Renderer] = {"uws": uws_error, "dali": dali_error}


class ErrorPlugin:
    """The bottle plugin (API 2) of this module."""

    name = "opus.errors"
    api = 2

    def __init__(self, max_body: int, authenticate: Callable[[Any], Identity],
                 identify: Callable[[bottle.BaseRequest], Identity] | None = None,
                 renderers: Mapping[str, Renderer] | None = None) -> None:
        """``identify``: the identity of a request, when more than its headers decide it
        (the web client's session cookie); by default ``authenticate(headers)``.
        ``renderers``: more error formats (the web client's HTML pages)."""
        self.max_body = max_body
        self.authenticate = authenticate
        self.identify = identify or (lambda req: authenticate(req.headers))
        self.renderers = {**RENDERERS, **(renderers or {})}

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        render = self.renderers[route.config.get("errors", "uws")]

        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                length = request.content_length
                if length > self.max_body:
                    raise PayloadTooLargeError(
                        f"request body of {length} bytes exceeds the limit of "
                        f"{self.max_body}")
                request.environ["opus.identity"] = self.identify(request)
                return callback(*args, **kwargs)
            except ClientError as error:
                if error.status != 413:
                    discard_unread_body()
                return render(error.message, error.status)
            except ServiceUnavailableError as fault:
                log.error("%s %s: 503, %s", request.method, request.path, fault.message)
                return _retry_later(render(fault.message, 503), fault.retry_after)
            except DATABASE_UNAVAILABLE as error:
                log.error("%s %s: 503, the database cannot be reached: %s",
                          request.method, request.path, error)
                return _retry_later(render("the database is not available; retry later",
                                           503), DATABASE_RETRY_AFTER)
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
