"""The endpoint x identity matrix (issue 11, scope 5): every route of ``/openapi.json`` (the
per-activity ones spelled out for echo), called as alice, bob, anonymous and an admin against
alice's private job, product and replay.

Alice and the admin get their answer (2xx/3xx). Bob and anonymous callers get 403 from the
UWS job resources (UWS 1.1 section 3), 404 from the provenance doors, exactly as for an
unknown id (no existence oracle), DataLink rows that say NotFoundFault and link nothing, a
400 when they name her product as an input; and never her data. The routes that hold no
one's data answer everybody. The expectations are spelled out below: a route added without
one fails :func:`test_every_route_has_an_expectation`.
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

from ownership_support import IDENTITIES, World, same_answer, start_world, unique

UNKNOWN_JOB = "0" * 32
UNKNOWN_ENTITY = "ent-" + "0" * 32
VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}

#: Who owns what is asked for: "job" (403 for others), "record" (404 for others), "links"
#: (DataLink: 200, NotFoundFault rows for others), "input" (400 for others: the product is
#: unknown to them), "open" (everybody: no one's data, or the caller's own).
KINDS = ("job", "record", "links", "input", "open")


@dataclass
class Targets:
    """Alice's private things the matrix asks for."""

    world: World
    job_id: str
    entity: str
    replay_id: str
    secret: str

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
}


@pytest.fixture(scope="module")
def world(backend: str, activities_dir: Path, tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[World]:
    yield from start_world(backend, activities_dir, tmp_path_factory, request)


@pytest.fixture(scope="module")
def targets(world: World) -> Targets:
    secret = unique("matrix secret")
    job = world.run("alice", "echo", text=secret)
    entity = world.entities("alice", job)["forth:output"]
    replayed = world["alice"].post(f"{world.url}/provenance/replay",
                                   data={"ID": job.rsplit("/", 1)[1], "PHASE": "PENDING"},
                                   allow_redirects=False)
    assert replayed.status_code == 303, replayed.text
    return Targets(world, job.rsplit("/", 1)[1], entity,
                   replayed.headers["Location"].rsplit("/", 1)[1], secret)


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


@pytest.mark.parametrize("method, path", sorted(DOORS), ids=lambda v: str(v))
def test_the_matrix(world: World, targets: Targets, method: str, path: str) -> None:
    door = DOORS[(method, path)]
    for who in IDENTITIES:
        job = targets.pending() if door.changes else targets.job_id
        url, arguments = door.call(targets, job)
        response = world[who].request(method, f"{world.url}{url}", allow_redirects=False,
                                      **arguments)
        status, owner = response.status_code, who in ("alice", "admin")
        where = f"{method} {url} as {who}: {status} {response.text[:300]}"
        if owner or door.kind == "open":
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
        if not owner:
            assert targets.secret not in response.text, where
            if door.kind in ("open", "links"):
                assert targets.job_id not in response.text, where
        if door.kind == "record" and not owner:  # said as for ids that do not exist
            unknown = dataclasses.replace(targets, job_id=UNKNOWN_JOB, entity=UNKNOWN_ENTITY,
                                          replay_id=UNKNOWN_JOB)
            probe_url, probe_arguments = door.call(unknown, UNKNOWN_JOB)
            same_answer(response, world[who].request(
                method, f"{world.url}{probe_url}", allow_redirects=False, **probe_arguments),
                (targets.job_id, UNKNOWN_JOB), (targets.entity, UNKNOWN_ENTITY),
                (targets.replay_id, UNKNOWN_JOB))
        if door.changes and not owner:  # refused changes changed nothing
            still = world["alice"].get(f"{world.url}/rest/echo/{job}/phase")
            assert still.status_code == 200 and still.text == "PENDING", where
