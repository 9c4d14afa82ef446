"""Sending a result to TOPCAT, Aladin, DS9...: SAMP through its Web Profile (SAMP 1.3).

A page cannot open the desktop's SAMP connection itself; the Web Profile (SAMP 1.3
section 5) lets it: the browser registers with the hub on the user's machine (XML-RPC over
HTTP to ``http://localhost:21012/``; the hub asks the user to allow it) and
sends a notification to every subscribed client. The page does that in
``static/samp.js``, without anything from another site; here are what the pages need:

- which message a result becomes (SAMP 1.3 section 6, MTypes; these two are from the
  IVOA's list of MTypes):
  a FITS file ``image.load.fits``, a VOTable (a result, the job's PROV-VOTABLE)
  ``table.load.votable``; other results have no SAMP button;
- the source the pages' Content-Security-Policy must allow scripts to connect to (the hub,
  setting ``samp_hub_url``).

The message carries the result's URL, which the receiving application fetches itself: a
result the anonymous public may read (an anonymous job's, a published one) is loaded by
any client; a private one needs the owner's credentials, which TOPCAT does not have.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["connect_source", "samp_mtype"]

IMAGE_FITS = "image.load.fits"
TABLE_VOTABLE = "table.load.votable"
_MTYPES = {"application/fits": IMAGE_FITS, "image/fits": IMAGE_FITS,
           "application/x-votable+xml": TABLE_VOTABLE,
           "application/x-votable": TABLE_VOTABLE, "text/xml;content=votable": TABLE_VOTABLE}


def samp_mtype(media_type: str | None) -> str | None:
    """The MType that loads a result of ``media_type`` (None: SAMP has none for it)."""
    if not media_type:
        return None
    bare = media_type.split(";")[0].strip().lower()
    if bare == "text/xml" and "votable" in media_type.lower():
        return TABLE_VOTABLE
    return _MTYPES.get(bare)


def connect_source(hub_url: str) -> str:
    """The CSP source of the hub (``http://localhost:21012``); empty if there is none."""
    parts = urlsplit(hub_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"
