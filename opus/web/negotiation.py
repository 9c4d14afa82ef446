"""Content negotiation by ``Accept`` (RFC 9110 section 12.5.1), one rule for every resource.

Each resource has a standard format (UWS XML, plain text for the single-valued job
properties, JSON for the activity list...) and may offer others (JSON, HTML). The standard
format is kept when there is no ``Accept``, for ``*/*`` and on every tie: a client that does
not ask for something else gets what its standard says (UWS 1.1 section 2.2.2). Another
format is chosen only when the client gives it a strictly higher quality.

Media ranges are parsed by python-mimeparse (the most specific range that matches a type
gives its q value; a q that is not a number in [0, 1] counts as absent, i.e. 1). Media
types are compared case-insensitively, and a range that cannot be parsed is skipped, so a
garbled header never turns into an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import mimeparse

MediaRange = tuple[str, str, dict[str, str]]


def media_ranges(accept: str) -> list[MediaRange]:
    """The parsed ranges of an ``Accept`` header, unparsable ones left out."""
    ranges = []
    for item in accept.lower().split(","):
        if not item.strip():
            continue
        try:
            ranges.append(mimeparse.parse_media_range(item))
        except (mimeparse.MimeTypeParseException, ValueError):
            continue
    return ranges


def accept_quality(accept: str, media_type: str) -> float:
    """The q value an ``Accept`` header gives ``media_type`` (0 if nothing matches)."""
    return float(mimeparse.quality_parsed(media_type.lower(), media_ranges(accept)))


def prefers(accept: str | None, wanted: str, alternatives: Sequence[str]) -> bool:
    """Whether ``wanted`` has a strictly higher quality than each of ``alternatives``
    (the resource's standard format and its synonyms)."""
    if not accept:
        return False
    ranges = media_ranges(accept)
    q = float(mimeparse.quality_parsed(wanted.lower(), ranges))
    return q > 0 and all(q > float(mimeparse.quality_parsed(other.lower(), ranges))
                         for other in alternatives)
