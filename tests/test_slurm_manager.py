"""SlurmManager against a real SLURM cluster (``scripts/slurm_cluster.sh start``).

The tests marked by the ``cluster`` fixture are skipped when ``sbatch`` is missing or
``scontrol ping`` fails, unless OPUS_REQUIRE_SLURM=1 (CI), where they fail instead. The unit
tests at the top (state mapping, sbatch argument vector, quoting) need no cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from opus.execution.manager import JobTemplate, ManagerError, NativeStatus
from opus.execution.slurm import BATCH_SCRIPT, BATCH_SCRIPT_NAME, SlurmManager
from opus.execution.slurm_states import map_slurm_state, parse_exit_code, parse_key_values

NASTY = "a b;$(touch PWNED) `touch PWNED2` 'q' \"dq\" $HOME, x=y\nline2 & | > < * ?"


# ---------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize(
    "state, reason, expected",
    [
        ("PENDING", "Priority", NativeStatus("QUEUED")),
        ("PENDING", "None", NativeStatus("QUEUED")),
        ("CONFIGURING", None, NativeStatus("QUEUED")),
        ("REQUEUED", None, NativeStatus("QUEUED")),
        ("RESIZING", None, NativeStatus("QUEUED")),
        ("PENDING", "JobHeldUser", NativeStatus("HELD", "JobHeldUser")),
        ("PENDING", "JobHeldAdmin", NativeStatus("HELD", "JobHeldAdmin")),
        ("REQUEUE_HOLD", None, NativeStatus("HELD", "REQUEUE_HOLD")),
        ("RUNNING", "None", NativeStatus("EXECUTING")),
        ("COMPLETING", None, NativeStatus("EXECUTING")),
        ("COMPLETED", None, NativeStatus("COMPLETED")),
        ("FAILED", "NonZeroExitCode", NativeStatus("ERROR", "FAILED")),
        ("NODE_FAIL", None, NativeStatus("ERROR", "NODE_FAIL")),
        ("OUT_OF_MEMORY", None, NativeStatus("ERROR", "OUT_OF_MEMORY")),
        ("TIMEOUT", "TimeLimit", NativeStatus("ERROR", "TIMEOUT")),
        ("BOOT_FAIL", None, NativeStatus("ERROR", "BOOT_FAIL")),
        ("DEADLINE", None, NativeStatus("ERROR", "DEADLINE")),
        ("PREEMPTED", None, NativeStatus("ERROR", "PREEMPTED")),
        ("CANCELLED", None, NativeStatus("ABORTED")),
        ("CANCELLED by 0", None, NativeStatus("ABORTED")),
        ("CANCELLED+", None, NativeStatus("ABORTED")),
        ("SUSPENDED", None, NativeStatus("SUSPENDED")),
        ("cancelled", None, NativeStatus("ABORTED")),
        ("SOMETHING_NEW", None, NativeStatus("UNKNOWN", "SOMETHING_NEW")),
        ("", None, NativeStatus("UNKNOWN")),
    ],
)
def test_state_mapping(state, reason, expected):
    assert map_slurm_state(state, reason) == expected


def test_exit_code_and_record_parsing():
    assert parse_exit_code("0:0") == 0
    assert parse_exit_code("3:0") == 3
    assert parse_exit_code("0:15") == 128 + 15
    assert parse_exit_code("") is None
    assert parse_exit_code("x") is None
    fields = parse_key_values(
        "JobId=7 JobName=opus-x JobState=CANCELLED Reason=None ExitCode=0:15 "
        "WorkDir=/tmp/a b Command=/x/y")
    assert fields["JobId"] == "7"
    assert fields["JobState"] == "CANCELLED"
    assert fields["WorkDir"] == "/tmp/a b"
    assert fields["ExitCode"] == "0:15"


def test_effective_time_limit_counts_minutes():
    # by default the SLURM limit leaves the runner a minute beyond executionDuration
    assert SlurmManager().effective_time_limit(2) == 120
    assert SlurmManager().effective_time_limit(60) == 120
    assert SlurmManager().effective_time_limit(61) == 180
    manager = SlurmManager(time_margin=0)
    assert manager.time_granularity == 60
    assert manager.effective_time_limit(61) == 120
    assert manager.effective_time_limit(60) == 60
    assert manager.effective_time_limit(1) == 60
    assert manager.effective_time_limit(None) is None
    assert manager.effective_time_limit(0) is None


def _template(tmp_path: Path, **kw) -> JobTemplate:
    values = dict(
        job_id="abc123",
        command=("/usr/bin/python3", "-m", "opus.execution.runner", str(tmp_path)),
        working_directory=tmp_path,
        environment={"OPUS_JOB_SECRET": "s3cret", "OPUS_PARAM": NASTY},
        time_limit=61,
        resources={"cpus": "2", "memory": "512"},
        stdout_path=tmp_path / "stdout%j.txt",
        stderr_path=tmp_path / "stderr.txt",
    )
    values.update(kw)
    return JobTemplate(**values)


def test_sbatch_argv(tmp_path):
    manager = SlurmManager(partition="debug", account="cta", extra_sbatch_args=("--qos=short",))
    template = _template(tmp_path, command=("/bin/echo", NASTY, "--foo", "$(id)"))
    script = tmp_path / BATCH_SCRIPT_NAME
    argv = manager.sbatch_argv(template, script, tmp_path / "env")
    assert argv[:2] == ["sbatch", "--parsable"]
    assert "--job-name=opus-abc123" in argv
    assert f"--chdir={tmp_path}" in argv
    assert f"--output={tmp_path}/stdout%%j.txt" in argv  # a literal %, not a SLURM pattern
    assert f"--error={tmp_path}/stderr.txt" in argv
    assert "--time=2" in argv  # 61 s -> 2 minutes
    assert "--cpus-per-task=2" in argv
    assert "--mem=512M" in argv
    assert "--partition=debug" in argv and "--account=cta" in argv
    assert "--qos=short" in argv
    assert "--no-requeue" in argv
    assert "--export=ALL" in argv  # with --export-file: exactly the file's variables
    login = SlurmManager(login_environment=True).sbatch_argv(template, script, tmp_path / "env")
    assert "--export=NONE,OPUS_JOB_SECRET,OPUS_PARAM" in login
    assert SlurmManager(login_host="login").login_environment
    assert f"--export-file={tmp_path / 'env'}" in argv
    assert not any(a.startswith("--wrap") for a in argv)
    # the command follows the script, item by item, unchanged
    i = argv.index(str(script))
    assert argv[i + 1:] == ["/bin/echo", NASTY, "--foo", "$(id)"]
    # environment values never appear on the command line
    assert not any("s3cret" in a or "PWNED" in a for a in argv[:i])


def test_sbatch_argv_limits_and_resources(tmp_path):
    manager = SlurmManager()
    argv = manager.sbatch_argv(_template(tmp_path, time_limit=None, resources={},
                                         environment={}, stdout_path=None, stderr_path=None),
                               tmp_path / "s")
    assert not any(a.startswith(("--time", "--mem", "--cpus", "--partition", "--account",
                                 "--output", "--error")) for a in argv)
    assert "--export=ALL" in argv
    assert "--time=1" in manager.sbatch_argv(_template(tmp_path, time_limit=1), tmp_path / "s")
    with pytest.raises(ManagerError, match="cpus"):
        manager.sbatch_argv(_template(tmp_path, resources={"cpus": "two"}), tmp_path / "s")
    with pytest.raises(ManagerError, match="partition"):
        manager.sbatch_argv(_template(tmp_path, resources={"partition": "a b;c"}), tmp_path / "s")
    with pytest.raises(ManagerError, match="environment variable name"):
        manager.sbatch_argv(_template(tmp_path, environment={"A;B": "x"}), tmp_path / "s")


def test_environment_file_format():
    content = SlurmManager.environment_file_content({"A": "1", "B": "x,y\nz"})
    assert content == b"A=1\0B=x,y\nz\0"
    with pytest.raises(ManagerError):
        SlurmManager.environment_file_content({"A": "a\0b"})


def test_ssh_command_quotes_each_argument():
    manager = SlurmManager(login_host="login.example.org")
    argv = ["sbatch", "--parsable", "/jobs/x/opus-slurm-job.sh", NASTY, "$(id)", "a'b"]
    full = manager.command_argv(argv)
    assert full[:5] == ["ssh", "-o", "BatchMode=yes", "--", "login.example.org"]
    assert len(full) == 6
    assert shlex.split(full[5]) == argv  # what the remote shell will see


def _fake_sbatch(tmp_path: Path) -> Path:
    """A stand-in sbatch that records its argv, its environment file and its own environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        args = sys.argv[1:]
        env_file = [a.split("=", 1)[1] for a in args if a.startswith("--export-file=")][0]
        with open(env_file, "rb") as f:
            records = [r.decode() for r in f.read().split(b"\\0") if r]
        with open(os.environ["FAKE_SBATCH_LOG"], "w") as f:
            json.dump({{"argv": args, "records": records,
                       "mode": oct(os.stat(env_file).st_mode & 0o777),
                       "has_secret": "OPUS_JOB_SECRET" in os.environ}}, f)
        print("4242")
        """))
    fake.chmod(0o755)
    return bin_dir


def test_submit_with_fake_sbatch_passes_no_shell(tmp_path, monkeypatch):
    """Values with shell syntax reach sbatch as data: argv items and a NUL-separated file."""
    work = tmp_path / "job"
    bin_dir = _fake_sbatch(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(tmp_path / "log.json"))
    monkeypatch.chdir(tmp_path)
    calls = []
    real_run = subprocess.run

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    template = _template(work, command=("/bin/echo", NASTY))
    assert SlurmManager().submit(template) == "4242"
    (args,), kwargs = calls[0]
    assert isinstance(args, list) and not kwargs.get("shell")
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["argv"][-2:] == ["/bin/echo", NASTY]
    assert {f"OPUS_PARAM={NASTY}", "OPUS_JOB_SECRET=s3cret"} <= set(log["records"])
    assert f"PATH={os.environ['PATH']}" in log["records"]  # the base environment
    assert {r.split("=", 1)[0] for r in log["records"]} <= {"OPUS_PARAM", "OPUS_JOB_SECRET",
                                                            "PATH", "HOME", "USER", "LOGNAME",
                                                            "LANG", "LC_ALL", "TZ"}
    assert log["mode"] == "0o600"
    assert not log["has_secret"]  # the manager's environment is not the job's
    assert (work / BATCH_SCRIPT_NAME).read_text() == BATCH_SCRIPT
    assert not list(work.glob(".opus-slurm-env.*"))  # the environment file is removed
    assert not list(tmp_path.rglob("PWNED*"))


def test_commands_failing_raise_manager_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "squeue"):
        (bin_dir / name).write_text("#!/bin/sh\necho 'boom: cluster on fire' >&2\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    manager = SlurmManager()
    with pytest.raises(ManagerError, match="cluster on fire"):
        manager.submit(_template(tmp_path / "job"))
    with pytest.raises(ManagerError, match="cluster on fire"):
        manager.status("12")
    with pytest.raises(ManagerError):
        manager.status("12; rm -rf /")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(ManagerError, match="not found"):
        manager.terminate("12")


# ---------------------------------------------------------------------------- real cluster


@pytest.fixture(scope="module")
def cluster(slurm_available):
    return slurm_available


@pytest.fixture
def manager(cluster):
    manager = SlurmManager(command_timeout=30)
    submitted: list[str] = []
    real_submit = manager.submit

    def submit(template):
        native_id = real_submit(template)
        submitted.append(native_id)
        return native_id

    manager.submit = submit
    yield manager
    for native_id in submitted:  # leave nothing running
        subprocess.run(["scancel", native_id], capture_output=True)


def wait_for(manager: SlurmManager, native_id: str, phases, timeout: float = 60.0,
             interval: float = 0.25) -> NativeStatus:
    deadline = time.monotonic() + timeout
    status = manager.status(native_id)
    while status.phase not in phases:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {native_id} still {status} after {timeout} s")
        time.sleep(interval)
        status = manager.status(native_id)
    return status


def pgrep(marker: str) -> list[str]:
    proc = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return proc.stdout.split()


def test_job_completes(manager, tmp_path):
    template = JobTemplate(
        job_id="t-complete", command=("/bin/sh", "-c", "echo hi; echo err >&2"),
        working_directory=tmp_path, time_limit=60,
        stdout_path=tmp_path / "stdout.txt", stderr_path=tmp_path / "stderr.txt")
    started = time.monotonic()
    native_id = manager.submit(template)
    assert native_id.isdigit()
    assert wait_for(manager, native_id, {"COMPLETED", "ERROR", "ABORTED"}) == \
        NativeStatus("COMPLETED", None, 0)
    print(f"sbatch to COMPLETED: {time.monotonic() - started:.2f} s")
    assert (tmp_path / "stdout.txt").read_text() == "hi\n"
    assert (tmp_path / "stderr.txt").read_text() == "err\n"
    assert not list(tmp_path.glob(".opus-slurm-env.*"))
    # the jobcomp/filetxt record (what remains after MinJobAge) says the same
    if manager.cluster_config().get("JobCompType") == "jobcomp/filetxt":
        assert manager._status_jobcomp(native_id) == NativeStatus("COMPLETED", None, 0)
    manager.terminate(native_id)  # already finished: no error


@pytest.mark.parametrize("login_environment", [False, True])
def test_environment_and_arguments_reach_the_job_verbatim(manager, tmp_path, monkeypatch,
                                                          login_environment):
    manager.login_environment = login_environment
    # the scheduler's own environment (a database password...) must not reach the job
    monkeypatch.setenv("OPUS_DATABASE_URL", "postgresql://opus:hunter2@db/opus")
    script = ("import json, os, sys; json.dump({'env': os.environ.get('OPUS_PARAM'), "
              "'secret': os.environ.get('OPUS_JOB_SECRET'), 'argv': sys.argv[1:], "
              "'cwd': os.getcwd()}, open('result.json', 'w')); "
              "json.dump(dict(os.environ), open('environ.json', 'w'))")
    args = (NASTY, "--foo", "$(touch PWNED3)", "", "-c")
    template = JobTemplate(
        job_id="t-env", command=(sys.executable, "-c", script, *args),
        working_directory=tmp_path, environment={"OPUS_PARAM": NASTY, "OPUS_JOB_SECRET": "s"},
        stdout_path=tmp_path / "out.txt", stderr_path=tmp_path / "err.txt")
    native_id = manager.submit(template)
    status = wait_for(manager, native_id, {"COMPLETED", "ERROR", "ABORTED"})
    assert status.phase == "COMPLETED", (tmp_path / "err.txt").read_text()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"env": NASTY, "secret": "s", "argv": list(args), "cwd": str(tmp_path)}
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    environ = json.loads((tmp_path / "environ.json").read_text())
    assert "OPUS_DATABASE_URL" not in environ
    assert environ.get("PATH")  # the base (or login) environment


def test_statuses_asks_squeue_once(manager, tmp_path, monkeypatch):
    """The scheduler's periodic pass: one squeue call for all live jobs; a finished job is
    then asked about alone (scontrol), an unknown one as well."""
    running = manager.submit(JobTemplate(
        job_id="t-batch1", command=("/bin/sleep", "30"), working_directory=tmp_path,
        stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
    failed = manager.submit(JobTemplate(
        job_id="t-batch2", command=("/bin/sh", "-c", "exit 4"), working_directory=tmp_path,
        stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
    wait_for(manager, running, {"EXECUTING"})
    wait_for(manager, failed, {"ERROR"})
    calls = []
    real_run = manager._run

    def spy(argv):
        calls.append(list(argv))
        return real_run(argv)

    monkeypatch.setattr(manager, "_run", spy)
    found = manager.statuses([running, failed, "999999999", running])
    assert found[running] == NativeStatus("EXECUTING")
    assert found[failed] == NativeStatus("ERROR", "FAILED", 4)
    assert found["999999999"].phase == "UNKNOWN"
    squeue_many = [c for c in calls if c[0] == "squeue" and "," in c[c.index("-j") + 1]]
    assert len(squeue_many) == 1
    assert not any(c[0] == "scontrol" and running in c for c in calls)  # live: squeue only
    assert "NODE_FAIL" in manager.describe("7", NativeStatus("ERROR", "NODE_FAIL"))
    assert "exited with status 4" in manager.describe(failed, found[failed])
    assert "cancelled" in manager.describe("7", NativeStatus("ABORTED"))


def test_through_ssh_quoting(cluster, tmp_path):
    """login_host mode: a stand-in ssh joins the arguments and runs them with a shell, as
    ssh does; the shlex quoting must bring every argument and value through intact."""
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nshift 2\n'
                        'exec /bin/sh -c "$*"\n')
    fake_ssh.chmod(0o755)
    manager = SlurmManager(login_host="login", ssh_command=(str(fake_ssh), "-o", "BatchMode=yes"))
    script = ("import json, os, sys; json.dump([os.environ.get('OPUS_PARAM'), sys.argv[1:]], "
              "open('result.json', 'w'))")
    template = JobTemplate(
        job_id="t-ssh", command=(sys.executable, "-c", script, NASTY, "a'b"),
        working_directory=tmp_path / "work dir $(x)", environment={"OPUS_PARAM": NASTY})
    native_id = manager.submit(template)
    try:
        assert wait_for(manager, native_id, {"COMPLETED", "ERROR", "ABORTED"}).phase == "COMPLETED"
    finally:
        manager.terminate(native_id)
    result = json.loads((template.working_directory / "result.json").read_text())
    assert result == [NASTY, [NASTY, "a'b"]]
    assert not list(tmp_path.rglob("PWNED*"))


def test_failing_job_is_error(manager, tmp_path):
    native_id = manager.submit(JobTemplate(
        job_id="t-fail", command=("/bin/sh", "-c", "exit 3"), working_directory=tmp_path,
        stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
    assert wait_for(manager, native_id, {"COMPLETED", "ERROR", "ABORTED"}) == \
        NativeStatus("ERROR", "FAILED", 3)


def test_terminate_kills_every_process(manager, tmp_path):
    marker = f"opus-slurm-test-{uuid.uuid4().hex}"
    parent = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', "
              "sys.argv[1]]); time.sleep(300)")
    native_id = manager.submit(JobTemplate(
        job_id="t-kill", command=(sys.executable, "-c", parent, marker),
        working_directory=tmp_path, stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
    assert wait_for(manager, native_id, {"EXECUTING"}).phase == "EXECUTING"
    deadline = time.monotonic() + 30
    while len(pgrep(marker)) < 2:  # the job and its child
        assert time.monotonic() < deadline, "the job's processes did not start"
        time.sleep(0.2)
    manager.terminate(native_id)
    status = wait_for(manager, native_id, {"ABORTED", "UNKNOWN", "COMPLETED", "ERROR"})
    assert status.phase in ("ABORTED", "UNKNOWN")
    deadline = time.monotonic() + 20
    while pgrep(marker):
        assert time.monotonic() < deadline, f"processes survive scancel: {pgrep(marker)}"
        time.sleep(0.2)
    manager.terminate(native_id)  # again: no error


def test_queued_held_released(manager, tmp_path):
    native_id = manager.submit(JobTemplate(
        job_id="t-hold", command=("/bin/true",), working_directory=tmp_path,
        resources={}, stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
    # keep it pending long enough to hold it (it may also have run already: then resubmit)
    subprocess.run(["scontrol", "hold", native_id], capture_output=True, text=True)
    status = manager.status(native_id)
    if status.phase != "HELD":
        # it started before the hold: use a start time in the future instead
        held = SlurmManager(extra_sbatch_args=("--begin=now+600",))
        native_id = held.submit(JobTemplate(
            job_id="t-hold2", command=("/bin/true",), working_directory=tmp_path,
            stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
        try:
            assert held.status(native_id).phase == "QUEUED"
            hold = subprocess.run(["scontrol", "hold", native_id], capture_output=True, text=True)
            assert hold.returncode == 0, hold.stderr
            status = manager.status(native_id)
        finally:
            subprocess.run(["scontrol", "update", f"JobId={native_id}", "StartTime=now"],
                           capture_output=True)
    assert status.phase == "HELD" and status.reason in ("JobHeldAdmin", "JobHeldUser")
    release = subprocess.run(["scontrol", "release", native_id], capture_output=True, text=True)
    assert release.returncode == 0, release.stderr
    assert wait_for(manager, native_id, {"COMPLETED", "ERROR", "ABORTED"}).phase == "COMPLETED"


def test_submitted_held_and_queued(cluster, tmp_path):
    manager = SlurmManager(extra_sbatch_args=("--hold",))
    native_id = manager.submit(JobTemplate(
        job_id="t-held", command=("/bin/true",), working_directory=tmp_path,
        stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
    try:
        assert manager.status(native_id) == NativeStatus("HELD", "JobHeldUser")
    finally:
        manager.terminate(native_id)
    assert wait_for(manager, native_id, {"ABORTED", "UNKNOWN"}).phase == "ABORTED"


def test_unknown_job_and_refused_submission(manager, tmp_path):
    assert manager.status("999999999") == NativeStatus("UNKNOWN")
    manager.terminate("999999999")  # no error
    with pytest.raises(ManagerError, match="(?i)partition"):
        manager.submit(JobTemplate(
            job_id="t-bad", command=("/bin/true",), working_directory=tmp_path,
            resources={"partition": "no_such_partition"}))


def test_time_limit_ends_as_timeout(manager, tmp_path):
    """--time=1 (SLURM counts minutes; a 1 s limit is rounded up): the job runs with a
    one-minute limit and SLURM's own limit enforcement ends it as TIMEOUT, its processes
    killed. The job's end is brought forward with ``scontrol update EndTime=`` (what an
    administrator does to shorten a running job) instead of waiting out the minute and the
    controller's ~30 s check period (81 s); the limit is still SLURM's, enforced by
    slurmctld's periodic time-limit check, and the job ends as TIMEOUT / Reason=TimeLimit."""
    marker = f"opus-slurm-timeout-{uuid.uuid4().hex}"
    native_id = manager.submit(JobTemplate(
        job_id="t-timeout", command=(sys.executable, "-c", "import time; time.sleep(300)", marker),
        working_directory=tmp_path, time_limit=1,
        stdout_path=tmp_path / "o", stderr_path=tmp_path / "e"))
    assert wait_for(manager, native_id, {"EXECUTING"}).phase == "EXECUTING"
    record = parse_key_values(subprocess.run(
        ["scontrol", "show", "job", "-o", native_id], capture_output=True, text=True,
        check=True).stdout)
    # the limit SLURM enforces is one minute (not the 1 s asked for, not unlimited), and the
    # job is not killed before it: it is still running
    assert record["TimeLimit"] == "00:01:00", record
    assert record["JobState"] == "RUNNING", record
    subprocess.run(["scontrol", "update", f"JobId={native_id}", "EndTime=now+1"], check=True,
                   capture_output=True)
    started = time.monotonic()
    status = wait_for(manager, native_id, {"COMPLETED", "ERROR", "ABORTED"}, timeout=90,
                      interval=0.5)
    print(f"EndTime reached to TIMEOUT: {time.monotonic() - started:.1f} s")
    assert status.phase == "ERROR" and status.reason == "TIMEOUT"
    deadline = time.monotonic() + 20
    while pgrep(marker):
        assert time.monotonic() < deadline, "the timed-out job's process survives"
        time.sleep(0.2)


# ---------------------------------------------------------------------------- the runner


@pytest.mark.parametrize("cluster_limit, stop_after, phase", [(2, 1.6, "ERROR"),
                                                              (60, 0.8, "ABORTED")])
def test_runner_tells_the_cluster_time_limit_from_an_abort(tmp_path, cluster_limit, stop_after,
                                                           phase):
    """SIGTERM at the cluster's time limit (SLURM TIMEOUT: executionDuration + margin) is an
    ERROR that says so; a SIGTERM before it (scancel after ABORT) stays ABORTED."""
    (tmp_path / "job.json").write_text(json.dumps({
        "job_id": "t-runner", "command": ["/bin/sleep", "30"], "parameters": {},
        "generated": [], "execution_duration": 1000, "manager": "slurm",
        "cluster_time_limit": cluster_limit}))
    runner = subprocess.Popen([sys.executable, "-m", "opus.execution.runner", str(tmp_path)])
    time.sleep(stop_after)
    runner.terminate()
    assert runner.wait(20) == 1
    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert outcome["phase"] == phase
    if phase == "ERROR":
        assert "slurm time limit of 2 s" in outcome["error_summary"]
