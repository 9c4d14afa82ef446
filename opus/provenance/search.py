"""Search through provenance: which products were made how (``GET /provenance/search``).

A search finds *generated* entities (ProvenanceDM 1.0 section 2.2: an Entity with a
wasGeneratedBy relation to the Activity of a job run) and the runs that made them, by any
AND-combination of:

=================  =========================================================================
``activity``       the activity's name (ActivityDescription.name)
``version``        the activity description's version
``param``          ``name:value``, a parameter of the run (ActivityConfiguration); repeatable
``software``       ``package==version`` or ``package`` (any version) in the run's execution
                   context; package names compare case-insensitively; repeatable
``used``           an input: an entity id (``opus:ent-...``), a sha256, or a URL; repeatable
``sha256``         the sha256 of the product itself
``agent``          an agent associated with the run (wasAssociatedWith), by id or name
``after/before``   the run's end time, ISO 8601, both bounds inclusive
``phase``          how the run ended: COMPLETED, ERROR or ABORTED
``ancestors``      only entities upstream of this entity (what it was made from, through
                   used / wasGeneratedBy, as ProvSAP DIRECTION=BACK DEPTH=ALL)
``descendants``    only entities downstream of this entity (DIRECTION=FORTH)
``limit/offset``   paging (limit default 100, at most 1000), newest runs first
=================  =========================================================================

This module reads the request (:func:`parse_search`) and writes the answer
(:func:`hit_json`); the query itself is :mod:`opus.storage.provenance_search`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opus.errors import ParameterError
from opus.uws import params

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_OFFSET = 10_000_000
PHASES = ("COMPLETED", "ERROR", "ABORTED")
SINGLE = ("activity", "version", "sha256", "agent", "after", "before", "phase", "ancestors",
          "descendants", "limit", "offset")
REPEATABLE = ("param", "software", "used")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SearchQuery:
    activity: str | None = None
    version: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    #: (package, version or None for any version)
    software: tuple[tuple[str, str | None], ...] = ()
    #: (kind, value): kind is "entity", "sha256" or "url"
    used: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    agent: str | None = None
    after: dt.datetime | None = None
    before: dt.datetime | None = None
    phase: str | None = None
    ancestors: str | None = None
    descendants: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass
class SearchResult:
    hits: list[dict[str, Any]]
    #: More hits exist past this page.
    more: bool
    #: A lineage walk stopped at the node cap: some ancestors/descendants were not seen.
    truncated: bool


def entity_local_id(name: str, value: str, namespace: str) -> str:
    """``opus:ent-x``, ``{namespace}ent-x`` or ``ent-x`` -> ``ent-x``."""
    text = value.strip()
    for qualifier in (namespace, "opus:"):
        if text.startswith(qualifier):
            text = text[len(qualifier):]
            break
    if not text.startswith("ent-") or len(text) > 80:
        raise ParameterError(name, f"must be an entity identifier such as opus:ent-... "
                                   f"(got {params.shown(value)})")
    return text


def _sha256(name: str, value: str) -> str:
    text = value.strip()
    if not _SHA256.match(text):
        raise ParameterError(name, f"must be a sha256: 64 hexadecimal digits "
                                   f"(got {params.shown(value)})")
    return text.lower()


def _software(value: str) -> tuple[str, str | None]:
    package, separator, version = value.strip().partition("==")
    package, version = package.strip(), version.strip()
    if not _PACKAGE.match(package) or (separator and not version) or len(package) > 255:
        raise ParameterError("software", f"must be package==version or package "
                                         f"(got {params.shown(value)})")
    return package, (version if separator else None)


def _used(value: str, namespace: str) -> tuple[str, str]:
    text = value.strip()
    if _SHA256.match(text):
        return "sha256", text.lower()
    if text.startswith(("http://", "https://")):
        return "url", text
    return "entity", entity_local_id("used", text, namespace)


def parse_search(items: Sequence[tuple[str, str]], namespace: str) -> SearchQuery:
    """Read the search parameters (names case-insensitive, DALI 1.1 section 3.1); a bad
    value or an unknown parameter is a ParameterError that names it."""
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in REPEATABLE}
    for key, value in items:
        name = key.lower()
        if name in REPEATABLE:
            repeated[name].append(value)
        elif name in SINGLE:
            if name in single:
                raise ParameterError(name, "given more than once")
            single[name] = value
        else:
            raise ParameterError(params.shown(key), f"unknown parameter; use "
                                                    f"{', '.join(SINGLE + REPEATABLE)}")
    parameters = []
    for value in repeated["param"]:
        pname, separator, pvalue = value.partition(":")
        if not separator or not pname.strip():
            raise ParameterError("param", f"must be name:value (got {params.shown(value)})")
        parameters.append((pname.strip(), pvalue))
    phase = single.get("phase")
    if phase is not None:
        phase = phase.strip().upper()
        if phase not in PHASES:
            raise ParameterError("phase", f"must be one of {', '.join(PHASES)} "
                                          f"(got {params.shown(single['phase'])})")
    after = params.parse_datetime("after", single["after"]) if "after" in single else None
    before = params.parse_datetime("before", single["before"]) if "before" in single else None
    if after is not None and before is not None and after > before:
        raise ParameterError("before", "must not be earlier than after")
    return SearchQuery(
        activity=single.get("activity"),
        version=single.get("version"),
        parameters=tuple(parameters),
        software=tuple(_software(v) for v in repeated["software"]),
        used=tuple(_used(v, namespace) for v in repeated["used"]),
        sha256=_sha256("sha256", single["sha256"]) if "sha256" in single else None,
        agent=_agent(single.get("agent"), namespace),
        after=after, before=before, phase=phase,
        ancestors=(entity_local_id("ancestors", single["ancestors"], namespace)
                   if "ancestors" in single else None),
        descendants=(entity_local_id("descendants", single["descendants"], namespace)
                     if "descendants" in single else None),
        limit=(params.parse_int("limit", single["limit"], minimum=0, maximum=MAX_LIMIT)
               if "limit" in single else DEFAULT_LIMIT),
        offset=(params.parse_int("offset", single["offset"], minimum=0, maximum=MAX_OFFSET)
                if "offset" in single else 0),
    )


def _agent(value: str | None, namespace: str) -> str | None:
    if value is None:
        return None
    text = value.strip()
    for qualifier in (namespace, "opus:"):
        if text.startswith(qualifier):
            return text[len(qualifier):]
    if not text:
        raise ParameterError("agent", "must be an agent id or name")
    return text


def hit_json(row: dict[str, Any], root_url: str) -> dict[str, Any]:
    """One hit as the JSON answer shows it (identifiers qualified with ``opus:``)."""
    job_url = (f"{root_url}/rest/{row['activity']}/{row['job_id']}" if row["job_id"]
               else None)
    return {
        "id": f"opus:{row['id']}",
        "name": row["result_id"] or row["name"],
        "location": row["location"],
        "sha256": row["sha256"],
        "size": row["size"],
        "content_type": row["content_type"],
        "generated": params.format_datetime(row["generated_at_time"]) or None,
        "invalidated": params.format_datetime(row["invalidated_at_time"]) or None,
        "activity_id": f"opus:{row['activity_id']}",
        "activity": row["activity"],
        "version": row["version"],
        "phase": row["phase"],
        "end_time": params.format_datetime(row["end_time"]) or None,
        "job_id": row["job_id"],
        "job_url": job_url,
        "provenance_url": f"{root_url}/provsap?ID=opus:{row['id']}&DEPTH=ALL",
    }
