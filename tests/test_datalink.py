"""DataLink 1.1 service descriptors (section 4): valid, votlint-clean, and usable by pyvo."""

from __future__ import annotations

import io

import pytest
import pyvo.dal.adhoc  # noqa: F401  (teaches astropy GROUPs directly in a RESOURCE)
import pyvo.io.uws
from astropy.io.votable import parse as parse_votable
from lxml import etree

from conftest import OPUS_DIALECT, ROOT, Server
from opus.activities.datalink import service_descriptor
from opus.activities.model import ActivityDescription, Option, ParameterDescription
from opus.activities.votable import read_activity
from vochecks import assert_valid_votable

VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
ACTIVITIES = {path.stem: read_activity(path)
              for path in sorted((ROOT / "activity_descriptions").glob("*.xml"))}
OLD_DIALECT = sorted(OPUS_DIALECT.glob("*.xml"))

EVERY_KIND = ActivityDescription(
    name="kinds", description="Parameters of every kind & <markup>", command=("true",),
    execution_duration=30,
    parameters=(
        ParameterDescription("count", "int", default="3", minimum="1", maximum="10",
                             description="How many"),
        ParameterDescription("ratio", "double", default="0.5", minimum="0", maximum="1",
                             maximum_inclusive=False, unit="deg", ucd="pos.angDistance"),
        ParameterDescription("mode", "char", arraysize="*", default="fast",
                             options=(Option("fast", "Fast mode"), Option("slow"))),
        ParameterDescription("flag", "boolean", default="false"),
        ParameterDescription("band", "double", arraysize="2", xtype="interval"),
        ParameterDescription("infile", "char", arraysize="*",
                             xtype="application/octet-stream"),
        ParameterDescription("label", "char", arraysize="*", description="Required text"),
    ),
)


def descriptor_resource(document: bytes):  # type: ignore[no-untyped-def]
    """The adhoc:service RESOURCE of a descriptor, as pyvo sees it (astropy tree)."""
    votable = parse_votable(io.BytesIO(document))
    services = [r for r in votable.resources
                if r.type == "meta" and r.utype == "adhoc:service"]
    assert len(services) == 1
    return services[0]


@pytest.mark.parametrize("activity", [*ACTIVITIES.values(), EVERY_KIND,
                                      *map(read_activity, OLD_DIALECT)],
                         ids=lambda a: a.name)
def test_descriptor_is_valid_votable_and_votlint_clean(activity: ActivityDescription) -> None:
    assert_valid_votable(service_descriptor(activity, f"http://example.org/rest/{activity.name}"))


def test_descriptor_structure() -> None:
    root = etree.fromstring(service_descriptor(EVERY_KIND, "http://example.org/rest/kinds"))
    (resource,) = root.iterfind("v:RESOURCE", VOT)
    assert (resource.get("type"), resource.get("utype")) == ("meta", "adhoc:service")
    assert resource.get("ID") == "opus-kinds"
    described = {p.get("name"): p.get("value") for p in resource.iterfind("v:PARAM", VOT)}
    assert described == {"accessURL": "http://example.org/rest/kinds",
                         "standardID": "ivo://ivoa.net/std/UWS#rest-1.1",
                         "contentType": "application/xml"}
    (group,) = resource.iterfind("v:GROUP[@name='inputParams']", VOT)
    params = {p.get("name"): p for p in group.iterfind("v:PARAM", VOT)}
    assert list(params) == ["count", "ratio", "mode", "flag", "band", "infile", "label",
                            "PHASE", "RUNID", "EXECUTIONDURATION"]
    count = params["count"]
    assert (count.get("datatype"), count.get("value")) == ("int", "3")
    assert count.find("v:VALUES/v:MIN", VOT).get("value") == "1"
    assert count.find("v:VALUES/v:MAX", VOT).get("value") == "10"
    assert count.findtext("v:DESCRIPTION", namespaces=VOT) == "How many"
    ratio = params["ratio"]
    assert (ratio.get("unit"), ratio.get("ucd")) == ("deg", "pos.angDistance")
    assert ratio.find("v:VALUES/v:MAX", VOT).get("inclusive") == "no"
    assert [(o.get("value"), o.get("name")) for o in params["mode"].iterfind(".//v:OPTION", VOT)] \
        == [("fast", "Fast mode"), ("slow", None)]
    assert (params["band"].get("arraysize"), params["band"].get("xtype")) == ("2", "interval")
    assert params["infile"].get("xtype") is None  # not a DALI xtype: votlint warns
    assert "application/octet-stream" in params["infile"].findtext("v:DESCRIPTION", namespaces=VOT)
    assert params["label"].get("value") == ""  # no default: the user must give it
    assert "(required)" in params["label"].findtext("v:DESCRIPTION", namespaces=VOT)
    assert [o.get("value") for o in params["PHASE"].iterfind(".//v:OPTION", VOT)] == ["RUN"]


@pytest.mark.parametrize("name", sorted(ACTIVITIES))
def test_served_descriptor(server: Server, name: str) -> None:
    response = server.session.get(f"{server.url}/activities/{name}/datalink")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-votable+xml"
    assert_valid_votable(response.content)
    resource = descriptor_resource(response.content)
    params = {p.name: p.value for p in resource.params}
    assert params["accessURL"] == server.rest(name)
    inputs = next(g for g in resource.groups if g.name == "inputParams")
    assert [p.name for p in inputs.entries][:len(ACTIVITIES[name].parameters)] == \
        [p.name for p in ACTIVITIES[name].parameters]


def run_with_pyvo(server: Server, name: str, **params: object) -> etree._Element:
    """What a VO client does: read the descriptor, build the query, POST it, follow the job."""
    document = server.session.get(f"{server.url}/activities/{name}/datalink").content
    query = pyvo.dal.adhoc.DatalinkQuery.from_resource(
        [], descriptor_resource(document), session=server.session, **params)
    response = query.submit(post=True)
    assert response.status_code == 200, response.text
    assert [r.status_code for r in response.history] == [303]
    job = pyvo.io.uws.parse_job(io.BytesIO(response.content))
    assert job.jobid in response.url
    return server.wait_final(response.url)


def test_pyvo_creates_and_runs_an_echo_job(server: Server) -> None:
    document = run_with_pyvo(server, "echo", text="from pyvo", PHASE="RUN", RUNID="dl")
    job = pyvo.io.uws.parse_job(io.BytesIO(etree.tostring(document)))
    assert job.phase == "COMPLETED"
    assert job.runid == "dl"
    output = next(r for r in job.results if r.id_ == "output")
    assert server.session.get(output.href).content == b"from pyvo\n"


def test_pyvo_converts_numbers_and_sends_defaults(server: Server) -> None:
    document = run_with_pyvo(server, "sleep", PHASE="RUN")  # default duration, as a float
    job = pyvo.io.uws.parse_job(io.BytesIO(etree.tostring(document)))
    assert job.phase == "COMPLETED"
    assert {p.id_: p.content for p in job.parameters}["duration"] in {"1", "1.0"}

    document = run_with_pyvo(server, "sleep", duration=0.2, PHASE="RUN")
    job = pyvo.io.uws.parse_job(io.BytesIO(etree.tostring(document)))
    assert job.phase == "COMPLETED"
    assert {p.id_: p.content for p in job.parameters}["duration"] == "0.2"


def test_pyvo_without_phase_leaves_the_job_pending(server: Server) -> None:
    document = server.session.get(f"{server.url}/activities/echo/datalink").content
    query = pyvo.dal.adhoc.DatalinkQuery.from_resource(
        [], descriptor_resource(document), session=server.session, text="later")
    response = query.submit(post=True)
    assert response.status_code == 200
    assert pyvo.io.uws.parse_job(io.BytesIO(response.content)).phase == "PENDING"


def test_descriptor_declares_its_namespace_once() -> None:
    """The RESOURCE, built on its own for reuse, brings no second namespace declaration."""
    document = service_descriptor(ACTIVITIES["echo"], "http://example.org/rest/echo")
    assert document.startswith(b"<?xml")
    assert document.count(b'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"') == 1
