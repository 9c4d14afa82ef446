"""Blocking WAIT on the job resource (UWS 1.1 section 2.2.1.2), against real servers.

The server may block only while the job is in an active phase (PENDING, QUEUED,
EXECUTING), must return when the phase changes or after WAIT seconds, must return at once
when ``PHASE`` is given and the job is not in it, and may cap any WAIT (``wait_max``).
Waiters are woken by events across processes: the default test server runs two gunicorn
workers and the scheduler as a separate process, and the runner reports over HTTP to
whichever worker accepts it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from lxml import etree

from conftest import UWS_NS, Server

#: Generous upper bound for "at once" / "promptly": loaded CI machines are slow, but a
#: blocking bug blocks for the whole WAIT (30 s and more), far beyond this.
PROMPT = 5.0


def timed_get(session: requests.Session, url: str, **query: str
              ) -> tuple[float, requests.Response]:
    start = time.monotonic()
    response = session.get(url, params=query)
    return time.monotonic() - start, response


def phase_in(response: requests.Response, schema: etree.XMLSchema) -> str:
    assert response.status_code == 200, response.text
    document = etree.fromstring(response.content)
    schema.assertValid(document)
    return document.findtext("uws:phase", namespaces=UWS_NS)


def until_phase(server: Server, job_url: str, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (phase := server.phase(job_url)) != wanted:
        assert phase in {"PENDING", "QUEUED", "EXECUTING"}, phase
        assert time.monotonic() < deadline, f"still {phase} after {timeout} s"
        server.job(job_url, WAIT="5", PHASE=phase)


def test_wait_on_a_pending_job_times_out(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    elapsed, response = timed_get(server.session, job_url, WAIT="1")
    assert phase_in(response, uws_schema) == "PENDING"
    assert 0.9 <= elapsed < 1 + PROMPT


def test_wait_with_the_current_phase_blocks(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    elapsed, response = timed_get(server.session, job_url, WAIT="1", PHASE="PENDING")
    assert phase_in(response, uws_schema) == "PENDING"
    assert elapsed >= 0.9


def test_wait_zero_returns_at_once(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    elapsed, response = timed_get(server.session, job_url, WAIT="0")
    assert phase_in(response, uws_schema) == "PENDING"
    assert elapsed < PROMPT


def test_wait_on_a_completed_job_returns_at_once(server: Server, uws_schema) -> None:
    job_url = server.create("echo", text="x")
    server.wait_final(job_url)
    elapsed, response = timed_get(server.session, job_url, WAIT="30")
    assert phase_in(response, uws_schema) == "COMPLETED"
    assert elapsed < PROMPT
    # Also WAIT=-1 and with a PHASE: a final phase never blocks.
    elapsed, response = timed_get(server.session, job_url, WAIT="-1", PHASE="COMPLETED")
    assert phase_in(response, uws_schema) == "COMPLETED"
    assert elapsed < PROMPT


@pytest.mark.parametrize("phase", ["QUEUED", "EXECUTING", "COMPLETED", "executing"])
def test_wait_with_another_phase_returns_at_once(server: Server, uws_schema, phase) -> None:
    job_url = server.create("echo", run=False, text="x")
    elapsed, response = timed_get(server.session, job_url, WAIT="30", PHASE=phase)
    assert phase_in(response, uws_schema) == "PENDING"
    assert elapsed < PROMPT


def test_waiter_is_woken_when_another_client_runs_the_job(server: Server, uws_schema) -> None:
    job_url = server.create("echo", run=False, text="x")
    started = threading.Event()

    def waiter() -> tuple[float, requests.Response]:
        with requests.Session() as session:  # its own connection, as another client
            started.set()
            return timed_get(session, job_url, WAIT="30")

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(waiter)
        started.wait(5)
        # The server registers a waiter before it reads the job, so a change after that
        # always wakes it; this pause only makes it likely that the request got that far
        # (if not, it reads the new phase and returns at once: the test still holds).
        time.sleep(0.3)
        response = server.session.post(f"{job_url}/phase", data={"PHASE": "RUN"},
                                       allow_redirects=False)
        assert response.status_code == 303
        elapsed, waited = future.result(timeout=30)
    assert phase_in(waited, uws_schema) in {"QUEUED", "EXECUTING", "COMPLETED"}
    assert elapsed < 0.3 + PROMPT  # woken, not timed out (30 s)
    server.wait_final(job_url)


def test_waiter_is_woken_by_a_parameter_change(server: Server, uws_schema) -> None:
    """Section 2.2.1.2: return "at a minimum" when the phase changes; other significant
    changes may wake too. A parameter change does here, and the waiter sees it."""
    job_url = server.create("echo", run=False, text="before")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: timed_get(requests.Session(), job_url, WAIT="30"))
        time.sleep(0.3)  # let the waiter register (see above)
        response = server.session.post(job_url, data={"text": "after"},
                                       allow_redirects=False)
        assert response.status_code == 303
        elapsed, waited = future.result(timeout=30)
    assert phase_in(waited, uws_schema) == "PENDING"
    assert elapsed < 0.3 + PROMPT
    document = etree.fromstring(waited.content)
    assert document.findtext(".//uws:parameter[@id='text']", namespaces=UWS_NS) == "after"


def test_waiter_on_a_deleted_job_gets_404(server: Server) -> None:
    job_url = server.create("echo", run=False, text="x")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: timed_get(requests.Session(), job_url, WAIT="30"))
        time.sleep(0.3)  # let the waiter register (see above)
        assert server.session.delete(job_url, allow_redirects=False).status_code == 303
        elapsed, waited = future.result(timeout=30)
    assert waited.status_code == 404
    assert elapsed < 0.3 + PROMPT


@pytest.mark.parametrize("value", ["abc", "-5", "-1.5", "nan", "", "1 2"])
def test_invalid_wait_is_400(server: Server, value) -> None:
    job_url = server.create("echo", run=False, text="x")
    response = server.session.get(job_url, params={"WAIT": value})
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "WAIT" in response.text


@pytest.mark.parametrize("query, name", [
    ({"WAIT": ["1", "2"]}, "WAIT"),
    ({"WAIT": "1", "PHASE": "RUNNING"}, "PHASE"),
    ({"WAIT": "1", "PHASE": ["PENDING", "QUEUED"]}, "PHASE"),
])
def test_invalid_wait_request_is_400(server: Server, query, name) -> None:
    job_url = server.create("echo", run=False, text="x")
    response = server.session.get(job_url, params=query)
    assert response.status_code == 400, response.text
    assert name in response.text


def test_wait_is_capped_by_wait_max(server_factory, uws_schema) -> None:
    capped = server_factory(wait_max=2)
    job_url = capped.create("echo", run=False, text="x")
    for wait in ("-1", "3600"):  # indefinitely / longer than allowed: the cap applies
        elapsed, response = timed_get(capped.session, job_url, WAIT=wait)
        assert phase_in(response, uws_schema) == "PENDING"
        assert 1.8 <= elapsed < 2 + PROMPT, (wait, elapsed)


def test_waiters_are_woken_across_processes(server: Server, uws_schema) -> None:
    """The runner's report lands in one gunicorn worker; waiters in every worker wake.

    Several clients on their own connections wait on one EXECUTING job, so that some are
    served by each of the two workers; the job ends about 1 s later, reported by the
    runner (a process of the scheduler's manager) to whichever worker accepts it.
    """
    assert server.env["OPUS_WORKERS"] == "2"  # conftest: two workers, scheduler apart
    job_url = server.create("sleep", duration="1")
    until_phase(server, job_url, "EXECUTING")

    def waiter() -> tuple[float, requests.Response]:
        with requests.Session() as session:
            # PHASE=EXECUTING: if the job ended before this request arrived, the answer
            # comes at once instead of a wait for a change that already happened.
            return timed_get(session, job_url, WAIT="30", PHASE="EXECUTING")

    with ThreadPoolExecutor(6) as pool:
        outcomes = [future.result(timeout=40)
                    for future in [pool.submit(waiter) for _ in range(6)]]
    for elapsed, response in outcomes:
        assert phase_in(response, uws_schema) == "COMPLETED"
        assert elapsed < 1 + PROMPT, elapsed  # woken by the report, not the 30 s timeout
