"""The disk space rules of the UWS service (issue 13, item 3; :mod:`opus.diskspace`).

- A job is accepted only if the data dir can take it: writable, with ``min_free_space``
  bytes free; otherwise 507 Insufficient Storage (RFC 4918 section 11.5), nothing stored.
- A deletion (UWS 1.1 section 2.2.3.2) must work on a full disk, since it is how space is
  freed through the API, and so must the report that ends a job. On PostgreSQL they need
  no space here; on SQLite the database is on the data dir, and one that finds the disk
  full gives up the space reserve and is tried once more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opus.config import Settings
from opus.diskspace import SpaceReserve, disk_full, space_problem
from opus.errors import InsufficientStorageError

log = logging.getLogger("opus.uws")


class JobSpace:
    """Space checks of one :class:`opus.uws.service.JobService`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        size = settings.space_reserve if settings.effective_database_url.startswith(
            "sqlite") else 0
        #: One reserve per use, so that the end of a job that filled the disk does not
        #: take the space a deletion needs.
        self.reserves = {use: SpaceReserve(settings.run_dir / f"space-reserve.{use}", size)
                         for use in ("deletion", "report")}
        self._ensure()

    def _ensure(self) -> None:
        for reserve in self.reserves.values():
            reserve.ensure(self.settings.min_free_space)

    def check(self) -> None:
        """507 unless a new job can be written; (re)makes the reserves when there is room."""
        problem = space_problem(self.settings.data_dir, self.settings.min_free_space)
        if problem is not None:
            raise InsufficientStorageError(problem, retry_after=60)
        self._ensure()

    def with_reserve(self, use: str, write: Callable[[], bool]) -> bool:
        """``write()`` (a ``"deletion"``, or the ``"report"`` that ends a job), once more
        after giving up the reserve of that use if it found the disk full."""
        reserve = self.reserves[use]
        try:
            return write()
        except Exception as error:
            if not disk_full(error) or not reserve.release():
                raise
        log.warning("the disk of the data dir is full: space reserve %s given up",
                    reserve.path)
        return write()
