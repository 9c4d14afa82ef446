"""Ownership on every door (issue 11, scope 1), written as the attacks: alice's private jobs,
products, uploads and provenance, tried by bob and by anonymous callers through every door
beside the UWS job resources: chaining a product as an input, replay, ProvSAP in every
format, the search, the bindings, DataLink. Publishing (``POST .../access``) opens a job
to everyone; withdrawing it closes it again, also for a chained job not yet dispatched.
An ID the caller may not read is answered exactly like an unknown one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from conftest import UWS_NS
from ownership_support import World, same_answer, start_world, unique

UNKNOWN_JOB = "0" * 32
UNKNOWN_ENTITY = "ent-" + "0" * 32
OPUS_NS = "urn:opus:uws"
VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
FORMATS = ("json", "xml", "provn", "votable", "svg", "png")


@pytest.fixture(scope="module")
def world(backend: str, activities_dir: Path, tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[World]:
    yield from start_world(backend, activities_dir, tmp_path_factory, request)


@pytest.fixture(scope="module")
def alice(world: World) -> dict[str, Any]:
    """Alice's private things: an echo job, a copy job of an uploaded file, a replay."""
    text = unique("alice secret")
    echo = world.run("alice", "echo", text=text)
    upload = unique("alice upload").encode() + b"\n"
    copy = world.run("alice", "copy", files={"input": ("in.txt", upload)}, suffix="s")
    echo_entities, copy_entities = world.entities("alice", echo), world.entities("alice", copy)
    replayed = world["alice"].post(f"{world.url}/provenance/replay",
                                   data={"ID": echo.rsplit("/", 1)[1]}, allow_redirects=False)
    assert replayed.status_code == 303, replayed.text
    carol = world.run("carol", "echo", text=unique("carol secret"))
    return {
        "text": text, "echo": echo, "echo_id": echo.rsplit("/", 1)[1],
        "output": echo_entities["forth:output"],
        "sha256": hashlib.sha256(f"{text}\n".encode()).hexdigest(),
        "upload": upload, "copy": copy, "copy_id": copy.rsplit("/", 1)[1],
        "upload_entity": copy_entities["back:input"],
        "copy_output": copy_entities["forth:output"],
        "replay_id": replayed.headers["Location"].rsplit("/", 1)[1],
        "carol_id": carol.rsplit("/", 1)[1],
    }


def copy_job(world: World, who: str, value: str) -> requests.Response:
    return world[who].post(world.server.rest("copy"), data={"input": value, "PHASE": "RUN"},
                           allow_redirects=False)


def served_results(world: World, who: str, document: etree._Element) -> bytes:
    """Everything the job's results hold, as ``who`` downloads it."""
    found = b""
    for result in document.iterfind("uws:results/uws:result", UWS_NS):
        found += world[who].get(result.get("{http://www.w3.org/1999/xlink}href")).content
    return found


def phase(document: etree._Element) -> str | None:
    return document.findtext("uws:phase", namespaces=UWS_NS)


# -- products as inputs ----------------------------------------------------------------------
def test_another_users_private_product_is_no_input(world: World,
                                                   alice: dict[str, Any]) -> None:
    for who in ("bob", "anonymous"):
        for entity in (alice["output"], alice["upload_entity"], alice["copy_output"]):
            refused = copy_job(world, who, f"opus:{entity}")
            assert refused.status_code == 400, (who, entity, refused.text)
            same_answer(refused, copy_job(world, who, f"opus:{UNKNOWN_ENTITY}"),
                        (entity, UNKNOWN_ENTITY))
        # Nor when changing a PENDING job's input.
        pending = world.create(who, "copy", run=False, input="https://example.org/x.txt")
        for change in (lambda: world[who].post(f"{pending}/parameters",
                                               data={"input": f"opus:{alice['output']}"},
                                               allow_redirects=False),
                       lambda: world[who].put(f"{pending}/parameters/input",
                                              data=f"opus:{alice['output']}".encode(),
                                              allow_redirects=False)):
            assert change().status_code == 400
        assert world[who].get(f"{pending}/parameters/input").text == \
            "https://example.org/x.txt"
        # By result URL: taken for somebody else's URL (as an unknown result URL is), so
        # the runner fetches it like any URL, without credentials; it never gets the bytes.
        for url in (f"{alice['echo']}/results/output", f"{alice['copy']}/results/output"):
            response = copy_job(world, who, url)
            if response.status_code == 303:
                document = world.wait_final(who, response.headers["Location"])
                assert phase(document) == "ERROR"
                leaked = served_results(world, who, document)
                assert alice["text"].encode() not in leaked
                assert alice["upload"] not in leaked
            else:
                assert response.status_code == 400, response.text
    for who in ("alice", "admin"):  # the owner, and an admin, may chain it
        chained = world.run(who, "copy", input=f"opus:{alice['output']}", suffix=who)
        assert world[who].get(f"{chained}/results/output").text == \
            f"{alice['text']}\n{who}\n"


def test_anonymous_jobs_are_one_shared_space(world: World) -> None:
    text = unique("anonymous")
    job = world.run("anonymous", "echo", text=text)
    output = world.entities("anonymous", job)["forth:output"]
    for who in ("alice", "bob", "admin"):
        assert world[who].get(job).status_code == 200
        chained = world.run(who, "copy", input=f"opus:{output}", suffix="x")
        assert world[who].get(f"{chained}/results/output").text == f"{text}\nx\n"
        assert world.provsap(who, ID=output).status_code == 200
    for who in ("alice", "bob"):  # users read the shared space; they do not change it
        assert world[who].delete(job, allow_redirects=False).status_code == 403
    assert world.publish("bob", job).status_code == 403
    assert world["anonymous"].get(f"{job}/access").text == "public"
    # ... and it cannot be made private: sign in for that.
    refused = world.publish("anonymous", job, "private")
    assert refused.status_code == 409, refused.text


# -- publishing --------------------------------------------------------------------------------
def test_a_published_product_is_an_input_until_it_is_withdrawn(world: World,
                                                               uws_schema: Any) -> None:
    text = unique("released")
    job = world.run("alice", "echo", text=text)
    output = world.entities("alice", job)["forth:output"]
    assert world["alice"].get(f"{job}/access").text == "private"
    assert copy_job(world, "bob", f"opus:{output}").status_code == 400
    for who in ("bob", "anonymous"):  # only the owner (or an admin) publishes
        assert world.publish(who, job).status_code == 403
    assert world["alice"].get(f"{job}/access").text == "private"

    published = world.publish("alice", job)
    assert published.status_code == 303 and published.headers["Location"] == job
    assert world["alice"].get(f"{job}/access").text == "public"
    assert world["bob"].get(f"{job}/access", headers={"Accept": "application/json"}
                            ).json() == {"access": "public"}
    document = etree.fromstring(world["bob"].get(job).content)
    uws_schema.assertValid(document)
    assert document.findtext(f"uws:jobInfo/{{{OPUS_NS}}}access", namespaces=UWS_NS) == "public"
    as_json = world["bob"].get(job, headers={"Accept": "application/json"}).json()
    assert as_json["jobInfo"]["access"] == "public"
    assert world["bob"].get(f"{job}/results/output").text == f"{text}\n"
    assert world.provsap("bob", ID=output).status_code == 200
    # Readable is not changeable.
    assert world["bob"].delete(job, allow_redirects=False).status_code == 403
    assert world.publish("bob", job, "private").status_code == 403

    chained = world.run("bob", "copy", input=f"opus:{output}", suffix="bob")
    assert world["bob"].get(f"{chained}/results/output").text == f"{text}\nbob\n"
    pending = world.create("bob", "copy", run=False, input=f"opus:{output}")

    assert world.publish("alice", job, "private").status_code == 303
    assert world["alice"].get(f"{job}/access").text == "private"
    assert world["bob"].get(job).status_code == 403
    assert world.provsap("bob", ID=output).status_code == 404
    assert copy_job(world, "bob", f"opus:{output}").status_code == 400
    # The job bob chained before the product was withdrawn is refused when dispatched.
    assert world["bob"].post(f"{pending}/phase", data={"PHASE": "RUN"},
                             allow_redirects=False).status_code == 303
    document = world.wait_final("bob", pending)
    assert phase(document) == "ERROR"
    assert text.encode() not in served_results(world, "bob", document)
    assert "input input" in (document.findtext("uws:errorSummary/uws:message",
                                               namespaces=UWS_NS) or "")

    bad = world["alice"].post(f"{job}/access", data={"ACCESS": "everyone"},
                              allow_redirects=False)
    assert bad.status_code == 400 and "ACCESS" in bad.text
    # An admin may publish (and withdraw) anybody's job.
    assert world.publish("admin", job).status_code == 303
    assert world["bob"].get(job).status_code == 200
    assert world.publish("admin", job, "private").status_code == 303


def test_a_job_published_before_it_ends_has_its_run_recorded_public(world: World) -> None:
    text = unique("published early")
    job = world.create("alice", "echo", run=False, text=text)
    assert world.publish("alice", job).status_code == 303
    assert world["alice"].post(f"{job}/phase", data={"PHASE": "RUN"},
                               allow_redirects=False).status_code == 303
    assert phase(world.wait_final("alice", job)) == "COMPLETED"
    output = world.entities("bob", job)["forth:output"]
    chained = world.run("bob", "copy", input=f"opus:{output}", suffix="b")
    assert world["bob"].get(f"{chained}/results/output").text == f"{text}\nb\n"
    hits = search(world, "anonymous", ("param", f"text:{text}")).json()["results"]
    assert {hit["name"] for hit in hits} >= {"output"}


# -- replay ----------------------------------------------------------------------------------
def test_replaying_needs_read_access(world: World, alice: dict[str, Any]) -> None:
    job_id = alice["copy_id"]
    attempts = [(job_id, UNKNOWN_JOB), (f"opus:act-{job_id}", f"opus:act-{UNKNOWN_JOB}"),
                (f"opus:{alice['copy_output']}", f"opus:{UNKNOWN_ENTITY}"),
                (f"opus:{alice['upload_entity']}", f"opus:{UNKNOWN_ENTITY}")]
    for who in ("bob", "anonymous"):
        before = world[who].get(world.server.rest("copy")).text.count("jobref")
        for given, probe in attempts:
            refused = world[who].post(f"{world.url}/provenance/replay",
                                      data={"ID": given, "FORCE": "true"},
                                      allow_redirects=False)
            assert refused.status_code == 404, (who, given, refused.text)
            same_answer(refused, world[who].post(f"{world.url}/provenance/replay",
                                                 data={"ID": probe, "FORCE": "true"},
                                                 allow_redirects=False), (given, probe))
        assert world[who].get(world.server.rest("copy")).text.count("jobref") == before
        record = world[who].get(f"{world.url}/provenance/replay/{alice['replay_id']}")
        assert record.status_code == 404
        same_answer(record, world[who].get(f"{world.url}/provenance/replay/{UNKNOWN_JOB}"),
                    (alice["replay_id"], UNKNOWN_JOB))
    for who in ("alice", "admin"):
        assert world[who].get(
            f"{world.url}/provenance/replay/{alice['replay_id']}").status_code == 200


# -- provenance -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_provsap_shows_nobody_else_a_private_record(world: World, alice: dict[str, Any],
                                                    fmt: str) -> None:
    nodes = [(alice["echo_id"], UNKNOWN_JOB), (f"opus:act-{alice['copy_id']}",
                                               f"opus:act-{UNKNOWN_JOB}"),
             (alice["output"], UNKNOWN_ENTITY), (alice["upload_entity"], UNKNOWN_ENTITY),
             ("user-carol", "user-nobody")]
    for who in ("bob", "anonymous"):
        for node, probe in nodes:
            refused = world.provsap(who, ID=node, DEPTH="ALL", RESPONSEFORMAT=fmt)
            assert refused.status_code == 404, (who, node, fmt)
            same_answer(refused, world.provsap(who, ID=probe, DEPTH="ALL",
                                               RESPONSEFORMAT=fmt),
                        (node.removeprefix("opus:"), probe.removeprefix("opus:")))
    for who in ("alice", "admin"):
        for node, _ in nodes[:4]:
            assert world.provsap(who, ID=node, RESPONSEFORMAT=fmt).status_code == 200
    assert world.provsap("carol", ID="user-carol").status_code == 200


def test_a_graph_across_owners_leaves_out_the_other_owners_nodes(world: World) -> None:
    # Bob's private run used a product everybody may read (an anonymous one, a published
    # one of alice's): the others see that product, not what bob made of it.
    for owner, viewers in (("anonymous", ("alice", "anonymous", "carol")),
                           ("alice", ("alice", "anonymous", "carol"))):
        origin = world.run(owner, "echo", text=unique("origin"))
        if owner != "anonymous":
            assert world.publish(owner, origin).status_code == 303
        origin_output = world.entities(owner, origin)["forth:output"]
        secret = unique("bob private")
        bobs = world.run("bob", "copy", input=f"opus:{origin_output}", suffix=secret)
        bob_id = bobs.rsplit("/", 1)[1]
        bob_output = world.entities("bob", bobs)["forth:output"]
        for who in viewers:
            for fmt in FORMATS:
                forth = world.provsap(who, ID=origin_output, DIRECTION="FORTH", DEPTH="ALL",
                                      RESPONSEFORMAT=fmt)
                assert forth.status_code == 200, forth.text
                for hidden in (bob_id, bob_output, "user-bob", secret):
                    assert hidden.encode() not in forth.content, (owner, who, fmt, hidden)
            document = world.provsap(who, ID=origin_output, DIRECTION="FORTH",
                                     DEPTH="ALL").json()
            assert set(document["entity"]) == {f"opus:{origin_output}"}
            assert "activity" not in document and "used" not in document
        back = world.provsap("bob", ID=bob_output, DEPTH="ALL").json()
        assert {f"opus:act-{bob_id}", f"opus:act-{origin.rsplit('/', 1)[1]}"} == \
            set(back["activity"])
        assert f"opus:{origin_output}" in back["entity"]
        assert world.provsap("admin", ID=origin_output, DIRECTION="FORTH",
                             DEPTH="ALL").json()["activity"].keys() == {f"opus:act-{bob_id}"}

    # A published job's private progenitor stays private: it is left out of the graph.
    first = world.run("alice", "echo", text=unique("first, private"))
    first_output = world.entities("alice", first)["forth:output"]
    second = world.run("alice", "copy", input=f"opus:{first_output}", suffix="released")
    assert world.publish("alice", second).status_code == 303
    second_output = world.entities("alice", second)["forth:output"]
    back = world.provsap("bob", ID=second_output, DEPTH="ALL")
    assert back.status_code == 200
    assert f"opus:act-{second.rsplit('/', 1)[1]}" in back.json()["activity"]
    # (The published run's configuration names its input, as its job's parameters do:
    # the identifier is published with them, not what it identifies.)
    assert f"opus:{first_output}" not in back.json()["entity"]
    assert first.rsplit("/", 1)[1] not in back.text
    assert world.provsap("bob", ID=first_output).status_code == 404
    assert f"opus:{first_output}" in world.provsap("alice", ID=second_output,
                                                   DEPTH="ALL").json()["entity"]


def search(world: World, who: str, *pairs: tuple[str, str]) -> requests.Response:
    return world[who].get(f"{world.url}/provenance/search", params=list(pairs))


def test_search_finds_only_what_the_caller_may_read(world: World,
                                                    alice: dict[str, Any]) -> None:
    queries = [(("param", f"text:{alice['text']}"),), (("sha256", alice["sha256"]),),
               (("used", f"opus:{alice['upload_entity']}"),), (("agent", "user-carol"),)]
    for query in queries:
        for who in ("alice", "admin") if query[0][0] != "agent" else ("carol", "admin"):
            assert search(world, who, *query).json()["results"], (who, query)
        for who in ("bob", "anonymous"):
            assert search(world, who, *query).json()["results"] == [], (who, query)
    for who in ("bob", "anonymous"):
        everything = search(world, who, ("limit", "1000")).text
        for hidden in (alice["echo_id"], alice["copy_id"], alice["carol_id"], alice["text"]):
            assert hidden not in everything
        for lineage in ("ancestors", "descendants"):
            refused = search(world, who, (lineage, f"opus:{alice['output']}"))
            assert refused.status_code == 404
            same_answer(refused, search(world, who, (lineage, f"opus:{UNKNOWN_ENTITY}")),
                        (alice["output"], UNKNOWN_ENTITY))


def test_bindings_are_for_those_who_may_read_the_run(world: World,
                                                     alice: dict[str, Any]) -> None:
    url = f"{world.url}/provenance/bindings"
    for who in ("bob", "anonymous"):
        for job_id in (alice["echo_id"], f"act-{alice['copy_id']}"):
            refused = world[who].get(f"{url}/{job_id}")
            assert refused.status_code == 404
            probe = UNKNOWN_JOB if not job_id.startswith("act-") else f"act-{UNKNOWN_JOB}"
            same_answer(refused, world[who].get(f"{url}/{probe}"), (job_id, probe))
    for who in ("alice", "admin"):
        assert world[who].get(f"{url}/{alice['echo_id']}").status_code == 200


# -- DataLink ---------------------------------------------------------------------------------
def link_rows(world: World, who: str, *ids: str) -> list[dict[str, str | None]]:
    response = world[who].get(f"{world.url}/datalink/links", params={"ID": list(ids)})
    assert response.status_code == 200, response.text
    root = etree.fromstring(response.content)
    names = [f.get("name") for f in root.iterfind(
        ".//v:RESOURCE[@type='results']/v:TABLE/v:FIELD", VOT)]
    return [dict(zip(names, [td.text for td in tr.iterfind("v:TD", VOT)]))
            for tr in root.iterfind(".//v:TR", VOT)]


def test_datalink_has_no_row_for_what_the_caller_may_not_read(world: World,
                                                              alice: dict[str, Any]) -> None:
    ids = [(f"opus:{alice['upload_entity']}", f"opus:{UNKNOWN_ENTITY}"),
           (f"opus:{alice['output']}", f"opus:{UNKNOWN_ENTITY}"),
           (alice["copy_output"], UNKNOWN_ENTITY)]
    for who in ("bob", "anonymous"):
        for given, probe in ids:
            (row,) = link_rows(world, who, given)
            (unknown,) = link_rows(world, who, probe)
            assert row["access_url"] is None and row["error_message"], row
            bare, bare_probe = given.removeprefix("opus:"), probe.removeprefix("opus:")
            assert {k: (v or "").replace(bare, bare_probe) for k, v in row.items()} == \
                {k: v or "" for k, v in unknown.items()}
        result_url = f"{alice['echo']}/results/output"
        (row,) = link_rows(world, who, result_url)
        assert row["access_url"] is None and row["error_message"].startswith("NotFoundFault")
        assert row["link_authorized"] in (None, "")
    for who in ("alice", "admin"):
        rows = link_rows(world, who, f"opus:{alice['upload_entity']}")
        assert rows[0]["access_url"] and not rows[0]["error_message"]

    # A published job whose input was a private product: no #progenitor row points at it.
    first = world.run("alice", "echo", text=unique("progenitor"))
    first_output = world.entities("alice", first)["forth:output"]
    second = world.run("alice", "copy", input=f"opus:{first_output}", suffix="p")
    assert world.publish("alice", second).status_code == 303
    second_output = world.entities("alice", second)["forth:output"]
    mine = link_rows(world, "alice", f"opus:{second_output}")
    assert [r for r in mine if r["semantics"] == "#progenitor"]
    theirs = link_rows(world, "bob", f"opus:{second_output}")
    assert any(r["semantics"] == "#this" and r["access_url"] for r in theirs)
    assert not [r for r in theirs if r["semantics"] == "#progenitor"]
    assert not [r for r in theirs if first.rsplit("/", 1)[1] in str(r)]


# -- the rule, once ---------------------------------------------------------------------------
@pytest.mark.parametrize("engine_kind", ["sqlite", "postgresql"])
def test_the_policy_and_the_sql_filter_agree(engine_kind: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    import sqlalchemy as sa

    from conftest import _fresh_pg_database
    from opus.auth import AccessPolicy, Identity
    from opus.storage import tables as t
    from opus.storage.access import visible

    url = f"sqlite:///{tmp_path / 'rule.sqlite'}"
    if engine_kind == "postgresql":
        url = _fresh_pg_database(request).replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(url)
    t.metadata.create_all(engine, tables=[t.prov_entity])
    rows = [(None, False), (None, True), ("alice", False), ("alice", True), ("bob", False),
            ("bob", True)]
    with engine.begin() as connection:
        connection.execute(t.prov_entity.insert(), [
            {"id": f"ent-{i}", "owner_key": owner, "public": public}
            for i, (owner, public) in enumerate(rows)])
    policy = AccessPolicy()
    for identity in (Identity(), Identity("alice", "alice"), Identity("bob", "bob"),
                     Identity("carol", "carol"), Identity("root", "root", admin=True)):
        viewer = policy.viewer(identity)
        query = sa.select(t.prov_entity.c.id)
        condition = visible(t.prov_entity, viewer)
        if condition is not None:
            query = query.where(condition)
        with engine.connect() as connection:
            in_sql = set(connection.execute(query).scalars())
        in_python = {f"ent-{i}" for i, (owner, public) in enumerate(rows)
                     if policy.may_read(identity, owner, public)}
        assert in_sql == in_python, identity
    engine.dispose()
