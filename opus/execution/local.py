"""The local manager: runners as child processes of the scheduler, on this machine.

The native id is ``"<pid>:<start ticks>"``: the start time from /proc guards against a
recycled pid after a scheduler restart. Each runner starts a new session (its own process
group), so :meth:`LocalManager.terminate` can signal the runner, which stops its activity's
process tree; if the runner itself is gone, the activity's group (``activity.pgid`` in the
job directory) is killed directly: only its processes that carry the job's folder in their
environment, since the activity itself may have rewritten that file.

A runner gets only the variables it needs (:data:`RUNNER_ENVIRONMENT`), never the
scheduler's whole environment (a database URL with its password, tokens): its activity
could read it through ``/proc/$PPID/environ``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from opus.execution.manager import JobTemplate, Manager, ManagerError, NativeStatus

#: The scheduler's variables a runner gets (besides the template's): enough to start
#: Python and find the opus package, nothing secret.
RUNNER_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
                      "PYTHONPATH", "LD_LIBRARY_PATH")


def runner_environment(template: JobTemplate) -> dict[str, str]:
    kept = {name: os.environ[name] for name in RUNNER_ENVIRONMENT if name in os.environ}
    return {**kept, **template.environment}


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields and fields[0] == "Z":
        return None  # a zombie has finished
    return fields[19] if len(fields) > 19 else None


class LocalManager(Manager):
    """Runs each job as a local process, up to ``max_active`` at once."""

    name = "local"

    def __init__(self, max_active: int, on_exit: Callable[[], None] | None = None) -> None:
        self.max_active = max_active
        self.on_exit = on_exit
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def submit(self, template: JobTemplate) -> str:
        stdout = open(template.stdout_path or os.devnull, "ab")
        stderr = open(template.stderr_path or os.devnull, "ab")
        try:
            child = subprocess.Popen(
                list(template.command), cwd=template.working_directory,
                env=runner_environment(template), stdin=subprocess.DEVNULL,
                stdout=stdout, stderr=stderr, start_new_session=True, close_fds=True,
            )
        except OSError as error:
            raise ManagerError(f"cannot start {template.command[0]}: {error}") from error
        finally:
            stdout.close()
            stderr.close()
        native_id = f"{child.pid}:{_start_ticks(child.pid) or 0}"
        with self._lock:
            self._children[native_id] = child
        threading.Thread(target=self._reap, args=(native_id, child), daemon=True,
                         name=f"reap-{child.pid}").start()
        return native_id

    def _reap(self, native_id: str, child: subprocess.Popen[bytes]) -> None:
        """Wait for a runner to end, then wake the scheduler (an event, not a poll)."""
        child.wait()
        if self.on_exit is not None:
            self.on_exit()

    def _alive(self, native_id: str) -> bool:
        with self._lock:
            child = self._children.get(native_id)
        if child is not None:
            return child.poll() is None
        pid, _, ticks = native_id.partition(":")
        return _start_ticks(int(pid)) == ticks

    def status(self, native_id: str) -> NativeStatus:
        if self._alive(native_id):
            return NativeStatus("EXECUTING")
        with self._lock:
            child = self._children.pop(native_id, None)
        if child is not None:
            code = child.returncode
            return NativeStatus("COMPLETED" if code == 0 else "ERROR",
                                reason=f"runner exited with status {code}", exit_code=code)
        return NativeStatus("UNKNOWN")

    def terminate(self, native_id: str) -> None:
        if self._alive(native_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(native_id.partition(":")[0]), signal.SIGTERM)

    def release(self, native_id: str, job_dir: Path) -> None:
        """The runner is gone: make sure its activity's process group is gone too (a
        runner killed with SIGKILL could not stop it)."""
        kill_activity_group(job_dir)

    def close(self) -> None:
        with self._lock:
            self._children.clear()


def kill_activity_group(job_dir: Path) -> None:
    """SIGKILL what is left of the process group of a job's activity: the processes of the
    group ``activity.pgid`` names that run for this job (``OPUS_JOB_DIR`` in their
    environment, set by the runner). The activity can write that file: a group of the
    scheduler or of another job it names is left alone."""
    try:
        pgid = int((job_dir / "activity.pgid").read_text())
    except (OSError, ValueError):
        return
    marker = f"OPUS_JOB_DIR={job_dir.resolve()}".encode()
    for pid in _group_members(pgid):
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environment:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (field 5 of /proc/PID/stat)."""
    if pgid <= 1:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members
