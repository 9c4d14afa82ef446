"""GET /provenance/search on real runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from importlib import metadata

import pytest

from conftest import Server


def search(server: Server, *pairs: tuple[str, str], status: int = 200) -> dict:
    response = server.session.get(f"{server.url}/provenance/search", params=list(pairs))
    assert response.status_code == status, response.text
    if status != 200:
        return {"message": response.text}
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def ids(answer: dict) -> set[str]:
    return {hit["id"] for hit in answer["results"]}


@pytest.fixture(scope="module")
def echo_run(server: Server) -> dict:
    """A completed echo job with a unique text; its output hit and its bytes."""
    text = f"search me {uuid.uuid4().hex}"
    job_url = server.create("echo", text=text)
    server.wait_final(job_url)
    output = server.session.get(f"{job_url}/results/output").content
    answer = search(server, ("param", f"text:{text}"))
    hits = {hit["name"]: hit for hit in answer["results"]}
    assert "output" in hits, answer
    return {"job_url": job_url, "job_id": job_url.rsplit("/", 1)[1], "text": text,
            "output": output, "hit": hits["output"], "all": ids(answer)}


def test_a_hit_describes_the_product_and_its_job(server: Server, echo_run: dict) -> None:
    hit = echo_run["hit"]
    assert hit["id"].startswith("opus:ent-")
    assert hit["sha256"] == hashlib.sha256(echo_run["output"]).hexdigest()
    assert hit["size"] == len(echo_run["output"])
    assert hit["content_type"] == "text/plain"
    assert hit["job_id"] == echo_run["job_id"]
    assert hit["job_url"] == echo_run["job_url"]
    assert hit["activity"] == "echo" and hit["version"] == "1.0"
    assert hit["activity_id"] == f"opus:act-{echo_run['job_id']}"
    assert hit["location"].endswith(f"/{echo_run['job_id']}/results/output")
    assert hit["generated"].endswith("Z") and hit["invalidated"] is None
    assert server.session.get(hit["job_url"]).status_code == 200


def test_found_by_the_software_version_that_made_it(server: Server, echo_run: dict) -> None:
    version = metadata.version("SQLAlchemy")
    param = ("param", f"text:{echo_run['text']}")
    for spelling in (f"SQLAlchemy=={version}", f"sqlalchemy=={version}", "SQLALCHEMY"):
        assert echo_run["hit"]["id"] in ids(search(server, ("software", spelling), param))
    assert echo_run["hit"]["id"] in ids(search(server, ("software", f"SQLAlchemy=={version}"),
                                               ("limit", "1000")))
    assert search(server, ("software", "SQLAlchemy==0.0.1"), param)["results"] == []
    assert search(server, ("software", "no-such-package-at-all"))["results"] == []
    # Several software conditions are ANDed.
    both = search(server, ("software", f"SQLAlchemy=={version}"),
                  ("software", f"bottle=={metadata.version('bottle')}"), param)
    assert echo_run["hit"]["id"] in ids(both)
    assert search(server, ("software", f"SQLAlchemy=={version}"),
                  ("software", "bottle==0.0.1"), param)["results"] == []


def test_found_by_activity_parameter_and_output_hash(server: Server, echo_run: dict) -> None:
    hit = echo_run["hit"]
    assert hit["id"] in ids(search(server, ("sha256", hit["sha256"])))
    assert hit["id"] in ids(search(server, ("sha256", hit["sha256"].upper())))
    assert search(server, ("sha256", "0" * 64))["results"] == []
    by_activity = search(server, ("activity", "echo"), ("version", "1.0"),
                         ("param", f"text:{echo_run['text']}"), ("phase", "COMPLETED"))
    assert hit["id"] in ids(by_activity)
    assert search(server, ("activity", "sleep"),
                  ("param", f"text:{echo_run['text']}"))["results"] == []
    assert search(server, ("activity", "echo"), ("version", "9.9"),
                  ("param", f"text:{echo_run['text']}"))["results"] == []
    assert search(server, ("param", f"text:{echo_run['text']}x"))["results"] == []
    assert search(server, ("param", f"text:{echo_run['text']}"),
                  ("phase", "ERROR"))["results"] == []


def test_found_by_agent(server: Server, echo_run: dict) -> None:
    param = ("param", f"text:{echo_run['text']}")
    assert echo_run["hit"]["id"] in ids(search(server, ("agent", "opus"), param))
    assert echo_run["hit"]["id"] in ids(search(server, ("agent", "opus-admin"), param))
    assert search(server, ("agent", "nobody-of-that-name"), param)["results"] == []


def test_time_range_on_the_end_of_the_run(server: Server, echo_run: dict) -> None:
    end = dt.datetime.strptime(echo_run["hit"]["end_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    param = ("param", f"text:{echo_run['text']}")

    def iso(moment: dt.datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    second = dt.timedelta(seconds=1)
    assert echo_run["hit"]["id"] in ids(search(server, param, ("after", iso(end - second)),
                                               ("before", iso(end + second))))
    assert search(server, param, ("after", iso(end + second)))["results"] == []
    assert search(server, param, ("before", iso(end - second)))["results"] == []
    # Time zones are honoured.
    shifted = (end + dt.timedelta(hours=2) - second).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    assert echo_run["hit"]["id"] in ids(search(server, param, ("after", shifted)))


def test_paging_newest_first(server: Server, echo_run: dict) -> None:
    first = search(server, ("activity", "echo"), ("limit", "1"))
    assert first["count"] == 1 and first["limit"] == 1
    if first["more"]:
        assert "offset=1" in first["next"]
        second = server.session.get(first["next"]).json()
        assert second["offset"] == 1 and ids(second).isdisjoint(ids(first))
        assert second["results"][0]["end_time"] <= first["results"][0]["end_time"]
    assert search(server, ("limit", "0"))["results"] == []


def test_ancestors_and_descendants(server: Server, echo_run: dict) -> None:
    hit = echo_run["hit"]
    # An echo run uses nothing: no ancestors; nothing used its output yet.
    assert search(server, ("ancestors", hit["id"]))["results"] == []
    assert search(server, ("descendants", hit["id"]))["results"] == []
    search(server, ("ancestors", "opus:ent-" + "0" * 32), status=404)


@pytest.mark.parametrize("pairs, named", [
    ((("limit", "1001"),), "limit"),
    ((("limit", "-1"),), "limit"),
    ((("offset", "x"),), "offset"),
    ((("after", "yesterday"),), "after"),
    ((("before", "2026-13-01T00:00:00Z"),), "before"),
    ((("after", "2026-02-01T00:00:00Z"), ("before", "2026-01-01T00:00:00Z")), "before"),
    ((("phase", "RUNNING"),), "phase"),
    ((("sha256", "abc"),), "sha256"),
    ((("param", "no-colon"),), "param"),
    ((("software", "numpy>=1.0"),), "software"),
    ((("software", "numpy=="),), "software"),
    ((("used", "not an id"),), "used"),
    ((("ancestors", "act-123"),), "ancestors"),
    ((("activity", "echo"), ("activity", "sleep")), "activity"),
    ((("colour", "blue"),), "colour"),
])
def test_bad_parameters_are_400_naming_them(server: Server, pairs: tuple, named: str) -> None:
    answer = search(server, *pairs, status=400)
    assert named in answer["message"], answer


def test_long_parameter_values_match_exactly(server: Server) -> None:
    """Values longer than the indexed prefix (128 characters) still compare whole."""
    text = "long value " + uuid.uuid4().hex + "é" * 200
    job_url = server.create("echo", text=text)
    server.wait_final(job_url)
    job_id = job_url.rsplit("/", 1)[1]
    found = search(server, ("param", f"text:{text}"))
    assert {hit["job_id"] for hit in found["results"]} == {job_id}
    assert search(server, ("param", f"text:{text[:-1]}"))["results"] == []
    assert search(server, ("param", f"text:{text}x"))["results"] == []
    assert search(server, ("param", f"text:{text[:128]}"))["results"] == []
