"""Free space where jobs are kept, and what a full disk looks like (issue 13, item 3).

Standard library only: the runner uses it on the compute nodes. Three uses:

- creation checks the data dir before accepting a job (:func:`space_problem`): with
  PostgreSQL the database lives elsewhere, so without the check a full data dir still
  took jobs it could not stage or run; the answer is 507 (RFC 4918 section 11.5);
- the scheduler holds QUEUED jobs while the same check fails, and dispatches them when
  space returns;
- :func:`disk_full` recognises the error of a write that found no space (ENOSPC, EDQUOT,
  SQLite's SQLITE_FULL), so that it is answered 507 and a job's summary says
  "no space left on device writing ..." instead of an exit status.

On SQLite the database is on the data dir too: a full disk would refuse even a DELETE,
the one request that frees space. :class:`SpaceReserve` keeps a few megabytes in a file that
a deletion gives up when it finds the disk full.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

#: sqlite3's error code for "database or disk is full".
SQLITE_FULL = 13


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` (an OS error, or a database's, wrapped by SQLAlchemy or not)
    means that no space is left on the device."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, OSError):
        return original.errno in (errno.ENOSPC, errno.EDQUOT)
    return getattr(original, "sqlite_errorcode", None) == SQLITE_FULL


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``path`` (or of
    its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def space_problem(path: Path, minimum: int) -> str | None:
    """Why jobs cannot be written under ``path`` now (None: they can): a read-only file
    system, a folder this process may not write, or less than ``minimum`` bytes free."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    stats = os.statvfs(existing)
    if stats.f_flag & os.ST_RDONLY:
        return f"the data dir {path} is on a read-only file system"
    if not os.access(existing, os.W_OK):
        return f"the data dir {path} is not writable"
    free = stats.f_bavail * stats.f_frsize
    if minimum and free < minimum:
        return (f"no space left on device: the data dir {path} has {free} bytes free, "
                f"less than min_free_space ({minimum})")
    return None


class SpaceReserve:
    """A file of ``size`` bytes at ``path`` that stands for space kept back for deletions
    on a full disk (SQLite's writes need a few pages even to delete)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def ensure(self, minimum: int) -> None:
        """Make the reserve if it is missing and the file system has ``minimum`` bytes free
        besides it; a failure leaves no partial file."""
        if not self.size or self.path.exists():
            return
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            if free_bytes(self.path.parent) < self.size + minimum:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                try:
                    os.posix_fallocate(descriptor, 0, self.size)  # really allocated
                except OSError as error:
                    if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    for _ in range(0, self.size, 1 << 16):  # no fallocate here: zeros
                        os.write(descriptor, bytes(1 << 16))
            finally:
                os.close(descriptor)
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()

    def release(self) -> bool:
        """Give the reserve up; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
