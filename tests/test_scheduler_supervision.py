"""One supervised scheduler (issue 13): restarted when it dies, seen by VOSI availability,
one active among several, atomic claims, lost claims recovered, one data dir per database."""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyvo.io.vosi
import sqlalchemy as sa

from conftest import ROOT, UWS_NS, Server, opus_environment, start_server, until
from opus.storage.claims import ClaimStore
from opus.storage.engine import make_engine
from opus.storage.events import JobEvents, Transport
from opus.storage.jobs import JobStore
from opus.uws.models import Job, Phase, utcnow


def start_scheduler(server: Server, log_path: Path, **settings: object
                    ) -> subprocess.Popen[bytes]:
    """A separate ``opus scheduler`` on the server's database and data dir."""
    env = {**server.env, **{f"OPUS_{k.upper()}": str(v) for k, v in settings.items()}}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "opus.cli", "scheduler"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(20)


def worker_of(supervisor: subprocess.Popen[bytes]) -> int:
    """The pid of the scheduler a supervisor runs (its one child)."""
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children")
    pids = children.read_text().split()
    return int(pids[0]) if pids else 0


def availability(server: Server) -> tuple[bool, str]:
    response = server.session.get(f"{server.url}/availability")
    assert response.status_code == 200
    parsed = pyvo.io.vosi.parse_availability(io.BytesIO(response.content))
    return bool(parsed.available), " ".join(parsed.notes)


def phase_of(document) -> str:  # type: ignore[no-untyped-def]
    return document.findtext("uws:phase", namespaces=UWS_NS)


def test_a_killed_scheduler_is_restarted_and_availability_follows_it(
        server_factory, tmp_path: Path) -> None:
    srv = server_factory(scheduler=False, scheduler_timeout=2)
    available, note = availability(srv)
    assert not available and "no active scheduler" in note
    queued = srv.create("echo", text="before")  # accepted, waits for a scheduler
    log_path = tmp_path / "scheduler.log"
    supervisor = start_scheduler(srv, log_path)
    try:
        assert phase_of(srv.wait_final(queued)) == "COMPLETED"
        until(lambda: availability(srv)[0], what="availability")
        first = until(lambda: worker_of(supervisor), what="the scheduler process")
        os.kill(first, signal.SIGKILL)
        after = srv.create("echo", text="after")
        assert phase_of(srv.wait_final(after)) == "COMPLETED"
        assert worker_of(supervisor) not in (0, first)
        assert "killed by SIGKILL; restarting it in 1 s" in log_path.read_text()
    finally:
        stop(supervisor)
    # A scheduler that stops says so at once; availability turns false.
    available, note = availability(srv)
    assert not available and "no active scheduler" in note


def children_of(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (``opus serve`` starts its supervisor from one)."""
    return [int(p) for task in Path(f"/proc/{pid}/task").iterdir()
            for p in (task / "children").read_text().split()]


def supervisor_of(server: Server) -> int:
    """The pid of the scheduler supervisor ``opus serve`` runs beside gunicorn."""
    for pid in children_of(server.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"scheduler" in command and b"--worker" not in command:
            return pid
    return 0


def test_opus_serve_starts_a_killed_supervisor_again(server_factory) -> None:
    """SIGKILL the supervisor itself (the OOM killer, a wrong kill): ``opus serve`` starts
    another, which starts a scheduler, and jobs run again."""
    srv = server_factory(scheduler_timeout=2)
    first = until(lambda: supervisor_of(srv), what="the supervisor")
    assert phase_of(srv.wait_final(srv.create("echo", text="before"))) == "COMPLETED"
    os.kill(first, signal.SIGKILL)
    second = until(lambda: supervisor_of(srv) not in (0, first) and supervisor_of(srv),
                   what="a new supervisor")
    assert phase_of(srv.wait_final(srv.create("echo", text="after"))) == "COMPLETED"
    assert until(lambda: children_of(second), what="its scheduler")
    said = [line for line in srv.log().splitlines()
            if f"scheduler supervisor (pid {first}) " in line]
    assert said and said[0].endswith("; restarting it in 1 s"), said


def test_one_scheduler_leads_and_a_standby_takes_over(server_factory, tmp_path: Path
                                                      ) -> None:
    srv = server_factory(scheduler=False, scheduler_timeout=2)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    schedulers = [start_scheduler(srv, path) for path in logs]
    try:
        def roles() -> tuple[list[Path], list[Path]]:
            texts = {path: path.read_text() for path in logs}
            return ([p for p, t in texts.items() if "is the active scheduler" in t],
                    [p for p, t in texts.items() if "standing by" in t])
        until(lambda: len(roles()[0]) == 1 and len(roles()[1]) == 1,
              what="one active scheduler and one standby")
        leader = logs.index(roles()[0][0])
        stop(schedulers[leader])
        standby = logs[1 - leader]
        until(lambda: "is the active scheduler" in standby.read_text(),
              what="the standby to take over")
        assert phase_of(srv.wait_final(srv.create("echo", text="x"))) == "COMPLETED"
    finally:
        for process in schedulers:
            stop(process)


class _Silent(Transport):
    pass


def _queued_job(engine: sa.Engine) -> str:
    store = JobStore(engine, JobEvents(_Silent()))
    job = Job(job_id="j1", activity="echo", phase=Phase.QUEUED, creation_time=utcnow(),
              execution_duration=60, parameters={})
    store.insert(job)
    return job.job_id


def test_two_schedulers_claiming_one_job_cannot_both_win(engine: sa.Engine) -> None:
    job_id = _queued_job(engine)
    claims = ClaimStore(engine)
    won = [claims.claim(job_id, manager="local", secret_hash=str(n) * 64, time_limit=None,
                        now=utcnow()) for n in range(2)]
    assert won == [True, False]
    with engine.connect() as connection:  # the winner's secret stands: its reports count
        assert connection.execute(sa.text("SELECT secret_hash FROM jobs")).scalar() == "0" * 64


def test_a_claim_that_lost_its_native_id_is_recovered(server_factory, tmp_path: Path
                                                      ) -> None:
    """A claim recorded, then the scheduler died (or the database blipped) before any
    cluster id was stored: the job is dispatched again, not held QUEUED forever."""
    srv = server_factory(scheduler=False, scheduler_timeout=2)
    job_url = srv.create("echo", text="lost")
    url = srv.env["OPUS_DATABASE_URL"] or f"sqlite:///{srv.data_dir / 'opus.sqlite'}"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE jobs SET cluster_state = 'submitted', claimed_at = :old"),
            {"old": utcnow() - dt.timedelta(hours=1)})
    engine.dispose()
    supervisor = start_scheduler(srv, tmp_path / "scheduler.log")
    try:
        assert phase_of(srv.wait_final(job_url)) == "COMPLETED"
    finally:
        stop(supervisor)


def test_a_node_on_another_data_dir_refuses_to_start(server_factory, tmp_path: Path
                                                     ) -> None:
    srv = server_factory()
    other = tmp_path / "other"
    other.mkdir()
    url = srv.env["OPUS_DATABASE_URL"] or f"sqlite:///{srv.data_dir / 'opus.sqlite'}"
    env = {**srv.env, "OPUS_DATA_DIR": str(other), "OPUS_DATABASE_URL": url}
    for command in (["serve", "--no-scheduler", "--port", "1"], ["scheduler"]):
        done = subprocess.run([sys.executable, "-m", "opus.cli", *command], env=env,
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 78, done.stderr
        assert f"data dir {other} is not the one the database" in done.stderr
    # the supervisor did not restart a misconfigured scheduler
    assert "misconfigured, not restarted" in done.stderr
    assert "restarting it" not in done.stderr


def test_nodes_sharing_the_data_dir_serve_every_result(server_factory, activities_dir: Path
                                                       ) -> None:
    first = server_factory(activities_dir=activities_dir)
    second = start_server(first.data_dir, first.env["OPUS_DATABASE_URL"], scheduler=False,
                          activities_dir=activities_dir)
    try:
        job_url = first.create("echo", text="shared")
        assert phase_of(first.wait_final(job_url)) == "COMPLETED"
        path = job_url.split("/rest/", 1)[1]
        answer = second.session.get(f"{second.url}/rest/{path}/results/output")
        assert answer.status_code == 200 and answer.text == "shared\n"
    finally:
        second.stop()


def test_settings_of_the_scheduler_are_known() -> None:
    env = {**opus_environment(), "OPUS_SCHEDULER_TIMEOUT": "0"}
    done = subprocess.run([sys.executable, "-m", "opus.cli", "scheduler"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "scheduler_timeout" in done.stderr


def test_a_scheduler_started_before_its_database_waits_for_it(
        postgres_admin_url: str, activities_dir: Path, tmp_path: Path) -> None:
    """The start-up pass too survives an unreachable database: the scheduler logs it once,
    waits, and runs jobs once the database is there (no restart needed)."""
    import psycopg

    name = f"opus_test_{os.urandom(6).hex()}"
    url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {**opus_environment(), "OPUS_DATABASE_URL": url, "OPUS_DATA_DIR": str(data_dir),
           "OPUS_ACTIVITIES_DIR": str(activities_dir), "OPUS_SCHEDULER_INTERVAL": "1"}
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "ab") as log:
        supervisor = subprocess.Popen([sys.executable, "-m", "opus.cli", "scheduler"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    srv = None
    try:
        until(lambda: "cannot be reached; answering 503" in log_path.read_text(),
              what="the outage")
        with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        srv = start_server(data_dir, url, scheduler=False, activities_dir=activities_dir)
        assert phase_of(srv.wait_final(srv.create("echo", text="late"))) == "COMPLETED"
        text = log_path.read_text()
        assert text.count("cannot be reached; answering 503") == 1, text
        assert "restarting it" not in text and supervisor.poll() is None
    finally:
        stop(supervisor)
        if srv is not None:
            srv.stop()
        with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_supervision_backs_off_and_gives_up_on_a_misconfigured_scheduler(caplog) -> None:
    import logging
    import threading

    from opus.execution.supervisor import EXIT_MISCONFIGURED, supervise

    caplog.set_level(logging.INFO, logger="opus.supervisor")
    stop = threading.Event()
    crashing = threading.Thread(target=supervise, args=(
        [sys.executable, "-c", "raise SystemExit(1)"], stop))
    crashing.start()
    try:
        until(lambda: caplog.text.count("restarting it in") >= 3, what="three restarts")
    finally:
        stop.set()
        crashing.join(30)
    delays = [line.rsplit("restarting it in ", 1)[1] for line in caplog.text.splitlines()
              if "restarting it in" in line]
    assert delays[:3] == ["1 s", "2 s", "4 s"]
    assert "exited with status 1" in caplog.text
    code = supervise([sys.executable, "-c", f"raise SystemExit({EXIT_MISCONFIGURED})"],
                     threading.Event())
    assert code == EXIT_MISCONFIGURED and "misconfigured, not restarted" in caplog.text
