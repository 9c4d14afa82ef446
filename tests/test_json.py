"""JSON forms of the UWS resources, content negotiation, and the OpenAPI document.

The JSON documents must say what the XML ones say: each test reads a resource in both forms
from a running server (SQLite and PostgreSQL) and compares them field by field, the XML read
back into the JSON shape by :func:`job_from_xml` and friends.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from lxml import etree
from openapi_spec_validator import validate

from conftest import UWS_NS, Server
from opus.web.negotiation import accept_quality, prefers

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
OPUS_NS = "urn:opus:uws"
JSON_ACCEPT = {"Accept": "application/json"}


# -- XML read back into the JSON shape -----------------------------------------------------
def _text(element: etree._Element | None) -> str | None:
    """An element's text; None for an absent or xsi:nil element."""
    if element is None or element.get(XSI_NIL) == "true":
        return None
    return element.text or ""


def parameters_from_xml(container: etree._Element) -> list[dict[str, Any]]:
    entries = []
    for element in container.iterfind("uws:parameter", UWS_NS):
        by_reference = element.get("byReference") == "true"
        entry: dict[str, Any] = {"id": element.get("id"), "value": element.text or "",
                                 "byReference": by_reference}
        if by_reference:
            entry["href"] = element.text
        entries.append(entry)
    return entries


def results_from_xml(container: etree._Element) -> list[dict[str, Any]]:
    return [{"id": element.get("id"), "href": element.get(XLINK_HREF),
             "size": int(element.get("size")) if element.get("size") is not None else None,
             "mime-type": element.get("mime-type")}
            for element in container.iterfind("uws:result", UWS_NS)]


def job_from_xml(root: etree._Element) -> dict[str, Any]:
    def child(name: str) -> etree._Element | None:
        return root.find(f"uws:{name}", UWS_NS)

    summary = child("errorSummary")
    info = child("jobInfo")
    provenance = info.find(f"{{{OPUS_NS}}}provenance") if info is not None else None
    access = info.findtext(f"{{{OPUS_NS}}}access") if info is not None else None
    return {
        "version": root.get("version"),
        "jobId": _text(child("jobId")),
        "runId": _text(child("runId")),
        "ownerId": _text(child("ownerId")),
        "phase": _text(child("phase")),
        "quote": _text(child("quote")),
        "creationTime": _text(child("creationTime")),
        "startTime": _text(child("startTime")),
        "endTime": _text(child("endTime")),
        "executionDuration": int(_text(child("executionDuration")) or "nan"),
        "destruction": _text(child("destruction")),
        "parameters": parameters_from_xml(child("parameters")),
        "results": results_from_xml(child("results")),
        "errorSummary": None if summary is None else {
            "type": summary.get("type"), "hasDetail": summary.get("hasDetail") == "true",
            "message": summary.findtext("uws:message", namespaces=UWS_NS)},
        "jobInfo": None if info is None else {
            **({} if provenance is None else {"provenance": {
                "href": provenance.get(XLINK_HREF), "mime-type": provenance.get("mime-type")}}),
            **({} if access is None else {"access": access})},
    }


def job_list_from_xml(root: etree._Element) -> dict[str, Any]:
    return {"version": root.get("version"), "jobs": [{
        "id": ref.get("id"), "href": ref.get(XLINK_HREF),
        "phase": ref.findtext("uws:phase", namespaces=UWS_NS),
        "runId": _text(ref.find("uws:runId", UWS_NS)),
        "ownerId": _text(ref.find("uws:ownerId", UWS_NS)),
        "creationTime": ref.findtext("uws:creationTime", namespaces=UWS_NS),
    } for ref in root.iterfind("uws:jobref", UWS_NS)]}


# -- fetching both forms --------------------------------------------------------------------
def get_xml(server: Server, url: str, schema: etree.XMLSchema | None = None,
            **query: str) -> etree._Element:
    response = server.session.get(url, params=query)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/xml")
    root = etree.fromstring(response.content)
    if schema is not None:
        schema.assertValid(root)
    return root


def get_json(server: Server, url: str, accept: str = "application/json",
             **query: str) -> Any:
    response = server.session.get(url, params=query, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Accept" in response.headers["Vary"]
    return response.json()


def assert_same_job(server: Server, job_url: str, uws_schema: etree.XMLSchema,
                    *, volatile_quote: bool = False) -> dict[str, Any]:
    """The job read as XML and as JSON says the same; returns the JSON."""
    from_xml = job_from_xml(get_xml(server, job_url, uws_schema))
    document = get_json(server, job_url)
    if volatile_quote:  # an estimate computed per request: both present, close together
        quotes = [dt.datetime.fromisoformat(d.pop("quote").rstrip("Z"))
                  for d in (from_xml, document)]
        assert abs(quotes[0] - quotes[1]) < dt.timedelta(seconds=30)
    for key in from_xml:
        assert document[key] == from_xml[key], key
    assert document.keys() == from_xml.keys()
    return document


def wait_final(server: Server, job_url: str) -> str:
    return server.wait_final(job_url).findtext("uws:phase", namespaces=UWS_NS)


# -- equivalence of the documents -----------------------------------------------------------
def test_completed_job_json_equals_xml(server: Server, uws_schema) -> None:
    job_url = server.create("sleep", duration="0", RUNID="json ☃")
    assert wait_final(server, job_url) == "COMPLETED"
    document = assert_same_job(server, job_url, uws_schema)
    assert document["runId"] == "json ☃" and document["ownerId"] is None
    assert isinstance(document["executionDuration"], int)
    assert document["quote"] is None and document["errorSummary"] is None
    assert document["jobInfo"]["provenance"]["href"].endswith("DIRECTION=FORTH")
    assert {r["id"] for r in document["results"]} >= {"output", "provenance"}
    output = next(r for r in document["results"] if r["id"] == "output")
    assert output["size"] > 0 and output["mime-type"] == "text/plain"
    assert server.session.get(output["href"]).content.startswith(b"slept")

    base = job_url
    assert get_json(server, f"{base}/results") == {
        "results": results_from_xml(get_xml(server, f"{base}/results"))}
    assert get_json(server, f"{base}/parameters") == {
        "parameters": parameters_from_xml(get_xml(server, f"{base}/parameters"))}
    assert get_json(server, f"{base}/parameters")["parameters"] == [
        {"id": "duration", "value": "0", "byReference": False}]


def test_pending_and_aborted_jobs_json_equal_xml(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="<b>&amp; é</b>")
    document = assert_same_job(server, job_url, uws_schema, volatile_quote=True)
    assert document["phase"] == "PENDING" and document["startTime"] is None
    assert document["results"] == [] and document["jobInfo"] == {"access": "public"}
    assert document["parameters"] == [{"id": "text", "value": "<b>&amp; é</b>",
                                       "byReference": False}]
    server.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"})
    document = assert_same_job(server, job_url, uws_schema)
    assert document["phase"] == "ABORTED"
    assert document["errorSummary"]["hasDetail"] is True
    assert document["errorSummary"]["message"]


def test_job_list_json_equals_xml(server: Server, uws_schema) -> None:
    created = {server.create("echo", run=False, text=str(i), RUNID=f"list-{i}")
               for i in range(3)}
    for query in ({}, {"PHASE": "PENDING"}, {"LAST": "2"}):
        from_xml = job_list_from_xml(get_xml(server, server.rest("echo"), uws_schema,
                                             **query))
        assert get_json(server, server.rest("echo"), **query) == from_xml
    listed = get_json(server, server.rest("echo"))["jobs"]
    assert created <= {ref["href"] for ref in listed}
    assert {ref["runId"] for ref in listed if ref["href"] in created} == \
        {"list-0", "list-1", "list-2"}


def test_inputs_by_reference_json_equals_xml(server_factory, activities_dir: Path,
                                             uws_schema) -> None:
    srv = server_factory(activities_dir=activities_dir)
    url = "https://example.org/data/input.txt"
    by_url = srv.create("copy", run=False, input=url)
    response = srv.session.post(srv.rest("copy"), files={"input": ("a.txt", b"bytes\n")},
                                allow_redirects=False)
    assert response.status_code == 303, response.text
    uploaded = response.headers["Location"]
    for job_url, href in ((by_url, url), (uploaded, f"{uploaded}/parameters/input")):
        document = assert_same_job(srv, job_url, uws_schema, volatile_quote=True)
        entry = next(p for p in document["parameters"] if p["id"] == "input")
        assert entry == {"id": "input", "value": href, "byReference": True, "href": href}
    assert get_json(srv, f"{by_url}/parameters/input") == {
        "id": "input", "value": url, "byReference": True, "href": url}
    # the upload's bytes are served as they are, whatever Accept says
    response = srv.session.get(f"{uploaded}/parameters/input", headers=JSON_ACCEPT)
    assert response.content == b"bytes\n"


# -- content negotiation ----------------------------------------------------------------------
@pytest.mark.parametrize("accept, wants_json", [
    (None, False),
    ("*/*", False),
    ("application/xml", False),
    ("text/xml", False),
    ("application/json", True),
    ("application/json, application/xml", False),  # a tie keeps XML
    ("application/xml;q=0.9, application/json", True),
    ("application/json;q=0.5, application/xml", False),
    ("application/json;q=0.5, */*;q=0.1", True),
    ("application/*", False),
    ("application/json;q=0, */*", False),
    ("text/xml, application/json;q=0.5", False),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
])
def test_documents_are_negotiated(server: Server, accept: str | None,
                                  wants_json: bool) -> None:
    job_url = server.create("echo", run=False, text="x")
    headers = {"Accept": accept} if accept is not None else {"Accept": ""}
    for url in (job_url, server.rest("echo"), f"{job_url}/parameters", f"{job_url}/results"):
        response = server.session.get(url, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith(
            "application/json" if wants_json else "application/xml"), (url, accept)
        assert "Accept" in response.headers["Vary"]


def test_atomic_resources_are_text_unless_json_is_preferred(server: Server) -> None:
    job_url = server.create("echo", run=False, text="x")
    document = get_json(server, job_url)
    expected = {"phase": {"phase": "PENDING"},
                "executionduration": {"executionDuration": document["executionDuration"]},
                "destruction": {"destruction": document["destruction"]},
                "error": {"errorSummary": None},
                "owner": {"ownerId": None},
                "parameters/text": {"id": "text", "value": "x", "byReference": False}}
    for name, body in expected.items():
        assert get_json(server, f"{job_url}/{name}") == body, name
        for accept in ("*/*", "text/plain, application/json", "application/xml"):
            response = server.session.get(f"{job_url}/{name}", headers={"Accept": accept})
            assert response.headers["Content-Type"].startswith("text/plain"), (name, accept)
    quote = get_json(server, f"{job_url}/quote")["quote"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", quote)
    server.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"})
    assert get_json(server, f"{job_url}/error")["errorSummary"] == \
        get_json(server, job_url)["errorSummary"]
    assert get_json(server, f"{job_url}/quote") == {"quote": None}


@pytest.mark.parametrize("method, path, data, status", [
    ("GET", "/rest/echo/0123456789abcdef0123456789abcdef", None, 404),
    ("GET", "/rest/nope", None, 404),
    ("POST", "/rest/sleep", {"duration": "-1"}, 400),
    ("GET", "/rest/echo?PHASE=NOPE", None, 400),
])
def test_errors_keep_their_status_in_json(server: Server, method: str, path: str,
                                          data: dict[str, str] | None, status: int) -> None:
    url = server.url + path
    plain = server.session.request(method, url, data=data, allow_redirects=False)
    assert plain.status_code == status
    assert plain.headers["Content-Type"].startswith("text/plain")
    response = server.session.request(method, url, data=data, headers=JSON_ACCEPT,
                                      allow_redirects=False)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": plain.text.rstrip("\n"), "status": status}


def test_forbidden_action_is_403_in_json(server: Server) -> None:
    job_url = server.create("sleep", duration="0")
    assert wait_final(server, job_url) == "COMPLETED"
    response = server.session.post(f"{job_url}/phase", data={"PHASE": "ABORT"},
                                   headers=JSON_ACCEPT, allow_redirects=False)
    assert response.status_code == 403
    assert response.json()["status"] == 403 and "COMPLETED" in response.json()["error"]


def test_accept_quality() -> None:
    assert accept_quality("application/json;q=0.3, */*;q=0.9", "application/json") == 0.3
    assert accept_quality("application/*;q=0.4, */*", "application/xml") == 0.4
    assert accept_quality("text/plain", "application/json") == 0.0
    # python-mimeparse: a q that is not a number in [0, 1] counts as absent (q=1)
    assert accept_quality("application/json;q=bad", "application/json") == 1.0
    assert accept_quality("APPLICATION/JSON", "application/json") == 1.0
    assert accept_quality("garbage, application/json;q=0.5", "application/json") == 0.5
    assert not prefers("", "application/json", ["application/xml"])
    assert prefers("application/json;charset=utf-8", "application/json", ["application/xml"])
    assert not prefers("application/json, */*", "application/json", ["application/xml"])


# -- the OpenAPI document --------------------------------------------------------------------
@pytest.fixture(scope="module")
def openapi(server: Server) -> dict[str, Any]:
    response = requests.get(f"{server.url}/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def request_schema(document: dict[str, Any], activity: str, media: str
                   ) -> dict[str, Any]:
    content = document["paths"][f"/rest/{activity}"]["post"]["requestBody"]["content"]
    return content[media]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def test_openapi_document_is_valid(openapi: dict[str, Any], server: Server) -> None:
    validate(openapi)
    assert openapi["openapi"].startswith("3.1")
    assert openapi["servers"] == [{"url": server.url}]


def test_openapi_lists_every_activity_with_its_parameters(openapi: dict[str, Any],
                                                          server: Server) -> None:
    activities = [entry["name"] for entry in
                  requests.get(f"{server.url}/activities").json()]
    assert set(activities) == {"sleep", "echo", "gammapy_maps"}
    for name in activities:
        entry = next(a for a in requests.get(f"{server.url}/activities").json()
                     if a["name"] == name)
        for suffix in ("", "/{job_id}", "/{job_id}/phase", "/{job_id}/parameters",
                       "/{job_id}/results", "/{job_id}/results/{result_id}"):
            assert f"/rest/{name}{suffix}" in openapi["paths"], (name, suffix)
        schema = resolve(openapi, request_schema(openapi, name,
                                                 "application/x-www-form-urlencoded")["schema"])
        assert set(entry["parameters"]) <= set(schema["properties"])
        assert {"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION"} <= \
            set(schema["properties"])

    sleep = resolve(openapi, request_schema(openapi, "sleep",
                                            "application/x-www-form-urlencoded")["schema"])
    duration = sleep["properties"]["duration"]
    assert duration["type"] == "number"
    assert (duration["minimum"], duration["maximum"], duration["default"]) == (0, 3600, 1)
    assert duration["x-unit"] == "s" and duration["description"]
    assert sleep["required"] == []

    maps = resolve(openapi, request_schema(openapi, "gammapy_maps",
                                           "application/x-www-form-urlencoded")["schema"])
    projection = maps["properties"]["projection"]
    assert projection["type"] == "string"
    assert projection["enum"] == ["CAR", "TAN"] and projection["default"] == "CAR"
    assert projection["x-ucd"] == "pos.wcs.ctype"
    nbins = maps["properties"]["nbins"]
    assert (nbins["type"], nbins["minimum"], nbins["maximum"], nbins["default"]) == \
        ("integer", 1, 100, 10)
    assert maps["properties"]["ra"]["x-unit"] == "deg"
    assert maps["required"] == ["datastore"]


def test_openapi_file_inputs(server_factory, activities_dir: Path) -> None:
    srv = server_factory(activities_dir=activities_dir, scheduler=False)
    document = requests.get(f"{srv.url}/openapi.json").json()
    validate(document)
    urlencoded = resolve(document, request_schema(document, "copy",
                                                  "application/x-www-form-urlencoded")["schema"])
    assert urlencoded["properties"]["input"]["format"] == "uri"
    assert "input" in urlencoded["required"]
    multipart = request_schema(document, "copy", "multipart/form-data")
    upload = resolve(document, multipart["schema"])["properties"]["input"]
    assert {"type": "string", "format": "binary", "contentMediaType": "text/plain"} in \
        upload["anyOf"]
    assert multipart["encoding"]["input"]["contentType"] == "text/plain"


def test_openapi_examples_validate_and_create_jobs(openapi: dict[str, Any],
                                                   server: Server) -> None:
    for name in ("sleep", "echo", "gammapy_maps"):
        media = request_schema(openapi, name, "application/x-www-form-urlencoded")
        schema = resolve(openapi, media["schema"])
        jsonschema.validate(media["example"], schema)
    for name in ("sleep", "echo"):
        example = request_schema(openapi, name, "application/x-www-form-urlencoded")["example"]
        job_url = server.create(name, **{k: json.dumps(v) if not isinstance(v, str) else v
                                         for k, v in example.items()})
        assert wait_final(server, job_url) == "COMPLETED", name


def test_openapi_responses(openapi: dict[str, Any]) -> None:
    job = openapi["paths"]["/rest/sleep/{job_id}"]
    ok = job["get"]["responses"]["200"]["content"]
    assert set(ok) == {"application/xml", "application/json"}
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}
    created = openapi["paths"]["/rest/sleep"]["post"]["responses"]
    assert "Location" in resolve(openapi, created["303"])["headers"]
    for status in ("400", "404", "413"):
        content = resolve(openapi, created[status])["content"]
        assert set(content) == {"text/plain", "application/json"}
    assert "415" in openapi["paths"]["/provsap"]["get"]["responses"]
    ids = [op["operationId"] for path in openapi["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_openapi_describes_every_public_route(tmp_path: Path) -> None:
    """Every route the application installs is declared with its operation and described,
    except the runner's callback; a route added later without an operation fails here."""
    from opus.app import create_app
    from opus.config import load_settings
    from opus.web.openapi import INTERNAL_PREFIXES, build, openapi_path, undocumented

    app = create_app(load_settings({"OPUS_DATA_DIR": str(tmp_path)}))
    assert undocumented(app.routes) == []
    installed = {(route.method.upper(), openapi_path(route.rule)) for route in app.routes}
    document = build(app.config["opus.services"].registry, "http://x", app.routes)
    names = app.config["opus.services"].registry.names()
    described = set()
    for path, operations in document["paths"].items():
        for method in operations:
            generic = path
            for name in names:
                if path == f"/rest/{name}" or path.startswith(f"/rest/{name}/"):
                    generic = "/rest/{activity}" + path[len(f"/rest/{name}"):]
            described.add((method.upper(), generic))
    public = {(m, p) for m, p in installed if not p.startswith(INTERNAL_PREFIXES)}
    assert public - described == set()
    assert described <= installed
    assert not any(p.startswith("/internal/") for p in document["paths"])


def test_a_route_without_an_operation_is_found(tmp_path: Path) -> None:
    """The check above really catches a public route declared without an operation (and
    lets an internal one pass)."""
    from opus.app import create_app
    from opus.config import load_settings
    from opus.web.openapi import undocumented
    from opus.web.routing import route

    app = create_app(load_settings({"OPUS_DATA_DIR": str(tmp_path)}))

    @route(app, "GET", "/forgotten/<job_id>", operation=None)
    @route(app, "GET", "/internal/jobs/<job_id>/other", operation=None)
    def forgotten(job_id: str) -> str:
        return job_id

    assert undocumented(app.routes) == [("GET", "/forgotten/<job_id>")]
