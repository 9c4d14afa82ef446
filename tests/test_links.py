"""DataLink 1.1 {links} of job results (``/datalink/links``, :mod:`opus.web.links`), on both
backends: the rows of section 3.2, per-ID errors (section 3.2.4), request-level errors
(section 3.4), service descriptors that chain a new job (section 4), read by pyvo, and clean
under votlint and datalinklint."""

from __future__ import annotations

import io
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvo.dal.adhoc
from astropy.io.votable import parse as parse_votable
from lxml import etree

from conftest import (ROOT, UWS_NS, Server, _create_pg_database, _drop_pg_database,
                      start_server)
from opus.activities.model import ActivityDescription, EntityDescription
from opus.activities.votable import read_activity, write_activity
from opus.uws.models import Job, JobResult, utcnow
from opus.datalink.links import MAX_IDS, PROVENANCE_SEMANTICS, LinksBuilder, accepts
from vochecks import assert_valid_votable, datalinklint

VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
DATALINK = "application/x-votable+xml;content=datalink"
PNG = b"\x89PNG\r\n\x1a\n"

PLOT_SCRIPT = """#!/bin/sh
# Test activity "plot" / "picture": a table and a PNG image.
set -eu
printf 'x y\\n1 2\\n' > table.txt
printf '\\211PNG\\r\\n\\032\\n' > image.png
"""


@pytest.fixture(scope="module")
def links_activities(activities_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared test activities, plus two that draw: ``plot`` declares a ``preview``
    output, ``picture`` only has one image/png output (the fallback preview rule)."""
    directory = tmp_path_factory.mktemp("links-activities")
    for path in activities_dir.glob("*.xml"):
        shutil.copy(path, directory / path.name)
    script = directory / "plot.sh"
    script.write_text(PLOT_SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    table = EntityDescription("table", content_type="text/plain", default_filename="table.txt")
    for activity in (
        ActivityDescription(name="plot", description="a table and its preview",
                            command=(str(script),), execution_duration=60,
                            generated=(table, EntityDescription(
                                "preview", content_type="image/png",
                                default_filename="image.png", role="preview"))),
        ActivityDescription(name="picture", description="a table and a picture",
                            command=(str(script),), execution_duration=60,
                            generated=(table, EntityDescription(
                                "picture", content_type="image/png",
                                default_filename="image.png"))),
    ):
        (directory / f"{activity.name}.xml").write_bytes(write_activity(activity))
    return directory


@pytest.fixture(scope="module")
def srv(backend: str, links_activities: Path, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[Server]:
    """One server per backend for this module, with a database of its own."""
    database_url, admin = "", None
    if backend == "postgresql":
        admin = request.getfixturevalue("postgres_admin_url")
        database_url = _create_pg_database(admin)
    server = start_server(tmp_path_factory.mktemp(f"links-{backend}"), database_url,
                          activities_dir=links_activities)
    yield server
    server.stop()
    if admin is not None:
        _drop_pg_database(admin, database_url)


# -- helpers -------------------------------------------------------------------------------

def run(server: Server, activity: str, **params: str) -> str:
    job_url = server.create(activity, **params)
    document = server.wait_final(job_url)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED", \
        etree.tostring(document)
    return job_url


def get_links(server: Server, *ids: str, **params: str):  # type: ignore[no-untyped-def]
    response = server.session.get(f"{server.url}/datalink/links",
                                  params={"ID": list(ids), **params})
    assert response.status_code == 200, response.text
    return response


def checked(document: bytes) -> etree._Element:
    """Valid VOTable 1.4, votlint-clean and datalinklint-clean."""
    root = assert_valid_votable(document)
    problems = datalinklint(document)
    assert problems == [], "\n".join(problems)
    return root


def rows(document: bytes) -> list[dict[str, str | None]]:
    """The links table as dicts (empty cells as None)."""
    root = etree.fromstring(document)
    names = [f.get("name") for f in root.iterfind(".//v:RESOURCE[@type='results']/v:TABLE/"
                                                   "v:FIELD", VOT)]
    return [dict(zip(names, [td.text for td in tr.iterfind("v:TD", VOT)]))
            for tr in root.iterfind(".//v:TR", VOT)]


def by_semantics(table: list[dict[str, str | None]], semantics: str) -> list[dict]:
    return [row for row in table if row["semantics"] == semantics]


def entity_of(table: list[dict[str, str | None]]) -> str:
    (this,) = by_semantics(table, "#this")
    assert this["opus_input"] and this["opus_input"].startswith("opus:ent-")
    return this["opus_input"]


# -- tests ---------------------------------------------------------------------------------

def test_echo_result_links(srv: Server) -> None:
    job_url = run(srv, "echo", text="hello links")
    result_url = f"{job_url}/results/output"
    response = get_links(srv, result_url)
    assert response.headers["Content-Type"] == DATALINK
    checked(response.content)
    table = rows(response.content)
    assert {row["ID"] for row in table} == {result_url}
    assert all(row["error_message"] is None for row in table)

    (this,) = by_semantics(table, "#this")
    assert this["access_url"] == result_url
    assert this["content_type"] == "text/plain"
    download = srv.session.get(this["access_url"])
    assert download.content == b"hello links\n"
    assert int(this["content_length"]) == len(download.content)
    entity = entity_of(table)

    (provenance,) = by_semantics(table, PROVENANCE_SEMANTICS)
    assert provenance["access_url"] == \
        f"{srv.url}/provsap?ID={entity}&DIRECTION=BACK&DEPTH=ALL"
    assert provenance["content_type"] == "application/x-prov+json"
    prov = srv.session.get(provenance["access_url"])
    assert prov.status_code == 200
    assert any(key.endswith(entity.split(":", 1)[1]) for key in prov.json()["entity"])

    logs = {row["local_semantics"]: row for row in by_semantics(table, "#auxiliary")}
    assert set(logs) == {"stdout", "stderr"}
    for name, row in logs.items():
        assert row["access_url"] == f"{job_url}/results/{name}"
        assert srv.session.get(row["access_url"]).status_code == 200
    assert by_semantics(table, "#progenitor") == []  # echo uses no file
    assert by_semantics(table, "#preview") == []

    # The same links by the entity identifier, with or without its prefix.
    for identifier in (entity, entity.split(":", 1)[1]):
        again = rows(get_links(srv, identifier).content)
        assert [(r["semantics"], r["access_url"]) for r in again] == \
            [(r["semantics"], r["access_url"]) for r in table]
        assert {r["ID"] for r in again} == {identifier}


def test_service_descriptors_chain_a_copy_job(srv: Server) -> None:
    job_url = run(srv, "echo", text="chain me")
    response = get_links(srv, f"{job_url}/results/output")
    table = rows(response.content)
    procs = [row for row in table if row["service_def"]]
    assert {row["service_def"] for row in procs} == {"opus-copy"}  # copy takes text/plain
    (proc,) = procs
    assert proc["semantics"] == "#proc" and proc["access_url"] is None
    root = etree.fromstring(response.content)
    (resource,) = root.iterfind("v:RESOURCE[@ID='opus-copy']", VOT)
    assert (resource.get("type"), resource.get("utype")) == ("meta", "adhoc:service")
    (input_param,) = resource.iterfind("v:GROUP[@name='inputParams']/v:PARAM[@name='input']",
                                       VOT)
    assert input_param.get("ref") == "opus_input" and input_param.get("value") == ""
    assert root.find(".//v:FIELD[@ID='opus_input']", VOT) is not None

    # pyvo reads the response, finds the service and runs it from the #proc row.
    results = pyvo.dal.adhoc.DatalinkResults.from_result_url(
        f"{srv.url}/datalink/links?ID={entity_of(table)}", session=srv.session)
    assert [r.semantics for r in results][0] == "#this"
    (row,) = list(results.iter_procs())
    service = results.get_adhocservice_by_id(row.service_def)
    assert {p.name: p.value for p in service.params}["accessURL"] == srv.rest("copy")
    query = pyvo.dal.adhoc.DatalinkQuery.from_resource(row, service, session=srv.session,
                                                       PHASE="RUN", suffix="chained")
    # (pyvo upper-cases names; OPUS compares them case-insensitively, DALI 1.1 section 3.1)
    assert {k.lower(): v for k, v in query.items()}["input"] == entity_of(table)
    created = query.submit(post=True)
    assert created.status_code == 200, created.text
    copy_url = created.url
    document = srv.wait_final(copy_url)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED"
    assert srv.session.get(f"{copy_url}/results/output").text == "chain me\nchained\n"


def test_chained_result_has_its_progenitor(srv: Server) -> None:
    echo_url = run(srv, "echo", text="origin")
    copy_url = run(srv, "copy", input=f"{echo_url}/results/output", suffix="two")
    response = get_links(srv, f"{copy_url}/results/output")
    checked(response.content)
    table = rows(response.content)
    (progenitor,) = by_semantics(table, "#progenitor")
    assert progenitor["access_url"] == f"{echo_url}/results/output"
    assert progenitor["local_semantics"] == "input"
    assert progenitor["content_type"] == "text/plain"
    assert srv.session.get(progenitor["access_url"]).content == b"origin\n"
    # and the links of that progenitor are one request away
    (echo_this,) = by_semantics(rows(get_links(srv, progenitor["access_url"]).content),
                                "#this")
    assert echo_this["access_url"] == progenitor["access_url"]


def test_declared_preview(srv: Server) -> None:
    job_url = run(srv, "plot")
    response = get_links(srv, f"{job_url}/results/table", f"{job_url}/results/preview")
    checked(response.content)
    table = rows(response.content)
    (preview,) = by_semantics(table, "#preview")
    assert preview["ID"] == f"{job_url}/results/table"
    assert preview["access_url"] == f"{job_url}/results/preview"
    assert preview["content_type"] == "image/png"
    image = srv.session.get(preview["access_url"])
    assert image.content.startswith(PNG) and int(preview["content_length"]) == len(PNG)
    # rows of one ID are consecutive (section 3.2)
    ids = [row["ID"] for row in table]
    assert ids == sorted(ids, key=ids.index) and len(set(ids)) == 2
    assert ids.index(f"{job_url}/results/preview") == \
        len(ids) - ids[::-1].index(f"{job_url}/results/table")


def test_single_image_output_is_the_preview(srv: Server) -> None:
    job_url = run(srv, "picture")
    table = rows(get_links(srv, f"{job_url}/results/table").content)
    (preview,) = by_semantics(table, "#preview")
    assert preview["access_url"] == f"{job_url}/results/picture"
    # no preview of the logs
    stdout = rows(get_links(srv, f"{job_url}/results/stdout").content)
    assert by_semantics(stdout, "#preview") == []


def test_gammapy_maps_declares_its_preview() -> None:
    """Issue 6 point 4, without running gammapy: the preview PNG the activity declares is
    the #preview of its maps."""
    activity = read_activity(ROOT / "activity_descriptions" / "gammapy_maps.xml")
    results = tuple(JobResult(e.name, e.default_filename or e.name, 10, e.content_type, None)
                    for e in activity.generated) + \
        (JobResult("stdout", "stdout.txt", 0, "text/plain", None),)
    job = Job(job_id="0" * 32, activity=activity.name, phase="COMPLETED",
              creation_time=utcnow(), execution_duration=60, parameters={},
              results=results)
    by_name = {r.result_id: r for r in results}
    for name in ("counts", "significance", "summary"):
        (preview,) = LinksBuilder.previews(activity, job, by_name[name])
        assert (preview.result_id, preview.mime_type) == ("preview", "image/png")
    assert LinksBuilder.previews(activity, job, by_name["preview"]) == []
    assert LinksBuilder.previews(activity, job, by_name["stdout"]) == []


def test_unknown_invalid_and_deleted_ids_give_error_rows(srv: Server) -> None:
    job_url = run(srv, "echo", text="short-lived")
    entity = entity_of(rows(get_links(srv, f"{job_url}/results/output").content))
    assert srv.session.delete(job_url, allow_redirects=False).status_code == 303
    unknown = "opus:ent-" + "0" * 32
    ids = [unknown, "not an id", f"{job_url}/results/output", entity,
           f"{srv.url}/rest/echo/{'1' * 32}/results/output", "bad\x01char"]
    response = get_links(srv, *ids)
    checked(response.content)
    table = rows(response.content)
    assert len(table) == len(ids)
    for row, identifier in zip(table, ids):
        assert row["ID"] == identifier.replace("\x01", "\ufffd")
        assert row["semantics"] == "#this"
        assert row["access_url"] is None and row["service_def"] is None
    messages = [row["error_message"] for row in table]
    assert messages[0].startswith("NotFoundFault: ")
    assert messages[1].startswith("UsageFault: ")
    assert messages[2].startswith("NotFoundFault: ") and "deleted" in messages[2]
    assert messages[3].startswith("NotFoundFault: ") and "deleted" in messages[3]
    assert table[3]["content_type"] == "text/plain"  # known, as DataLink 1.1 allows
    assert messages[4].startswith("NotFoundFault: ")
    assert messages[5].startswith("UsageFault: ")


def test_request_level_behaviour(srv: Server) -> None:
    url = f"{srv.url}/datalink/links"
    # No ID: a normal, empty response with the self-description (section 2.1.1, 4.4).
    response = srv.session.get(url)
    assert response.status_code == 200
    root = checked(response.content)
    assert rows(response.content) == []
    (this,) = root.iterfind("v:RESOURCE[@utype='adhoc:this']", VOT)
    assert {p.get("name"): p.get("value") for p in this.iterfind("v:PARAM", VOT)} == {
        "accessURL": url, "standardID": "ivo://ivoa.net/std/DataLink#links-1.1",
        "contentType": DATALINK}
    assert root.find("v:RESOURCE/v:INFO[@name='standardID']", VOT).get("value") == \
        "ivo://ivoa.net/std/DataLink#links-1.1"

    job_url = run(srv, "echo", text="formats")
    result_url = f"{job_url}/results/output"
    for asked, content_type in (("votable", DATALINK),
                                ("application/x-votable+xml", "application/x-votable+xml"),
                                ("application/x-votable+xml;content=datalink", DATALINK)):
        response = get_links(srv, result_url, RESPONSEFORMAT=asked)
        assert response.headers["Content-Type"] == content_type
    # DALI-sync: POST as well
    posted = srv.session.post(url, data={"ID": result_url})
    assert posted.status_code == 200
    assert rows(posted.content) == rows(get_links(srv, result_url).content)

    # More IDs than the service takes: the first MAX_IDS, then OVERFLOW (section 2.1.1).
    many = [f"x{i}" for i in range(MAX_IDS + 1)]
    response = srv.session.post(url, data={"ID": many})
    assert response.status_code == 200
    root = checked(response.content)
    assert [row["ID"] for row in rows(response.content)] == many[:MAX_IDS]
    infos = [i.get("value") for i in root.iterfind("v:RESOURCE/v:INFO[@name='QUERY_STATUS']",
                                                   VOT)]
    assert infos == ["OK", "OVERFLOW"]

    # An unsupported format: the DALI error document, as VOTable (section 3.4).
    response = srv.session.get(url, params={"ID": result_url, "RESPONSEFORMAT": "text/csv"})
    assert response.status_code == 415
    assert response.headers["Content-Type"] == "application/x-votable+xml"
    root = checked(response.content)
    status = root.find("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", VOT)
    assert status.get("value") == "ERROR"
    assert status.text.startswith("UsageFault: RESPONSEFORMAT")
    response = srv.session.get(url, params={"ID": result_url,
                                            "RESPONSEFORMAT": ["votable", "votable"]})
    assert response.status_code == 400
    assert b"UsageFault" in response.content


def test_pyvo_datalink_service(srv: Server) -> None:
    job_url = run(srv, "plot")
    service = pyvo.dal.adhoc.DatalinkService(f"{srv.url}/datalink/links", session=srv.session)
    results = service.run_sync(f"{job_url}/results/table")
    semantics = [row.semantics for row in results]
    assert semantics[:2] == ["#this", "#preview"]
    (preview,) = results.bysemantics("#preview", include_narrower=False)
    assert preview.getdataurl() == f"{job_url}/results/preview"
    (this,) = results.bysemantics("#this", include_narrower=False)
    assert this.content_length == len(b"x y\n1 2\n")
    assert list(results.bysemantics(PROVENANCE_SEMANTICS, include_narrower=False))
    # astropy reads the same document as a plain VOTable
    votable = parse_votable(io.BytesIO(get_links(srv, f"{job_url}/results/table").content))
    assert votable.get_first_table().array["semantics"][0] == "#this"


def test_accepts() -> None:
    text = EntityDescription("input", content_type="text/plain")
    assert accepts(text, "text/plain; charset=UTF-8")
    assert not accepts(text, "image/png")
    assert not accepts(text, None)
    assert accepts(EntityDescription("any"), "image/png")
    assert accepts(EntityDescription("any", content_type="application/octet-stream"), None)
    assert accepts(EntityDescription("img", content_type="image/*"), "image/png")
    assert not accepts(EntityDescription("img", content_type="image/*"), "text/plain")
