"""Reading requests and shaping answers, shared by every route module.

Parameters are decoded here once, as UTF-8, with every decoding problem turned into a
400 (:class:`opus.errors.ClientError`) rather than a 500: a ``%FF``, a lone surrogate or
a NUL in a query string is the client's mistake. Names are compared case-insensitively
(DALI 1.1 section 3.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from bottle import HTTPResponse, request

from opus.auth import Identity
from opus.errors import ClientError, ParameterError
from opus.web import negotiation

TEXT = "text/plain; charset=UTF-8"
XML = "application/xml; charset=UTF-8"
JSON = "application/json"


#: Keys of the WSGI environ where :mod:`opus.web.errors`' plugin leaves what it resolved.
IDENTITY = "opus.identity"
ROOT_URL = "opus.root_url"
CLIENT_ADDRESS = "opus.client_address"


def identity() -> Identity:
    """Who sent this request (resolved once by :mod:`opus.web.errors`' plugin)."""
    found: Identity = request.environ[IDENTITY]
    return found


def root_url() -> str:
    """The start of every absolute link of this answer: the setting ``base_url``, or what
    a trusted proxy says (:mod:`opus.web.proxies`); never the client's ``Host``."""
    found: str = request.environ[ROOT_URL]
    return found


def client_address() -> str | None:
    """The client's IP address: the peer, or what trusted proxies say it is."""
    found: str | None = request.environ[CLIENT_ADDRESS]
    return found


def accept() -> str | None:
    value: str | None = request.headers.get("Accept")
    return value


def prefers(wanted: str, *alternatives: str) -> bool:
    """Whether this request's ``Accept`` prefers ``wanted`` to each of ``alternatives``."""
    return negotiation.prefers(accept(), wanted, alternatives)


def wants_json(*alternatives: str) -> bool:
    return prefers(JSON, *alternatives)


def text_response(body: str, status: int = 200) -> HTTPResponse:
    return HTTPResponse(body=body, status=status, headers={"Content-Type": TEXT})


def varying(response: HTTPResponse) -> HTTPResponse:
    """``response``, marked as chosen by ``Accept`` (for caches)."""
    response.set_header("Vary", "Accept")
    return response


def see_other(location: str, **headers: str) -> HTTPResponse:
    return HTTPResponse(status=303, headers={"Location": location, **headers})


#: What decoding a request's parameters raises for a bad body: a charset that no codec
#: has, or one that is no text encoding (``charset=base64``), is a LookupError.
DECODING_ERRORS = (UnicodeError, ValueError, LookupError)


def _parsed(read: Callable[[], Any]) -> Any:
    """``read()`` (bottle parses a body on first use), a decoding failure as a 400."""
    try:
        return read()
    except DECODING_ERRORS as error:
        raise ClientError(f"the request parameters could not be decoded: {error}") from None


def _decoded(read: Callable[[], Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = _parsed(lambda: [
        (str(key), str(value)) for key, value in read().decode().allitems()])
    return pairs


def query_parameters() -> list[tuple[str, str]]:
    """Query parameters as (name, value) pairs, decoded as UTF-8."""
    return _decoded(lambda: request.query)


def submitted_parameters() -> list[tuple[str, str]]:
    """Query and form parameters as (name, value) pairs, decoded as UTF-8."""
    items = query_parameters()
    if request.method in {"POST", "PUT"}:
        items += _decoded(lambda: request.forms)
    return items


def uploaded_files(*, named_only: bool = False) -> dict[str, BinaryIO]:
    """Parts of a multipart/form-data POST that carry a file, by part name (UWS 1.1
    section 2.2.3.1.1); ``named_only`` keeps only parts with a file name (an HTML form
    sends an empty part for a file field left empty). The client's file name is ignored."""
    if request.method != "POST" or not request.content_type.startswith("multipart/"):
        return {}
    files = _parsed(lambda: request.files)
    return {str(name): upload.file for name, upload in files.allitems()
            if upload.filename or not named_only}


def single(name: str, values: list[tuple[str, str]]) -> str | None:
    """The one value of ``name`` (case-insensitive), None if absent."""
    found = [value for key, value in values if key.lower() == name.lower()]
    if len(found) > 1:
        raise ParameterError(name, "given more than once")
    return found[0] if found else None


def required(name: str, values: list[tuple[str, str]]) -> str:
    value = single(name, values)
    if value is None:
        raise ParameterError(name, "required")
    return value


def discard_unread_body() -> None:
    """Read the body a refused request did not use (bounded by the body limit checked
    first), so that the client, still sending it, receives the error: answering and
    closing mid-upload makes it see a reset connection instead of the 4xx."""
    if "bottle.request.body" in request.environ:
        return  # bottle read it already
    stream = request.environ.get("wsgi.input")
    remaining = request.content_length
    while stream is not None and remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            break
        remaining -= len(chunk)
