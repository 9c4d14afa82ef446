"""Checking submitted parameters against ParameterDescriptions."""

from __future__ import annotations

import pytest

from opus.activities.model import ActivityDescription, Option, ParameterDescription as P
from opus.activities.validation import validate_parameters
from opus.errors import ParameterError

ACTIVITY = ActivityDescription(
    name="demo",
    command=("true",),
    parameters=(
        P("text", "char", arraysize="*"),  # required
        P("duration", "double", default="1", minimum="0", maximum="3600"),
        P("count", "int", default="3", minimum="1", maximum="10",
          minimum_inclusive=False, maximum_inclusive=False),
        P("small", "unsignedByte", default="0"),
        P("flag", "boolean", default="false"),
        P("mode", "char", default="fast", options=(Option("fast"), Option("slow", "Slow"))),
        P("level", "int", default="1", options=(Option("1"), Option("2"))),
        P("code", "char", arraysize="5*", default="ab"),
        P("fixed", "char", arraysize="3", default="abc"),
        P("vector", "double", arraysize="3", default="0 0 0", minimum="-1"),
        P("some", "int", arraysize="2*", default="1"),
        P("file", "char", xtype="application/octet-stream", default="none"),
    ),
)
DEFAULTS = {p.name: p.default for p in ACTIVITY.parameters if p.default is not None}


def check(**submitted: str) -> dict[str, str]:
    return validate_parameters(ACTIVITY, {"text": "hi", **submitted})


def rejects(parameter: str, rule: str, submitted: dict[str, str], *, partial: bool = False) -> None:
    with pytest.raises(ParameterError) as caught:
        validate_parameters(ACTIVITY, submitted, partial=partial)
    assert caught.value.parameter == parameter
    assert caught.value.rule == rule
    assert str(caught.value) == f"{parameter}: {rule}"


def test_defaults_are_filled_in():
    assert check() == {"text": "hi", **DEFAULTS}


def test_names_are_case_insensitive_and_returned_in_the_description_spelling():
    result = validate_parameters(ACTIVITY, {"TEXT": "x", "Duration": "2.5"})
    assert result["text"] == "x" and result["duration"] == "2.5"
    assert "TEXT" not in result and "Duration" not in result


def test_same_parameter_twice_in_different_case():
    rejects("text", "given more than once (as 'text' and 'Text')", {"text": "a", "Text": "b"})


def test_unknown_parameter():
    names = ", ".join(p.name for p in ACTIVITY.parameters)
    rejects("colour", f"unknown parameter; this activity accepts: {names}", {"text": "a", "colour": "red"})


def test_required_parameter():
    rejects("text", "required", {})
    rejects("text", "required", {"text": ""})  # an empty form field is not a value


def test_empty_value_takes_the_default():
    assert check(duration="")["duration"] == "1"


def test_integer():
    assert check(count="+007")["count"] == "7"
    assert check(count=" 5 ")["count"] == "5"
    rejects("count", "must be an integer (got '2.5')", {"text": "a", "count": "2.5"})
    rejects("count", "must be an integer (got '1_0')", {"text": "a", "count": "1_0"})
    rejects("small", "must be a unsignedByte between 0 and 255 (got 256)", {"text": "a", "small": "256"})


def test_float():
    assert check(duration="1e3")["duration"] == "1e3"
    assert check(duration=" .5 ")["duration"] == ".5"
    rejects("duration", "must be a finite number (got 'abc')", {"text": "a", "duration": "abc"})


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_nan_and_infinity_are_rejected(value: str):
    rejects("duration", f"must be a finite number (got {value!r})", {"text": "a", "duration": value})


@pytest.mark.parametrize("value, normalised", [
    ("true", "true"), ("TRUE", "true"), ("yes", "true"), ("1", "true"),
    ("false", "false"), ("No", "false"), ("0", "false"),
])
def test_boolean_normalised(value: str, normalised: str):
    assert check(flag=value)["flag"] == normalised


def test_boolean_rejects_other_text():
    rejects("flag", "must be true, false, yes, no, 1 or 0 (got 'maybe')", {"text": "a", "flag": "maybe"})


def test_inclusive_bounds():
    assert check(duration="0")["duration"] == "0"
    assert check(duration="3600")["duration"] == "3600"
    rejects("duration", "must be at most 3600 (got 7200)", {"text": "a", "duration": "7200"})
    rejects("duration", "must be at least 0 (got -0.5)", {"text": "a", "duration": "-0.5"})


def test_exclusive_bounds():
    assert check(count="2")["count"] == "2"
    assert check(count="9")["count"] == "9"
    rejects("count", "must be greater than 1 (got 1)", {"text": "a", "count": "1"})
    rejects("count", "must be less than 10 (got 10)", {"text": "a", "count": "10"})


def test_options():
    assert check(mode="slow")["mode"] == "slow"
    rejects("mode", "must be one of: fast, slow (got 'Slow')", {"text": "a", "mode": "Slow"})
    assert check(level="02")["level"] == "2"  # numbers compare by value
    rejects("level", "must be one of: 1, 2 (got '3')", {"text": "a", "level": "3"})


def test_char_arraysize_bounds_length():
    assert check(code="abcde")["code"] == "abcde"
    rejects("code", "must be at most 5 characters long (got 6)", {"text": "a", "code": "abcdef"})
    assert check(fixed="ab")["fixed"] == "ab"
    rejects("fixed", "must be at most 3 characters long (got 4)", {"text": "a", "fixed": "abcd"})


def test_numeric_arrays():
    assert check(vector=" 1  2.5 -1 ")["vector"] == "1 2.5 -1"
    rejects("vector", "must be 3 space-separated values (got 2: '1 2')", {"text": "a", "vector": "1 2"})
    rejects("vector", "must be at least -1 (got -2)", {"text": "a", "vector": "0 -2 0"})
    assert check(some="4 5")["some"] == "4 5"
    rejects("some", "must be 1 to 2 space-separated values (got 3: '1 2 3')", {"text": "a", "some": "1 2 3"})
    rejects("some", "must be an integer (got 'x')", {"text": "a", "some": "1 x"})


def test_file_parameters_are_text_for_now():
    assert check(file="anything at all")["file"] == "anything at all"


def test_partial_checks_only_what_is_submitted():
    assert validate_parameters(ACTIVITY, {"Duration": "5"}, partial=True) == {"duration": "5"}
    assert validate_parameters(ACTIVITY, {}, partial=True) == {}
    rejects("duration", "must be at most 3600 (got 9999)", {"duration": "9999"}, partial=True)
    rejects("colour", f"unknown parameter; this activity accepts: "
                      f"{', '.join(p.name for p in ACTIVITY.parameters)}", {"colour": "x"}, partial=True)


def test_long_bad_values_are_shortened_in_messages():
    with pytest.raises(ParameterError) as caught:
        check(count="9" * 50 + "x" * 50)
    assert len(caught.value.rule) < 100 and caught.value.rule.endswith("...')")
