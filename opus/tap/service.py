"""ProvTAP: TAP 1.1 synchronous queries over the provenance record, for one identity.

The rules of a request (DALI 1.1 section 3, TAP 1.1 section 2.3): parameter names are
case-insensitive; ``REQUEST``, if given, is ``doQuery``; ``LANG`` is ``ADQL`` (or
``ADQL-2.0``); ``QUERY`` is required; ``MAXREC`` is a non-negative integer (default: the
setting ``tap_default_rows``; above ``tap_max_rows`` it is lowered to it; 0 asks for the
columns only); ``RESPONSEFORMAT`` (or ``FORMAT``) is a VOTable; ``UPLOAD`` is not
supported. Each problem is a :class:`ParameterError` (400) naming the parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opus.auth import Identity
from opus.config import Settings
from opus.errors import ParameterError
from opus.storage.provtap import ProvTapStore, TapSchema, Viewer
from opus.tap.adql import translate
from opus.tap.votable import VOTABLE_FORMATS, Limits, results_document

#: Why every /tap request fails on SQLite.
NEEDS_POSTGRESQL = ("ProvTAP needs PostgreSQL: this OPUS server stores its records in "
                    "SQLite (set database_url to a PostgreSQL database to serve /tap)")
LANGUAGES = frozenset({"ADQL", "ADQL-2.0"})


@dataclass(frozen=True)
class SyncQuery:
    """A validated synchronous request."""

    query: str
    maxrec: int


class ProvTap:
    """The TAP service: validation of requests, translation, the store."""

    def __init__(self, settings: Settings, store: ProvTapStore) -> None:
        self.settings = settings
        self.store = store

    @property
    def available(self) -> bool:
        return self.store.available

    @property
    def limits(self) -> Limits:
        return Limits(self.settings.tap_default_rows, self.settings.tap_max_rows,
                      self.settings.tap_timeout)

    def parse(self, parameters: Sequence[tuple[str, str]]) -> SyncQuery:
        """Check the parameters of a sync request (module docstring)."""
        values: dict[str, list[str]] = {}
        for name, value in parameters:
            values.setdefault(name.upper(), []).append(value)

        def one(name: str) -> str | None:
            found = values.get(name, [])
            if len(found) > 1:
                raise ParameterError(name, "given more than once")
            return found[0] if found else None

        request = one("REQUEST")
        if request is not None and request != "doQuery":
            raise ParameterError("REQUEST", f"must be doQuery (got {request!r})")
        lang = one("LANG")
        if lang is None:
            raise ParameterError("LANG", "required: ADQL")
        if lang.upper() not in LANGUAGES:
            raise ParameterError("LANG", f"only ADQL (ADQL 2.0) is supported (got {lang!r})")
        query = one("QUERY")
        if query is None:
            raise ParameterError("QUERY", "required: an ADQL query")
        maxrec = self.settings.tap_default_rows
        text = one("MAXREC")
        if text is not None:
            try:
                maxrec = int(text)
            except ValueError:
                maxrec = -1
            if maxrec < 0:
                raise ParameterError("MAXREC", f"must be a non-negative integer (got "
                                               f"{text!r})")
        maxrec = min(maxrec, self.settings.tap_max_rows)
        for name in ("RESPONSEFORMAT", "FORMAT"):
            requested = one(name)
            if requested is not None and \
                    requested.replace(" ", "").lower() not in VOTABLE_FORMATS:
                raise ParameterError(name, f"only VOTable (votable, "
                                           f"application/x-votable+xml) is supported "
                                           f"(got {requested!r})")
        if one("UPLOAD") is not None:
            raise ParameterError("UPLOAD", "table uploads are not supported")
        return SyncQuery(query, maxrec)

    def run(self, identity: Identity, request: SyncQuery) -> bytes:
        """The VOTable answer of ``request`` for ``identity``."""
        translated = translate(request.query)
        result = self.store.run(translated.sql, Viewer(identity.key, identity.admin),
                                request.maxrec, self.settings.tap_timeout)
        return results_document(result, request.query, request.maxrec)

    def tap_schema(self) -> TapSchema:
        return self.store.tap_schema()
