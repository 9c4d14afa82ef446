"""The job runner: ``python -m opus.execution.runner JOB_DIR``.

Every manager starts this same program (DESIGN.md, principle 3). It reads ``job.json``
written by the scheduler, runs the activity in its own session (so its whole process tree
can be signalled at once), passes parameters as ``parameters.json`` and as environment
variables (never as shell text: principle 4), keeps stdout and stderr, enforces
executionDuration, hashes the outputs, writes ``outcome.json`` and reports the phases back
to the server with the job's secret. If a report cannot be delivered the outcome file
remains, and the scheduler reads it. The runner's files are the account's alone (umask
077); the activity starts confined where the kernel allows it (:mod:`opus.execution.sandbox`:
it writes only in its work folder and temporary folders, and can neither trace nor signal
the runner or the scheduler), and the runner itself is not dumpable. URL inputs are
fetched by :mod:`opus.execution.fetching`.

Only the standard library is used, so the runner starts fast and runs on any node that has
Python and the shared job directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from opus import diskspace
from opus.digests import script_sha256, sha256_of
from opus.execution import sandbox
from opus.execution.fetching import InputProblem, fetch
from opus.provenance.capture import execution_context

__all__ = ["InputProblem", "Runner", "fetch", "main"]

#: Seconds between SIGTERM and SIGKILL when stopping an activity.
KILL_GRACE = 3.0
#: Bytes free below which a failed activity is taken to have run out of space.
FULL = 1 << 20

#: Environment variables an activity inherits from the runner; nothing else (secrets such
#: as a database URL in the scheduler's environment must not reach user code).
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR")

#: Parameter names never exported under their own name (they would change how programs run).
UNSAFE_NAMES = frozenset({
    "PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "CDPATH", "PS4",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PERL5LIB", "PERL5OPT", "LD_PRELOAD",
    "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH", "TMPDIR",
})


def now_iso() -> str:
    value = dt.datetime.now(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _exportable(name: str) -> bool:
    return (name.isidentifier() and name.isascii() and name.upper() not in UNSAFE_NAMES
            and not name.upper().startswith(("LD_", "OPUS_", "DYLD_", "SLURM_")))


class Runner:
    """One run of one job, in the job directory."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir.resolve()
        self.spec: dict[str, Any] = json.loads((self.job_dir / "job.json").read_text())
        secret_file = self.job_dir / "secret"
        self.secret = secret_file.read_text().strip() if secret_file.exists() else ""
        self.work_dir = self.job_dir / "work"
        self.inputs: list[dict[str, Any]] = self.spec.get("inputs", [])
        # What the activity sees: an input parameter is the local file it was staged to.
        self.parameters: dict[str, str] = dict(self.spec.get("parameters", {}))
        for item in self.inputs:
            self.parameters[item["name"]] = item["filename"]
        self.stop_signal: int | None = None
        self.stop_time: float | None = None
        self.timed_out = False
        self.started = time.monotonic()

    # -- reporting ---------------------------------------------------------------------
    def report(self, body: dict[str, Any], attempts: int = 4) -> None:
        url = self.spec.get("callback_url")
        if not url:
            return
        data = json.dumps(body).encode()
        for attempt in range(attempts):
            request = urllib.request.Request(
                url, data=data, method="POST",
                headers={"Content-Type": "application/json", "X-OPUS-Secret": self.secret},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
                return
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return  # refused (job gone or already ended): nothing to retry
            except OSError as error:
                print(f"opus-runner: report failed ({error}); attempt {attempt + 1}",
                      file=sys.stderr)
            time.sleep(0.25 * 2 ** attempt)

    # -- running -----------------------------------------------------------------------
    def environment(self, tmp_dir: Path | None = None) -> dict[str, str]:
        """The activity's variables; ``tmp_dir``: its own TMPDIR (in the sandbox)."""
        env = {name: os.environ[name] for name in INHERITED if name in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if tmp_dir is not None:
            env["TMPDIR"] = str(tmp_dir)
        for entity in self.spec.get("generated", []):
            if _exportable(entity["name"]) and entity.get("filename"):
                env[entity["name"]] = entity["filename"]
        for name, value in self.parameters.items():
            if _exportable(name):
                env[name] = value
            env["OPUS_PARAM_" + "".join(c if c.isalnum() else "_" for c in name).upper()] = value
        env.update({
            "OPUS_JOB_ID": self.spec["job_id"],
            "OPUS_JOB_DIR": str(self.job_dir),
            "OPUS_PARAMETERS_FILE": str(self.job_dir / "parameters.json"),
        })
        env.update(self.spec.get("environment", {}))
        return env

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.stop_time = time.monotonic()

    def _kill(self, child: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass

    def _wait(self, child: subprocess.Popen[bytes], limit: float | None) -> int:
        """Wait for the child: event-driven through a pidfd and the signal wake-up fd;
        SIGTERM at the time limit or on our own SIGTERM, SIGKILL after KILL_GRACE."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        try:
            pidfd = os.pidfd_open(child.pid)
        except (AttributeError, OSError):
            pidfd = None
        started = time.monotonic()
        term_sent_at: float | None = None
        try:
            while True:
                code = child.poll()
                if code is not None:
                    return code
                now = time.monotonic()
                if self.stop_signal is not None and term_sent_at is None:
                    self._kill(child, signal.SIGTERM)
                    term_sent_at = now
                if limit and not self.timed_out and now - started >= limit:
                    self.timed_out = True
                    self._kill(child, signal.SIGTERM)
                    term_sent_at = now
                if term_sent_at is not None and now - term_sent_at >= KILL_GRACE:
                    self._kill(child, signal.SIGKILL)
                timeouts = []
                if limit and not self.timed_out:
                    timeouts.append(started + limit - now)
                if term_sent_at is not None:
                    timeouts.append(term_sent_at + KILL_GRACE - now + 0.01)
                timeout = max(0.0, min(timeouts)) if timeouts else None
                if pidfd is None:
                    timeout = 0.05 if timeout is None else min(timeout, 0.05)
                    watched = [wake_r]
                else:
                    watched = [pidfd, wake_r]
                ready, _, _ = select.select(watched, [], [], timeout)
                if wake_r in ready:
                    os.read(wake_r, 512)
        finally:
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
            if pidfd is not None:
                os.close(pidfd)

    def _at_cluster_limit(self) -> bool:
        """Whether the stop signal came when the cluster's time limit was reached."""
        cluster_limit = self.spec.get("cluster_time_limit")
        if not cluster_limit or self.stop_time is None:
            return False
        return self.stop_time - self.started >= float(cluster_limit) - 2.0

    def fetch_inputs(self) -> str | None:
        """Download the inputs given by URL; the reason if one cannot be had."""
        limits = self.spec.get("fetch", {})
        for item in self.inputs:
            if item.get("kind") != "url":
                continue
            try:
                fetch(item["url"], self.work_dir / item["filename"],
                      max_bytes=int(limits.get("max_bytes", 1 << 30)),
                      timeout=float(limits.get("timeout", 300)),
                      block_private=bool(limits.get("block_private", True)))
            except InputProblem as error:
                return f"input {item['name']}: {error}"
        return None

    def describe_inputs(self) -> list[dict[str, Any]]:
        """Each input as used: where it came from, its sha256 and size (provenance)."""
        described = []
        for item in self.inputs:
            path = self.work_dir / item["filename"]
            entry = {key: item.get(key) for key in ("name", "kind", "location", "entity_id",
                                                    "filename")}
            if path.is_file():
                entry.update(sha256=sha256_of(path), size=path.stat().st_size)
            described.append(entry)
        return described

    def collect_results(self) -> list[dict[str, Any]]:
        """Declared outputs that exist (inside the work dir), then stdout and stderr."""
        found = []
        for entity in self.spec.get("generated", []):
            filename = entity.get("filename") or entity["name"]
            path = (self.work_dir / filename)
            real = path.resolve()
            if not real.is_relative_to(self.work_dir) or not real.is_file():
                continue
            os.chmod(real, real.stat().st_mode & 0o700)  # the server account's alone
            found.append({"id": entity["name"], "path": str(path.relative_to(self.job_dir)),
                          "size": real.stat().st_size, "sha256": sha256_of(real),
                          "mime_type": entity.get("content_type") or "application/octet-stream"})
        for name in ("stdout", "stderr"):
            path = self.job_dir / f"{name}.txt"
            if path.is_file():
                found.append({"id": name, "path": path.name, "size": path.stat().st_size,
                              "sha256": sha256_of(path), "mime_type": "text/plain"})
        return found

    def sandbox(self) -> tuple[Any, Path | None]:
        """The activity's confinement (:mod:`opus.execution.sandbox`) and its own TMPDIR;
        (None, None) where the kernel has no Landlock."""
        tmp_dir = self.job_dir / "tmp"
        tmp_dir.mkdir(mode=0o700, exist_ok=True)
        protected = [Path(self.spec.get("data_dir") or self.job_dir.parent.parent),
                     Path(__file__).resolve().parents[2], Path(sys.prefix)]
        streams = [self.job_dir / "stdout.txt", self.job_dir / "stderr.txt"]
        try:
            enforce = sandbox.restriction(self.work_dir, tmp_dir, streams, protected)
        except OSError as error:
            print(f"opus-runner: the activity runs without a sandbox: {error}",
                  file=sys.stderr)
            enforce = None
        if enforce is None:
            tmp_dir.rmdir()
            return None, None
        return enforce, tmp_dir

    def run(self) -> dict[str, Any]:
        os.umask(0o077)  # what the runner and the activity write is the account's alone
        sandbox.not_dumpable()  # the secret in memory: not for the activity to read
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_stop_signal)
        start = now_iso()
        self.report({"phase": "EXECUTING", "start_time": start})
        self.work_dir.mkdir(mode=0o700, exist_ok=True)
        _write(self.job_dir / "parameters.json", json.dumps(self.parameters, indent=1))
        problem = self.fetch_inputs()
        used = self.describe_inputs()  # as used: before the activity could change them
        command = list(self.spec["command"])
        limit = self.spec.get("execution_duration") or None
        outcome: dict[str, Any] = {"job_id": self.spec["job_id"], "start_time": start,
                                   "host": socket.gethostname(), "platform": platform.platform(),
                                   "command": command}
        context: dict[str, Any] = {}
        cache = self.spec.get("context_cache")
        capture = threading.Thread(  # runs while the activity does, started after it:
            # preexec_fn (the sandbox) is only safe in a process with a single thread
            target=lambda: context.update(execution_context(Path(cache) if cache else None)),
            daemon=True)
        with open(self.job_dir / "stdout.txt", "wb") as out, \
                open(self.job_dir / "stderr.txt", "wb") as err:
            enforce, tmp_dir = self.sandbox() if problem is None else (None, None)
            try:
                if problem is not None:
                    raise InputProblem(problem)
                child = subprocess.Popen(
                    command, cwd=self.work_dir, env=self.environment(tmp_dir),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                    close_fds=True, preexec_fn=enforce,  # noqa: PLW1509 (one thread yet)
                )
            except InputProblem as error:
                code = None
                outcome.update(phase="ERROR", error_summary=str(error))
            except (OSError, subprocess.SubprocessError) as error:
                code = None
                outcome.update(phase="ERROR", error_summary=f"cannot start {command[0]}: {error}")
            else:
                _write(self.job_dir / "activity.pgid", str(child.pid))
                capture.start()
                code = self._wait(child, limit)
                self._kill(child, signal.SIGKILL)  # leftovers of the tree, if any
            finally:
                sandbox.release(enforce)
        if capture.ident is None:  # the activity did not start: capture now
            capture.start()
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        outcome.update(end_time=now_iso(), exit_code=code,
                       rusage={"user_cpu": usage.ru_utime, "system_cpu": usage.ru_stime,
                               "max_rss_kb": usage.ru_maxrss})
        if "phase" in outcome:
            pass
        elif self.stop_signal is not None and self._at_cluster_limit():
            # the cluster's own limit (executionDuration + a margin) ended the job: an error,
            # not an ABORT (an ABORT has already ended the job in the database anyway)
            outcome.update(phase="ERROR", error_summary=(
                f"stopped by signal {signal.Signals(self.stop_signal).name} at the "
                f"{self.spec.get('manager') or 'cluster'} time limit of "
                f"{self.spec['cluster_time_limit']} s (executionDuration {limit} s)"))
        elif self.stop_signal is not None:
            outcome.update(phase="ABORTED", error_summary=(
                f"stopped by signal {signal.Signals(self.stop_signal).name}"))
        elif self.timed_out:
            outcome.update(phase="ERROR", error_summary=(
                f"executionDuration of {limit} s exceeded; the activity was stopped"))
        elif code == 0:
            outcome["phase"] = "COMPLETED"
        else:
            reason = (f"killed by signal {signal.Signals(-code).name}" if code is not None
                      and code < 0 else f"exited with status {code}")
            tail = _last_line(self.job_dir / "stderr.txt")
            summary = f"activity {reason}" + (f": {tail}" if tail else "")
            free = diskspace.free_bytes(self.job_dir)
            if free < FULL:  # its writes failed (its stderr too, perhaps)
                summary = (f"no space left on device writing in {self.work_dir} ({free} "
                           f"bytes free): {summary}")
            outcome.update(phase="ERROR", error_summary=summary)
        outcome["results"] = self.collect_results()
        outcome["inputs"] = used
        capture.join(30)
        outcome["context"] = context
        outcome["script_sha256"] = script_sha256(command)
        for key in ("description_sha256", "activity_version"):
            outcome[key] = self.spec.get(key)
        bundle = self.work_dir / "provenance.json"
        if bundle.is_file() and bundle.stat().st_size < 5_000_000:
            outcome["bundle"] = bundle.read_text(errors="replace")
        temporary = self.job_dir / "outcome.json.tmp"
        try:
            _write(temporary, json.dumps(outcome, indent=1))
            os.replace(temporary, self.job_dir / "outcome.json")
        except OSError as error:  # a full disk: the report alone carries the outcome
            if not diskspace.disk_full(error):
                raise
            temporary.unlink(missing_ok=True)
            print(f"opus-runner: {error}", file=sys.stderr)
        self.report(outcome)
        return outcome

    def no_space(self, error: OSError) -> dict[str, Any]:
        """The outcome of a run that a full disk stopped (the runner's own writes failed):
        ERROR saying so, reported, and written if the disk allows it by now."""
        where = error.filename or self.job_dir
        outcome = {"job_id": self.spec["job_id"], "phase": "ERROR", "end_time": now_iso(),
                   "error_summary": f"no space left on device writing {where}"}
        with contextlib.suppress(OSError):
            _write(self.job_dir / "outcome.json", json.dumps(outcome))
        self.report(outcome)
        return outcome


def _write(path: Path, text: str) -> None:
    """``path.write_text(text)``, with the path in the error (a failed write() has none)."""
    try:
        path.write_text(text)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from error


def _last_line(path: Path, limit: int = 300) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(max(0, path.stat().st_size - 4096))
            lines = stream.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m opus.execution.runner JOB_DIR", file=sys.stderr)
        return 2
    write_runner_id(Path(args[0]))
    runner = Runner(Path(args[0]))
    try:
        outcome = runner.run()
    except OSError as error:
        if not diskspace.disk_full(error):
            raise
        outcome = runner.no_space(error)
    return 0 if outcome["phase"] == "COMPLETED" else 1


def write_runner_id(job_dir: Path) -> None:
    """The runner's cluster id (SLURM job id, or the local manager's ``pid:start ticks``)
    in ``runner.id``, first thing: a scheduler that died before recording the id finds it
    there (:mod:`opus.execution.recovery`)."""
    from opus.execution.local import _start_ticks

    native_id = os.environ.get("SLURM_JOB_ID") or f"{os.getpid()}:{_start_ticks(os.getpid())}"
    try:
        (job_dir / "runner.id").write_text(native_id)  # recovery.RUNNER_ID_FILE
    except OSError:
        pass  # only a help for recovery


if __name__ == "__main__":
    sys.exit(main())
