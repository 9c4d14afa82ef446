"""Supervision of the scheduler: a scheduler that dies is started again.

``opus scheduler`` (alone, or started by ``opus serve``) is this small supervisor, which
runs the real scheduler as its child (``opus scheduler --worker``) and starts it again
when it dies, after 1 s, then 2, 4, ... up to 30 s while it keeps dying soon after start
(a run longer than that resets the delay). Each restart is logged with how the child
ended. An exit meaning "misconfigured" (a bad setting, a data dir that is not the
database's) is not retried: it would fail the same way forever.

The supervisor holds no database connection and runs no job: it is a separate process
(not a thread of ``opus serve``) because gunicorn's arbiter reaps every child of its
process, which would hide the scheduler's exit status. ``opus serve`` in turn keeps the
supervisor running with the same :func:`supervise`, from a thread: a supervisor killed
(the OOM killer, a wrong ``kill``) is started again. Its own exit status may be lost to
the arbiter, so a supervisor under ``opus serve`` whose scheduler is misconfigured does
not exit: it logs that once and waits to be stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opus.config import Settings

log = logging.getLogger("opus.supervisor")

#: ``sysexits.h`` EX_CONFIG: the scheduler refuses its configuration.
EXIT_MISCONFIGURED = 78
#: Exits not worth a restart: EX_CONFIG, and 2 (a settings or command-line error).
NOT_RESTARTED = frozenset({EXIT_MISCONFIGURED, 2})
FIRST_DELAY = 1.0
MAX_DELAY = 30.0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "ended"  # its status went to another waiter (gunicorn's arbiter)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _ended(child: subprocess.Popen[bytes]) -> tuple[bool, int | None]:
    """Whether ``child`` has ended, and its exit status: None when another waiter took it.
    In ``opus serve`` gunicorn's arbiter reaps every child of the process on SIGCHLD, so
    the status of a child it reaped first is lost (``Popen.poll`` would then say 0)."""
    try:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
    except ChildProcessError:
        child.returncode = 0  # nothing left to wait for
        return True, None
    if pid == 0:
        return False, None
    child.returncode = os.waitstatus_to_exitcode(status)
    return True, child.returncode


def supervise(argv: Sequence[str], stop: threading.Event, *,
              env: dict[str, str] | None = None, name: str = "scheduler") -> int:
    """Run ``argv`` until ``stop`` is set, restarting it with backoff when it dies; the
    child is stopped with SIGTERM when ``stop`` is set. Returns 0, or the child's status
    if it exited misconfigured. ``name`` is what the log lines call it."""
    delay = FIRST_DELAY
    while not stop.is_set():
        started = time.monotonic()
        child = subprocess.Popen(list(argv), env=env)
        log.info("%s started (pid %d)", name, child.pid)
        ended, code = _ended(child)
        while not ended:
            if stop.wait(0.2):
                child.terminate()
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                return 0
            ended, code = _ended(child)
        if code in NOT_RESTARTED:
            log.error("%s (pid %d) %s: misconfigured, not restarted", name, child.pid,
                      describe_exit(code))
            return code
        if time.monotonic() - started > MAX_DELAY:
            delay = FIRST_DELAY  # it had been running well: a fresh failure
        log.warning("%s (pid %d) %s; restarting it in %g s", name, child.pid,
                    describe_exit(code), delay)
        if stop.wait(delay):
            return 0
        delay = min(delay * 2, MAX_DELAY)
    return 0


def watch_parent(parent: int, stop: threading.Event) -> None:
    """Set ``stop`` when ``parent`` is no longer this process's parent (it was killed
    hard): a scheduler outliving its ``opus serve`` would be an orphan no one stops."""
    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()
    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def check_start(settings: Settings, stop: threading.Event) -> int | None:
    """Before the scheduler starts: its data dir must be the database's (else
    :data:`EXIT_MISCONFIGURED`). A database that cannot be reached yet (logged once per
    outage by :mod:`opus.storage.health`), or not migrated yet (logged here, once), is
    waited for, never a reason to die. None: go on; 0: stopped while waiting."""
    from opus.storage.engine import DATABASE_UNAVAILABLE, make_engine
    from opus.storage.installation import DataDirMismatch, SchemaNotReady, check_data_dir

    engine = make_engine(settings.effective_database_url)
    said_schema = False
    try:
        while True:
            try:
                check_data_dir(engine, settings.data_dir)
            except DataDirMismatch as error:
                log.error("%s", error)
                return EXIT_MISCONFIGURED
            except DATABASE_UNAVAILABLE:
                pass
            except SchemaNotReady as error:
                if not said_schema:
                    log.warning("scheduler start-up: %s; waiting for it", error)
                said_schema = True
            else:
                return None
            if stop.wait(1.0):
                return 0
    finally:
        engine.dispose()
