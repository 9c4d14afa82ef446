"""A dataset a form is opened for: an ObsCore row, given by its fields or by its identifier.

Two ways in, as a science gateway meets them:

- the ObsCore fields themselves (``access_url``, ``s_ra``, ``s_dec``, ``t_min``...), as a
  DataLink client passes a row's columns to a service descriptor whose input PARAMs
  ``ref`` them (DataLink 1.1 section 4.3): :func:`dataset_from_fields`; the values are in
  ObsCore's units (ObsCore 1.1);
- the row's ``obs_publisher_did``, resolved by a TAP 1.1 synchronous query (``/sync``)
  of the ObsCore table of the TAP service the operator configured (settings
  ``obscore_tap_url``, ``obscore_table``): :class:`ObsCoreResolver`. The units are then the
  result FIELDs' own.

The identifier reaches the ADQL text only as a string literal with its quotes doubled
(ADQL 2.0 section 2.1, literals), after a check of its length and characters; the TAP service is
the operator's, its answer is read with a size and time limit, and a TAP service that
cannot answer is a temporary fault of this server (503), not the user's mistake.
"""

from __future__ import annotations

import io
import logging
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from opus.activities.obscore import BY_NAME, FIELDS, DatasetValue
from opus.errors import NotFoundError, ParameterError, ServiceUnavailableError

__all__ = ["DID_FIELD", "Dataset", "ObsCoreResolver", "dataset_from_fields",
           "requested_dataset"]

log = logging.getLogger(__name__)

DID_FIELD = "obs_publisher_did"
#: Longest field value accepted from a request (an access_url, a DID, a region).
MAX_VALUE = 2000
#: Characters that are no XML 1.0 Char (section 2.2), and DEL: refused in any field.
_NOT_TEXT = re.compile("[^\u0020-\u007e\u0080-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Largest TAP answer read for one row.
MAX_ANSWER = 4 * 1024 * 1024


@dataclass(frozen=True)
class Dataset:
    """An ObsCore row: its fields by column name, in ObsCore's order, each with its unit,
    and the description of each column (the TAP FIELD's, else ObsCore's)."""

    values: Mapping[str, DatasetValue]
    descriptions: Mapping[str, str]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(name, value, unit, description) of each field, for a page."""
        return [(name, value.text, value.unit or "", self.descriptions.get(name, ""))
                for name, value in self.values.items()]


def _checked(name: str, text: str) -> str:
    if len(text) > MAX_VALUE:
        raise ParameterError(name, f"at most {MAX_VALUE} characters (got {len(text)})")
    if _NOT_TEXT.search(text):
        raise ParameterError(name, "must not contain control characters or other "
                                   "characters XML cannot hold")
    return text.strip()


def dataset_from_fields(items: Iterable[tuple[str, str]]) -> Dataset | None:
    """The dataset the request's ObsCore fields describe (None: it names none). Field names
    compare case-insensitively (DALI 1.1 section 3.1); a field given twice is a 400. ``ID``
    is the ``obs_publisher_did``, as in a DataLink request (DataLink 1.1 section 3.2.1)."""
    values: dict[str, DatasetValue] = {}
    for key, text in items:
        name = key.strip().lower()
        name = DID_FIELD if name == "id" else name
        if name not in BY_NAME:
            continue
        if name in values:
            raise ParameterError(name, "given more than once" + (
                " (ID is the obs_publisher_did)" if name == DID_FIELD else ""))
        values[name] = DatasetValue(_checked(name, text), BY_NAME[name].unit)
    if not values:
        return None
    ordered = {field.name: values[field.name] for field in FIELDS if field.name in values}
    return Dataset(ordered, {name: BY_NAME[name].description for name in ordered})


def _text(value: Any) -> str | None:
    """A VOTable cell as text (None: null)."""
    if value is None or value is _masked():
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _masked() -> Any:
    import numpy.ma

    return numpy.ma.masked


class ObsCoreResolver:
    """Finds a dataset by its ``obs_publisher_did`` in the configured ObsCore table."""

    def __init__(self, tap_url: str, table: str, timeout: float) -> None:
        self.tap_url = tap_url.rstrip("/")
        self.table = table
        self.timeout = timeout

    def query(self, did: str) -> str:
        literal = did.replace("'", "''")
        return f"SELECT * FROM {self.table} WHERE {DID_FIELD} = '{literal}'"

    def resolve(self, did: str) -> Dataset:
        """The row of ``did``: ParameterError if no TAP service is configured or the DID is
        malformed, NotFoundError if the table has no such row, ServiceUnavailableError if
        the service does not answer in time or answers an error."""
        did = _checked(DID_FIELD, did)
        if not did:
            raise ParameterError(DID_FIELD, "must not be empty")
        if not self.tap_url:
            raise ParameterError(DID_FIELD, "this service has no ObsCore TAP service to "
                                            "resolve identifiers (setting obscore_tap_url); "
                                            "pass the dataset's ObsCore fields instead")
        body = urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "MAXREC": "2",
                          "QUERY": self.query(did)}).encode()
        request = urllib.request.Request(f"{self.tap_url}/sync", data=body, method="POST",
                                         headers={"Accept": "application/x-votable+xml"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                data = answer.read(MAX_ANSWER + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("ObsCore TAP service %s: %s", self.tap_url, exc)
            raise ServiceUnavailableError(f"the ObsCore TAP service did not answer: {exc}",
                                          retry_after=30) from exc
        if len(data) > MAX_ANSWER:
            raise ServiceUnavailableError("the ObsCore TAP service answered more than "
                                          f"{MAX_ANSWER} bytes for one row")
        return self._row(did, data)

    def _row(self, did: str, data: bytes) -> Dataset:
        from astropy.io.votable import parse
        from astropy.io.votable.exceptions import VOWarning

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VOWarning)
                document = parse(io.BytesIO(data), verify="ignore")
        except Exception as exc:  # any unreadable answer is the TAP service's fault
            raise ServiceUnavailableError(f"the ObsCore TAP service answered no VOTable: "
                                          f"{exc}") from exc
        for resource in document.resources:
            for info in resource.infos:
                if info.name == "QUERY_STATUS" and str(info.value).upper() == "ERROR":
                    raise ServiceUnavailableError("the ObsCore TAP service refused the query:"
                                                  f" {(info.content or '').strip()[:300]}")
        tables = list(document.iter_tables())
        if not tables or len(tables[0].array) == 0:
            raise NotFoundError(f"{DID_FIELD}: no dataset {did!r} in {self.table}")
        table = tables[0]
        row = table.array[0]
        values: dict[str, DatasetValue] = {}
        descriptions: dict[str, str] = {}
        for field in table.fields:
            name = (field.name or field.ID or "").lower()
            text = _text(row[field.name or field.ID])
            if not name or text is None:
                continue
            unit = str(field.unit) if field.unit is not None else None
            values[name] = DatasetValue(text, unit or (BY_NAME[name].unit
                                                       if name in BY_NAME else None))
            descriptions[name] = (field.description or (BY_NAME[name].description
                                                        if name in BY_NAME else "")).strip()
        return Dataset(values, descriptions)


def requested_dataset(items: list[tuple[str, str]], resolver: ObsCoreResolver
                      ) -> Dataset | None:
    """The dataset a request names (None: none). An ``obs_publisher_did`` is resolved
    when a TAP service is configured; otherwise, or when the request passes no identifier,
    the ObsCore fields it carries are the dataset (a DataLink client sends them all)."""
    fields = dataset_from_fields(items)
    if fields is None or DID_FIELD not in fields.values:
        return fields
    if resolver.tap_url or len(fields.values) == 1:
        return resolver.resolve(fields.values[DID_FIELD].text)
    return fields
