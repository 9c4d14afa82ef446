"""The database goes away (issue 13, item 3): every route answers 503 with Retry-After,
never 500; a blocked WAIT answers the last known document; the outage is logged once per
process, not once per request, and so is its end; no accepted job is lost or run twice.

The first two tests cut the database off through a TCP proxy (:class:`outages.TcpProxy`),
which disturbs nobody else on this machine; the scenario restarts the machine's real
PostgreSQL (``pg_ctlcluster 15 main stop``/``start``, a few seconds) while clients create
jobs and wait for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from conftest import until
from faults.outages import (LONG, UWS, Burst, TcpProxy, fault_activities, final_phases, listed_jobs,
                     postgres_cluster_problem, restart_postgres, root_conftest, runs_of,
                     wait_for_log)

conftest = root_conftest()

#: How often the scenario restarts PostgreSQL, for how long, with how many clients.
RESTARTS, DOWN, CLIENTS = (3, 4.0, 16) if LONG else (1, 3.0, 8)


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    url = conftest._create_pg_database(postgres_admin_url)
    yield url
    conftest._drop_pg_database(postgres_admin_url, url)


@pytest.fixture
def proxied(database: str, tmp_path: Path) -> Iterator[tuple[Any, TcpProxy]]:
    """A server whose database connections all go through a proxy that can be cut."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    server = conftest.start_server(tmp_path / "data", proxy.url(database),
                                   activities_dir=fault_activities(tmp_path / "activities"))
    yield server, proxy
    server.stop()
    proxy.close()


def request_every_route(server: Any, job_id: str) -> list[tuple[str, str, int, bool]]:
    """(method, path, status, has Retry-After) for every operation of /openapi.json,
    with the path's parameters filled in for the job ``job_id``."""
    spec = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    answers = []
    for path, operations in spec["paths"].items():
        url = (server.url + path).format(activity="count", job_id=job_id, name="count",
                                          result_id="output", filename="opus.css",
                                          parameter="megabytes")
        for method in operations:
            if method not in {"get", "post", "put", "delete"}:
                continue
            response = requests.request(
                method.upper(), url, timeout=30, allow_redirects=False,
                params={"ID": job_id, "LANG": "ADQL", "REQUEST": "doQuery",
                        "QUERY": "SELECT * FROM provenance.activity"})
            answers.append((method.upper(), path, response.status_code,
                            "Retry-After" in response.headers))
    return answers


def test_every_route_answers_503_with_retry_after_while_the_database_is_unreachable(
        proxied: tuple[Any, TcpProxy]) -> None:
    server, proxy = proxied
    job_url = server.create("count")
    server.wait_final(job_url)
    proxy.cut()
    try:
        answers = request_every_route(server, job_url.rsplit("/", 1)[1])
    finally:
        proxy.restore()
    bad = [answer for answer in answers if answer[2] >= 500
           and not (answer[2] == 503 and answer[3])]
    assert not bad, f"answers other than 503 with Retry-After: {bad}"
    refused = sum(1 for answer in answers if answer[2] == 503)
    assert refused > 50  # the job, its lists and its pages need the database
    # back: answered again, and each process logged the outage once, not per request
    assert server.job(job_url).findtext("uws:phase", namespaces=UWS) == "COMPLETED"
    log = wait_for_log(server, "is back after")
    assert log.count("cannot be reached; answering 503 and retrying") <= 3  # 2 workers, scheduler
    assert "Traceback" not in log
    print(f"\n{len(answers)} requests while cut off: {refused} answered 503 with "
          f"Retry-After, 0 answered 500; log lines of the outage: "
          f"{log.count('cannot be reached')}")


def test_a_blocked_wait_answers_the_last_known_document(
        proxied: tuple[Any, TcpProxy]) -> None:
    server, proxy = proxied
    job_url = server.create("sleep", duration="30")
    deadline = time.monotonic() + 30
    while server.phase(job_url) != "EXECUTING":
        assert time.monotonic() < deadline, "the job did not start"
        server.job(job_url, WAIT="5")
    answer: dict[str, requests.Response] = {}
    waiting = threading.Thread(target=lambda: answer.setdefault(
        "wait", requests.get(job_url, params={"WAIT": "20"}, timeout=60)))
    waiting.start()
    time.sleep(0.5)  # the WAIT is registered and blocked (no event says so from outside)
    proxy.cut()
    try:
        waiting.join(60)
    finally:
        proxy.restore()
    response = answer["wait"]
    assert response.status_code == 200, response.text
    document = etree.fromstring(response.content)
    assert document.findtext("uws:phase", namespaces=UWS) == "EXECUTING"
    requests.delete(job_url, timeout=30)


@pytest.mark.skipif(postgres_cluster_problem() is not None,
                    reason=postgres_cluster_problem() or "")
def test_postgresql_restarted_mid_burst(database: str, tmp_path: Path) -> None:
    """Scenario (a): clients create jobs and wait for them while PostgreSQL restarts."""
    server = conftest.start_server(tmp_path / "data", database, concurrency=4,
                                   activities_dir=fault_activities(tmp_path / "activities"))
    try:
        burst = Burst(server.url, "count", CLIENTS).start()
        for _ in range(RESTARTS):
            before = len(burst.accepted)
            until(lambda: len(burst.accepted) >= before + CLIENTS, 120,
                  "the burst to go on")
            restart_postgres(DOWN)
            after = len(burst.accepted)
            until(lambda: len(burst.accepted) >= after + CLIENTS, 120,
                  "creations to be accepted again")
        burst.stop()
        final = final_phases(server.url, burst.accepted)
        figures = burst.summary(f"PostgreSQL restarted {RESTARTS}x ({DOWN:g} s) under "
                                f"{CLIENTS} clients", final,
                                listed_jobs(server.url, "count"),
                                runs_of(requests.Session(), burst.accepted))
        assert figures["answers_500"] == 0
        assert figures["without_retry_after"] == 0, burst.without_retry_after[:5]
        assert set(burst.statuses) <= {200, 303, 503}, burst.statuses
        assert figures["lost"] == 0, {k: v for k, v in final.items() if v != "COMPLETED"}
        assert figures["duplicated"] == 0
        assert not burst.problems, burst.problems[:5]
        log = server.log()
        assert log.count("cannot be reached; answering 503 and retrying") <= 3 * RESTARTS
        assert log.count("is back after") >= 1
    finally:
        server.stop()
