"""Fuzzing, bounded so CI stays fast: no 5xx from any documented operation, and the two
parsers of untrusted text (the description reader, the parameter validator) fail only with
their own errors.

- schemathesis drives every operation of ``/openapi.json`` in-process (WSGI) with values
  generated from the document's own schemas, valid and invalid;
- hypothesis mutates a real ActivityDescription file byte by byte and feeds arbitrary text
  to every parameter of every shipped activity.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from opus.activities.registry import ActivityRegistry
from opus.activities.validation import validate_parameters
from opus.activities.votable import ActivityDescriptionError, parse_activity
from opus.errors import ParameterError

schemathesis = pytest.importorskip("schemathesis")

#: Examples per operation; raise locally with OPUS_FUZZ_EXAMPLES for a longer run.
EXAMPLES = int(os.environ.get("OPUS_FUZZ_EXAMPLES", "6"))
REGISTRY = ActivityRegistry.load(ROOT / "activity_descriptions")
DESCRIPTIONS = sorted((ROOT / "activity_descriptions").glob("*.xml"))


def _api_schema() -> Any:
    """The application on a fresh SQLite database, and its OpenAPI document (in-process,
    WSGI: no server, no scheduler; nothing here needs a job to run)."""
    import tempfile

    from opus.app import create_app
    from opus.config import load_settings
    from opus.storage.engine import make_engine, upgrade

    data = tempfile.mkdtemp(prefix="opus-fuzz-")
    config = load_settings({"OPUS_DATA_DIR": data, "OPUS_WAIT_MAX": "0.2",
                            "OPUS_BASE_URL": "http://localhost"})
    upgrade(make_engine(config.effective_database_url))
    return schemathesis.openapi.from_wsgi("/openapi.json", create_app(config))


API = _api_schema()
OPERATIONS = [result.ok() for result in API.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_operation_answers_a_server_error(operation: Any, data: Any) -> None:
    case = data.draw(operation.as_strategy())
    response = case.call()
    if response.status_code == 501 and case.formatted_path.startswith("/tap"):
        # the documented answer of ProvTAP on SQLite (README: ProvTAP), not a fault
        assert "needs PostgreSQL" in response.text
        return
    assert response.status_code < 500, (case.method, case.formatted_path, case.query,
                                        response.status_code, response.text[:300])


@pytest.mark.parametrize("path", DESCRIPTIONS, ids=lambda p: p.name)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_mangled_description_is_refused_with_its_problems(path: Path, data: Any) -> None:
    original = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    try:
        parse_activity(bytes(original), path.name)
    except ActivityDescriptionError as error:
        assert str(error)  # says what is wrong


@pytest.mark.parametrize("name", REGISTRY.names())
@settings(max_examples=80, deadline=None, derandomize=True)
@given(values=st.dictionaries(st.sampled_from(["text", "duration", "ra", "dec", "width",
                                               "binsz", "nbins", "emin", "emax",
                                               "projection", "unknown", "TEXT"]),
                              st.text(max_size=40), max_size=5))
def test_any_text_is_a_value_or_a_parameter_error(name: str, values: dict[str, str]) -> None:
    activity = REGISTRY.get(name)
    try:
        validated = validate_parameters(activity, values)
    except ParameterError as error:
        assert error.parameter and error.rule
    else:
        assert set(validated) <= {p.name for p in activity.parameters}
