"""UWS 1.1 REST binding conformance (UWS 1.1 section 2.2), against real servers.

Every test talks HTTP to a running ``opus serve`` (SQLite and PostgreSQL, see conftest) and
checks what a client notices: status codes, Location headers, ``text/plain`` bodies, XML
valid against UWS.xsd and readable by pyvo.

Decisions where the standard leaves room, as the server implements them:

- PHASE values of the job-list filter are accepted in any case (``?PHASE=pending``), like
  parameter names (DALI 1.1 section 3.1); an unknown phase is a 400.
- The job-control parameters (PHASE=RUN, RUNID, EXECUTIONDURATION, DESTRUCTION) are
  accepted at creation, in the body or the query string (UWS 1.1 section 2.2.3.1).
- A DESTRUCTION later than the server's maximum is clamped, not refused (section 2.2.3.3:
  the service may substitute a value of its choosing); one in the past is a 400.
- A parameter value with a character XML cannot carry is a 400 (section 2.2.2.4), since
  every value reappears in the job document.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import time
import uuid
import warnings

import pytest
import requests
from lxml import etree
from pyvo.io.uws import parse_job, parse_job_list

from conftest import UWS_NS, Server

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
ACTIVE = {"PENDING", "QUEUED", "EXECUTING"}
RUNNING_OR_DONE = {"QUEUED", "EXECUTING", "COMPLETED"}


# -- helpers -----------------------------------------------------------------------------
def post(server: Server, url: str, data: object = None, **kwargs: object) -> requests.Response:
    return server.session.post(url, data=data, allow_redirects=False, **kwargs)


def assert_see_other(response: requests.Response, location: str) -> None:
    """303 See Other pointing at ``location`` (UWS 1.1 section 2.2.3)."""
    assert response.status_code == 303, response.text
    assert response.headers["Location"] == location


def assert_client_error(response: requests.Response, status: int, *names: str) -> str:
    """A client error with a plain-text message naming every one of ``names``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("text/plain")
    for name in names:
        assert name.lower() in response.text.lower(), (name, response.text)
    return response.text


def assert_timestamp(text: str | None) -> dt.datetime:
    """A UWS instant (section 2.2.1: 'T' separator, UTC with 'Z'), as naive UTC."""
    assert text is not None and TIMESTAMP.match(text), text
    return dt.datetime.fromisoformat(text.rstrip("Z"))


def fetch_xml(server: Server, url: str, schema: etree.XMLSchema,
              **query: str) -> tuple[etree._Element, bytes]:
    response = server.session.get(url, params=query)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/xml")
    document = etree.fromstring(response.content)
    schema.assertValid(document)
    return document, response.content


def job_document(server: Server, url: str, schema: etree.XMLSchema,
                 **query: str) -> etree._Element:
    """The job, checked: schema-valid, version 1.1, timestamps, integer executionDuration,
    and readable by pyvo."""
    document, content = fetch_xml(server, url, schema, **query)
    assert document.tag == f"{{{UWS_NS['uws']}}}job"
    assert document.get("version") == "1.1"  # section 2.2.1.1
    assert url.endswith("/" + document.findtext("uws:jobId", namespaces=UWS_NS))
    assert_timestamp(document.findtext("uws:creationTime", namespaces=UWS_NS))
    for name in ("quote", "startTime", "endTime", "destruction"):
        element = document.find(f"uws:{name}", UWS_NS)
        if element is not None and element.get(XSI_NIL) != "true":
            assert_timestamp(element.text)
    duration = document.findtext("uws:executionDuration", namespaces=UWS_NS)
    assert duration is not None and re.fullmatch(r"\d+", duration), duration
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pedantic: a pyvo warning is a failure
        parsed = parse_job(io.BytesIO(content), pedantic=True)
    assert parsed.jobid == document.findtext("uws:jobId", namespaces=UWS_NS)
    assert parsed.phase == document.findtext("uws:phase", namespaces=UWS_NS)
    assert int(parsed.executionduration.to_value("s")) == int(duration)
    assert {p.id_: p.content for p in parsed.parameters} == parameters_of(document)
    return document


def phase_of(document: etree._Element) -> str:
    return document.findtext("uws:phase", namespaces=UWS_NS)


def parameters_of(document: etree._Element) -> dict[str, str]:
    return {p.get("id"): p.text or "" for p in document.iterfind(".//uws:parameter", UWS_NS)}


def job_list(server: Server, activity: str, schema: etree.XMLSchema,
             **query: object) -> list[dict[str, str | None]]:
    """The job list, checked (schema, version, hrefs, timestamps, pyvo); one dict per job."""
    response = server.session.get(server.rest(activity), params=query)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/xml")
    document = etree.fromstring(response.content)
    schema.assertValid(document)
    assert document.get("version") == "1.1"
    refs = []
    for ref in document.iterfind("uws:jobref", UWS_NS):
        assert ref.get(XLINK_HREF) == f"{server.rest(activity)}/{ref.get('id')}"
        refs.append({
            "id": ref.get("id"),
            "phase": ref.findtext("uws:phase", namespaces=UWS_NS),
            "runId": ref.findtext("uws:runId", namespaces=UWS_NS),
            "creationTime": ref.findtext("uws:creationTime", namespaces=UWS_NS),
        })
        assert_timestamp(refs[-1]["creationTime"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse_job_list(io.BytesIO(response.content), pedantic=True)
    assert [(j.jobid, j.phase, j.runid) for j in parsed] == \
        [(r["id"], r["phase"], r["runId"]) for r in refs]
    return refs


def ids(refs: list[dict[str, str | None]]) -> list[str | None]:
    return [ref["id"] for ref in refs]


def job_id(job_url: str) -> str:
    return job_url.rsplit("/", 1)[1]


def wait_phase(server: Server, job_url: str, phases: set[str], timeout: float = 30) -> str:
    """Follow a job with WAIT until it is in one of ``phases``."""
    deadline = time.monotonic() + timeout
    while True:
        phase = server.phase(job_url)
        if phase in phases:
            return phase
        assert phase in ACTIVE, f"job ended {phase} while waiting for {phases}"
        assert time.monotonic() < deadline, f"job still {phase} after {timeout} s"
        server.job(job_url, WAIT="5", PHASE=phase)


def executing_sleep_job(server: Server, duration: str = "30") -> str:
    job_url = server.create("sleep", duration=duration)
    wait_phase(server, job_url, {"EXECUTING"})
    return job_url


def abort_quietly(server: Server, job_url: str) -> None:
    """Free the execution slot of a long job a test started (2 slots on small machines)."""
    post(server, f"{job_url}/phase", {"PHASE": "ABORT"})


def completed_echo_job(server: Server, text: str = "done") -> str:
    job_url = server.create("echo", text=text)
    assert phase_of(server.wait_final(job_url)) == "COMPLETED"
    return job_url


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# -- the job list (section 2.2.2.1) ------------------------------------------------------
def test_empty_filtered_job_list_is_valid(server: Server, uws_schema) -> None:
    assert job_list(server, "echo", uws_schema, AFTER="2999-01-01T00:00:00Z") == []


def test_job_list_references_every_job(server: Server, uws_schema) -> None:
    first = server.create("echo", run=False, text="a")
    second = server.create("echo", run=False, text="b", RUNID="batch-7")
    refs = {ref["id"]: ref for ref in job_list(server, "echo", uws_schema)}
    assert refs[job_id(first)]["phase"] == "PENDING"
    assert refs[job_id(first)]["runId"] is None
    assert refs[job_id(second)]["runId"] == "batch-7"
    document = job_document(server, second, uws_schema)
    assert refs[job_id(second)]["creationTime"] == \
        document.findtext("uws:creationTime", namespaces=UWS_NS)


def test_phase_filter_and_its_union(server: Server, uws_schema) -> None:
    pending = job_id(server.create("echo", run=False, text="p"))
    completed = job_id(completed_echo_job(server))

    only_pending = job_list(server, "echo", uws_schema, PHASE="PENDING")
    assert pending in ids(only_pending) and completed not in ids(only_pending)
    assert {ref["phase"] for ref in only_pending} == {"PENDING"}

    # Repeated PHASE: the union of the phases.
    both = job_list(server, "echo", uws_schema, PHASE=["PENDING", "COMPLETED"])
    assert {pending, completed} <= set(ids(both))
    assert {ref["phase"] for ref in both} <= {"PENDING", "COMPLETED"}
    # Only a client moves a job out of PENDING, so every pending job is in the union.
    assert set(ids(only_pending)) <= set(ids(both))

    # The filter value is not case-sensitive (a server decision, see the module notes).
    assert ids(job_list(server, "echo", uws_schema, PHASE="pending")) == ids(only_pending)


def test_after_filter(server: Server, uws_schema) -> None:
    before = server.create("echo", run=False, text="before")
    created = assert_timestamp(job_document(server, before, uws_schema)
                               .findtext("uws:creationTime", namespaces=UWS_NS))
    after = server.create("echo", run=False, text="after")
    while assert_timestamp(job_document(server, after, uws_schema).findtext(
            "uws:creationTime", namespaces=UWS_NS)) <= created:  # same millisecond: rare
        after = server.create("echo", run=False, text="after")
    stamp = created.isoformat(timespec="milliseconds") + "Z"
    listed = job_list(server, "echo", uws_schema, AFTER=stamp)
    assert job_id(after) in ids(listed)
    assert job_id(before) not in ids(listed)  # strictly after
    assert all(assert_timestamp(ref["creationTime"]) > created for ref in listed)
    # Any ISO 8601 spelling of the same instant means the same.
    offset = (created + dt.timedelta(hours=2)).isoformat(timespec="milliseconds") + "+02:00"
    assert ids(job_list(server, "echo", uws_schema, AFTER=offset)) == ids(listed)


def test_last_filter_lists_the_most_recent_first(server: Server, uws_schema) -> None:
    created = [job_id(server.create("echo", run=False, text=str(i))) for i in range(3)]
    last_two = job_list(server, "echo", uws_schema, LAST="2")
    assert ids(last_two) == [created[2], created[1]]
    everything = job_list(server, "echo", uws_schema)
    times = [assert_timestamp(ref["creationTime"]) for ref in everything]
    assert times == sorted(times, reverse=True)
    assert ids(job_list(server, "echo", uws_schema, LAST="1")) == [created[2]]
    # LAST beyond any number of jobs is all of them, not an error.
    assert ids(job_list(server, "echo", uws_schema, LAST="99999999999999999999")) == \
        ids(everything)


def test_filters_are_anded(server: Server, uws_schema) -> None:
    older_pending = job_id(server.create("echo", run=False, text="old"))
    completed = job_id(completed_echo_job(server))
    newest_pending = job_id(server.create("echo", run=False, text="new"))

    assert ids(job_list(server, "echo", uws_schema, PHASE="PENDING", LAST="1")) == \
        [newest_pending]
    assert ids(job_list(server, "echo", uws_schema, PHASE="COMPLETED", LAST="1")) == \
        [completed]
    two = job_list(server, "echo", uws_schema, PHASE=["PENDING", "COMPLETED"], LAST="2")
    assert ids(two) == [newest_pending, completed]

    created = job_document(server, f"{server.rest('echo')}/{older_pending}", uws_schema) \
        .findtext("uws:creationTime", namespaces=UWS_NS)
    recent_pending = job_list(server, "echo", uws_schema, PHASE="PENDING", AFTER=created)
    assert newest_pending in ids(recent_pending)
    assert older_pending not in ids(recent_pending)
    assert completed not in ids(recent_pending)


@pytest.mark.parametrize("query, name", [
    ({"PHASE": "FOO"}, "PHASE"),
    ({"PHASE": ""}, "PHASE"),
    ({"PHASE": ["PENDING", "RUNNING"]}, "PHASE"),
    ({"AFTER": "abc"}, "AFTER"),
    ({"AFTER": "2026-13-01T00:00:00Z"}, "AFTER"),
    ({"AFTER": "2026-02-30"}, "AFTER"),
    ({"AFTER": "9999-12-31T23:59:59-01:00"}, "AFTER"),  # beyond the last representable date
    ({"AFTER": "0001-01-01T00:00:00+01:00"}, "AFTER"),
    ({"AFTER": "2026-01-01T00:00:00+99:99"}, "AFTER"),
    ({"AFTER": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]}, "AFTER"),
    ({"LAST": "0"}, "LAST"),
    ({"LAST": "-1"}, "LAST"),
    ({"LAST": "abc"}, "LAST"),
    ({"LAST": "1.5"}, "LAST"),
    ({"LAST": ""}, "LAST"),
    ({"LAST": ["1", "2"]}, "LAST"),
])
def test_invalid_job_list_filters_are_400(server: Server, query, name) -> None:
    response = server.session.get(server.rest("echo"), params=query)
    assert_client_error(response, 400, name)


def test_archived_jobs_are_listed_only_with_phase_archived(server_factory, uws_schema) -> None:
    archiving = server_factory(destruction_policy="archive")
    # A new server: its lists are empty, and valid.
    assert job_list(archiving, "echo", uws_schema) == []
    assert job_list(archiving, "echo", uws_schema, PHASE="ARCHIVED") == []
    job_url = archiving.create("echo", run=False, text="keep my metadata")
    kept = archiving.create("echo", run=False, text="not destroyed")
    soon = (utcnow() + dt.timedelta(seconds=2)).isoformat(timespec="milliseconds") + "Z"
    assert_see_other(post(archiving, f"{job_url}/destruction", {"DESTRUCTION": soon}),
                     job_url)
    assert archiving.session.get(f"{job_url}/destruction").text == soon

    # WAIT only blocks in active phases and a PENDING job is one; the destruction is
    # announced like any phase change, so WAIT=5 returns when the scheduler archives it.
    deadline = time.monotonic() + 20
    while phase_of(job_document(archiving, job_url, uws_schema, WAIT="5")) != "ARCHIVED":
        assert time.monotonic() < deadline, "job not archived 20 s after its destruction"

    archived = job_document(archiving, job_url, uws_schema)  # metadata kept (2.1.3)
    assert parameters_of(archived) == {"text": "keep my metadata"}
    assert archived.find("uws:results/uws:result", UWS_NS) is None
    default = job_list(archiving, "echo", uws_schema)
    assert ids(default) == [job_id(kept)]  # section 2.2.2.1: ARCHIVED left out by default
    assert ids(job_list(archiving, "echo", uws_schema, PHASE="ARCHIVED")) == [job_id(job_url)]
    both = job_list(archiving, "echo", uws_schema, PHASE=["ARCHIVED", "PENDING"])
    assert set(ids(both)) == {job_id(job_url), job_id(kept)}
    # An archived job can no longer be run, and its destruction is past changing.
    assert_client_error(post(archiving, f"{job_url}/phase", {"PHASE": "RUN"}), 403)
    later = (utcnow() + dt.timedelta(days=1)).isoformat() + "Z"
    assert_client_error(post(archiving, f"{job_url}/destruction", {"DESTRUCTION": later}), 403)


# -- creation (section 2.2.3.1) ----------------------------------------------------------
def test_creation_redirects_to_a_pending_job(server: Server, uws_schema) -> None:
    before = utcnow() - dt.timedelta(seconds=1)
    response = post(server, server.rest("echo"), {"text": "hello"})
    assert response.status_code == 303, response.text
    job_url = response.headers["Location"]
    assert re.fullmatch(re.escape(server.rest("echo")) + r"/[A-Za-z0-9_-]+", job_url)
    document = job_document(server, job_url, uws_schema)
    assert phase_of(document) == "PENDING"
    assert parameters_of(document) == {"text": "hello"}
    assert document.find("uws:ownerId", UWS_NS).get(XSI_NIL) == "true"  # anonymous
    assert document.find("uws:runId", UWS_NS) is None
    created = assert_timestamp(document.findtext("uws:creationTime", namespaces=UWS_NS))
    assert before <= created <= utcnow() + dt.timedelta(seconds=1)
    assert document.find("uws:startTime", UWS_NS).get(XSI_NIL) == "true"
    assert document.find("uws:endTime", UWS_NS).get(XSI_NIL) == "true"
    assert assert_timestamp(document.findtext("uws:destruction", namespaces=UWS_NS)) > created
    assert document.find("uws:results", UWS_NS) is not None
    # The new job is in the list.
    assert job_id(job_url) in ids(job_list(server, "echo", uws_schema, PHASE="PENDING"))


@pytest.mark.parametrize("where", ["body", "query"])
def test_phase_run_at_creation_queues_the_job(server: Server, uws_schema, where) -> None:
    if where == "body":
        response = post(server, server.rest("echo"), {"text": "go", "PHASE": "RUN"})
    else:  # section 2.2.3.1: "?PHASE=RUN query part to the job creation URL"
        response = post(server, server.rest("echo") + "?PHASE=RUN", {"text": "go"})
    assert response.status_code == 303, response.text
    job_url = response.headers["Location"]
    assert phase_of(job_document(server, job_url, uws_schema)) in RUNNING_OR_DONE
    assert phase_of(server.wait_final(job_url)) == "COMPLETED"


@pytest.mark.parametrize("name", ["TEXT", "Text", "tExT"])
def test_parameter_names_are_case_insensitive(server: Server, uws_schema, name) -> None:
    job_url = server.create("echo", run=False, **{name: "spelled"})
    document = job_document(server, job_url, uws_schema)
    assert parameters_of(document) == {"text": "spelled"}  # the description's spelling
    assert server.session.get(f"{job_url}/parameters/text").text == "spelled"


@pytest.mark.parametrize("name", ["RUNID", "runId"])
def test_runid_is_returned_in_the_job_and_the_list(server: Server, uws_schema, name) -> None:
    run_id = f"my run {uuid.uuid4().hex[:6]} ✓"
    job_url = server.create("echo", run=False, text="x", **{name: run_id})
    document = job_document(server, job_url, uws_schema)
    assert document.findtext("uws:runId", namespaces=UWS_NS) == run_id
    assert "RUNID" not in {key.upper() for key in parameters_of(document)}
    refs = {ref["id"]: ref for ref in job_list(server, "echo", uws_schema, LAST="5")}
    assert refs[job_id(job_url)]["runId"] == run_id


def test_job_control_parameters_at_creation(server: Server, uws_schema) -> None:
    destruction = (utcnow() + dt.timedelta(days=2)).replace(microsecond=0)
    job_url = server.create("sleep", run=False, duration="2", EXECUTIONDURATION="30",
                            DESTRUCTION=destruction.isoformat() + "Z")
    document = job_document(server, job_url, uws_schema)
    assert document.findtext("uws:executionDuration", namespaces=UWS_NS) == "30"
    assert assert_timestamp(document.findtext("uws:destruction", namespaces=UWS_NS)) == \
        destruction
    assert parameters_of(document) == {"duration": "2"}


def test_unknown_parameter_is_400_and_nothing_is_stored(server: Server, uws_schema) -> None:
    before = job_list(server, "echo", uws_schema)
    response = post(server, server.rest("echo"), {"text": "x", "colour": "blue"})
    assert_client_error(response, 400, "colour")
    assert ids(job_list(server, "echo", uws_schema)) == ids(before)


def test_missing_required_parameter_is_400(server: Server, uws_schema) -> None:
    before = job_list(server, "echo", uws_schema)
    assert_client_error(post(server, server.rest("echo"), {}), 400, "text", "required")
    assert_client_error(post(server, server.rest("echo"), {"PHASE": "RUN"}), 400, "text")
    assert ids(job_list(server, "echo", uws_schema)) == ids(before)


@pytest.mark.parametrize("value", ["abc", "7200", "nan", "inf", "-1", "1e9999", ""])
def test_bad_parameter_value_is_400_naming_it(server: Server, uws_schema, value) -> None:
    if value == "":  # an empty value takes the default (an HTML form sends empty fields)
        job_url = server.create("sleep", run=False, duration="")
        assert parameters_of(job_document(server, job_url, uws_schema)) == {"duration": "1"}
        return
    before = job_list(server, "sleep", uws_schema)
    response = post(server, server.rest("sleep"), {"duration": value, "PHASE": "RUN"})
    assert_client_error(response, 400, "duration")
    assert ids(job_list(server, "sleep", uws_schema)) == ids(before)


@pytest.mark.parametrize("data, name", [
    ({"PHASE": "ABORT"}, "PHASE"),
    ({"PHASE": "FOO"}, "PHASE"),
    ({"ACTION": "DELETE"}, "ACTION"),
    ({"EXECUTIONDURATION": "abc"}, "EXECUTIONDURATION"),
    ({"EXECUTIONDURATION": "-5"}, "EXECUTIONDURATION"),
    ({"EXECUTIONDURATION": "99999999999999999999"}, "EXECUTIONDURATION"),
    ({"DESTRUCTION": "tomorrow"}, "DESTRUCTION"),
    ({"DESTRUCTION": "2001-01-01T00:00:00Z"}, "DESTRUCTION"),  # in the past
    ({"RUNID": "r" * 256}, "RUNID"),
    ({"PHASE": ["RUN", "RUN"]}, "PHASE"),
    ({"text": "x\x00y"}, "text"),      # not carried by XML (section 2.2.2.4)
    ({"RUNID": "bell\x07"}, "RUNID"),
    ({"text": "x\ufffe"}, "text"),
])
def test_bad_control_parameter_at_creation_is_400(server: Server, uws_schema, data,
                                                  name) -> None:
    before = job_list(server, "echo", uws_schema)
    response = post(server, server.rest("echo"), {"text": "x", **data})
    assert_client_error(response, 400, name)
    assert ids(job_list(server, "echo", uws_schema)) == ids(before)


def test_unknown_activity_is_404(server: Server) -> None:
    assert_client_error(post(server, server.rest("nope"), {"text": "x"}), 404, "nope")
    assert_client_error(server.session.get(server.rest("nope")), 404, "nope")
    assert_client_error(server.session.get(server.rest("nope") + "/abc"), 404)


# -- the job and its atomic resources (sections 2.2.1, 2.2.2) ----------------------------
def test_atomic_job_resources_are_text_plain(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    document = job_document(server, job_url, uws_schema)

    def text(name: str) -> str:
        response = server.session.get(f"{job_url}/{name}")
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.text

    assert text("phase") == "PENDING"
    assert text("executionduration") == \
        document.findtext("uws:executionDuration", namespaces=UWS_NS)
    assert int(text("executionduration")) > 0
    assert text("destruction") == document.findtext("uws:destruction", namespaces=UWS_NS)
    assert_timestamp(text("destruction"))
    assert_timestamp(text("quote"))  # a PENDING job gets an estimate (section 2.1.6)
    assert text("error") == ""
    assert text("owner") == ""  # anonymous: no owner (section 2.1.8)


def test_error_resource_of_an_aborted_job(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    assert_see_other(post(server, f"{job_url}/phase", {"PHASE": "ABORT"}), job_url)
    document = job_document(server, job_url, uws_schema)
    assert phase_of(document) == "ABORTED"
    message = document.findtext("uws:errorSummary/uws:message", namespaces=UWS_NS)
    assert message
    assert server.session.get(f"{job_url}/error").text == message
    assert server.session.get(f"{job_url}/quote").text == ""  # nothing to estimate


def test_post_phase_run_queues_a_pending_job(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    assert_see_other(post(server, f"{job_url}/phase", {"PHASE": "RUN"}), job_url)
    assert phase_of(job_document(server, job_url, uws_schema)) in RUNNING_OR_DONE
    # RUN again while it is on its way changes nothing; after the end it is refused.
    phase = server.phase(job_url)
    if phase in {"QUEUED", "EXECUTING"}:
        assert post(server, f"{job_url}/phase", {"PHASE": "RUN"}).status_code in {303, 403}
    assert phase_of(server.wait_final(job_url)) == "COMPLETED"
    assert_client_error(post(server, f"{job_url}/phase", {"PHASE": "RUN"}), 403, "COMPLETED")


def test_post_phase_run_to_the_job_url(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    assert_see_other(post(server, job_url, {"PHASE": "RUN"}), job_url)
    assert phase_of(job_document(server, job_url, uws_schema)) in RUNNING_OR_DONE
    server.wait_final(job_url)


def test_abort_a_running_job(server: Server, uws_schema) -> None:
    job_url = executing_sleep_job(server)
    try:
        assert_see_other(post(server, f"{job_url}/phase", {"PHASE": "ABORT"}), job_url)
        document = job_document(server, job_url, uws_schema)
        assert phase_of(document) == "ABORTED"
        assert_timestamp(document.findtext("uws:endTime", namespaces=UWS_NS))
        parsed = parse_job(io.BytesIO(etree.tostring(document)), pedantic=True)
        assert parsed.errorsummary is not None and parsed.errorsummary.message.content
        assert server.session.get(f"{job_url}/error").text == \
            parsed.errorsummary.message.content
    finally:
        abort_quietly(server, job_url)


def test_abort_a_pending_job(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    assert_see_other(post(server, job_url, {"PHASE": "ABORT"}), job_url)
    assert phase_of(job_document(server, job_url, uws_schema)) == "ABORTED"


def test_abort_a_completed_job_is_403(server: Server) -> None:
    job_url = completed_echo_job(server)
    text = assert_client_error(post(server, f"{job_url}/phase", {"PHASE": "ABORT"}), 403)
    assert "COMPLETED" in text
    assert server.phase(job_url) == "COMPLETED"


@pytest.mark.parametrize("target", ["phase", ""])
@pytest.mark.parametrize("data", [{"PHASE": "FOO"}, {"PHASE": ""}, {"PHASE": "SUSPEND"}])
def test_unknown_phase_action_is_400(server: Server, target, data) -> None:
    job_url = server.create("echo", run=False, text="x")
    url = f"{job_url}/{target}" if target else job_url
    assert_client_error(post(server, url, data), 400, "PHASE")
    assert server.phase(job_url) == "PENDING"


def test_post_phase_without_phase_is_400(server: Server) -> None:
    job_url = server.create("echo", run=False, text="x")
    assert_client_error(post(server, f"{job_url}/phase", {}), 400, "PHASE")


def test_execution_duration_changes_while_pending(server: Server, uws_schema) -> None:
    job_url = server.create("sleep", run=False, duration="0")
    url = f"{job_url}/executionduration"
    assert_see_other(post(server, url, {"EXECUTIONDURATION": "120"}), job_url)
    assert server.session.get(url).text == "120"
    assert job_document(server, job_url, uws_schema).findtext(
        "uws:executionDuration", namespaces=UWS_NS) == "120"
    for bad in ("abc", "-1", "1.5", ""):
        assert_client_error(post(server, url, {"EXECUTIONDURATION": bad}), 400,
                            "EXECUTIONDURATION")
    assert_client_error(post(server, url, {}), 400, "EXECUTIONDURATION")
    assert server.session.get(url).text == "120"
    # A request over the server's limit is overridden (section 2.2.3.4), not refused.
    assert_see_other(post(server, url, {"EXECUTIONDURATION": "99999999"}), job_url)
    assert 0 < int(server.session.get(url).text) < 99999999


def test_execution_duration_of_a_completed_job_is_403(server: Server) -> None:
    job_url = completed_echo_job(server)
    url = f"{job_url}/executionduration"
    before = server.session.get(url).text
    assert_client_error(post(server, url, {"EXECUTIONDURATION": "10"}), 403)
    assert server.session.get(url).text == before


def test_destruction_is_normalised_to_utc(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    url = f"{job_url}/destruction"
    wanted = (utcnow() + dt.timedelta(days=3)).replace(microsecond=250000)
    local = (wanted + dt.timedelta(hours=2)).isoformat() + "+02:00"  # same instant
    assert_see_other(post(server, url, {"DESTRUCTION": local}), job_url)
    expected = wanted.isoformat(timespec="milliseconds") + "Z"
    assert server.session.get(url).text == expected
    assert job_document(server, job_url, uws_schema).findtext(
        "uws:destruction", namespaces=UWS_NS) == expected


@pytest.mark.parametrize("value", ["garbage", "2026-02-30T00:00:00Z", "", "2001-01-01T00:00Z"])
def test_bad_destruction_is_400(server: Server, value) -> None:
    job_url = server.create("echo", run=False, text="x")
    before = server.session.get(f"{job_url}/destruction").text
    assert_client_error(post(server, f"{job_url}/destruction", {"DESTRUCTION": value}), 400,
                        "DESTRUCTION")
    assert server.session.get(f"{job_url}/destruction").text == before


def test_destruction_beyond_the_maximum_is_clamped(server: Server) -> None:
    job_url = server.create("echo", run=False, text="x")
    far = "2999-01-01T00:00:00Z"
    assert_see_other(post(server, f"{job_url}/destruction", {"DESTRUCTION": far}), job_url)
    # Section 2.2.3.3: the service may substitute a value of its choosing; the client
    # reads back what was set. Here: at most the server's limit (30 days by default).
    value = assert_timestamp(server.session.get(f"{job_url}/destruction").text)
    assert utcnow() < value <= utcnow() + dt.timedelta(days=30, minutes=1)


# -- parameters (sections 2.1.11, 2.2.2.4) ----------------------------------------------
def test_parameter_list_and_single_parameter(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="line one\nline <two> & 'three' ✓")
    document, _ = fetch_xml(server, f"{job_url}/parameters", uws_schema)
    assert document.tag == f"{{{UWS_NS['uws']}}}parameters"
    assert parameters_of(document) == {"text": "line one\nline <two> & 'three' ✓"}
    for name in ("text", "TEXT"):
        response = server.session.get(f"{job_url}/parameters/{name}")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.text == "line one\nline <two> & 'three' ✓"
    assert_client_error(server.session.get(f"{job_url}/parameters/colour"), 404, "colour")


def test_parameters_change_while_pending(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="first")
    text_url = f"{job_url}/parameters/text"

    assert_see_other(post(server, f"{job_url}/parameters", {"text": "second"}), job_url)
    assert server.session.get(text_url).text == "second"

    assert_see_other(post(server, job_url, {"Text": "third"}), job_url)
    assert parameters_of(job_document(server, job_url, uws_schema)) == {"text": "third"}

    response = server.session.put(text_url, data="fourth ✓".encode(), allow_redirects=False)
    assert_see_other(response, job_url)
    assert server.session.get(text_url).text == "fourth ✓"

    assert_client_error(post(server, f"{job_url}/parameters", {"colour": "red"}), 400,
                        "colour")
    assert_client_error(server.session.put(f"{job_url}/parameters/colour", data="red",
                                           allow_redirects=False), 400, "colour")
    assert_client_error(post(server, job_url, {"text": "\x00"}), 400, "text")
    # Job control parameters go with them (section 2.1.11), RUNID included.
    assert_see_other(post(server, job_url, {"RUNID": "renamed", "EXECUTIONDURATION": "7"}),
                     job_url)
    document = job_document(server, job_url, uws_schema)
    assert document.findtext("uws:runId", namespaces=UWS_NS) == "renamed"
    assert document.findtext("uws:executionDuration", namespaces=UWS_NS) == "7"
    assert parameters_of(document) == {"text": "fourth ✓"}


def test_parameters_are_fixed_once_the_job_runs(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="fixed")
    assert_see_other(post(server, job_url, {"text": "run me", "PHASE": "RUN"}), job_url)
    assert phase_of(job_document(server, job_url, uws_schema)) in RUNNING_OR_DONE
    assert parameters_of(job_document(server, job_url, uws_schema)) == {"text": "run me"}
    for response in (
        post(server, f"{job_url}/parameters", {"text": "late"}),
        post(server, job_url, {"text": "late"}),
        server.session.put(f"{job_url}/parameters/text", data="late", allow_redirects=False),
    ):
        assert_client_error(response, 403)
    assert server.session.get(f"{job_url}/parameters/text").text == "run me"
    server.wait_final(job_url)


# -- results (sections 2.1.10, 2.2.2.3) --------------------------------------------------
def test_results_are_listed_and_downloadable(server: Server, uws_schema) -> None:
    job_url = completed_echo_job(server, "résultat")
    document, _ = fetch_xml(server, f"{job_url}/results", uws_schema)
    assert document.tag == f"{{{UWS_NS['uws']}}}results"
    results = list(document.iterfind("uws:result", UWS_NS))
    assert results and "output" in {r.get("id") for r in results}
    in_job = job_document(server, job_url, uws_schema)
    assert [r.get("id") for r in in_job.iterfind("uws:results/uws:result", UWS_NS)] == \
        [r.get("id") for r in results]
    for result in results:
        response = server.session.get(result.get(XLINK_HREF))
        if result.get("id") == "provenance":  # made on request (ProvSAP): no fixed size
            assert response.status_code == 200
            assert response.headers["Content-Type"] == result.get("mime-type")
            continue
        assert result.get("size") is not None and result.get("mime-type"), result.attrib
        assert response.status_code == 200
        assert response.headers["Content-Type"].split(";")[0] == result.get("mime-type")
        assert int(response.headers["Content-Length"]) == int(result.get("size"))
        assert len(response.content) == int(result.get("size"))
    output = next(r for r in results if r.get("id") == "output")
    assert server.session.get(output.get(XLINK_HREF)).content == "résultat\n".encode()
    assert_client_error(server.session.get(f"{job_url}/results/nope"), 404, "nope")


def test_results_of_a_pending_job_are_an_empty_list(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    document, _ = fetch_xml(server, f"{job_url}/results", uws_schema)
    assert len(document) == 0
    assert_client_error(server.session.get(f"{job_url}/results/output"), 404)


# -- deletion (section 2.2.3.2) ----------------------------------------------------------
@pytest.mark.parametrize("how", ["DELETE", "ACTION=DELETE", "action=delete",
                                 "ACTION=DELETE in query"])
def test_delete_redirects_to_the_job_list(server: Server, uws_schema, how) -> None:
    job_url = server.create("echo", run=False, text="doomed")
    if how == "DELETE":
        response = server.session.delete(job_url, allow_redirects=False)
    elif how == "ACTION=DELETE in query":
        response = post(server, job_url + "?ACTION=DELETE")
    else:
        name, value = how.split("=")
        response = post(server, job_url, {name: value})
    assert_see_other(response, server.rest("echo"))
    assert_client_error(server.session.get(job_url), 404)
    assert_client_error(server.session.get(f"{job_url}/phase"), 404)
    assert job_id(job_url) not in ids(job_list(server, "echo", uws_schema))
    assert_client_error(server.session.delete(job_url, allow_redirects=False), 404)


def test_delete_a_running_job(server: Server, uws_schema) -> None:
    job_url = executing_sleep_job(server)
    try:
        assert_see_other(server.session.delete(job_url, allow_redirects=False),
                         server.rest("sleep"))
        assert_client_error(server.session.get(job_url), 404)
    finally:
        abort_quietly(server, job_url)


@pytest.mark.parametrize("action", ["FOO", "", "ABORT"])
def test_unknown_action_is_400(server: Server, action) -> None:
    job_url = server.create("echo", run=False, text="x")
    assert_client_error(post(server, job_url, {"ACTION": action}), 400, "ACTION")
    assert server.phase(job_url) == "PENDING"
    # ACTION is a request to the job; sent with the parameters it is not one of them.
    assert_client_error(post(server, f"{job_url}/parameters", {"ACTION": "DELETE"}), 400,
                        "ACTION")
    assert server.phase(job_url) == "PENDING"


@pytest.mark.parametrize("method, path", [
    ("GET", ""), ("GET", "/phase"), ("GET", "/executionduration"), ("GET", "/destruction"),
    ("GET", "/error"), ("GET", "/quote"), ("GET", "/owner"), ("GET", "/parameters"),
    ("GET", "/parameters/text"), ("GET", "/results"), ("GET", "/results/output"),
    ("DELETE", ""), ("POST", ""), ("POST", "/phase"), ("POST", "/executionduration"),
    ("POST", "/destruction"), ("POST", "/parameters"), ("PUT", "/parameters/text"),
])
def test_unknown_job_is_404(server: Server, method, path) -> None:
    data = {"PHASE": "RUN", "EXECUTIONDURATION": "5", "DESTRUCTION": "2999-01-01T00:00:00Z",
            "text": "x"}
    if path == "/parameters/text":
        data = "x"
    response = server.session.request(method, f"{server.rest('echo')}/no-such-job{path}",
                                      data=data if method in {"POST", "PUT"} else None,
                                      allow_redirects=False)
    assert_client_error(response, 404)


def test_job_under_another_activity_is_404(server: Server) -> None:
    job_url = server.create("echo", run=False, text="x")
    elsewhere = f"{server.rest('sleep')}/{job_id(job_url)}"
    for path in ("", "/phase", "/parameters", "/results"):
        assert_client_error(server.session.get(elsewhere + path), 404)
    assert_client_error(server.session.delete(elsewhere, allow_redirects=False), 404)
    assert_client_error(post(server, f"{elsewhere}/phase", {"PHASE": "RUN"}), 404)
    assert_client_error(server.session.get(elsewhere, params={"WAIT": "5"}), 404)
    assert server.phase(job_url) == "PENDING"  # untouched


# -- malformed input: a 4xx, never a 500 (DESIGN.md principle 5) -------------------------
def test_malformed_input_never_causes_a_server_error(server: Server, uws_schema) -> None:
    jobs = server.rest("echo")
    job_url = server.create("echo", run=False, text="x")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, dict[str, object]]] = [
        ("POST", jobs, {"data": b"text=\xff\xfe", "headers": form}),
        ("POST", jobs, {"data": b"text=%FF%FE", "headers": form}),
        ("POST", jobs, {"data": b"\xff=\xff", "headers": form}),
        ("POST", jobs, {"data": b""}),
        ("POST", jobs, {"data": b"", "headers": form}),
        ("POST", jobs, {"data": b"&&&==&=", "headers": form}),
        ("POST", jobs, {"data": b'{"text": "x"}', "headers": json_type}),
        ("POST", jobs, {"data": b"<job/>", "headers": {"Content-Type": "application/xml"}}),
        ("POST", jobs, {"data": b"garbage",
                        "headers": {"Content-Type": "multipart/form-data; boundary=x"}}),
        ("POST", jobs, {"data": b"garbage", "headers": {"Content-Type": "multipart/form-data"}}),
        ("POST", jobs, {"files": {"text": ("t.txt", b"\xff\xfe")}}),
        ("POST", jobs, {"data": {"x" * 5000: "1"}}),
        ("POST", jobs, {"data": {"text": "x", "y" * 50000: "1"}}),
        ("POST", jobs, {"data": {"text": "x" * 300000}}),
        ("POST", jobs, {"data": {"text": "x", "RUNID": "\x00"}}),
        ("POST", jobs, {"data": {"text": "\udcff".encode("utf-8", "surrogatepass")}}),
        ("POST", jobs + "?text=%FF", {}),
        ("GET", jobs + "?PHASE=%FF", {}),
        ("GET", jobs + "?AFTER=%00", {}),
        ("GET", jobs + "?LAST=" + "9" * 5000, {}),
        ("GET", job_url + "?WAIT=%FF", {}),
        ("GET", job_url + "?WAIT=1e999&PHASE=EXECUTING", {}),  # would block 60 s if PENDING
        ("GET", job_url + "?WAIT=0&PHASE=%FF", {}),
        ("GET", f"{jobs}/%FF%FE", {}),
        ("GET", f"{jobs}/%00", {}),
        ("DELETE", f"{jobs}/%00", {}),
        ("GET", f"{server.url}/rest/%00", {}),
        ("POST", f"{server.url}/internal/jobs/%00/report", {"data": b"{}"}),
        ("GET", f"{jobs}/{'a' * 3000}", {}),
        ("GET", f"{job_url}/parameters/%FF", {}),
        ("GET", f"{job_url}/results/%00", {}),
        ("GET", f"{server.url}/rest/%FF", {}),
        ("POST", job_url, {"data": b"\xff", "headers": form}),
        ("POST", job_url, {"data": b'{"PHASE": "RUN"}', "headers": json_type}),
        ("POST", f"{job_url}/phase", {"data": b"PHASE=%FF", "headers": form}),
        ("POST", f"{job_url}/destruction", {"data": {"DESTRUCTION": "9999-12-31T23:59:59-01:00"}}),
        ("POST", f"{job_url}/destruction", {"data": {"DESTRUCTION": "0001-01-01T00:00:00+01:00"}}),
        ("POST", f"{job_url}/executionduration", {"data": {"EXECUTIONDURATION": "9" * 5000}}),
        ("PUT", f"{job_url}/parameters/text", {"data": b"\xff\xfe"}),
        ("PUT", f"{job_url}/parameters/text", {"data": b"a\x00b"}),
        ("PUT", f"{job_url}/parameters/{'n' * 3000}", {"data": b"x"}),
        ("DELETE", jobs, {}),
        ("PATCH", job_url, {"data": b"x"}),
    ]
    for method, url, kwargs in cases:
        response = server.session.request(method, url, allow_redirects=False, **kwargs)
        assert response.status_code < 500, (method, url, kwargs, response.text[:300])
        if response.status_code >= 400:
            assert len(response.content) < 2000, "a bad value is not echoed back in full"
    # Whatever was refused or accepted, the job and the list are still served.
    assert parameters_of(job_document(server, job_url, uws_schema)) == {"text": "x"}
    job_list(server, "echo", uws_schema)
