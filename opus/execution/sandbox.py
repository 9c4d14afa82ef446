"""What an activity may write: its work folder, its own temporary folder, and little else.

The activity runs under the server's account, so without more it could rewrite the
runner's files beside its work folder (``activity.pgid``, ``outcome.json``, ``job.json``),
other jobs' folders and results, and the database, and read the environment of the runner
and the scheduler through ``/proc``. Where the kernel has Landlock (Linux 5.13 and later,
unprivileged), the runner restricts the activity's process tree before it starts:

- writing, creating, removing and renaming files is allowed only beneath the work folder,
  the activity's private temporary folder (``JOB_DIR/tmp``, its ``TMPDIR``), ``/dev/shm``,
  and the system's temporary folders when they hold none of the protected folders (the data
  folder, the OPUS installation and its Python); besides, the activity may write its own
  stdout and stderr files (``> /dev/stderr`` opens them by name) and the harmless devices
  (``/dev/null``, ``/dev/tty``...); no device node may be created;
- Landlock also forbids a sandboxed process to trace or read the memory of any process
  outside its sandbox (the runner, the scheduler, other jobs), and, from Landlock ABI 6 on,
  to send them signals. It does not hide ``/proc/PID/environ`` (measured on Linux 6.18):
  the runner's environment holds nothing secret (:mod:`opus.execution.local`), and the
  runner, the scheduler and the web processes are not dumpable (:func:`not_dumpable`),
  which closes their ``environ`` to other processes of the account, unless it is root.

Reading files is not restricted (the activity needs its programs and data). Without
Landlock the activity runs as before; ``activity.pgid`` is then only trusted for processes
of the job (:func:`opus.execution.local.kill_activity_group`). Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_VERSION_FLAG = 1
_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_DUMPABLE = 4

WRITE_FILE = 1 << 1
REMOVE_DIR, REMOVE_FILE = 1 << 4, 1 << 5
MAKE_CHAR, MAKE_DIR, MAKE_REG, MAKE_SOCK = 1 << 6, 1 << 7, 1 << 8, 1 << 9
MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
SCOPE_SIGNAL = 1 << 1  # ABI 6

_libc = ctypes.CDLL(None, use_errno=True)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 without Landlock."""
    if not sys.platform.startswith("linux"):
        return 0
    version = int(_libc.syscall(_CREATE_RULESET, None, 0, _VERSION_FLAG))
    return max(version, 0)


def not_dumpable() -> None:
    """Make this process's memory and environment unreadable to other processes of the
    account (``/proc/PID/environ``, ``mem``; ptrace), as for a setuid program."""
    if sys.platform.startswith("linux"):
        _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _handled(abi: int) -> int:
    rights = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG
              | MAKE_SOCK | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM)
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


def _inside(path: Path, other: Path) -> bool:
    return path == other or path.is_relative_to(other) or other.is_relative_to(path)


def writable_folders(work_dir: Path, tmp_dir: Path, protected: Iterable[Path]
                     ) -> list[Path]:
    """Where the activity may write: its folders, /dev/shm, and the system's temporary
    folders that neither hold nor lie in a protected folder."""
    guarded = [Path(os.path.realpath(p)) for p in protected]
    shared = [Path(os.path.realpath(p)) for p in ("/tmp", "/var/tmp", "/dev/shm")]
    return [work_dir, tmp_dir] + [p for p in shared if p.is_dir()
                                  and not any(_inside(p, g) for g in guarded)]


#: Device files an activity may open for writing.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/random", "/dev/urandom")


def restriction(work_dir: Path, tmp_dir: Path, streams: Iterable[Path],
                protected: Iterable[Path]) -> Callable[[], None] | None:
    """A function for ``Popen(preexec_fn=...)`` that confines the child (and what it
    starts) to writing where :func:`writable_folders` says; None without Landlock, an
    OSError if it cannot be built (``streams`` must exist). The ruleset is built here, in
    the runner; the child only enforces it."""
    abi = abi_version()
    if abi < 1:
        return None
    handled = _handled(abi)
    attr = _RulesetAttr(handled, 0, SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 8
    ruleset = int(_libc.syscall(_CREATE_RULESET, ctypes.byref(attr), size, 0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "cannot create a Landlock ruleset")
    file_rights = WRITE_FILE | (TRUNCATE if abi >= 3 else 0)
    files = [Path(name) for name in DEVICES if os.path.exists(name)] + list(streams)
    rules = [(folder, handled & ~(MAKE_CHAR | MAKE_BLOCK))
             for folder in writable_folders(work_dir, tmp_dir, protected)]
    rules += [(path, file_rights) for path in files]
    try:
        for path, allowed in rules:
            _allow(ruleset, path, allowed)
    except OSError:
        os.close(ruleset)
        raise

    def enforce() -> None:  # in the child, between fork and exec
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 \
                or _libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot enter the Landlock sandbox")
        os.close(ruleset)

    enforce.ruleset = ruleset  # type: ignore[attr-defined]
    return enforce


def _allow(ruleset: int, path: Path, allowed: int) -> None:
    descriptor = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneath(allowed, descriptor)
        if _libc.syscall(_ADD_RULE, ruleset, _PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"cannot allow writing to {path}")
    finally:
        os.close(descriptor)


def release(enforce: Callable[[], None] | None) -> None:
    """Close the runner's copy of the ruleset once the child has started."""
    ruleset = getattr(enforce, "ruleset", None)
    if ruleset is not None:
        os.close(ruleset)
