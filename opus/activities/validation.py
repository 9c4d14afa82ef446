"""Check submitted job parameters against an activity's ParameterDescriptions.

A value is checked against the ``valueType`` of its ParameterDescription (ProvenanceDM 1.0,
section 2.6.2: datatype, arraysize and xtype as in VOTable 1.3 section 4.1), then against
``min`` / ``max`` and ``options`` (VOTable ``VALUES``, section 4.6). Names are compared
case-insensitively (DALI 1.1 section 3.1) and returned in the description's spelling, so
everything downstream (the job record, environment variables, the JSON file) sees one name.

Every failure is a :class:`~opus.errors.ParameterError` whose rule names what was broken
and the value that broke it, e.g. ``duration: must be at most 3600 (got 7200)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from opus.activities.model import (
    BOOLEAN_DATATYPES,
    FLOAT_DATATYPES,
    INTEGER_DATATYPES,
    TEXT_DATATYPES,
    ActivityDescription,
    ParameterDescription,
)
from opus.errors import ParameterError

__all__ = ["check_value", "parse_arraysize", "parse_number", "validate_parameters"]

#: Value ranges of the VOTable integer datatypes (VOTable 1.3, section 2.1, table 1).
INTEGER_RANGES = {
    "unsignedByte": (0, 255),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ARRAYSIZE = re.compile(r"([0-9]+)?(\*)?")
_BOOLEANS = {"true": "true", "1": "true", "yes": "true", "false": "false", "0": "false", "no": "false"}
_SHOWN = 60  # longest bad value quoted back in a message


def validate_parameters(
    activity: ActivityDescription, submitted: Mapping[str, str], *, partial: bool = False
) -> dict[str, str]:
    """Return the effective parameters of a job, or raise ParameterError for the first bad one.

    The result holds the submitted values, normalised, under the description's spelling of
    each name, plus the default of every parameter not submitted. An empty value counts as
    not submitted (an HTML form sends empty fields), so it takes the default or, for a
    parameter without one, fails as ``required``. With ``partial=True`` (a parameter update
    of a PENDING job, UWS 1.1 section 2.2.3.1) only the submitted values are checked and
    returned: no defaults are added and missing required parameters are not reported.
    """
    given: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in submitted.items():
        parameter = activity.parameter(name)
        if parameter is None:
            accepted = ", ".join(p.name for p in activity.parameters) or "(none)"
            raise ParameterError(name, f"unknown parameter; this activity accepts: {accepted}")
        if parameter.name in seen:
            raise ParameterError(
                parameter.name, f"given more than once (as {seen[parameter.name]!r} and {name!r})"
            )
        seen[parameter.name] = name
        given[parameter.name] = value

    result: dict[str, str] = {}
    for parameter in activity.parameters:
        if parameter.name in given and given[parameter.name] != "":
            result[parameter.name] = check_value(parameter, given[parameter.name])
        elif partial and parameter.name not in given:
            continue
        elif parameter.default is None:
            raise ParameterError(parameter.name, "required")
        else:
            result[parameter.name] = parameter.default
    return result


def check_value(parameter: ParameterDescription, value: str) -> str:
    """Check one value against a description; return it normalised.

    Integers are returned in canonical form (``"+007"`` -> ``"7"``), booleans as ``"true"``
    or ``"false"``, floats stripped of surrounding blanks, numeric arrays with single spaces.
    Text is returned unchanged. File inputs (``xtype="application/octet-stream"``) are
    checked as text for now.
    """
    name, datatype = parameter.name, parameter.datatype
    try:
        count = parse_arraysize(parameter.arraysize)
    except ValueError as exc:
        raise ParameterError(name, str(exc)) from None

    if datatype in TEXT_DATATYPES:
        if count is not None and count[0] is not None and len(value) > count[0]:
            raise ParameterError(
                name, f"must be at most {count[0]} characters long (got {len(value)})"
            )
        _check_options(parameter, value, value)
        return value

    if count is None or count == (1, True):
        items = [value.strip()]
    else:
        items = value.split()
        size, fixed = count
        if not items or (size is not None and (len(items) > size or fixed and len(items) != size)):
            wanted = f"{size}" if fixed else f"1 to {size}" if size is not None else "1 or more"
            raise ParameterError(
                name, f"must be {wanted} space-separated values (got {len(items)}: {_show(value)})"
            )
    normalised = [_check_item(parameter, item) for item in items]
    text = " ".join(normalised)
    _check_options(parameter, text, value)
    return text


def parse_number(datatype: str, text: str) -> int | float:
    """Parse ``text`` as a finite value of a numeric VOTable datatype; ValueError says why."""
    text = text.strip()
    if datatype in INTEGER_DATATYPES:
        if not _INTEGER_TEXT.fullmatch(text):
            raise ValueError(f"must be an integer (got {_show(text)})")
        number = int(text)
        low, high = INTEGER_RANGES[datatype]
        if not low <= number <= high:
            raise ValueError(f"must be a {datatype} between {low} and {high} (got {number})")
        return number
    if datatype in FLOAT_DATATYPES:
        if not _FLOAT_TEXT.fullmatch(text):
            raise ValueError(f"must be a finite number (got {_show(text)})")
        real = float(text)
        if not math.isfinite(real):
            raise ValueError(f"must be a finite number (got {_show(text)})")
        return real
    raise ValueError(f"datatype {datatype!r} is not numeric")


def parse_arraysize(arraysize: str | None) -> tuple[int | None, bool] | None:
    """Parse a one-dimensional VOTable arraysize (VOTable 1.3 section 2.2).

    None (no arraysize, a scalar) -> None; ``"5"`` -> ``(5, True)`` (exactly 5);
    ``"5*"`` -> ``(5, False)`` (at most 5); ``"*"`` -> ``(None, False)`` (any number).
    Multidimensional sizes (``"2x3"``) are not supported and raise ValueError.
    """
    if arraysize is None:
        return None
    match = _ARRAYSIZE.fullmatch(arraysize.strip())
    if not match or arraysize.strip() == "" or match.group(1) == "0":
        raise ValueError(f"unsupported arraysize {arraysize!r} (use N, N* or *)")
    size = int(match.group(1)) if match.group(1) else None
    return size, match.group(2) is None


def _check_item(parameter: ParameterDescription, item: str) -> str:
    """Check one scalar of a numeric or boolean parameter, including MIN / MAX."""
    if parameter.datatype in BOOLEAN_DATATYPES:
        normalised = _BOOLEANS.get(item.lower())
        if normalised is None:
            raise ParameterError(
                parameter.name, f"must be true, false, yes, no, 1 or 0 (got {_show(item)})"
            )
        return normalised
    try:
        number = parse_number(parameter.datatype, item)
    except ValueError as exc:
        raise ParameterError(parameter.name, str(exc)) from None
    if parameter.minimum is not None:
        low = parse_number(parameter.datatype, parameter.minimum)
        if number < low or (number == low and not parameter.minimum_inclusive):
            rule = "at least" if parameter.minimum_inclusive else "greater than"
            raise ParameterError(parameter.name, f"must be {rule} {parameter.minimum} (got {item})")
    if parameter.maximum is not None:
        high = parse_number(parameter.datatype, parameter.maximum)
        if number > high or (number == high and not parameter.maximum_inclusive):
            rule = "at most" if parameter.maximum_inclusive else "less than"
            raise ParameterError(parameter.name, f"must be {rule} {parameter.maximum} (got {item})")
    return str(number) if isinstance(number, int) else item


def _check_options(parameter: ParameterDescription, normalised: str, original: str) -> None:
    """A value must equal one of the OPTIONs, if any (VOTable 1.3 section 4.6).

    Numbers are compared by value, so ``1.0`` matches an option ``1``.
    """
    if not parameter.options:
        return
    for option in parameter.options:
        if _same(parameter.datatype, option.value, normalised):
            return
    allowed = ", ".join(option.value for option in parameter.options)
    raise ParameterError(parameter.name, f"must be one of: {allowed} (got {_show(original)})")


def _same(datatype: str, option: str, value: str) -> bool:
    if datatype in TEXT_DATATYPES:
        return option == value
    left, right = option.split(), value.split()
    if len(left) != len(right):
        return False
    for a, b in zip(left, right):
        if datatype in BOOLEAN_DATATYPES:
            if _BOOLEANS.get(a.lower()) != b:
                return False
            continue
        try:
            if parse_number(datatype, a) != parse_number(datatype, b):
                return False
        except ValueError:
            return False
    return True


def _show(value: str) -> str:
    """Quote a bad value back to the client, shortened so a huge value stays readable."""
    if len(value) > _SHOWN:
        value = value[:_SHOWN] + "..."
    return repr(value)
