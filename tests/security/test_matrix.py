"""The endpoint x identity matrix (issue 11, scope 5): every route of ``/openapi.json`` (the
per-activity ones spelled out for echo), called as alice, bob, anonymous and an admin against
alice's private job, product and replay.

Alice and the admin get their answer (2xx/3xx). Bob and anonymous callers get 403 from the
UWS job resources (UWS 1.1 section 3), 404 from the provenance doors, exactly as for an
unknown id (no existence oracle), DataLink rows that say NotFoundFault and link nothing, a
400 when they name her product as an input; and never her data. The routes that hold no
one's data answer everybody. The expectations are spelled out below: a route added without
one fails :func:`test_every_route_has_an_expectation`.

The pages of the web client (``/ui``) are called with the same Bearer header as the API:
the pages take it as they take the session cookie, and a header needs no CSRF field
(:meth:`opus.web.sessions.Sessions.identify`). ProvTAP (``/tap``) answers its documented
501 "ProvTAP needs PostgreSQL" on SQLite, and on PostgreSQL only the rows the caller may
read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from opus.tap.service import NEEDS_POSTGRESQL
from ownership_support import IDENTITIES, World, same_answer, start_world, unique

UNKNOWN_JOB = "0" * 32
UNKNOWN_ENTITY = "ent-" + "0" * 32
VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}

#: Who owns what is asked for: "job" (403 for others), "record" (404 for others), "links"
#: (DataLink: 200, NotFoundFault rows for others), "input" (400 for others: the product is
#: unknown to them), "open" (everybody: no one's data, or the caller's own), "view"
#: (everybody gets a page or a redirect that only names the id it was given and links to
#: the record doors; for others exactly the answer, Location too, for an unknown id),
#: "rows" (a ProvTAP query for alice's entity: 200 for everybody, her row for the owners
#: only; for others exactly the answer for an unknown id).
KINDS = ("job", "record", "links", "input", "open", "view", "rows")


@dataclass
class Targets:
    """Alice's private things the matrix asks for."""

    world: World
    job_id: str
    entity: str
    replay_id: str
    secret: str
    #: ProvTAP async (PostgreSQL): alice's COMPLETED query job and her ERROR one.
    tap_done: str = UNKNOWN_JOB
    tap_failed: str = UNKNOWN_JOB

    def pending(self) -> str:
        """A fresh PENDING echo job of alice's (for the routes that change a job)."""
        url = self.world.create("alice", "echo", run=False, text=self.secret)
        return url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Door:
    kind: str
    #: (path with the ids filled in, keyword arguments of requests) for one call; ``fresh``
    #: is a PENDING job of alice's made for this call, else alice's finished job.
    call: Callable[[Targets, str], tuple[str, dict[str, Any]]]
    changes: bool = False
    #: ProvTAP: on SQLite the documented 501 "ProvTAP needs PostgreSQL" for everybody.
    needs_postgresql: bool = False


def get(path: str, **params: Any) -> Callable[[Targets, str], tuple[str, dict[str, Any]]]:
    return lambda t, job: (path.format(job=job, entity=t.entity, replay=t.replay_id),
                           {"params": {k: v.format(job=job, entity=t.entity)
                                       for k, v in params.items()}})


def send(path: str, **data: str) -> Callable[[Targets, str], tuple[str, dict[str, Any]]]:
    return lambda t, job: (path.format(job=job),
                           {"data": {k: v.format(job=job, entity=t.entity)
                                     for k, v in data.items()}})


TOMORROW = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime(
    "%Y-%m-%dT%H:%M:%SZ")
#: A job route as OpenAPI names it, and as the matrix calls it.
KEY, JOB = "/rest/echo/{job_id}", "/rest/echo/{job}"
#: The same for the job page of the web client.
PAGE_KEY, PAGE_JOB = "/ui/jobs/{job_id}", "/ui/jobs/{job}"
#: ProvTAP: alice's entity, with the job that made it (the owners' row).
ENTITY_QUERY = {"LANG": "ADQL", "REQUEST": "doQuery",
                "QUERY": "SELECT id, job_id, name FROM provenance.entity WHERE id = '{entity}'"}


#: A TAP async job route as OpenAPI names it, and as the matrix calls it.
TAP_KEY = "/tap/async/{job_id}"


def tap_job(suffix: str = "", which: str = "done", **data: str
            ) -> Callable[[Targets, str], tuple[str, dict[str, Any]]]:
    """A call on one of alice's TAP async jobs: her COMPLETED one ("done"), her ERROR one
    ("failed") or a new PENDING one made for this call ("fresh", for the changes)."""
    def call(t: Targets, job: str) -> tuple[str, dict[str, Any]]:
        if which == "fresh" and t.tap_done != UNKNOWN_JOB:  # (SQLite: 501 to all)
            created = t.world["alice"].post(f"{t.world.url}/tap/async", allow_redirects=False,
                                            data={"LANG": "ADQL", "QUERY": TAP_QUERY})
            assert created.status_code == 303, created.text
            tap_id = created.headers["Location"].rsplit("/", 1)[1]
        else:
            tap_id = t.tap_failed if which == "failed" else t.tap_done  # or UNKNOWN_JOB
        return f"/tap/async/{tap_id}{suffix}", {"data": data} if data else {}
    return call


def tap_door(suffix: str = "", which: str = "done", **data: str) -> Door:
    return Door("job", tap_job(suffix, which, **data), needs_postgresql=True)


#: A query for the PENDING TAP jobs of the matrix.
TAP_QUERY = "SELECT TOP 1 id FROM provenance.entity"


def sign_in_as_carol(t: Targets, job: str) -> tuple[str, dict[str, Any]]:
    """The sign-in form sent with carol's token (neither alice's nor the caller's)."""
    token = str(t.world["carol"].headers["Authorization"]).removeprefix("Bearer ")
    return "/ui/signin", {"data": {"token": token, "next": "/ui/jobs"}}

#: (METHOD, OpenAPI path) -> what it is and how the matrix calls it.
DOORS: dict[tuple[str, str], Door] = {
    # the service and the activities: no one's data
    ("GET", "/"): Door("open", get("/")),
    ("GET", "/openapi.json"): Door("open", get("/openapi.json")),
    ("GET", "/capabilities"): Door("open", get("/capabilities")),
    ("GET", "/availability"): Door("open", get("/availability")),
    ("GET", "/activities"): Door("open", get("/activities")),
    ("GET", "/activities/{name}"): Door("open", get("/activities/echo")),
    ("GET", "/jdl/{name}"): Door("open", get("/jdl/echo")),
    ("GET", "/jdl/{name}/votable"): Door("open", get("/jdl/echo/votable")),
    ("GET", "/activities/{name}/datalink"): Door("open", get("/activities/echo/datalink")),
    ("GET", "/activities/{name}/form"): Door("open", get("/activities/copy/form")),
    ("POST", "/activities/{name}/form"): Door("input", send("/activities/copy/form",
                                                            input="opus:{entity}")),
    ("GET", "/provenance/templates/{activity}"): Door("open", get("/provenance/templates/echo")),
    # the job list: each caller's own
    ("GET", "/rest/echo"): Door("open", get("/rest/echo")),
    ("POST", "/rest/echo"): Door("open", send("/rest/echo", text="mine")),
    # UWS job resources (UWS 1.1 section 3: 403)
    ("GET", KEY): Door("job", get(JOB)),
    ("POST", KEY): Door("job", send(JOB, text="changed"), changes=True),
    ("DELETE", KEY): Door("job", get(JOB), changes=True),
    ("GET", KEY + "/phase"): Door("job", get(JOB + "/phase")),
    ("POST", KEY + "/phase"): Door("job", send(JOB + "/phase", PHASE="ABORT"), changes=True),
    ("GET", KEY + "/executionduration"): Door("job", get(JOB + "/executionduration")),
    ("POST", KEY + "/executionduration"): Door(
        "job", send(JOB + "/executionduration", EXECUTIONDURATION="30"), changes=True),
    ("GET", KEY + "/destruction"): Door("job", get(JOB + "/destruction")),
    ("POST", KEY + "/destruction"): Door(
        "job", send(JOB + "/destruction", DESTRUCTION=TOMORROW), changes=True),
    ("GET", KEY + "/error"): Door("job", get(JOB + "/error")),
    ("GET", KEY + "/quote"): Door("job", get(JOB + "/quote")),
    ("GET", KEY + "/owner"): Door("job", get(JOB + "/owner")),
    ("GET", KEY + "/parameters"): Door("job", get(JOB + "/parameters")),
    ("POST", KEY + "/parameters"): Door("job", send(JOB + "/parameters", text="changed"),
                                        changes=True),
    ("GET", KEY + "/parameters/{name}"): Door("job", get(JOB + "/parameters/text")),
    ("PUT", KEY + "/parameters/{name}"): Door(
        "job", lambda t, job: (f"/rest/echo/{job}/parameters/text", {"data": b"changed"}),
        changes=True),
    ("GET", KEY + "/results"): Door("job", get(JOB + "/results")),
    ("GET", KEY + "/results/{result_id}"): Door("job", get(JOB + "/results/output")),
    ("GET", KEY + "/access"): Door("job", get(JOB + "/access")),
    ("POST", KEY + "/access"): Door("job", send(JOB + "/access", ACCESS="public"),
                                    changes=True),
    # provenance: 404, as for an unknown id
    ("GET", "/provsap"): Door("record", get("/provsap", ID="{job}", DEPTH="ALL")),
    ("GET", "/provenance/search"): Door("record", get("/provenance/search",
                                                      descendants="opus:{entity}")),
    ("POST", "/provenance/replay"): Door("record", send("/provenance/replay", ID="{job}",
                                                        FORCE="true", PHASE="PENDING")),
    ("GET", "/provenance/replay/{job_id}"): Door("record", get("/provenance/replay/{replay}")),
    ("GET", "/provenance/bindings/{job_id}"): Door("record", get("/provenance/bindings/{job}")),
    # DataLink: a row per ID; for others a NotFoundFault one
    ("GET", "/datalink/links"): Door("links", get("/datalink/links", ID="opus:{entity}")),
    ("POST", "/datalink/links"): Door("links", send("/datalink/links", ID="opus:{entity}")),
    # the web client: home, static files, sign-in, each caller's own job list
    ("GET", "/ui"): Door("open", get("/ui")),
    ("GET", "/ui/"): Door("open", get("/ui/")),
    ("GET", "/ui/static/{filename}"): Door("open", get("/ui/static/opus.css")),
    ("GET", "/ui/jobs"): Door("open", get("/ui/jobs")),
    ("GET", "/ui/signin"): Door("open", get("/ui/signin", next="/ui/jobs")),
    ("POST", "/ui/signin"): Door("open", sign_in_as_carol),
    ("POST", "/ui/signout"): Door("open", send("/ui/signout")),
    # the activity form: "run again" prefills it with the job's parameters (403 as the job),
    # and a job made from it may not take her product as an input
    ("GET", "/ui/activities/{name}"): Door("job", get("/ui/activities/echo", **{"from": "{job}"})),
    ("POST", "/ui/activities/{name}"): Door("input", send("/ui/activities/copy",
                                                          input="opus:{entity}")),
    # the job page and its buttons: 403, as the UWS job resources
    ("GET", PAGE_KEY): Door("job", get(PAGE_JOB)),
    ("POST", PAGE_KEY + "/phase"): Door("job", send(PAGE_JOB + "/phase", PHASE="RUN"),
                                        changes=True),
    ("POST", PAGE_KEY + "/destruction"): Door(
        "job", send(PAGE_JOB + "/destruction", DESTRUCTION=TOMORROW), changes=True),
    ("POST", PAGE_KEY + "/delete"): Door("job", send(PAGE_JOB + "/delete"), changes=True),
    # the provenance view: the graph is drawn from /provsap (a "record" door) by the browser;
    # the page and the node redirect only name the id they were given
    ("GET", "/ui/provenance"): Door("view", get("/ui/provenance", ID="opus:{entity}")),
    ("GET", "/ui/provenance/node"): Door("view", get("/ui/provenance/node",
                                                     ID="opus:act-{job}")),
    # ProvTAP: only the rows the caller may read (501 on SQLite)
    ("GET", "/tap/availability"): Door("open", get("/tap/availability")),
    ("GET", "/tap/capabilities"): Door("open", get("/tap/capabilities"),
                                       needs_postgresql=True),
    ("GET", "/tap/tables"): Door("open", get("/tap/tables"), needs_postgresql=True),
    ("GET", "/tap/sync"): Door("rows", get("/tap/sync", **ENTITY_QUERY),
                               needs_postgresql=True),
    ("POST", "/tap/sync"): Door("rows", send("/tap/sync", **ENTITY_QUERY),
                                needs_postgresql=True),
    ("GET", "/tap/examples"): Door("open", get("/tap/examples"), needs_postgresql=True),
    # ProvTAP async: the caller's own list and jobs; alice's jobs are hers (403 to others,
    # as OPUS's UWS jobs); changes go to a new PENDING job of hers made for each call.
    ("GET", "/tap/async"): Door("open", get("/tap/async"), needs_postgresql=True),
    ("POST", "/tap/async"): Door("open", send("/tap/async", **ENTITY_QUERY),
                                 needs_postgresql=True),
    ("GET", TAP_KEY): tap_door(),
    ("POST", TAP_KEY): tap_door(which="fresh", ACTION="DELETE"),
    ("DELETE", TAP_KEY): tap_door(which="fresh"),
    ("GET", TAP_KEY + "/phase"): tap_door("/phase"),
    ("POST", TAP_KEY + "/phase"): tap_door("/phase", "fresh", PHASE="ABORT"),
    ("GET", TAP_KEY + "/executionduration"): tap_door("/executionduration"),
    ("POST", TAP_KEY + "/executionduration"): tap_door("/executionduration", "fresh",
                                                       EXECUTIONDURATION="30"),
    ("GET", TAP_KEY + "/destruction"): tap_door("/destruction"),
    ("POST", TAP_KEY + "/destruction"): tap_door("/destruction", "fresh", DESTRUCTION=TOMORROW),
    ("GET", TAP_KEY + "/quote"): tap_door("/quote"),
    ("GET", TAP_KEY + "/owner"): tap_door("/owner"),
    ("GET", TAP_KEY + "/parameters"): tap_door("/parameters"),
    ("POST", TAP_KEY + "/parameters"): tap_door("/parameters", "fresh", MAXREC="5"),
    ("GET", TAP_KEY + "/results"): tap_door("/results"),
    ("GET", TAP_KEY + "/results/result"): tap_door("/results/result"),
    ("GET", TAP_KEY + "/error"): tap_door("/error", "failed"),
}


@pytest.fixture(scope="module")
def world(backend: str, activities_dir: Path, tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[World]:
    yield from start_world(backend, activities_dir, tmp_path_factory, request)


@pytest.fixture(scope="module")
def targets(world: World, backend: str) -> Targets:
    secret = unique("matrix secret")
    job = world.run("alice", "echo", text=secret)
    entity = world.entities("alice", job)["forth:output"]
    replayed = world["alice"].post(f"{world.url}/provenance/replay",
                                   data={"ID": job.rsplit("/", 1)[1], "PHASE": "PENDING"},
                                   allow_redirects=False)
    assert replayed.status_code == 303, replayed.text
    targets = Targets(world, job.rsplit("/", 1)[1], entity,
                      replayed.headers["Location"].rsplit("/", 1)[1], secret)
    if backend == "postgresql":  # alice's ProvTAP async jobs, one ended well, one not
        targets.tap_done = tap_query(world, ENTITY_QUERY["QUERY"].format(entity=entity),
                                     "COMPLETED")
        targets.tap_failed = tap_query(world, "SELECT nothing FROM provenance.entity",
                                       "ERROR")
    return targets


def tap_query(world: World, query: str, phase: str) -> str:
    """The id of a ProvTAP async job of alice's, run to ``phase``."""
    created = world["alice"].post(f"{world.url}/tap/async", allow_redirects=False,
                                  data={"LANG": "ADQL", "QUERY": query, "PHASE": "RUN"})
    assert created.status_code == 303, created.text
    url = created.headers["Location"]
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    while (now := world["alice"].get(f"{url}/phase").text) in ("QUEUED", "EXECUTING"):
        assert dt.datetime.now() < deadline, f"{url}: still {now}"
        world["alice"].get(url, params={"WAIT": "5", "PHASE": now})  # until it changes
    assert now == phase, f"{url}: {now}"
    return url.rsplit("/", 1)[1]


def routes(world: World) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation of /openapi.json, job routes for echo only."""
    document = world["anonymous"].get(f"{world.url}/openapi.json").json()
    return {(method.upper(), path) for path, operations in document["paths"].items()
            for method in operations
            if not path.startswith("/rest/") or path.split("/")[2] == "echo"}


def test_every_route_has_an_expectation(world: World) -> None:
    found = routes(world)
    assert not found - DOORS.keys(), f"routes without an expectation: {found - DOORS.keys()}"
    assert not DOORS.keys() - found, f"expectations of no route: {DOORS.keys() - found}"
    assert {door.kind for door in DOORS.values()} <= set(KINDS)


def link_rows(response: requests.Response) -> list[dict[str, str | None]]:
    root = etree.fromstring(response.content)
    names = [f.get("name") for f in root.iterfind(
        ".//v:RESOURCE[@type='results']/v:TABLE/v:FIELD", VOT)]
    return [dict(zip(names, [td.text for td in tr.iterfind("v:TD", VOT)]))
            for tr in root.iterfind(".//v:TR", VOT)]


def table_rows(response: requests.Response) -> list[list[str | None]]:
    """The rows of a TAP result VOTable."""
    root = etree.fromstring(response.content)
    return [[td.text for td in tr.iterfind("v:TD", VOT)]
            for tr in root.iterfind(".//v:TABLEDATA/v:TR", VOT)]


def query_status(response: requests.Response) -> list[tuple[str | None, str]]:
    root = etree.fromstring(response.content)
    return [(info.get("value"), (info.text or "").strip())
            for info in root.iterfind("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", VOT)]


@pytest.mark.parametrize("method, path", sorted(DOORS), ids=lambda v: str(v))
def test_the_matrix(world: World, targets: Targets, backend: str, method: str,
                    path: str) -> None:
    door = DOORS[(method, path)]
    for who in IDENTITIES:
        job = targets.pending() if door.changes else targets.job_id
        url, arguments = door.call(targets, job)
        response = world[who].request(method, f"{world.url}{url}", allow_redirects=False,
                                      **arguments)
        # The callers are who their header says: forget a session cookie an answer set
        # (the sign-in door), so that anonymous stays anonymous.
        world[who].cookies.clear()
        status, owner = response.status_code, who in ("alice", "admin")
        where = f"{method} {url} as {who}: {status} {response.text[:300]}"
        if door.needs_postgresql and backend == "sqlite":  # the documented answer, to all
            assert status == 501, where
            assert response.headers["Content-Type"].startswith("application/x-votable+xml")
            assert query_status(response) == [("ERROR", NEEDS_POSTGRESQL)], where
            continue
        if owner or door.kind in ("open", "view", "rows"):
            assert 200 <= status < 400, where
        elif door.kind == "job":
            assert status == 403, where
        elif door.kind == "record":
            assert status == 404, where
        elif door.kind == "input":
            assert status == 400, where
        else:
            assert status == 200, where
            (row,) = link_rows(response)
            assert row["error_message"].startswith("NotFoundFault") and not row["access_url"]
        if door.kind == "links" and owner:
            assert any(row["access_url"] for row in link_rows(response)), where
        if door.kind == "rows":
            assert status == 200, where
            mine = [row for row in table_rows(response) if row[0] == targets.entity]
            assert mine == ([[targets.entity, targets.job_id, "output"]] if owner else []), \
                where
        if not owner:
            assert targets.secret not in response.text, where
            if door.kind in ("open", "links", "rows"):
                assert targets.job_id not in response.text, where
        if door.kind in ("record", "view", "rows") and not owner:  # as for unknown ids
            unknown = dataclasses.replace(targets, job_id=UNKNOWN_JOB, entity=UNKNOWN_ENTITY,
                                          replay_id=UNKNOWN_JOB)
            probe_url, probe_arguments = door.call(unknown, UNKNOWN_JOB)
            probe = world[who].request(method, f"{world.url}{probe_url}",
                                       allow_redirects=False, **probe_arguments)
            world[who].cookies.clear()
            ids = ((targets.job_id, UNKNOWN_JOB), (targets.entity, UNKNOWN_ENTITY),
                   (targets.replay_id, UNKNOWN_JOB))
            same_answer(response, probe, *ids)
            location = response.headers.get("Location", "")
            for mine, other in ids:
                location = location.replace(mine, other)
            assert location == probe.headers.get("Location", ""), where
        if door.changes and not owner:  # refused changes changed nothing
            still = world["alice"].get(f"{world.url}/rest/echo/{job}/phase")
            assert still.status_code == 200 and still.text == "PENDING", where
