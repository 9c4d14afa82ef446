"""Parsing of the UWS control values (PHASE, AFTER, LAST, WAIT, DESTRUCTION, ...).

Each parser raises :class:`opus.errors.ParameterError` naming the parameter and the rule,
so a client mistake is a 400 with a useful message, never a 500.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable

from opus.errors import ParameterError
from opus.uws.models import Phase

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def shown(text: str, limit: int = 60) -> str:
    """A client's value quoted back in a message, shortened so a huge one stays readable."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def format_datetime(value: dt.datetime | None) -> str:
    """ISO 8601 in UTC with milliseconds and 'Z' (UWS 1.1 section 2.2.1)."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(name: str, text: str) -> dt.datetime:
    """An ISO 8601 instant as naive UTC; a value without zone is taken as UTC."""
    match = _ISO.match(text.strip())
    if not match:
        raise ParameterError(name, f"must be an ISO 8601 date and time, e.g. "
                                   f"2026-01-31T12:00:00Z (got {shown(text)})")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        value = dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0),
            int(second or 0), int((fraction or "0").ljust(6, "0")[:6]),
        )
    except ValueError as error:
        raise ParameterError(name, f"not a valid date ({error}; got {text!r})") from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise ParameterError(name, f"not a valid time zone offset {zone!r} "
                                       f"(got {shown(text)})")
        try:
            # An offset can push 0001-01-01 or 9999-12-31 out of the representable range.
            value -= sign * dt.timedelta(hours=hours, minutes=minutes)
        except OverflowError:
            raise ParameterError(name, f"out of the supported range of dates "
                                       f"(got {shown(text)})") from None
    return value


def parse_phases(values: Iterable[str]) -> list[str]:
    """PHASE filters of the job list (UWS 1.1 section 2.2.2.1)."""
    phases = []
    for value in values:
        phase = value.strip().upper()
        if phase not in Phase.ALL:
            raise ParameterError("PHASE", f"must be one of {', '.join(sorted(Phase.ALL))} "
                                          f"(got {shown(value)})")
        phases.append(phase)
    return phases


#: Largest integer a client may send where the value reaches an SQL INTEGER column.
INT_MAX = 2**31 - 1


def parse_int(name: str, text: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:  # also digit strings beyond int()'s limit
        raise ParameterError(name, f"must be an integer (got {shown(text)})") from None
    if minimum is not None and value < minimum:
        raise ParameterError(name, f"must be at least {minimum} (got {value})")
    if maximum is not None and value > maximum:
        raise ParameterError(name, f"must be at most {maximum} (got {value})")
    return value


def parse_last(text: str) -> int:
    """LAST of the job list: an integer greater than 0 (UWS 1.1 section 2.2.2.1). A value
    beyond any possible number of jobs means all of them (it would overflow SQL LIMIT)."""
    value = parse_int("LAST", text, minimum=1)
    return min(value, INT_MAX)


def parse_wait(text: str, cap: float) -> float:
    """WAIT seconds: -1 means as long as the server allows (UWS 1.1 section 2.2.1.2)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ParameterError("WAIT", f"must be an integer number of seconds "
                                     f"(got {shown(text)})") from None
    if math.isnan(value) or (value < 0 and value != -1):
        raise ParameterError("WAIT", f"must be -1 or a number of seconds >= 0 (got {shown(text)})")
    return cap if value < 0 else min(value, cap)
