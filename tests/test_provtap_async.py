"""ProvTAP async (/tap/async): TAP 1.1 queries as a UWS 1.1 job list, on PostgreSQL."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import psycopg
import pytest
import pyvo
import requests
from lxml import etree

from conftest import UWS_NS, Server
from test_provtap import ON_POSTGRESQL, ON_SQLITE, rows_of, run_echo, status_of
from test_users import as_user, opus_users
from vochecks import assert_valid_votable, stilts

#: A query that runs for minutes: a count over a product of the TAP_SCHEMA columns table.
SLOW = ("SELECT COUNT(*) FROM tap_schema.columns AS c1, tap_schema.columns AS c2, "
        "tap_schema.columns AS c3, tap_schema.columns AS c4, tap_schema.columns AS c5")


def create(session: requests.Session, server: Server, query: str, **extra: str
           ) -> str:
    response = session.post(f"{server.url}/tap/async", data={
        "LANG": "ADQL", "QUERY": query, **extra}, allow_redirects=False)
    assert response.status_code == 303, response.text
    return str(response.headers["Location"])


def job_document(session: requests.Session, url: str, **params: str) -> etree._Element:
    response = session.get(url, params=params)
    assert response.status_code == 200, response.text
    return etree.fromstring(response.content)


def phase_of(document: etree._Element) -> str:
    return str(document.findtext("uws:phase", namespaces=UWS_NS))


def wait_for(session: requests.Session, url: str, phases: set[str],
             deadline: float = 60) -> etree._Element:
    """The job document once its phase is in ``phases`` (UWS WAIT, within a deadline)."""
    end = time.monotonic() + deadline
    document = job_document(session, url)
    while phase_of(document) not in phases:
        assert time.monotonic() < end, phase_of(document)
        document = job_document(session, url, WAIT="5", PHASE=phase_of(document))
    return document


@pytest.fixture(scope="module")
def tokens(server: Server, backend: str) -> dict[str, str]:
    assert backend == "postgresql"
    port = server.url.rsplit(":", 1)[1]
    made = {}
    for name in ("alice", "bob"):
        done = opus_users(server, "add", f"tapa-{name}-{port}")
        assert done.returncode == 0, done.stderr
        made[name] = done.stdout.strip()
    return made


@ON_SQLITE
def test_sqlite_answers_provtap_needs_postgresql(server: Server, backend: str) -> None:
    response = requests.post(f"{server.url}/tap/async", data={
        "LANG": "ADQL", "QUERY": "SELECT id FROM provenance.entity"})
    assert response.status_code == 501
    assert "ProvTAP needs PostgreSQL" in status_of(response.content)[0][1]


@ON_POSTGRESQL
def test_pyvo_run_async_and_submit_job(server: Server, backend: str) -> None:
    job_id = run_echo(server, requests.Session(), "hello async")
    service = pyvo.dal.TAPService(f"{server.url}/tap")
    query = (f"SELECT a.name, p.param_value FROM provenance.activity AS a "
             f"JOIN provenance.parameter AS p ON p.activity_id = a.id "
             f"WHERE a.job_id = '{job_id}' AND p.name = 'text'")
    found = service.run_async(query)
    assert [(r["name"], r["param_value"]) for r in found] == [("echo", "hello async")]

    job = service.submit_job(f"SELECT name FROM provenance.entity WHERE job_id = '{job_id}' "
                             f"ORDER BY name", maxrec=10)
    assert job.phase == "PENDING"
    job.run().wait(timeout=60)
    assert job.phase == "COMPLETED"
    table = job.fetch_result()
    assert [row["name"] for row in table] == ["output", "stderr", "stdout"]
    document = requests.get(job.result_uri)
    assert document.headers["Content-Type"].startswith("application/x-votable+xml")
    assert_valid_votable(document.content)
    job.delete()
    assert requests.get(f"{server.url}/tap/async/{job.job_id}").status_code == 404


@ON_POSTGRESQL
def test_maxrec_overflow_and_uws_resources(server: Server, backend: str) -> None:
    session = requests.Session()
    job_id = run_echo(server, session, "overflow async")
    url = create(session, server, f"SELECT id FROM provenance.entity WHERE job_id = "
                                  f"'{job_id}'", MAXREC="5", RUNID="first")
    document = job_document(session, url)
    assert phase_of(document) == "PENDING"
    assert document.findtext("uws:runId", namespaces=UWS_NS) == "first"
    assert session.get(f"{url}/phase").text == "PENDING"
    assert session.post(f"{url}/executionduration", data={"EXECUTIONDURATION": "20"},
                        allow_redirects=False).status_code == 303
    # Parameters of a PENDING job may change (UWS 1.1 section 2.2.3.1).
    assert session.post(f"{url}/parameters", data={"MAXREC": "2", "RUNID": "mine"},
                        allow_redirects=False).status_code == 303
    assert session.get(f"{url}/executionduration").text == "20"
    parameters = etree.fromstring(session.get(f"{url}/parameters").content)
    assert {p.get("id"): p.text for p in parameters} == {
        "LANG": "ADQL", "MAXREC": "2",
        "QUERY": f"SELECT id FROM provenance.entity WHERE job_id = '{job_id}'"}
    assert job_document(session, url).findtext("uws:runId", namespaces=UWS_NS) == "mine"
    assert session.post(f"{url}/phase", data={"PHASE": "RUN"},
                        allow_redirects=False).status_code == 303
    done = wait_for(session, url, {"COMPLETED", "ERROR"})
    assert phase_of(done) == "COMPLETED"
    [result] = done.iterfind("uws:results/uws:result", UWS_NS)
    assert result.get("id") == "result"
    table = session.get(result.get("{http://www.w3.org/1999/xlink}href")).content
    assert len(rows_of(table)) == 2
    assert [value for value, _ in status_of(table)] == ["OK", "OVERFLOW"]
    assert_valid_votable(table)
    # A finished job cannot run again; it can be deleted, with ACTION=DELETE.
    again = session.post(f"{url}/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    assert again.status_code == 403
    listed = etree.fromstring(session.get(f"{server.url}/tap/async").content)
    assert url.rsplit("/", 1)[1] in [ref.get("id") for ref in listed]
    gone = session.post(url, data={"ACTION": "DELETE"}, allow_redirects=False)
    assert gone.status_code == 303 and gone.headers["Location"].endswith("/tap/async")
    assert session.get(url).status_code == 404


@ON_POSTGRESQL
def test_errors(server: Server, backend: str) -> None:
    session = requests.Session()
    # UWS control parameters are checked at creation (400), TAP ones when the job runs.
    response = session.post(f"{server.url}/tap/async", data={
        "LANG": "ADQL", "QUERY": "SELECT id FROM provenance.entity", "PHASE": "ABORT"})
    assert response.status_code == 400
    assert status_of(response.content)[0][1].startswith("PHASE: ")
    for extra, name in (({"LANG": "SQL"}, "LANG"), ({"MAXREC": "-1"}, "MAXREC")):
        url = create(session, server, "SELECT id FROM provenance.entity", PHASE="RUN",
                     **extra)
        message = wait_for(session, url, {"ERROR"}).findtext(
            "uws:errorSummary/uws:message", namespaces=UWS_NS)
        assert str(message).startswith(f"{name}: "), message
    # The query itself when it runs: the job ends in ERROR, its error document at /error.
    url = create(session, server, "SELECT nothing FROM provenance.entity", PHASE="RUN")
    done = wait_for(session, url, {"COMPLETED", "ERROR"})
    assert phase_of(done) == "ERROR"
    message = done.findtext("uws:errorSummary/uws:message", namespaces=UWS_NS)
    assert 'column "nothing" does not exist' in str(message)
    error = session.get(f"{url}/error")
    assert error.status_code == 200
    [(value, text)] = status_of(error.content)
    assert value == "ERROR" and 'column "nothing" does not exist' in text
    assert_valid_votable(error.content)
    assert session.get(f"{url}/results/result").status_code == 404
    refused = create(session, server, "SELECT pg_sleep(5) FROM provenance.entity",
                     PHASE="RUN")
    assert "QUERY: refused" in str(wait_for(session, refused, {"ERROR"}).findtext(
        "uws:errorSummary/uws:message", namespaces=UWS_NS))
    with pytest.raises(pyvo.dal.DALQueryError, match="does not exist"):
        pyvo.dal.TAPService(f"{server.url}/tap").run_async(
            "SELECT * FROM provenance.nothing")


@ON_POSTGRESQL
def test_another_users_job_is_refused_and_rows_are_the_owners(
        server: Server, tokens: dict[str, str]) -> None:
    alice, bob = as_user(tokens["alice"]), as_user(tokens["bob"])
    anonymous = requests.Session()
    echo = run_echo(server, alice, "alice's async secret")
    query = f"SELECT id FROM provenance.entity WHERE job_id = '{echo}'"
    url = create(alice, server, query, PHASE="RUN")
    assert phase_of(wait_for(alice, url, {"COMPLETED"})) == "COMPLETED"
    assert len(rows_of(alice.get(f"{url}/results/result").content)) == 3
    for other in (bob, anonymous):
        for path in ("", "/phase", "/parameters", "/results", "/results/result", "/error",
                     "/owner"):
            assert other.get(f"{url}{path}").status_code == 403, path
        assert other.post(f"{url}/phase", data={"PHASE": "RUN"}).status_code == 403
        assert other.delete(url, allow_redirects=False).status_code == 403
        listed = etree.fromstring(other.get(f"{server.url}/tap/async").content)
        assert url.rsplit("/", 1)[1] not in [ref.get("id") for ref in listed]
    assert requests.get(f"{server.url}/tap/async/{'0' * 32}").status_code == 404
    # Bob's own job with the same query runs as Bob: none of Alice's rows.
    theirs = create(bob, server, query, PHASE="RUN")
    assert phase_of(wait_for(bob, theirs, {"COMPLETED"})) == "COMPLETED"
    assert rows_of(bob.get(f"{theirs}/results/result").content) == []


def active_queries(server: Server) -> list[str]:
    """The ProvTAP statements PostgreSQL runs now in the server's database (the query's
    server-side cursor: its DECLARE, or the FETCH that runs it)."""
    url = server.env["OPUS_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute(
            "SELECT query FROM pg_stat_activity WHERE state = 'active' "
            "AND datname = current_database() AND query LIKE '%opus_tap_%' "
            "AND pid <> pg_backend_pid()")]


@ON_POSTGRESQL
def test_a_running_query_is_aborted(server: Server, backend: str) -> None:
    session = requests.Session()
    url = create(session, server, SLOW, PHASE="RUN")
    wait_for(session, url, {"EXECUTING"})
    end = time.monotonic() + 30
    while not active_queries(server):  # the thread starts the statement soon after
        assert time.monotonic() < end, ("the query never started",
                                        session.get(url).text[:300])
        time.sleep(0.1)
    aborted = session.post(f"{url}/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
    assert aborted.status_code == 303
    assert phase_of(job_document(session, url)) == "ABORTED"
    end = time.monotonic() + 30
    while active_queries(server):  # pg_cancel_backend: the statement stops
        assert time.monotonic() < end, "the aborted query still runs"
        time.sleep(0.1)
    assert phase_of(job_document(session, url)) == "ABORTED"
    assert session.post(f"{url}/phase", data={"PHASE": "ABORT"}).status_code == 403


@ON_POSTGRESQL
def test_taplint_async_uws_and_examples_report_no_errors(server: Server, backend: str) -> None:
    run_echo(server, requests.Session(), "taplint async")
    done = subprocess.run([stilts(), "taplint", f"tapurl={server.url}/tap", "report=EWF",
                           "stages=TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ EXA"],
                          capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert "Totals:" in output, output
    errors = [line for line in output.splitlines() if line.startswith("E-")]
    assert errors == [], "\n".join(errors)
    print("\n".join(line for line in output.splitlines()
                    if line.startswith(("W-", "F-", "Totals"))))


def test_translations_are_reused_for_other_literals() -> None:
    from opus.tap import adql
    base = ("SELECT TOP 5 act.id FROM provenance.activity AS act JOIN provenance.parameter "
            "AS par ON par.activity_id = act.id WHERE par.name = {} AND par.param_value = {}")
    first = adql.translate(base.format("'target'", "'source7'"))
    hits = adql._translate_cached.cache_info().hits
    other = adql.translate(base.format("'seed'", "'it''s a \\ -- x'"))
    assert adql._translate_cached.cache_info().hits == hits + 1
    assert other.sql == first.sql.replace("'target'", "'seed'").replace(
        "'source7'", "'it''s a \\ -- x'")
    # A literal that looks like a placeholder is still itself.
    tricky = adql.translate(base.format("'opus_literal_1_x'", "'opus_literal_0_x'"))
    assert "par.name = 'opus_literal_1_x' AND par.param_value = 'opus_literal_0_x'" \
        in tricky.sql
    # The checks still hold for the shape: a function outside ADQL is refused.
    with pytest.raises(adql.ParameterError, match="QUERY: "):
        adql.translate(base.format("'target'", "'x'") + " AND pg_sleep('1') = ''")


@ON_POSTGRESQL
def test_examples_are_listed_and_run(server: Server, backend: str) -> None:
    job_id = run_echo(server, requests.Session(), "examples")
    service = pyvo.dal.TAPService(f"{server.url}/tap")
    examples = service.examples
    assert len(examples) == 5
    for example in examples:
        example.execute()  # each use-case query runs (a DALQueryError would fail it)
    counted = [example for example in examples if "GROUP BY" in example["QUERY"]]
    rows = [(row["name"], row["phase"]) for row in counted[0].execute()]
    assert ("echo", "COMPLETED") in rows, job_id


@ON_POSTGRESQL
def test_async_queries_are_bounded_in_time(server_factory: Any, backend: str) -> None:
    bounded = server_factory(tap_async_timeout=2)
    session = requests.Session()
    url = create(session, bounded, SLOW, PHASE="RUN", EXECUTIONDURATION="3600")
    assert session.get(f"{url}/executionduration").text == "2"  # lowered to the limit
    done = wait_for(session, url, {"COMPLETED", "ERROR"})
    assert phase_of(done) == "ERROR"
    assert "took longer than the limit of 2 s" in str(done.findtext(
        "uws:errorSummary/uws:message", namespaces=UWS_NS))
