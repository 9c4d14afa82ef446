"""Discovery: the activity list (JSON / HTML), description VOTables, VOSI endpoints."""

from __future__ import annotations

import io
import time

import pyvo.io.vosi
import pytest
from lxml import etree, html

from conftest import ROOT, Server
from opus.activities.votable import parse_activity, read_activity
from vochecks import assert_valid_votable

ACTIVITIES = {path.stem: read_activity(path)
              for path in sorted((ROOT / "activity_descriptions").glob("*.xml"))}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
VOSI_CAP = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
VOSI_AVAIL = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def test_activity_list_is_json_for_programs(server: Server) -> None:
    response = server.session.get(f"{server.url}/activities")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Accept" in response.headers["Vary"]
    entries = {entry["name"]: entry for entry in response.json()}
    assert set(entries) == set(ACTIVITIES)
    sleep = entries["sleep"]
    assert sleep["version"] == "1.0"
    assert sleep["description"] == ACTIVITIES["sleep"].description
    assert sleep["parameters"] == ["duration"]
    assert sleep["links"] == {
        "jobs": f"{server.url}/rest/sleep",
        "description": f"{server.url}/activities/sleep",
        "form": f"{server.url}/activities/sleep/form",
        "datalink": f"{server.url}/activities/sleep/datalink",
    }
    expected_types = {"jobs": "application/xml", "description": "application/x-votable+xml",
                      "form": "text/html", "datalink": "application/x-votable+xml"}
    for key, url in sleep["links"].items():
        linked = server.session.get(url)
        assert linked.status_code == 200, (key, linked.text)
        assert linked.headers["Content-Type"].startswith(expected_types[key]), key


@pytest.mark.parametrize("accept", ["application/json", "*/*",
                                    "text/html;q=0.5, application/json"])
def test_activity_list_negotiation_prefers_json(server: Server, accept: str) -> None:
    response = server.session.get(f"{server.url}/activities", headers={"Accept": accept})
    assert response.headers["Content-Type"].startswith("application/json")


def test_activity_list_is_html_for_browsers(server: Server) -> None:
    response = server.session.get(f"{server.url}/activities",
                                  headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    page = html.fromstring(response.content)
    links = set(page.xpath("//a/@href"))
    for name in ACTIVITIES:
        assert f"{server.url}/activities/{name}/form" in links
        assert f"{server.url}/activities/{name}/datalink" in links
        assert f"{server.url}/rest/{name}" in links


@pytest.mark.parametrize("path", ["/activities/{name}", "/jdl/{name}", "/jdl/{name}/votable"])
def test_description_votable_is_valid_and_round_trips(server: Server, path: str) -> None:
    for name, activity in ACTIVITIES.items():
        response = server.session.get(server.url + path.format(name=name))
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/x-votable+xml"
        if path == "/activities/{name}":
            assert_valid_votable(response.content)
        served = parse_activity(response.content)
        assert served == activity


def test_unknown_activity_is_404(server: Server) -> None:
    for path in ("/activities/nope", "/activities/nope/form", "/activities/nope/datalink",
                 "/jdl/nope"):
        response = server.session.get(server.url + path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "nope" in response.text


def test_vosi_capabilities(server: Server) -> None:
    response = server.session.get(f"{server.url}/capabilities")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{VOSI_CAP}}}capabilities"
    found: dict[str, list[str]] = {}
    for capability in root.iterfind("capability"):
        # one interface for anonymous access (no securityMethod), then one per scheme
        # (tests/security/test_identity.py), all at the same accessURL
        interfaces = capability.findall("interface")
        assert [i.get(XSI_TYPE) for i in interfaces] == ["vs:ParamHTTP"] * 3
        assert interfaces[0].nsmap["vs"] == "http://www.ivoa.net/xml/VODataService/v1.1"
        assert interfaces[0].find("securityMethod") is None
        assert len({i.findtext("accessURL") for i in interfaces}) == 1
        found.setdefault(capability.get("standardID"), []).append(
            interfaces[0].findtext("accessURL"))
    assert found == {
        "ivo://ivoa.net/std/VOSI#capabilities": [f"{server.url}/capabilities"],
        "ivo://ivoa.net/std/VOSI#availability": [f"{server.url}/availability"],
        "ivo://ivoa.net/std/UWS#rest-1.1": [server.rest(name) for name in ACTIVITIES],
    }
    # and a VO client reads it
    capabilities = pyvo.io.vosi.parse_capabilities(io.BytesIO(response.content))
    uws = [c for c in capabilities if c.standardid == "ivo://ivoa.net/std/UWS#rest-1.1"]
    assert [c.interfaces[0].accessurls[0].content for c in uws] == \
        [server.rest(name) for name in ACTIVITIES]


def test_vosi_availability(server: Server) -> None:
    # available once the scheduler has sent its first heartbeat (it starts after the web)
    deadline = time.monotonic() + 30
    while b"<vosi:available>true" not in (response := server.session.get(
            f"{server.url}/availability")).content and time.monotonic() < deadline:
        time.sleep(0.1)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{VOSI_AVAIL}}}availability"
    assert root.findtext(f"{{{VOSI_AVAIL}}}available") == "true"
    assert pyvo.io.vosi.parse_availability(io.BytesIO(response.content)).available is True
