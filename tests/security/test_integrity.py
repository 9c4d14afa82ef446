"""Integrity (issue 11, scope item 4): trust nothing the runner says that it need not say.

Each test is an attack. The runner's report carries the job's secret, which any process of
the job can read from its folder, so a report is the word of the activity's own code: it
must not choose which files become results, their media types, their sizes and hashes, nor
the parts of the provenance record the server knows itself. Files served from job folders
must not run script in a browser. Job folders are private to the server's account. The
activity sees none of the scheduler's environment and cannot rewrite the runner's files.
A bad charset or a malformed report is a 400, not a 500; a server path lies under a data
root; a URL input is fetched from the address that was checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import sqlalchemy as sa
from conftest import BIN, ROOT, UWS_NS, Server, start_server, write_activities

from opus.activities.model import (
    ActivityDescription,
    EntityDescription,
    ParameterDescription,
)

CANARY = f"canary-{uuid.uuid4().hex}"

#: Writes an output, then sleeps: the test has time to forge a report while it runs.
SLOWJSON = 'printf \'{"a": 1}\' > out.json; sleep "$duration"'

#: Writes over the file it was given, in place (through the same inode), then copies it.
SCRIBBLE = "printf 'scribbled\\n' 1<> input.txt; cat input.txt > output.txt"

#: Looks at what it should not see and tries to write what it should not write; every
#: answer goes to its outputs.
PEEK = r"""
{ tr '\0' '\n' < /proc/$PPID/environ || echo unreadable; } > parent_env.txt 2>&1
grandparent=$(awk '{print $4}' /proc/$PPID/stat)
{ tr '\0' '\n' < /proc/$grandparent/environ || echo unreadable; } > scheduler_env.txt 2>&1
env > env.txt
for target in ../activity.pgid ../outcome.json ../job.json ../secret ../runner.log \
              ../../../intruder ../../$OTHER_JOB/intruder; do
  if (printf '1' >> "$target") 2>/dev/null; then echo "$target: written"
  else echo "$target: refused"; fi
done > writes.txt
"""


def _text_output(name: str) -> EntityDescription:
    return EntityDescription(name, content_type="text/plain", default_filename=f"{name}.txt")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataroot")
    (root / "dl3").mkdir()
    (root / "escape").symlink_to("/etc")
    return root


@pytest.fixture(scope="module")
def integrity_activities(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("integrity-activities")
    activities = [
        ActivityDescription(
            name="slowjson", description="writes out.json, then sleeps",
            command=("/bin/sh", "-c", SLOWJSON), execution_duration=120, version="1.0",
            parameters=(ParameterDescription("duration", datatype="double", default="30"),),
            generated=(EntityDescription("out", content_type="application/json",
                                         default_filename="out.json"),),
        ),
        ActivityDescription(
            name="peek", description="looks around", command=("/bin/sh", "-c", PEEK),
            execution_duration=60,
            parameters=(ParameterDescription("OTHER_JOB", arraysize="*", default="none"),),
            generated=tuple(_text_output(name) for name in
                            ("parent_env", "scheduler_env", "env", "writes")),
        ),
        ActivityDescription(
            name="copy", description="copies its input file and adds a line",
            command=(str(BIN / "copy.sh"),), execution_duration=60,
            parameters=(ParameterDescription("suffix", arraysize="*", default="end"),),
            used=(EntityDescription("input", content_type="text/plain",
                                    default_filename="input.txt"),),
            generated=(_text_output("output"),),
        ),
        ActivityDescription(
            name="scribble", description="writes over its input file in place",
            command=("/bin/sh", "-c", SCRIBBLE), execution_duration=60,
            used=(EntityDescription("input", content_type="text/plain",
                                    default_filename="input.txt"),),
            generated=(_text_output("output"),),
        ),
    ]
    return write_activities(directory, activities, ("sleep", "gammapy_maps"))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, integrity_activities: Path,
        data_root: Path) -> Iterator[Server]:
    """One SQLite server whose environment holds a canary (as a database password would
    be), with the integrity activities and one data root."""
    os.environ["INTEGRITY_CANARY"] = CANARY
    try:
        # concurrency 4: the forged-report tests leave their "slowjson" activity sleeping
        # (the server took the forged COMPLETED; the process runs on for its 30 s), and
        # with the default (2 here, the CPU count) the next job waited for those slots
        server = start_server(tmp_path_factory.mktemp("integrity"),
                              activities_dir=integrity_activities,
                              data_roots=json.dumps([str(data_root)]), concurrency=4)
    finally:
        del os.environ["INTEGRITY_CANARY"]
    yield server
    server.stop()


# -- helpers ------------------------------------------------------------------------------

def job_id_of(job_url: str) -> str:
    return job_url.rstrip("/").rsplit("/", 1)[1]


def wait_phase(server: Server, job_url: str, wanted: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        phase = server.job(job_url, WAIT="5").findtext("uws:phase", namespaces=UWS_NS)
        if phase in wanted:
            return str(phase)
        assert time.monotonic() < deadline, f"job still {phase}"


def running(server: Server, activity: str, **params: str) -> tuple[str, str, str]:
    """A job of ``activity`` that is EXECUTING: its URL, id and secret (read from its
    folder, as the activity's own code could)."""
    job_url = server.create(activity, **params)
    wait_phase(server, job_url, {"EXECUTING"})
    job_id = job_id_of(job_url)
    secret = (server.data_dir / "jobs" / job_id / "secret").read_text().strip()
    return job_url, job_id, secret


def report(server: Server, job_id: str, secret: str, body: Any) -> requests.Response:
    return requests.post(f"{server.url}/internal/jobs/{job_id}/report",
                         data=json.dumps(body), headers={"X-OPUS-Secret": secret,
                                                         "Content-Type": "application/json"})


def database(server: Server) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{server.data_dir / 'opus.sqlite'}")


def results_of(server: Server, job_url: str) -> dict[str, dict[str, Any]]:
    document = server.session.get(f"{job_url}/results",
                                  headers={"Accept": "application/json"}).json()
    return {item["id"]: item for item in document["results"]}


def completed(server: Server, activity: str, **params: str) -> str:
    job_url = server.create(activity, **params)
    document = server.wait_final(job_url)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED", \
        server.session.get(f"{job_url}/error").text
    return job_url


# -- 1. a forged report -------------------------------------------------------------------

def test_forged_report_names_only_declared_outputs_with_their_declared_type(
        srv: Server) -> None:
    job_url, job_id, secret = running(srv, "slowjson")
    job_dir = srv.data_dir / "jobs" / job_id
    deadline = time.monotonic() + 10
    while not (job_dir / "work" / "out.json").is_file():  # the activity writes it first
        assert time.monotonic() < deadline
        time.sleep(0.05)
    forged = {"phase": "COMPLETED", "results": [
        {"id": "out", "path": "work/out.json", "mime_type": "text/html", "size": 1,
         "sha256": "0" * 64},
        {"id": "leak", "path": "secret", "mime_type": "text/plain"},
        {"id": "spec", "path": "job.json", "mime_type": "text/html"},
        {"id": "stdout", "path": "job.json", "mime_type": "text/html"},
    ]}
    response = report(srv, job_id, secret, forged)
    assert response.status_code == 204, response.text
    results = results_of(srv, job_url)
    assert "leak" not in results and "spec" not in results
    assert srv.session.get(f"{job_url}/results/leak").status_code == 404
    served = srv.session.get(f"{job_url}/results/out")
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("application/json")
    assert served.content == b'{"a": 1}'
    content = (job_dir / "work" / "out.json").read_bytes()
    assert results["out"]["size"] == len(content)
    with database(srv).connect() as connection:
        row = connection.execute(sa.text(
            "SELECT path, size, sha256, mime_type FROM results WHERE job_id = :j AND "
            "result_id = 'out'"), {"j": job_id}).one()
        assert row.path == "work/out.json"
        assert row.size == len(content)
        assert row.sha256 == hashlib.sha256(content).hexdigest()
        assert row.mime_type == "application/json"
        stdout = connection.execute(sa.text(
            "SELECT path, mime_type FROM results WHERE job_id = :j AND "
            "result_id = 'stdout'"), {"j": job_id}).one_or_none()
    assert stdout is None or (stdout.path, stdout.mime_type) == ("stdout.txt", "text/plain")


def test_forged_report_cannot_rewrite_what_the_server_knows(srv: Server) -> None:
    earlier = completed(srv, "sleep", duration="0")
    with database(srv).connect() as connection:
        foreign = connection.execute(sa.text(
            "SELECT id FROM prov_entity WHERE job_id = :j"), {"j": job_id_of(earlier)}
        ).scalars().first()
    assert foreign
    _, job_id, secret = running(srv, "slowjson")
    forged = {"phase": "COMPLETED", "results": [], "command": ["/bin/forged"],
              "description_sha256": "f" * 64, "script_sha256": "e" * 64,
              "activity_version": "99-forged",
              "inputs": [{"name": "input", "kind": "entity", "entity_id": foreign,
                          "location": "http://forged"}],
              "bundle": json.dumps({"prefix": {}, "entity": {"forged": {}}}),
              "start_time": "2001-01-01T00:00:00Z", "end_time": "2099-01-01T00:00:00Z"}
    assert report(srv, job_id, secret, forged).status_code == 204
    act = f"act-{job_id}"
    with database(srv).connect() as connection:
        row = connection.execute(sa.text("SELECT * FROM prov_activity WHERE id = :a"),
                                 {"a": act}).one()
        used = connection.execute(sa.text(
            "SELECT entity_id FROM prov_used WHERE activity_id = :a"), {"a": act}).all()
        bundles = connection.execute(sa.text(
            "SELECT count(*) FROM prov_bundle WHERE activity_id = :a"), {"a": act}).scalar()
    assert row.description_sha256 != "f" * 64 and row.script_sha256 != "e" * 64
    assert row.description_version == "1.0"
    assert "/bin/forged" not in (row.facts or "")
    assert used == []
    assert bundles == 0
    start, end = (str(row.start_time), str(row.end_time))
    assert not start.startswith("2001") and not end.startswith("2099")


@pytest.mark.parametrize("body", [
    ["phase", "COMPLETED"],
    {"phase": "COMPLETED", "results": "out"},
    {"phase": "COMPLETED", "results": 7},
    {"phase": "COMPLETED", "results": [1, 2]},
    {"phase": "COMPLETED", "results": [["out"]]},
    {"phase": "COMPLETED", "end_time": "yesterday"},
    {"phase": "COMPLETED", "end_time": 12},
    {"phase": "COMPLETED", "start_time": {"a": 1}},
    {"phase": "EXECUTING", "start_time": "2026-99-99T00:00:00Z"},
    {"phase": "COMPLETED", "context": ["not", "an", "object"]},
    {"phase": "COMPLETED", "inputs": "abc"},
    {"phase": "COMPLETED", "inputs": [5]},
    {"phase": "COMPLETED", "exit_code": "zero"},
    {"phase": "ERROR", "error_type": 5},
    {"phase": "COMPLETED", "rusage": "lots"},
    {"phase": "COMPLETED", "bundle": {"a": 1}},
    {"phase": ["COMPLETED"]},
], ids=lambda body: json.dumps(body)[:40])
def test_malformed_report_is_a_400_and_changes_nothing(srv: Server, body: Any,
                                                       malformed_target: tuple) -> None:
    job_url, job_id, secret = malformed_target
    response = report(srv, job_id, secret, body)
    assert response.status_code == 400, (response.status_code, response.text)
    assert srv.phase(job_url) == "EXECUTING"


@pytest.fixture(scope="module")
def malformed_target(srv: Server) -> Iterator[tuple[str, str, str]]:
    found = running(srv, "slowjson", duration="120")
    yield found
    srv.session.post(f"{found[0]}/phase", data={"PHASE": "ABORT"})


# -- 2. headers of served files -----------------------------------------------------------

FILE_POLICY_WORDS = ("default-src 'none'", "sandbox")


def assert_inert(response: requests.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    policy = response.headers.get("Content-Security-Policy", "")
    for word in FILE_POLICY_WORDS:
        assert word in policy, policy
    assert "script-src" not in policy and "allow-scripts" not in policy


def test_results_uploads_and_pictures_cannot_run_script(srv: Server) -> None:
    response = srv.session.post(srv.rest("copy"), data={"PHASE": "RUN"},
                                files={"input": ("x.html", b"<script>alert(1)</script>")},
                                allow_redirects=False)
    assert response.status_code == 303, response.text
    job_url = response.headers["Location"]
    srv.wait_final(job_url)
    assert_inert(srv.session.get(f"{job_url}/results/output"))
    assert_inert(srv.session.get(f"{job_url}/results/stdout"))
    assert_inert(srv.session.get(f"{job_url}/parameters/input"))
    # OPUS's own picture of the record: not sandboxed (the web client embeds it and its
    # node links navigate), but no script runs in it and nothing loads from elsewhere.
    picture = srv.session.get(f"{srv.url}/provsap",
                              params={"ID": job_id_of(job_url), "RESPONSEFORMAT": "svg"})
    assert picture.status_code == 200 and picture.headers["X-Content-Type-Options"] == "nosniff"
    policy = picture.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    # An OPUS page is no foreign content: it is not sandboxed (its form must submit).
    page = srv.session.get(f"{srv.url}/activities/copy/form")
    assert page.status_code == 200
    assert page.headers.get("X-Content-Type-Options") == "nosniff"
    assert "sandbox" not in page.headers.get("Content-Security-Policy", "")


# -- 3. file modes ------------------------------------------------------------------------

def test_data_folders_and_files_are_private(srv: Server) -> None:
    response = srv.session.post(srv.rest("copy"), data={"PHASE": "RUN"},
                                files={"input": ("x.txt", b"private data\n")},
                                allow_redirects=False)
    job_url = response.headers["Location"]
    srv.wait_final(job_url)
    job_dir = srv.data_dir / "jobs" / job_id_of(job_url)
    data = srv.data_dir
    paths = [data, data / "jobs", data / "run", job_dir, job_dir / "uploads",
             job_dir / "uploads" / "input", job_dir / "work", job_dir / "work" / "output.txt",
             job_dir / "work" / "input.txt", job_dir / "stdout.txt", job_dir / "stderr.txt",
             job_dir / "job.json", job_dir / "secret", job_dir / "parameters.json",
             job_dir / "outcome.json", job_dir / "runner.log",
             data / "opus.sqlite", data / "opus.sqlite-wal", data / "opus.sqlite-shm",
             data / "opus.sqlite.writelock"]
    loose = {str(path.relative_to(data)): oct(stat.S_IMODE(path.stat().st_mode))
             for path in paths if path.exists() and path.stat().st_mode & 0o077}
    assert not loose, loose
    assert (data / "opus.sqlite-wal").exists()


def test_activity_cannot_change_the_stored_input_it_was_given(srv: Server) -> None:
    """A staged input is the activity's own copy: writing over it in place changes neither
    the upload the server keeps nor an earlier job's result (a hard link would share the
    bytes, so the record's sha256 would no longer describe the file served)."""
    original = b"the original bytes, longer than what is scribbled over them\n"
    response = srv.session.post(srv.rest("scribble"), data={"PHASE": "RUN"},
                                files={"input": ("x.txt", original)}, allow_redirects=False)
    assert response.status_code == 303, response.text
    first = response.headers["Location"]
    srv.wait_final(first)
    assert srv.session.get(f"{first}/results/output").content.startswith(b"scribbled\n")
    assert srv.session.get(f"{first}/parameters/input").content == original
    # The result of that job, given to a second one that scribbles over it too.
    product = results_of(srv, first)["output"]
    before = srv.session.get(f"{first}/results/output").content
    second = completed(srv, "scribble", input=product["href"])
    assert srv.session.get(f"{second}/results/output").content.startswith(b"scribbled\n")
    assert srv.session.get(f"{first}/results/output").content == before


# -- 4. the activity's environment and the runner's files ---------------------------------

def landlock_available() -> bool:
    from opus.execution import sandbox

    return sandbox.abi_version() > 0


def test_activity_sees_no_server_secret_and_cannot_touch_runner_files(srv: Server) -> None:
    other = srv.create("sleep", run=False)
    job_url = completed(srv, "peek", OTHER_JOB=job_id_of(other))
    outputs = {name: srv.session.get(f"{job_url}/results/{name}").text
               for name in ("parent_env", "scheduler_env", "env", "writes")}
    assert CANARY not in outputs["parent_env"], outputs["parent_env"]
    assert "OPUS_DATABASE_URL" not in outputs["parent_env"]
    assert CANARY not in outputs["env"]
    if os.geteuid() != 0:  # the scheduler is not dumpable: closed to all but root
        assert CANARY not in outputs["scheduler_env"], outputs["scheduler_env"]
    if not landlock_available():
        pytest.skip("no Landlock on this kernel: the runner's files are not protected")
    written = [line for line in outputs["writes"].splitlines() if "written" in line]
    assert not written, outputs["writes"]
    assert not (srv.data_dir / "intruder").exists()


def test_scheduler_kills_no_process_group_the_activity_names(tmp_path: Path) -> None:
    """Without a sandbox the activity can write ``activity.pgid``: the scheduler must not
    SIGKILL whatever group it names (the scheduler's own, another job's)."""
    from opus.execution.local import kill_activity_group

    job_dir = tmp_path / "jobs" / uuid.uuid4().hex
    job_dir.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    activity = subprocess.Popen(["sleep", "30"], start_new_session=True, env={
        "PATH": os.environ["PATH"], "OPUS_JOB_ID": job_dir.name,
        "OPUS_JOB_DIR": str(job_dir)})
    try:
        (job_dir / "activity.pgid").write_text(str(bystander.pid))
        kill_activity_group(job_dir)
        time.sleep(0.3)
        assert bystander.poll() is None, "a process group that is not the job's was killed"
        (job_dir / "activity.pgid").write_text(str(activity.pid))
        kill_activity_group(job_dir)
        activity.wait(5)
    finally:
        for process in (bystander, activity):
            process.kill()
            process.wait()


def test_local_runner_gets_a_minimal_environment(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from opus.execution.local import LocalManager
    from opus.execution.manager import JobTemplate

    monkeypatch.setenv("OPUS_DATABASE_URL", "postgresql://opus:hunter2@db/opus")
    monkeypatch.setenv("INTEGRITY_CANARY", CANARY)
    out = tmp_path / "env.txt"
    manager = LocalManager(1)
    native = manager.submit(JobTemplate(job_id="x", command=("/usr/bin/env",),
                                        working_directory=tmp_path, stdout_path=out))
    deadline = time.monotonic() + 10
    while manager.status(native).phase == "EXECUTING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = out.read_text()
    assert "hunter2" not in text and CANARY not in text
    assert "PATH=" in text


# -- 5. the 500s ----------------------------------------------------------------------------

_PART = b'--x\r\nContent-Disposition: form-data; name="ID"\r\n'
BOGUS_BODIES = {
    "boundary charset": ("multipart/form-data; boundary=x; charset=bogus",
                         _PART + b"\r\nabc\r\n--x--\r\n"),
    "part charset": ("multipart/form-data; boundary=x",
                     _PART + b"Content-Type: text/plain; charset=bogus\r\n\r\nabc\r\n--x--\r\n"),
    "non-text codec": ("multipart/form-data; boundary=x; charset=base64",
                       _PART + b"\r\nabc\r\n--x--\r\n"),
}


@pytest.mark.parametrize("kind", sorted(BOGUS_BODIES))
def test_bogus_charset_is_a_400_on_every_form_route(srv: Server, kind: str) -> None:
    pending = srv.create("sleep", run=False)
    content_type, body = BOGUS_BODIES[kind]
    for path in ("/rest/sleep", pending[len(srv.url):], "/activities/sleep/form",
                 "/datalink/links", "/provenance/replay", f"{pending[len(srv.url):]}/phase",
                 f"{pending[len(srv.url):]}/parameters"):
        response = requests.post(srv.url + path, data=body,
                                 headers={"Content-Type": content_type},
                                 allow_redirects=False)
        assert response.status_code == 400, (path, response.status_code, response.text)


# -- 6. server paths and URL inputs --------------------------------------------------------

def test_server_path_must_lie_under_a_data_root(srv: Server, data_root: Path) -> None:
    refusals = {}
    for value in ("/root", "/etc/passwd", "/nonexistent/dl3", f"{data_root}/../",
                  f"{data_root}/escape", f"{data_root}/escape/passwd", "relative/dl3"):
        response = srv.session.post(srv.rest("gammapy_maps"), data={"datastore": value},
                                    allow_redirects=False)
        assert response.status_code == 400, (value, response.text)
        refusals[value] = response.text
    # one answer whatever exists on the server: nothing is revealed by the refusal
    assert len(set(refusals.values())) == 1, refusals
    assert "datastore" in refusals["/root"]
    for value in (str(data_root / "dl3"), str(data_root / "not-yet-there")):
        response = srv.session.post(srv.rest("gammapy_maps"), data={"datastore": value},
                                    allow_redirects=False)
        assert response.status_code == 303, (value, response.text)
    # changing a PENDING job's parameter is checked the same way
    job_url = response.headers["Location"]
    changed = srv.session.post(f"{job_url}/parameters", data={"datastore": "/root"},
                               allow_redirects=False)
    assert changed.status_code == 400
    assert changed.text == refusals["/root"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        body = b"internal secret\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def test_url_input_is_fetched_from_the_address_that_was_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name resolves to a public address when checked, then to
    loopback; the runner must connect to the checked one (and so never reach loopback)."""
    from opus.execution import runner

    internal = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    port = internal.server_address[1]
    threading.Thread(target=internal.serve_forever, daemon=True).start()
    real = socket.getaddrinfo
    answers = iter(["8.8.8.8"] + ["127.0.0.1"] * 20)

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            return real(next(answers), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        with contextlib.suppress(runner.InputProblem):
            runner.fetch(f"http://rebind.test:{port}/secret", tmp_path / "input",
                         max_bytes=1000, timeout=3, block_private=True)
    finally:
        internal.shutdown()
        internal.server_close()
    assert _Recorder.hits == [], "the runner connected to the rebound (loopback) address"
    assert not (tmp_path / "input").exists()


def test_runner_module_needs_only_the_standard_library() -> None:
    """The sandbox is applied by the runner, which must start on any node."""
    code = ("import sys; import opus.execution.runner, opus.execution.sandbox; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "{'sqlalchemy', 'bottle', 'pydantic', 'lxml'}]; print(bad); "
            "sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
