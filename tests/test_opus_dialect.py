"""The older OPUS dialect: the two example descriptions in tests/data/examples load, validate
their inputs, and run end to end with their embedded shell scripts (parameters reach the
script as environment variables, never pasted into it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import OPUS_DIALECT, UWS_NS, Server, start_server

EXAMPLES = OPUS_DIALECT


@pytest.fixture(scope="module")
def old_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite server with only the two example files as activities (the store is
    tested on both backends elsewhere)."""
    activities = tmp_path_factory.mktemp("old-activities")
    for example in EXAMPLES.glob("*.xml"):
        shutil.copy(example, activities / example.name)
    srv = start_server(tmp_path_factory.mktemp("old-opus"), "", activities_dir=activities)
    yield srv
    srv.stop()


def test_both_examples_are_served(old_server: Server) -> None:
    names = {a["name"] for a in old_server.session.get(
        f"{old_server.url}/activities", headers={"Accept": "application/json"}).json()}
    assert names == {"write_note", "append_note"}


def test_inputs_are_validated(old_server: Server) -> None:
    response = old_server.session.post(old_server.rest("append_note"),
                                       data={"note": "x"}, allow_redirects=False)
    assert response.status_code == 400 and "notes: required" in response.text
    response = old_server.session.post(old_server.rest("write_note"),
                                       data={"colour": "red"}, allow_redirects=False)
    assert response.status_code == 400 and "colour" in response.text


def test_both_examples_run_end_to_end(old_server: Server) -> None:
    hostile = "$(touch /tmp/opus-pwned) `id` ; *"
    first = old_server.create("write_note", note=hostile)
    response = old_server.session.post(
        old_server.rest("append_note"), data={"note": "appended", "PHASE": "RUN"},
        files={"notes": ("anything.txt", b"line from the upload\n")}, allow_redirects=False)
    assert response.status_code == 303, response.text
    second = response.headers["Location"]
    for job_url in (first, second):
        document = old_server.wait_final(job_url, timeout=90)
        assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED", \
            old_server.session.get(f"{job_url}/results/stderr").text
    # `echo $note > $note_file`: the shell splits and globs the unquoted value, but never
    # runs it: no command substitution happened.
    output = old_server.session.get(f"{first}/results/note_file").text
    assert "$(touch" in output and "`id`" in output
    assert not Path("/tmp/opus-pwned").exists()
    assert old_server.session.get(f"{second}/results/journal").text == \
        "line from the upload\nappended\n"
