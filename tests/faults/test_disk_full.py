"""Scenario (b) of issue 13, item 3: the data dir fills up (a 20 MB tmpfs; root only).

A job that fills the disk ends in ERROR saying "no space left on device writing ...";
while the disk is full, creating a job or uploading a file is answered 507 with
Retry-After (nothing kept), a job already QUEUED is held rather than failed, and DELETE
still works (on SQLite, whose database is on that disk too, through the space reserve), so
that space can be freed through the API; once it is, the held job and new ones run.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import until
from faults.outages import (LONG, UWS, fault_activities, final_phases, listed_jobs, root_conftest,
                     runs_of, tmpfs)

conftest = root_conftest()

#: Fill-and-free cycles, and jobs run after each.
CYCLES, AFTER = (3, 20) if LONG else (1, 6)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def phase_of(session: requests.Session, job_url: str) -> str:
    return session.get(f"{job_url}/phase", timeout=30).text.strip()


def test_a_full_disk(backend: str, tmp_path: Path,
                     request: pytest.FixtureRequest) -> None:
    database = ""
    if backend == "postgresql":
        admin = request.getfixturevalue("postgres_admin_url")
        database = conftest._create_pg_database(admin)
        request.addfinalizer(lambda: conftest._drop_pg_database(admin, database))
    activities = fault_activities(tmp_path / "activities")
    statuses: collections.Counter[int] = collections.Counter()
    accepted: list[str] = []
    started = time.monotonic()
    with tmpfs(tmp_path / "data", "20m") as disk:
        # the data dir on the tmpfs (OPUS_DATA_DIR given again), the log outside it
        server = conftest.start_server(tmp_path / "server", database, DATA_DIR=disk.path,
                                       activities_dir=activities, min_free_space=2 << 20,
                                       space_reserve=1 << 20, concurrency=2)
        session = server.session
        try:
            for number in range(1, CYCLES + 1):
                cycle(server, session, disk, statuses, accepted, number)
            final = final_phases(server.url, accepted)
            runs = runs_of(session, accepted)
            listed = listed_jobs(server.url, "count")
        finally:
            server.stop()
    elapsed = time.monotonic() - started
    lost = sum(1 for phase in final.values() if phase != "COMPLETED")
    duplicated = (len(listed - {url.rsplit("/", 1)[1] for url in accepted})
                  + sum(n - 1 for n in runs.values()))
    errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"\nfull disk ({backend}, {CYCLES} cycles): jobs={len(accepted)} "
          f"time={elapsed:.1f}s errors={errors} statuses={dict(statuses)} "
          f"lost={lost} duplicated={duplicated}")
    assert lost == 0, final
    assert duplicated == 0
    assert set(runs.values()) == {1}
    assert 500 not in statuses


def cycle(server: Any, session: requests.Session, disk: Any,
          statuses: collections.Counter[int], accepted: list[str], number: int) -> None:
    rest = server.rest

    def post(url: str, **kwargs: Any) -> requests.Response:
        response = session.post(url, allow_redirects=False, timeout=60, **kwargs)
        statuses[response.status_code] += 1
        return response

    # a job to hold: PENDING now, run once the disk is full
    held = post(rest("count")).headers["Location"]
    # a job fills the disk: ERROR, saying so
    filler = server.create("fill", megabytes="64")
    document = server.wait_final(filler)
    assert document.findtext("uws:phase", namespaces=UWS) == "ERROR"
    summary = session.get(f"{filler}/error", timeout=30).text
    assert "no space left on device writing" in summary, summary
    # a job queued now is held, not failed
    response = post(held + "/phase", data={"PHASE": "RUN"})
    assert response.status_code == 303, response.text
    until(lambda: server.log().count("QUEUED jobs held") >= number, 60,
          "the scheduler to hold the QUEUED job")  # polled: no event for it
    assert phase_of(session, held) == "QUEUED"
    disk.fill()  # whatever the filling job left
    # creation and uploads: 507 with Retry-After, nothing kept
    jobs_before = len(list((disk.path / "jobs").iterdir()))
    for response in (post(rest("count"), data={"PHASE": "RUN"}),
                     post(rest("copy"), data={"PHASE": "RUN"},
                          files={"input": ("input.txt", b"some text\n" * 1000)})):
        assert response.status_code == 507, response.text
        assert "no space left on device" in response.text
        assert int(response.headers["Retry-After"]) > 0
    assert len(list((disk.path / "jobs").iterdir())) == jobs_before
    assert phase_of(session, held) == "QUEUED"
    # DELETE works on the full disk, and frees the space
    response = session.delete(filler, allow_redirects=False, timeout=60)
    statuses[response.status_code] += 1
    assert response.status_code == 303, response.text
    # the held job runs once the scheduler has removed the filler's files
    assert server.wait_final(held).findtext("uws:phase", namespaces=UWS) == "COMPLETED"
    accepted.append(held)
    disk.free()
    # jobs run again
    for _ in range(AFTER):
        response = post(rest("count"), data={"PHASE": "RUN"})
        assert response.status_code == 303, response.text
        accepted.append(response.headers["Location"])
    for job_url in accepted[-AFTER:]:
        assert server.wait_final(job_url).findtext("uws:phase",
                                                   namespaces=UWS) == "COMPLETED"
    # an upload larger than the space left: 507 when the disk fills, nothing kept
    jobs_before = len(list((disk.path / "jobs").iterdir()))
    big = post(rest("copy"), data={"PHASE": "RUN"},
               files={"input": ("input.txt", b"\0" * (24 << 20))})
    assert big.status_code == 507, big.text
    assert "no space left on device writing the upload input" in big.text
    assert len(list((disk.path / "jobs").iterdir())) == jobs_before


def test_the_runner_reports_no_space_left_when_its_own_writes_fail(tmp_path: Path) -> None:
    """The runner cannot write ``parameters.json`` on a full disk: it reports ERROR naming
    the file, instead of dying with a traceback (the scheduler then said "runner exited
    with status 1")."""
    import http.server
    import json
    import subprocess
    import sys
    import threading

    reports: list[dict[str, Any]] = []

    class Reports(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            reports.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reports)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with tmpfs(tmp_path / "data", "1m") as disk:
        job_dir = disk.path / "jobs" / "0123"
        job_dir.mkdir(parents=True)
        (job_dir / "secret").write_text("s")
        (job_dir / "job.json").write_text(json.dumps({
            "job_id": "0123", "command": ["/bin/true"], "parameters": {"text": "x" * 4096},
            "callback_url": f"http://127.0.0.1:{receiver.server_address[1]}/report",
            "generated": [], "inputs": []}))
        (job_dir / "work").mkdir()
        disk.fill()
        finished = subprocess.run([sys.executable, "-m", "opus.execution.runner",
                                   str(job_dir)], capture_output=True, text=True, timeout=60,
                                  cwd=conftest.ROOT)
    receiver.shutdown()
    assert finished.returncode == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    assert [report["phase"] for report in reports] == ["EXECUTING", "ERROR"]
    assert reports[-1]["error_summary"] == (
        f"no space left on device writing {job_dir.resolve() / 'parameters.json'}")


def test_creation_refuses_a_data_dir_it_cannot_write(tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """PostgreSQL keeps accepting jobs whatever the data dir: creation itself checks that
    the data dir can be written (here remounted read-only) and answers 507 until it can."""
    import subprocess

    admin = request.getfixturevalue("postgres_admin_url")
    database = conftest._create_pg_database(admin)
    request.addfinalizer(lambda: conftest._drop_pg_database(admin, database))
    with tmpfs(tmp_path / "data", "20m") as disk:
        server = conftest.start_server(tmp_path / "server", database, DATA_DIR=disk.path,
                                       activities_dir=fault_activities(tmp_path / "act"),
                                       min_free_space=1 << 20)
        try:
            subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], check=True)
            try:
                response = server.session.post(server.rest("count"), data={"PHASE": "RUN"},
                                               allow_redirects=False, timeout=30)
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(disk.path)], check=True)
            assert response.status_code == 507, response.text
            assert "read-only file system" in response.text
            assert "Retry-After" in response.headers
            job_url = server.create("count")
            assert server.wait_final(job_url).findtext(
                "uws:phase", namespaces=UWS) == "COMPLETED"
        finally:
            server.stop()
