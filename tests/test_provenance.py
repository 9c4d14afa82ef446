"""Provenance of real runs, read back through ProvSAP in the PROV serialisations."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from prov.model import ProvDocument

from conftest import UWS_NS, Server

NAMESPACE = "ivo://opus.local/provenance#"


def provsap(server: Server, **params: str):  # type: ignore[no-untyped-def]
    return server.session.get(f"{server.url}/provsap", params=params)


def document_of(server: Server, job_id: str, fmt: str = "json", **params: str) -> ProvDocument:
    response = provsap(server, ID=job_id, RESPONSEFORMAT=fmt, **params)
    assert response.status_code == 200, response.text
    return ProvDocument.deserialize(io.BytesIO(response.content), format=fmt)


def records(document: ProvDocument, kind: str) -> dict[str, object]:
    return {str(r.identifier): r for r in document.get_records()
            if r.get_type().localpart == kind}


@pytest.fixture(scope="module")
def echo_job(server: Server) -> tuple[str, bytes]:
    """A completed echo job: (job id, the bytes of its output)."""
    job_url = server.create("echo", text="provenance please")
    server.wait_final(job_url)
    output = server.session.get(f"{job_url}/results/output").content
    return job_url.rsplit("/", 1)[1], output


def test_a_completed_run_records_activity_parameters_context_and_hashes(
        server: Server, echo_job: tuple[str, bytes]) -> None:
    job_id, output = echo_job
    document = document_of(server, job_id, DEPTH="1", DIRECTION="FORTH")
    activities = records(document, "Activity")
    assert list(activities) == [f"opus:act-{job_id}"]
    label = {str(k): str(v) for k, v in activities[f"opus:act-{job_id}"].attributes}
    assert label["prov:label"] == "echo" and label["opus:phase"] == "COMPLETED"
    entities = records(document, "Entity")
    outputs = [e for e in entities.values()
               if ("prov:label", "output") in [(str(k), str(v)) for k, v in e.attributes]]
    assert len(outputs) == 1
    attributes = {str(k): v for k, v in outputs[0].attributes}
    assert attributes["opus:sha256"] == hashlib.sha256(output).hexdigest()
    assert int(attributes["opus:size"]) == len(output)
    parameters = [e for e in entities.values()
                  if {str(k): str(v) for k, v in e.attributes}.get("voprov:name") == "text"]
    assert len(parameters) == 1
    assert {str(k): str(v) for k, v in parameters[0].attributes}["prov:value"] == (
        "provenance please")
    contexts = [e for e in entities.values() if "opus:python" in
                {str(k) for k, _ in e.attributes}]
    assert len(contexts) == 1
    packages = {str(k): str(v) for k, v in contexts[0].attributes}["opus:packages"]
    assert "SQLAlchemy==" in packages or "sqlalchemy==" in packages.lower()


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_json_and_xml_round_trip_through_prov(server: Server, echo_job: tuple[str, bytes],
                                              fmt: str) -> None:
    job_id, _ = echo_job
    document = document_of(server, job_id, fmt, DEPTH="ALL", DIRECTION="FORTH")
    again = ProvDocument.deserialize(io.BytesIO(document.serialize(format=fmt).encode()),
                                     format=fmt)
    assert again == document
    assert f"opus:act-{job_id}" in records(document, "Activity")


def test_provn_is_the_same_document(server: Server, echo_job: tuple[str, bytes]) -> None:
    job_id, _ = echo_job
    response = provsap(server, ID=job_id, RESPONSEFORMAT="text/provenance-notation",
                       DEPTH="ALL", DIRECTION="FORTH")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/provenance-notation")
    assert response.text.startswith("document")
    document = document_of(server, job_id, DEPTH="ALL", DIRECTION="FORTH")
    again = ProvDocument.deserialize(content=response.text, format="provn")
    assert again == document


def test_w3c_model_has_no_ivoa_types(server: Server, echo_job: tuple[str, bytes]) -> None:
    job_id, _ = echo_job
    ivoa = provsap(server, ID=job_id, DIRECTION="FORTH", MODEL="IVOA").text
    w3c = provsap(server, ID=job_id, DIRECTION="FORTH", MODEL="W3C").text
    assert "voprov:Parameter" in ivoa and "voprov:wasConfiguredBy" in ivoa
    assert "voprov:" not in w3c.replace('"voprov": "', "")


def test_a_failed_job_still_has_its_provenance(server: Server) -> None:
    job_url = server.create("sleep", duration="30", EXECUTIONDURATION="1")
    server.wait_final(job_url)
    job_id = job_url.rsplit("/", 1)[1]
    document = document_of(server, job_id, DIRECTION="FORTH")
    (activity,) = records(document, "Activity").values()
    attributes = {str(k): str(v) for k, v in activity.attributes}
    assert attributes["opus:phase"] == "ERROR"
    assert "executionDuration" in attributes["voprov:comment"]


@pytest.mark.parametrize("run", [True, False], ids=["executing", "pending"])
def test_an_aborted_job_has_its_provenance(server: Server, run: bool) -> None:
    """ABORT ends a run like any other end: its provenance result is served (ProvSAP)."""
    job_url = server.create("sleep", run=run, duration="30")
    if run:
        server.job(job_url, WAIT="10", PHASE="QUEUED")  # until it leaves QUEUED
    response = server.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"},
                                   allow_redirects=False)
    assert response.status_code == 303
    document = server.wait_final(job_url)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "ABORTED"
    from_result = server.session.get(f"{job_url}/results/provenance")
    assert from_result.status_code == 200, from_result.text
    job_id = job_url.rsplit("/", 1)[1]
    (activity,) = records(document_of(server, job_id, DIRECTION="FORTH"),
                          "Activity").values()
    attributes = {str(k): str(v) for k, v in activity.attributes}
    assert attributes["opus:phase"] == "ABORTED"
    assert "aborted" in attributes["voprov:comment"]


def test_deleting_a_job_keeps_its_provenance(server: Server) -> None:
    job_url = server.create("echo", text="ephemeral")
    server.wait_final(job_url)
    job_id = job_url.rsplit("/", 1)[1]
    assert server.session.delete(job_url, allow_redirects=False).status_code == 303
    document = document_of(server, job_id, DIRECTION="FORTH")
    outputs = [e for e in records(document, "Entity").values()
               if "voprov:invalidatedAtTime" in {str(k) for k, _ in e.attributes}]
    assert outputs, "the deleted job's products are kept, marked invalidated"


@pytest.mark.parametrize("params, status, word", [
    ({}, 400, "ID"),
    ({"ID": "x", "DEPTH": "deep"}, 400, "DEPTH"),
    ({"ID": "x", "DEPTH": "-2"}, 400, "DEPTH"),
    ({"ID": "x", "DIRECTION": "SIDEWAYS"}, 400, "DIRECTION"),
    ({"ID": "x", "MODEL": "OTHER"}, 400, "MODEL"),
    ({"ID": "x", "AGENT": "perhaps"}, 400, "AGENT"),
    ({"ID": "x", "RESPONSEFORMAT": "text/csv"}, 415, "RESPONSEFORMAT"),
    ({"ID": "ent-doesnotexist"}, 404, "ent-doesnotexist"),
    ({"ID": "ent-doesnotexist", "DEPTH": "ALL"}, 404, "ent-doesnotexist"),
])
def test_bad_provsap_requests_are_named(server: Server, params: dict, status: int,
                                        word: str) -> None:
    response = provsap(server, **params)
    assert response.status_code == status
    assert word in response.text


@pytest.mark.parametrize("query", ["ID=%FF", "ID=%ED%A0%80", "ID=a%00b", "DEPTH=%FF&ID=x"])
def test_undecodable_provsap_queries_are_400(server: Server, query: str) -> None:
    response = server.session.get(f"{server.url}/provsap?{query}")
    assert response.status_code == 400, response.text
    assert "decoded" in response.text or "ID" in response.text


def test_a_finished_job_links_its_provenance(server: Server, echo_job: tuple[str, bytes],
                                             uws_schema) -> None:
    job_id, _ = echo_job
    job_url = f"{server.rest('echo')}/{job_id}"
    document = server.job(job_url)
    uws_schema.assertValid(document)
    link = document.find("uws:jobInfo/{urn:opus:uws}provenance",
                         {"uws": "http://www.ivoa.net/xml/UWS/v1.0"})
    href = link.get("{http://www.w3.org/1999/xlink}href")
    from_info = server.session.get(href)
    from_result = server.session.get(f"{job_url}/results/provenance")
    assert from_info.status_code == from_result.status_code == 200
    assert from_result.headers["Content-Type"] == "application/x-prov+json"
    assert f"opus:act-{job_id}" in from_result.json()["activity"]


def test_svg_has_a_node_for_each_activity_and_entity(server: Server,
                                                      echo_job: tuple[str, bytes]) -> None:
    from lxml import etree

    job_id, _ = echo_job
    document = document_of(server, job_id, DIRECTION="FORTH", DEPTH="ALL")
    response = provsap(server, ID=job_id, DIRECTION="FORTH", DEPTH="ALL",
                       RESPONSEFORMAT="image/svg+xml")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/svg+xml"
    svg = etree.fromstring(response.content)
    titles = " ".join(svg.xpath("//s:g[@class='node']/s:title/text()",
                                namespaces={"s": "http://www.w3.org/2000/svg"}))
    graph_nodes = [key for key in list(records(document, "Activity"))
                   + list(records(document, "Entity"))
                   if ".par." not in key and "ctx-" not in key]
    for node in graph_nodes:
        assert node in titles
    png = provsap(server, ID=job_id, RESPONSEFORMAT="image/png")
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_prov_votable_is_valid_and_votlint_clean(server: Server,
                                                 echo_job: tuple[str, bytes]) -> None:
    from lxml import etree

    from vochecks import votable_schema, votlint

    job_id, _ = echo_job
    response = provsap(server, ID=job_id, DIRECTION="FORTH",
                       RESPONSEFORMAT="application/x-votable+xml")
    assert response.status_code == 200
    votable_schema().assertValid(etree.fromstring(response.content))
    assert votlint(response.content) == []


def test_the_package_list_is_read_from_its_cache_in_a_changing_job_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner lists the environment's packages (the run's context) from a cache keyed
    on the install locations: a job folder it runs in, which changes as the job writes,
    must not invalidate it (it did: 150 ms at every job's end)."""
    import json as json_module

    from opus.provenance.capture import installed_packages

    folder = tmp_path / "job"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))  # as `python -m` puts the working directory
    cache = tmp_path / "packages-cache.json"
    listed = installed_packages(cache)
    assert "prov" in {name.lower() for name in listed}
    stored = json_module.loads(cache.read_text())
    cache.write_text(json_module.dumps({"key": stored["key"], "packages": {"cached": "1"}}))
    (folder / "output.txt").write_text("the job writes")  # the folder's time changes
    assert installed_packages(cache) == {"cached": "1"}
