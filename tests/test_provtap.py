"""ProvTAP (/tap): TAP 1.1 sync queries over the provenance record, on PostgreSQL; on
SQLite every query is answered with the DALI error "ProvTAP needs PostgreSQL" (501)."""

from __future__ import annotations

import subprocess

import pytest
import pyvo
import requests
from lxml import etree

from conftest import UWS_NS, Server
from test_users import as_user, opus_users
from vochecks import assert_valid_votable, stilts

VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}


def sync(session: requests.Session, server: Server, query: str, method: str = "GET",
         **extra: str) -> requests.Response:
    params = {"LANG": "ADQL", "REQUEST": "doQuery", "QUERY": query, **extra}
    if method == "POST":
        return session.post(f"{server.url}/tap/sync", data=params)
    return session.get(f"{server.url}/tap/sync", params=params)


def status_of(document: bytes) -> list[tuple[str, str]]:
    root = etree.fromstring(document)
    return [(info.get("value"), (info.text or "").strip())
            for info in root.iterfind("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", VOT)]


def rows_of(document: bytes) -> list[list[str | None]]:
    root = etree.fromstring(document)
    return [[td.text for td in tr.iterfind("v:TD", VOT)]
            for tr in root.iterfind(".//v:TABLEDATA/v:TR", VOT)]


#: ProvTAP runs its queries on PostgreSQL only: these tests run on that backend alone (no
#: skipped SQLite twins), the SQLite answer has its own test.
ON_POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
ON_SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def pg(backend: str) -> None:
    assert backend == "postgresql"


def run_echo(server: Server, session: requests.Session, text: str) -> str:
    created = session.post(server.rest("echo"), data={"text": text, "PHASE": "RUN"},
                           allow_redirects=False)
    assert created.status_code == 303, created.text
    job_url = created.headers["Location"]
    document = etree.fromstring(session.get(job_url, params={"WAIT": "30"}).content)
    for _ in range(5):
        phase = document.findtext("uws:phase", namespaces=UWS_NS)
        if phase == "COMPLETED":
            break
        document = etree.fromstring(session.get(job_url, params={"WAIT": "30"}).content)
    assert phase == "COMPLETED", phase
    return job_url.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def tokens(server: Server, backend: str) -> dict[str, str]:
    assert backend == "postgresql"
    port = server.url.rsplit(":", 1)[1]
    made = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        done = opus_users(server, "add", f"tap-{name}-{port}", *(["--admin"] if admin else []))
        assert done.returncode == 0, done.stderr
        made[name] = done.stdout.strip()
    return made


@ON_SQLITE
def test_sqlite_answers_provtap_needs_postgresql(server: Server, backend: str) -> None:
    for path in ("/tap/sync?LANG=ADQL&QUERY=SELECT%20*%20FROM%20provenance.entity",
                 "/tap/tables", "/tap/capabilities"):
        response = requests.get(f"{server.url}{path}")
        assert response.status_code == 501, path
        assert response.headers["Content-Type"].startswith("application/x-votable+xml")
        [(value, text)] = status_of(response.content)
        assert value == "ERROR" and "ProvTAP needs PostgreSQL" in text
    assert_valid_votable(response.content)
    availability = requests.get(f"{server.url}/tap/availability")
    assert availability.status_code == 200 and b"false" in availability.content


@ON_POSTGRESQL
def test_pyvo_finds_the_entity_of_an_echo_job(server: Server, pg: None) -> None:
    job_id = run_echo(server, requests.Session(), "hello provtap")
    service = pyvo.dal.TAPService(f"{server.url}/tap")
    found = service.run_sync(f"SELECT TOP 5 id, name, content_size, generated_at_time "
                             f"FROM provenance.entity WHERE job_id = '{job_id}' "
                             f"ORDER BY name")
    names = [row["name"] for row in found]
    assert names == ["output", "stderr", "stdout"]
    assert found[0]["content_size"] == len("hello provtap\n")
    assert found[0]["id"].startswith("ent-")
    field = found.fieldname_with_ucd("phys.size;meta.file")
    assert field == "content_size"
    # A join through the relation views, and a parameter value.
    joined = service.run_sync(
        f"SELECT a.id, a.name, g.role, p.param_value FROM provenance.activity AS a "
        f"JOIN provenance.wasgeneratedby AS g ON g.activity_id = a.id "
        f"JOIN provenance.parameter AS p ON p.activity_id = a.id "
        f"WHERE a.job_id = '{job_id}' AND g.role = 'output' AND p.name = 'text'")
    assert [(r["name"], r["param_value"]) for r in joined] == [("echo", "hello provtap")]
    described = service.run_sync("SELECT id, name, version FROM provenance.activitydescription "
                                 "WHERE name = 'echo'")
    assert [r["id"] for r in described] == ["echo/1.0"]
    posted = sync(requests.Session(), server, f"SELECT id FROM provenance.activity WHERE "
                  f"job_id = '{job_id}'", method="POST")
    assert posted.status_code == 200 and rows_of(posted.content) == [[f"act-{job_id}"]]
    assert_valid_votable(posted.content)


@ON_POSTGRESQL
def test_maxrec_overflow(server: Server, pg: None) -> None:
    job_id = run_echo(server, requests.Session(), "overflow")
    query = f"SELECT id FROM provenance.entity WHERE job_id = '{job_id}'"
    response = sync(requests.Session(), server, query, MAXREC="2")
    assert response.status_code == 200
    assert len(rows_of(response.content)) == 2
    assert [value for value, _ in status_of(response.content)] == ["OK", "OVERFLOW"]
    root = assert_valid_votable(response.content)
    last = root.find("v:RESOURCE", VOT)[-1]
    assert last.get("value") == "OVERFLOW"  # after the table (DALI 1.1 section 4.4.1)
    exact = sync(requests.Session(), server, query, MAXREC="3")
    assert [value for value, _ in status_of(exact.content)] == ["OK"]
    metadata = sync(requests.Session(), server, query, MAXREC="0")
    assert rows_of(metadata.content) == [] and b"FIELD" in metadata.content
    # pyvo warns only when the service cut below the MAXREC it asked for.
    found = pyvo.dal.TAPService(f"{server.url}/tap").run_sync(query, maxrec=1)
    assert len(found) == 1 and found.query_status == "OVERFLOW"


@pytest.mark.parametrize("query, problem", [
    ("SELEKT id FROM provenance.entity", "only SELECT"),
    ("SELECT id FROM provenance.entity WHERE", "syntax error"),
    ("SELECT nothing FROM provenance.entity", 'column "nothing" does not exist'),
    ("SELECT * FROM provenance.nothing", "does not exist"),
    ("SELECT * FROM public.prov_entity", "table public.prov_entity is not available"),
    ("SELECT * FROM pg_catalog.pg_authid", "is not available"),
    ("SELECT id FROM provenance.entity; SELECT 1 FROM provenance.activity", "one statement"),
])
@ON_POSTGRESQL
def test_bad_adql_is_400_naming_the_problem(server: Server, pg: None, query: str,
                                            problem: str) -> None:
    response = sync(requests.Session(), server, query)
    assert response.status_code == 400, response.text
    [(value, text)] = status_of(response.content)
    assert value == "ERROR" and problem in text, text
    assert text.startswith("QUERY: ")
    assert_valid_votable(response.content)


@pytest.mark.parametrize("call", [
    "set_config('opus.tap_admin', 'on', true)", "current_setting('opus.tap_viewer')",
    "pg_read_file('/etc/passwd')", "pg_sleep(5)", "pg_catalog.set_config('a', 'b', true)",
    '"set_config"(\'opus.tap_admin\', \'on\', true)', "lower(name)", "version()",
])
@ON_POSTGRESQL
def test_functions_outside_adql_are_refused(server: Server, pg: None, call: str) -> None:
    for query in (f"SELECT {call} FROM provenance.entity",
                  f"SELECT id FROM provenance.entity WHERE {call} = 'x'",
                  f"SELECT id FROM provenance.entity WHERE id IN "
                  f"(SELECT entity_id FROM provenance.used WHERE {call} = 'on')"):
        response = sync(requests.Session(), server, query)
        assert response.status_code == 400, (query, response.text)
        [(value, _)] = status_of(response.content)
        assert value == "ERROR"


@ON_POSTGRESQL
def test_other_parameters(server: Server, pg: None) -> None:
    session = requests.Session()
    query = "SELECT TOP 1 table_name FROM tap_schema.tables"
    for extra, name in (({"LANG": "SQL"}, "LANG"), ({"MAXREC": "-1"}, "MAXREC"),
                        ({"MAXREC": "ten"}, "MAXREC"), ({"REQUEST": "getCapabilities"},
                                                        "REQUEST"),
                        ({"RESPONSEFORMAT": "csv"}, "RESPONSEFORMAT")):
        response = sync(session, server, query, **extra)
        assert response.status_code == 400, extra
        assert status_of(response.content)[0][1].startswith(f"{name}: ")
    missing = session.get(f"{server.url}/tap/sync", params={"QUERY": query})
    assert missing.status_code == 400 and b"LANG: required" in missing.content
    fine = session.get(f"{server.url}/tap/sync", params={  # names are case-insensitive
        "lang": "ADQL", "query": query, "responseformat": "application/x-votable+xml"})
    assert fine.status_code == 200


@ON_POSTGRESQL
def test_private_provenance_is_invisible_to_others(server: Server,
                                                   tokens: dict[str, str]) -> None:
    alice, bob, root = (as_user(tokens[name]) for name in ("alice", "bob", "root"))
    anonymous = requests.Session()
    job_id = run_echo(server, alice, "alice's secret")
    act = f"act-{job_id}"
    mine = sync(alice, server, f"SELECT id FROM provenance.entity WHERE job_id = '{job_id}'")
    entities = [row[0] for row in rows_of(mine.content)]
    assert len(entities) == 3
    ids = "', '".join(entities)
    operator = rows_of(sync(alice, server, f"SELECT agent_id FROM provenance.wasassociatedwith"
                            f" WHERE activity_id = '{act}' AND role = 'Operator'").content)
    assert len(operator) == 1
    agent = operator[0][0]
    queries = {
        "activity": f"SELECT id FROM provenance.activity WHERE id = '{act}'",
        "entity": f"SELECT id FROM provenance.entity WHERE id IN ('{ids}')",
        "used": f"SELECT entity_id FROM provenance.used WHERE activity_id = '{act}'",
        "wasgeneratedby": f"SELECT entity_id FROM provenance.wasgeneratedby "
                          f"WHERE activity_id = '{act}' OR entity_id IN ('{ids}')",
        "wasassociatedwith": f"SELECT agent_id FROM provenance.wasassociatedwith "
                             f"WHERE activity_id = '{act}'",
        "wasattributedto": f"SELECT agent_id FROM provenance.wasattributedto "
                           f"WHERE entity_id IN ('{ids}')",
        "wasderivedfrom": f"SELECT used_entity_id FROM provenance.wasderivedfrom WHERE "
                          f"generated_entity_id IN ('{ids}') OR used_entity_id IN ('{ids}')",
        "agent": f"SELECT id FROM provenance.agent WHERE id = '{agent}'",
        "parameter": f"SELECT param_value FROM provenance.parameter "
                     f"WHERE activity_id = '{act}'",
    }
    for table, query in queries.items():
        seen = rows_of(sync(alice, server, query).content)
        if table not in {"used", "wasderivedfrom"}:  # echo uses nothing, derives nothing
            assert seen, f"alice sees nothing in {table}"
        assert rows_of(sync(root, server, query).content) == seen, table
        for other in (bob, anonymous):
            response = sync(other, server, query)
            assert response.status_code == 200
            assert rows_of(response.content) == [], f"{table} shows alice's rows"
    # Nor through an aggregate, a search on the value, or an expression that would fail on
    # her row if it were evaluated before the view's filter (security_barrier views).
    for other in (bob, anonymous):
        counted = sync(other, server, f"SELECT COUNT(*) FROM provenance.parameter "
                                      f"WHERE param_value = 'alice''s secret'")
        assert rows_of(counted.content) == [["0"]]
        probe = sync(other, server, f"SELECT id FROM provenance.entity WHERE job_id = "
                                    f"'{job_id}' AND 1 / (content_size - 15) = 1")
        assert probe.status_code == 200 and rows_of(probe.content) == []
    failing = sync(alice, server, f"SELECT id FROM provenance.entity WHERE job_id = "
                                  f"'{job_id}' AND 1 / (content_size - 15) = 1")
    assert failing.status_code == 400 and b"division by zero" in failing.content


@ON_POSTGRESQL
def test_tables_and_tap_schema_describe_every_column(server: Server, pg: None) -> None:
    service = pyvo.dal.TAPService(f"{server.url}/tap")
    tables = {table.name: table for table in service.tables}
    expected = {f"provenance.{name}" for name in (
        "activity", "entity", "used", "wasgeneratedby", "wasassociatedwith",
        "wasattributedto", "agent", "parameter", "activitydescription", "wasderivedfrom")}
    assert expected | {f"tap_schema.{n}" for n in ("schemas", "tables", "columns", "keys",
                                                    "key_columns")} <= set(tables)
    entity = {column.name: column for column in tables["provenance.entity"].columns}
    assert entity["content_size"].unit == "byte"
    assert entity["generated_at_time"].ucd == "time.creation"
    declared = service.run_sync("SELECT table_name, column_name, description FROM "
                                "tap_schema.columns WHERE table_name LIKE 'provenance.%'",
                                maxrec=1000)
    assert all(row["description"] for row in declared)
    assert {row["table_name"] for row in declared} == expected


@ON_POSTGRESQL
def test_taplint_reports_no_errors(server: Server, pg: None) -> None:
    program = stilts()
    run_echo(server, requests.Session(), "taplint")
    done = subprocess.run([program, "taplint", f"tapurl={server.url}/tap", "report=EWF",
                           "stages=TMV TME TMS TMC CPV CAP AVV QGE QPO MDQ"],
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert "Totals:" in output, output
    errors = [line for line in output.splitlines() if line.startswith("E-")]
    assert errors == [], "\n".join(errors)
    print("\n".join(line for line in output.splitlines() if line.startswith(("W-", "F-"))))
