"""Limits that keep the service up (issue 11, scope item 3), each written as the attack it
stops: held WAITs, a flood of active jobs, one owner's queue starving another's job, an
executionDuration far above the activity's, huge parameter values and bodies, and an owner
filling the disk. Every test fails on a server without the limit.

Never more than a handful of connections at once (the per-address connection cap of the
serving layer is another test's business)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import requests
from lxml import etree

from conftest import UWS_NS, Server
from ownership_support import opus_users, session


def _phase(document: etree._Element) -> str | None:
    return document.findtext("uws:phase", namespaces=UWS_NS)


def _instant(document: etree._Element, name: str) -> dt.datetime:
    text = document.findtext(f"uws:{name}", namespaces=UWS_NS)
    assert text, f"no {name}"
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _delete(server: Server, *job_urls: str) -> None:
    for url in job_urls:
        server.session.delete(url, allow_redirects=False)


# -- WAIT ----------------------------------------------------------------------------------
LIMIT = 16  # wait_per_client's default


def test_waits_past_the_per_client_limit_answer_at_once(server_factory: Any) -> None:
    """An anonymous client holding 16 WAITs (the default limit, in the one worker) gets its
    17th answered at once with the job as it is; the held ones still wait for a change."""
    server = server_factory(workers=1)
    done = opus_users(server, "add", "alice")
    assert done.returncode == 0, done.stderr
    alice = session(done.stdout.strip())
    job_url = server.create("sleep", run=False)
    created = alice.post(server.rest("sleep"), allow_redirects=False)
    assert created.status_code == 303
    hers = created.headers["Location"]
    with concurrent.futures.ThreadPoolExecutor(LIMIT + 2) as pool:
        calls = [pool.submit(requests.get, job_url, params={"WAIT": "30"}, timeout=45)
                 for _ in range(LIMIT + 1)]
        done, held = concurrent.futures.wait(
            calls, timeout=20, return_when=concurrent.futures.FIRST_COMPLETED)
        assert len(done) == 1, "every WAIT blocked: no per-client limit"
        answer = done.pop().result()
        assert answer.status_code == 200
        assert _phase(etree.fromstring(answer.content)) == "PENDING"
        assert len(held) == LIMIT and not any(call.done() for call in held)
        # Another client (alice) still gets a blocking WAIT: the limit is per client.
        before = etree.fromstring(alice.get(hers).content).findtext(
            "uws:destruction", namespaces=UWS_NS)
        waiting = pool.submit(alice.get, hers, params={"WAIT": "30"}, timeout=45)
        early, _ = concurrent.futures.wait([waiting], timeout=1)
        assert not early, "alice's WAIT was answered without a change: it did not block"
        # A change wakes it. (Nothing tells from outside when the server has read the job
        # for the WAIT: a change that lands before that read is in the document it holds,
        # and the wait goes on, the full 30 s; so change the job again until it is woken.)
        for day in range(1, 29):
            changed = alice.post(f"{hers}/destruction", allow_redirects=False,
                                 data={"DESTRUCTION": f"2099-01-{day:02d}T00:00:00Z"})
            assert changed.status_code == 303
            if concurrent.futures.wait([waiting], timeout=1).done:
                break
        woken = etree.fromstring(waiting.result().content)
        assert woken.findtext("uws:destruction", namespaces=UWS_NS) != before
        # A change wakes the two held waits.
        changed = server.session.post(f"{job_url}/destruction", allow_redirects=False,
                                      data={"DESTRUCTION": "2099-01-01T00:00:00Z"})
        assert changed.status_code == 303
        assert all(call.result().status_code == 200 for call in held)


# -- active jobs ---------------------------------------------------------------------------
def test_active_jobs_past_the_limit_are_refused_with_429(server_factory: Any) -> None:
    """20 (max_active_jobs' default) QUEUED or EXECUTING: the 21st is refused."""
    server = server_factory()
    running = [server.create("sleep", duration="600") for _ in range(20)]
    try:
        flood = server.session.post(server.rest("sleep"), allow_redirects=False,
                                    data={"duration": "600", "PHASE": "RUN"})
        assert flood.status_code == 429, flood.text
        assert int(flood.headers["Retry-After"]) > 0
        assert "max_active_jobs" in flood.text and " 20" in flood.text
        # RUN of a PENDING job past the limit: refused, and the job stays PENDING.
        pending = server.create("sleep", run=False, duration="600")
        running.append(pending)
        refused = server.session.post(f"{pending}/phase", data={"PHASE": "RUN"},
                                      allow_redirects=False)
        assert refused.status_code == 429, refused.text
        assert "Retry-After" in refused.headers
        assert server.phase(pending) == "PENDING"
        # One ends: there is room again.
        aborted = server.session.post(f"{running[0]}/phase", data={"PHASE": "ABORT"},
                                      allow_redirects=False)
        assert aborted.status_code == 303
        again = server.session.post(f"{pending}/phase", data={"PHASE": "RUN"},
                                    allow_redirects=False)
        assert again.status_code == 303, again.text
        assert server.phase(pending) in {"QUEUED", "EXECUTING"}
    finally:
        _delete(server, *running)


# -- fair dispatch and quote ----------------------------------------------------------------
def test_one_owners_flood_does_not_starve_another_owners_job(server_factory: Any) -> None:
    """Anonymous callers queue eight jobs on a one-slot server; alice's single job, queued
    after them, runs next (round robin between owners), and her quote says so."""
    server = server_factory(concurrency=1)
    done = opus_users(server, "add", "alice")
    assert done.returncode == 0, done.stderr
    alice = session(done.stdout.strip())
    flood = [server.create("sleep", duration="2") for _ in range(8)]
    try:
        created = alice.post(server.rest("sleep"), data={"duration": "0", "PHASE": "RUN"},
                             allow_redirects=False)
        assert created.status_code == 303, created.text
        mine = created.headers["Location"]
        my_quote = _instant(etree.fromstring(alice.get(mine).content), "quote")
        later = [etree.fromstring(server.session.get(url).content) for url in flood[2:]]
        queued_quotes = [_instant(d, "quote") for d in later if _phase(d) == "QUEUED"]
        assert queued_quotes and my_quote < min(queued_quotes), \
            "alice's quote places her behind the flood"
        deadline = 120.0
        while True:
            document = etree.fromstring(alice.get(mine, params={"WAIT": "10"}).content)
            if _phase(document) not in {"PENDING", "QUEUED", "EXECUTING"}:
                break
            deadline -= 10
            assert deadline > 0, "alice's job never ran"
        assert _phase(document) == "COMPLETED"
        still_queued = [url for url in flood if server.phase(url) == "QUEUED"]
        assert len(still_queued) >= 4, "alice's job waited for the whole flood (FIFO)"
    finally:
        _delete(server, *flood)
        alice.close()


# -- executionDuration ------------------------------------------------------------------------
def test_execution_duration_is_capped_at_the_activitys(server: Server) -> None:
    """echo declares 60 s: 86,400 s asked (at creation or later) is lowered to 60."""
    response = server.session.post(server.rest("echo"), allow_redirects=False,
                                   data={"text": "x", "EXECUTIONDURATION": "86400"})
    assert response.status_code == 303, response.text
    job_url = response.headers["Location"]
    try:
        shown = server.job(job_url).findtext("uws:executionDuration", namespaces=UWS_NS)
        assert shown == "60"
        changed = server.session.post(f"{job_url}/executionduration", allow_redirects=False,
                                      data={"EXECUTIONDURATION": "0"})
        assert changed.status_code == 303
        assert server.session.get(f"{job_url}/executionduration").text.strip() == "60"
        lower = server.session.post(f"{job_url}/executionduration", allow_redirects=False,
                                    data={"EXECUTIONDURATION": "5"})
        assert lower.status_code == 303
        assert server.session.get(f"{job_url}/executionduration").text.strip() == "5"
    finally:
        _delete(server, job_url)


# -- parameter size ---------------------------------------------------------------------------
def test_a_parameter_value_past_the_limit_is_a_400_naming_it(server: Server) -> None:
    huge = "x" * (64 * 1024 + 1)
    created = server.session.post(server.rest("echo"), data={"text": huge},
                                  allow_redirects=False)
    assert created.status_code in {400, 413}, created.status_code
    job_url = server.create("echo", run=False, text="small")
    try:
        put = server.session.put(f"{job_url}/parameters/text", data=huge.encode(),
                                 headers={"Content-Type": "text/plain"},
                                 allow_redirects=False)
        assert put.status_code == 400, put.status_code
        assert put.text.startswith("text:") and "65536" in put.text
        multipart = server.session.post(f"{job_url}/parameters", allow_redirects=False,
                                        files={"text": (None, huge)})
        assert multipart.status_code == 400 and "65536" in multipart.text
        assert server.session.get(f"{job_url}/parameters/text").text == "small"
    finally:
        _delete(server, job_url)


def test_a_huge_body_is_refused_before_it_is_read(server: Server) -> None:
    """A PUT declaring 50 MB: 413 after only the headers and a little of it."""
    job_url = server.create("echo", run=False, text="small")
    try:
        target = urllib.parse.urlsplit(f"{job_url}/parameters/text")
        with socket.create_connection((target.hostname, target.port), timeout=30) as sock:
            sock.sendall((f"PUT {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                          f"Content-Type: text/plain\r\nContent-Length: {50 * 1024 * 1024}"
                          f"\r\nConnection: close\r\n\r\n").encode() + b"x" * 65536)
            status_line = sock.recv(4096).split(b"\r\n", 1)[0]
        assert b" 413 " in status_line + b" ", status_line
        assert server.session.get(f"{job_url}/parameters/text").text == "small"
    finally:
        _delete(server, job_url)


# -- disk quota ---------------------------------------------------------------------------------
def _copy(server: Server, size: int, run: bool) -> requests.Response:
    data = {"PHASE": "RUN"} if run else {}
    return server.session.post(server.rest("copy"), data=data, allow_redirects=False,
                               files={"input": ("in.txt", b"y" * size, "text/plain")})


def test_uploads_and_results_past_the_owners_quota(server_factory: Any,
                                                   activities_dir: Path) -> None:
    """quota 3000 bytes: a 1000-byte copy job completes (about 2000 bytes used); a 900-byte
    upload fits, but its results would not: ERROR saying so; then a 200-byte upload is a
    413."""
    server = server_factory(activities_dir=activities_dir, quota_bytes=3000)
    first = _copy(server, 1000, run=True)
    assert first.status_code == 303, first.text
    assert _phase(server.wait_final(first.headers["Location"])) == "COMPLETED"
    second = _copy(server, 900, run=True)
    assert second.status_code == 303, second.text
    ended = server.wait_final(second.headers["Location"])
    assert _phase(ended) == "ERROR"
    summary = server.session.get(f"{second.headers['Location']}/error").text
    assert "quota" in summary and "3000" in summary
    assert ended.find("uws:results/uws:result[@id='output']", namespaces=UWS_NS) is None
    third = _copy(server, 200, run=False)
    assert third.status_code == 413, third.text
    assert "quota" in third.text
