"""End to end: a job posted, run by the scheduler and the runner, its result fetched."""

from __future__ import annotations

from lxml import etree

from conftest import UWS_NS, Server


def test_echo_runs_and_its_result_has_the_bytes(server: Server, uws_schema) -> None:
    job_url = server.create("echo", text="héllo wörld")
    document = server.wait_final(job_url)
    uws_schema.assertValid(document)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED"
    assert document.get("version") == "1.1"
    results = {r.get("id"): r for r in document.iterfind("uws:results/uws:result", UWS_NS)}
    assert set(results) == {"output", "stdout", "stderr", "provenance"}
    output = results["output"]
    assert output.get("mime-type") == "text/plain"
    href = output.get("{http://www.w3.org/1999/xlink}href")
    response = server.session.get(href)
    assert response.status_code == 200
    assert response.content == "héllo wörld\n".encode()
    assert int(output.get("size")) == len(response.content)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert int(response.headers["Content-Length"]) == len(response.content)


def test_result_download_supports_ranges(server: Server) -> None:
    job_url = server.create("echo", text="0123456789")
    server.wait_final(job_url)
    response = server.session.get(f"{job_url}/results/output", headers={"Range": "bytes=2-5"})
    assert response.status_code == 206
    assert response.content == b"2345"


def test_results_list_is_valid_uws(server: Server, uws_schema) -> None:
    job_url = server.create("echo", text="x")
    server.wait_final(job_url)
    response = server.session.get(f"{job_url}/results")
    assert response.status_code == 200
    uws_schema.assertValid(etree.fromstring(response.content))
