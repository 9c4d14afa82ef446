"""Security headers of every answer, decided in this one place.

Files from job folders (results, uploaded inputs) are the bytes of an activity or of a
client, served under the media type the description declares: a browser must neither guess
another type nor run script in them, even if the bytes are HTML or SVG. So every answer says
``X-Content-Type-Options: nosniff``, and everything that is not an OPUS page (the HTML that
OPUS writes itself: the activity list, the forms) carries :data:`CONTENT_POLICY`: nothing is
loaded but images from this server or ``data:`` URLs and inline style (what a provenance SVG
uses), and ``sandbox`` gives the document a unique origin with scripts, forms, plugins and
pop-ups disabled. A served file is foreign content whatever its media type (an activity may
declare ``text/html``): its handler marks it with :func:`foreign`.
"""

from __future__ import annotations

from pathlib import Path

import bottle
from bottle import HTTPResponse, request, response

#: The Content-Security-Policy of results, uploads, pictures and every document that is
#: not an OPUS page.
CONTENT_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"

#: The Content-Security-Policy of OPUS's own documents that are not pages (the provenance
#: SVG): loaded with this server's origin, so a page can embed them and their links
#: navigate, but nothing runs and nothing is loaded from elsewhere.
DOCUMENT_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"

_FOREIGN = "opus.foreign_content"
_OWN_DOCUMENT = "opus.own_document"


def foreign(answer: HTTPResponse) -> HTTPResponse:
    """Mark ``answer`` as content OPUS did not write (it gets :data:`CONTENT_POLICY`)."""
    request.environ[_FOREIGN] = True
    return answer


def own_document(answer: HTTPResponse) -> HTTPResponse:
    """Mark ``answer`` as a document OPUS wrote that embeds no script (it gets
    :data:`DOCUMENT_POLICY`)."""
    request.environ[_OWN_DOCUMENT] = True
    return answer


def serve_file(path: Path, media_type: str) -> HTTPResponse:
    """A file of a job folder (a result, an upload), with Content-Length, Range, HEAD
    and conditional requests (bottle's ``static_file``), as foreign content."""
    return foreign(bottle.static_file(path.name, root=str(path.parent), mimetype=media_type))


def is_opus_page() -> bool:
    return (not request.environ.get(_FOREIGN)
            and response.content_type.split(";")[0].strip().lower() == "text/html")


def add_security_headers() -> None:
    """bottle ``after_request`` hook: the headers of this module on the answer."""
    response.set_header("X-Content-Type-Options", "nosniff")
    if request.environ.get(_OWN_DOCUMENT) and not request.environ.get(_FOREIGN):
        response.set_header("Content-Security-Policy", DOCUMENT_POLICY)
    elif not is_opus_page():
        response.set_header("Content-Security-Policy", CONTENT_POLICY)


def install(app: bottle.Bottle) -> None:
    app.add_hook("after_request", add_security_headers)
