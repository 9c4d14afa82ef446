"""POST /provenance/replay and GET /provenance/replay/{job}, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, UWS_NS, Server


def replay(server: Server, status: int = 303, **data: str):  # type: ignore[no-untyped-def]
    response = server.session.post(f"{server.url}/provenance/replay", data=data,
                                   allow_redirects=False)
    assert response.status_code == status, response.text
    return response


def replay_record(server: Server, job_url: str) -> dict:
    response = server.session.get(
        f"{server.url}/provenance/replay/{job_url.rsplit('/', 1)[1]}")
    assert response.status_code == 200, response.text
    return response.json()


def output_hit(server: Server, job_url: str) -> dict:
    """The search hit of a finished job's 'output' product."""
    job_id = job_url.rsplit("/", 1)[1]
    response = server.session.get(f"{server.url}/provenance/search",
                                  params={"limit": "1000", "activity": job_url.split("/")[-2]})
    (hit,) = [h for h in response.json()["results"]
              if h["job_id"] == job_id and h["name"] == "output"]
    return hit


def phase(document) -> str:  # type: ignore[no-untyped-def]
    return document.findtext("uws:phase", namespaces=UWS_NS)


def test_replay_of_a_deterministic_job_is_identical(server: Server) -> None:
    original = server.create("echo", text=f"again {uuid.uuid4().hex}")
    server.wait_final(original)
    hit = output_hit(server, original)
    response = replay(server, ID=hit["id"])
    new_url = response.headers["Location"]
    assert new_url.startswith(f"{server.url}/rest/echo/") and new_url != original
    assert "/provenance/replay/" in response.headers["Link"]
    assert phase(server.wait_final(new_url)) == "COMPLETED"
    record = replay_record(server, new_url)
    assert record["status"] == "compared" and record["verdict"] == "identical", record
    assert record["forced"] is False and record["overridden"] == []
    assert record["original"]["job_url"] == original
    assert record["new"]["job_url"] == new_url
    verdicts = {r["result_id"]: r["verdict"] for r in record["results"]}
    assert verdicts["output"] == "identical"
    assert set(verdicts.values()) == {"identical"}
    (output,) = [r for r in record["results"] if r["result_id"] == "output"]
    assert output["original"]["sha256"] == output["new"]["sha256"] == hit["sha256"]
    # The new product is linked to the one it regenerates.
    pairs = {p["original"]: p for p in record["pairs"]}
    assert pairs[hit["id"]]["new"] == output["new"]["entity"] != hit["id"]
    # Computed once, then kept.
    assert replay_record(server, new_url)["compared"] == record["compared"]
    # The new job has the same parameters.
    assert server.session.get(f"{new_url}/parameters/text").text == \
        server.session.get(f"{original}/parameters/text").text


def test_replay_by_job_or_activity_id_and_pending(server: Server) -> None:
    original = server.create("echo", text="by job id")
    server.wait_final(original)
    job_id = original.rsplit("/", 1)[1]
    by_job = replay(server, ID=job_id, PHASE="PENDING").headers["Location"]
    assert server.phase(by_job) == "PENDING"
    record = replay_record(server, by_job)
    assert record["status"] == "waiting" and record["verdict"] is None
    assert record["original"]["activity_id"] == f"opus:act-{job_id}"
    by_activity = replay(server, ID=f"opus:act-{job_id}").headers["Location"]
    server.wait_final(by_activity)
    assert replay_record(server, by_activity)["verdict"] == "identical"


@pytest.mark.parametrize("data, status, words", [
    ({}, 400, "ID"),
    ({"ID": "opus:ent-" + "0" * 32}, 404, "ID"),
    ({"ID": "0" * 32}, 404, "ID"),
    ({"ID": "x", "FORCE": "maybe"}, 400, "FORCE"),
    ({"ID": "x", "PHASE": "ABORT"}, 400, "PHASE"),
    ({"ID": "x", "COLOUR": "blue"}, 400, "COLOUR"),
])
def test_bad_requests(server: Server, data: dict, status: int, words: str) -> None:
    assert words in replay(server, status=status, **data).text
    missing = server.session.get(f"{server.url}/provenance/replay/{'0' * 32}")
    assert missing.status_code == 404


def test_a_job_still_running_has_no_record_to_replay(server: Server) -> None:
    job_url = server.create("sleep", duration="30")
    try:
        assert "when it ends" in replay(server, status=404, ID=job_url.rsplit("/", 1)[1]).text
    finally:
        server.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"})


@pytest.fixture
def own_echo(server_factory, tmp_path: Path) -> tuple[Server, Path, Path]:  # type: ignore[no-untyped-def]
    """A server whose echo description and script are copies we may change."""
    base = tmp_path / "project"
    (base / "activity_descriptions").mkdir(parents=True)
    (base / "scripts").mkdir()
    description = base / "activity_descriptions" / "echo.xml"
    script = base / "scripts" / "echo.sh"
    shutil.copy(ROOT / "activity_descriptions" / "echo.xml", description)
    shutil.copy(ROOT / "scripts" / "echo.sh", script)
    return (server_factory(activities_dir=base / "activity_descriptions"), description,
            script)


def test_refused_when_the_description_changed_unless_forced(own_echo) -> None:  # type: ignore[no-untyped-def]
    server, description, _ = own_echo
    original = server.create("echo", text="before the change")
    assert phase(server.wait_final(original)) == "COMPLETED"
    hit = output_hit(server, original)
    description.write_bytes(description.read_bytes() + b"<!-- edited -->\n")
    refused = replay(server, status=409, ID=hit["id"])
    assert "description of echo changed" in refused.text and "FORCE=true" in refused.text
    new_url = replay(server, ID=hit["id"], FORCE="true").headers["Location"]
    server.wait_final(new_url)
    record = replay_record(server, new_url)
    assert record["forced"] is True
    assert any("description of echo changed" in p for p in record["overridden"])
    assert record["verdict"] == "identical"


def test_refused_when_the_program_changed(own_echo) -> None:  # type: ignore[no-untyped-def]
    server, _, script = own_echo
    original = server.create("echo", text="program")
    assert phase(server.wait_final(original)) == "COMPLETED"
    script.write_text(script.read_text() + "\n# edited\n")
    refused = replay(server, status=409, ID=original.rsplit("/", 1)[1])
    assert "program of echo changed" in refused.text


def _activities_dir(request: pytest.FixtureRequest) -> Path:
    """The test activities with file inputs (the 'copy' activity), when conftest has them."""
    try:
        return request.getfixturevalue("activities_dir")
    except pytest.FixtureLookupError:
        pytest.skip("no activities_dir fixture (file inputs not available)")


@pytest.fixture(scope="module")
def inputs_server(module_server_factory,  # type: ignore[no-untyped-def]
                  request: pytest.FixtureRequest) -> Server:
    """One server with the file-input test activities for the tests below (they share it:
    same settings, each works on jobs of its own)."""
    return module_server_factory(activities_dir=_activities_dir(request))


def test_chained_input_checked_before_replay(inputs_server: Server) -> None:
    server = inputs_server
    first = server.create("echo", text="upstream")
    assert phase(server.wait_final(first)) == "COMPLETED"
    upstream = output_hit(server, first)
    second = server.create("copy", input=upstream["id"], suffix="down")
    assert phase(server.wait_final(second)) == "COMPLETED"
    product = output_hit(server, second)
    # The search follows the chain both ways, and by input.
    search = f"{server.url}/provenance/search"
    ancestors = server.session.get(search, params={"ancestors": product["id"]}).json()
    assert upstream["id"] in {h["id"] for h in ancestors["results"]}
    descendants = server.session.get(search, params={"descendants": upstream["id"]}).json()
    assert product["id"] in {h["id"] for h in descendants["results"]}
    for used in (upstream["id"], upstream["sha256"]):
        found = server.session.get(search, params={"used": used}).json()
        assert product["id"] in {h["id"] for h in found["results"]}
    new_url = replay(server, ID=product["id"]).headers["Location"]
    server.wait_final(new_url)
    record = replay_record(server, new_url)
    assert record["verdict"] == "identical", record
    assert [i["verdict"] for i in record["inputs"]] == ["identical"]
    # Once the upstream result is deleted, nothing can bring its bytes back.
    assert server.session.delete(first, allow_redirects=False).status_code == 303
    for force in ("false", "true"):
        refused = replay(server, status=409, ID=product["id"], FORCE=force)
        assert "input input" in refused.text and "deleted" in refused.text


def test_upload_input_is_sent_again(inputs_server: Server) -> None:
    server = inputs_server
    response = server.session.post(server.rest("copy"), data={"PHASE": "RUN", "suffix": "u"},
                                   files={"input": ("in.txt", b"uploaded bytes\n")},
                                   allow_redirects=False)
    original = response.headers["Location"]
    assert phase(server.wait_final(original)) == "COMPLETED"
    new_url = replay(server, ID=original.rsplit("/", 1)[1]).headers["Location"]
    assert phase(server.wait_final(new_url)) == "COMPLETED"
    assert server.session.get(f"{new_url}/results/output").content == b"uploaded bytes\nu\n"
    assert replay_record(server, new_url)["verdict"] == "identical"
