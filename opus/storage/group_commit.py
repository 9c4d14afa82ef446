"""Group commit: the INSERTs of concurrent job creations of one process, in one transaction.

SQLite has one writer, and what a write costs is mostly its commit: every B-tree page the
row touched is appended to the WAL. A job row touches eight (the table and seven indexes
that the lists, the scheduler and the fair dispatch walk), 170-300 us per creation on this
machine against 40 us for the bare stack's five-column row (issue 15). Rows written in one
transaction share those pages, so concurrent creations are grouped: the first to arrive
leads, yields once so that the requests already read by this process can add their rows,
then writes them all with one ``executemany`` and wakes each. No 303 is sent before its
job is durable: every caller returns only after the commit that holds its row, and gets
that commit's error if it failed (a batch that fails is retried row by row, so that one
bad row cannot fail the others).

The primitives are :mod:`threading`'s, which gevent's monkey-patching makes cooperative:
the same code groups greenlets in a gevent worker and threads in a gthread one. PostgreSQL
needs none of this (many writers at once, one round trip each in autocommit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
#: Writes a batch of rows durably (one transaction), or raises.
Writer = Callable[[Sequence[Row]], None]


@dataclass(eq=False)  # entries are compared by identity
class _Entry:
    row: Row
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # handed the leadership by the previous leader
    error: BaseException | None = None


class GroupCommit:
    """Writes rows given by concurrent callers in shared transactions."""

    def __init__(self, write: Writer, max_batch: int = 64) -> None:
        self._write = write
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Entry] = []
        self._leading = False
        #: Rows and transactions written so far (how well rows are grouped).
        self.rows = 0
        self.transactions = 0

    def write(self, row: Row) -> None:
        """Return once ``row`` is committed; raise what its commit raised."""
        entry = _Entry(row)
        with self._lock:
            self._pending.append(entry)
            lead = not self._leading
            self._leading = True
        if not lead:
            entry.done.wait()
            if not entry.lead:
                if entry.error is not None:
                    raise entry.error
                return
        else:
            time.sleep(0)  # let the other ready requests of this process queue their rows
        self._lead(entry)
        if entry.error is not None:
            raise entry.error

    def _lead(self, own: _Entry) -> None:
        with self._lock:
            batch, self._pending = (self._pending[:self.max_batch],
                                    self._pending[self.max_batch:])
            if own not in batch:  # a leader always writes its own row
                batch.append(own)
                self._pending.remove(own)
        written = False
        try:
            self._write_batch(batch)
            written = True
        finally:  # whatever happened, no caller is left waiting and the lead moves on
            if not written:  # the leader was interrupted (a timeout, a worker stopping)
                for entry in batch:
                    entry.error = entry.error or RuntimeError("the group commit was cut short")
            with self._lock:
                successor = self._pending[0] if self._pending else None
                if successor is None:
                    self._leading = False
            for entry in batch:
                if entry is not own:
                    entry.done.set()
            if successor is not None:
                successor.lead = True
                successor.done.set()

    def _write_batch(self, batch: list[_Entry]) -> None:
        try:
            self._write([e.row for e in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                for entry in batch:  # one bad row must not fail the others
                    try:
                        self._write([entry.row])
                    except Exception as single:
                        entry.error = single
        self.transactions += 1
        self.rows += len(batch)
