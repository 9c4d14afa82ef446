"""File inputs: uploads (UWS 1.1 section 2.2.3.1.1), URLs, and results of earlier jobs, with
the chain they make in the provenance graph."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import UWS_NS, Server

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


@pytest.fixture(scope="module")
def srv(module_server_factory, activities_dir: Path) -> Server:
    """One server for the module's tests with default settings."""
    return module_server_factory(activities_dir=activities_dir)


def phase(document) -> str:  # type: ignore[no-untyped-def]
    return document.findtext("uws:phase", namespaces=UWS_NS)


def error_message(document) -> str:  # type: ignore[no-untyped-def]
    return document.findtext("uws:errorSummary/uws:message", namespaces=UWS_NS) or ""


def run_copy(server: Server, files=None, **data: str) -> str:  # type: ignore[no-untyped-def]
    response = server.session.post(server.rest("copy"), data={"PHASE": "RUN", **data},
                                   files=files, allow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["Location"]


def provsap_json(server: Server, **params: str) -> dict:
    response = server.session.get(f"{server.url}/provsap", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def output_entity(server: Server, job_url: str) -> str:
    """The entity id ProvSAP gives to a job's 'output' result."""
    document = provsap_json(server, ID=job_url.rsplit("/", 1)[1], DIRECTION="FORTH")
    (entity,) = [k for k, v in document["entity"].items() if v.get("prov:label") == "output"]
    return entity


def test_an_upload_reaches_the_activity_and_is_served_back(srv: Server, uws_schema) -> None:
    payload = "first line\nsecond é line\n".encode()
    job_url = run_copy(srv, files={"input": ("../../etc/evil name.txt", payload)},
                       suffix="tail")
    document = srv.wait_final(job_url)
    assert phase(document) == "COMPLETED", error_message(document)
    uws_schema.assertValid(document)
    assert srv.session.get(f"{job_url}/results/output").content == payload + b"tail\n"
    (parameter,) = [p for p in document.iterfind("uws:parameters/uws:parameter", UWS_NS)
                    if p.get("id") == "input"]
    assert parameter.get("byReference") == "true"
    assert parameter.text == f"{job_url}/parameters/input"
    served = srv.session.get(parameter.text)
    assert served.status_code == 200 and served.content == payload
    # The client's file name chose nothing: nothing was written outside the job directory.
    assert not (srv.data_dir / "etc").exists()


def test_results_chain_jobs_and_the_graph_follows(srv: Server) -> None:
    first = srv.create("echo", text="origin")
    srv.wait_final(first)
    # By result URL, then by entity identifier.
    second = run_copy(srv, input=f"{first}/results/output", suffix="two")
    assert phase(srv.wait_final(second)) == "COMPLETED"
    assert srv.session.get(f"{second}/results/output").text == "origin\ntwo\n"
    third = run_copy(srv, input=output_entity(srv, second), suffix="three")
    assert phase(srv.wait_final(third)) == "COMPLETED"
    assert srv.session.get(f"{third}/results/output").text == "origin\ntwo\nthree\n"

    ids = {name: url.rsplit("/", 1)[1] for name, url in
           (("first", first), ("second", second), ("third", third))}
    final = output_entity(srv, third)

    def activities(depth: str, direction: str, node: str) -> set[str]:
        document = provsap_json(srv, ID=node, DEPTH=depth, DIRECTION=direction)
        return {key.split("act-")[1] for key in document.get("activity", {})}

    assert activities("1", "BACK", final) == {ids["third"]}
    assert activities("2", "BACK", final) == {ids["third"]}  # + the entity third used
    assert activities("3", "BACK", final) == {ids["third"], ids["second"]}
    assert activities("ALL", "BACK", final) == set(ids.values())
    origin = output_entity(srv, first)
    assert activities("1", "FORTH", origin) == {ids["second"]}
    assert activities("ALL", "FORTH", origin) == {ids["second"], ids["third"]}
    # The input is the very entity the earlier job generated, with its hash.
    back = provsap_json(srv, ID=final, DEPTH="ALL", DIRECTION="BACK")
    first_output = srv.session.get(f"{first}/results/output").content
    assert back["entity"][origin]["opus:sha256"] == hashlib.sha256(first_output).hexdigest()
    derived = back.get("wasDerivedFrom", {}).values()
    assert {(d["prov:generatedEntity"], d["prov:usedEntity"]) for d in derived} >= {
        (final, output_entity(srv, second)), (output_entity(srv, second), origin)}


@pytest.fixture
def web_file(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A file served over HTTP on 127.0.0.1 (a private address)."""
    content = b"fetched over http\n"
    (tmp_path / "data.txt").write_bytes(content)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data.txt", content
    httpd.shutdown()


def test_a_url_input_is_fetched_by_the_runner(server_factory, activities_dir: Path,
                                              web_file: tuple[str, bytes]) -> None:
    url, content = web_file
    srv = server_factory(activities_dir=activities_dir, fetch_block_private="false")
    job_url = run_copy(srv, input=url, suffix="web")
    document = srv.wait_final(job_url)
    assert phase(document) == "COMPLETED", error_message(document)
    assert srv.session.get(f"{job_url}/results/output").content == content + b"web\n"
    back = provsap_json(srv, ID=output_entity(srv, job_url), DEPTH="2")
    (used,) = [e for e in back["entity"].values() if e.get("prov:location") == url]
    assert used["opus:sha256"] == hashlib.sha256(content).hexdigest()


def test_private_addresses_are_refused_by_default(srv: Server,
                                                  web_file: tuple[str, bytes]) -> None:
    url, _ = web_file
    document = srv.wait_final(run_copy(srv, input=url))
    assert phase(document) == "ERROR"
    assert "input input" in error_message(document) and "private address" in \
        error_message(document)


@pytest.mark.parametrize("data, files, word", [
    ({}, None, "input: required"),
    ({"input": "file:///etc/passwd"}, None, "input: must be an http(s) URL"),
    ({"input": "opus:ent-" + "0" * 32}, None, "no result"),
    ({}, {"other": ("x", b"x")}, "other: is not a file input"),
    ({"input": "http://example.org/x"}, {"input": ("x", b"x")}, "given more than once"),
])
def test_bad_inputs_are_refused_and_leave_nothing(srv: Server, data: dict, files, word: str,
                                                  ) -> None:  # type: ignore[no-untyped-def]
    before = srv.session.get(srv.rest("copy")).content
    response = srv.session.post(srv.rest("copy"), data=data, files=files,
                                allow_redirects=False)
    assert response.status_code == 400
    assert word in response.text
    assert srv.session.get(srv.rest("copy")).content == before


def test_a_too_large_upload_gets_413_and_no_job(server_factory, activities_dir: Path) -> None:
    srv = server_factory(activities_dir=activities_dir, max_body=4096)
    response = srv.session.post(srv.rest("copy"), files={"input": ("big", b"x" * 10000)},
                                allow_redirects=False)
    assert response.status_code == 413
    assert "jobref" not in srv.session.get(srv.rest("copy")).text
    assert not list((srv.data_dir / "jobs").glob("*/uploads")) if (
        srv.data_dir / "jobs").exists() else True
