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


def parse_phases(values: Iterable[str]) -> list[Phase]:
    """PHASE filters of the job list (UWS 1.1 section 2.2.2.1)."""
    phases = []
    for value in values:
        try:
            phases.append(Phase(value.strip().upper()))
        except ValueError:
            raise ParameterError("PHASE", f"must be one of {', '.join(sorted(Phase))} "
                                          f"(got {shown(value)})") from None
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


# -- job control parameters (UWS 1.1 section 2.2.3.1) ----------------------------------
#: UWS job-control parameters that may accompany a creation POST (UWS 1.1 section 2.2.3.1);
#: compared case-insensitively like every parameter name (DALI 1.1 section 3.1).
CONTROL_PARAMETERS = {"phase", "runid", "executionduration", "destruction", "action"}
#: Longest parameter name considered; longer ones cannot be any activity's.
MAX_NAME_LENGTH = 256
#: Characters outside XML 1.0's Char production (XML 1.0 section 2.2).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def plausible_job_id(job_id: str) -> bool:
    """Whether ``job_id`` could name a stored job; anything else is not looked up (the
    database may refuse it: PostgreSQL rejects NUL characters in a query)."""
    return len(job_id) <= 64 and _NOT_XML.search(job_id) is None


def split_control(submitted: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Separate UWS control parameters from the activity's own; a name given twice is a
    mistake (these parameters take one value)."""
    control: dict[str, str] = {}
    activity: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in submitted:
        if len(name) > MAX_NAME_LENGTH:
            raise ParameterError(shown(name), f"unknown parameter (a name of "
                                                     f"{len(name)} characters)")
        check_text(name, value)
        key = name.lower()
        if key in seen:
            raise ParameterError(name, "given more than once")
        seen.add(key)
        if key in CONTROL_PARAMETERS:
            control[key] = value
        else:
            activity[name] = value
    return control, activity


def check_text(name: str, value: str) -> None:
    """Every value reappears in the UWS XML documents (UWS 1.1 section 2.2.2.4: a value
    that cannot be represented legally within XML would have to be passed by reference),
    so characters XML 1.0 does not allow are refused here, not met as a 500 later."""
    match = _NOT_XML.search(value)
    if match is not None:
        raise ParameterError(name, f"contains the character U+{ord(match.group()):04X}, "
                                   f"which XML documents cannot carry")


def run_id(control: dict[str, str]) -> str | None:
    """RUNID as given (UWS 1.1 section 2.1.9: no processing), within the stored length."""
    run_id = control.get("runid")
    if run_id is not None and len(run_id) > 255:
        raise ParameterError("RUNID", "must be at most 255 characters")
    return run_id
