"""``opus activities check FILE...``: report every problem of ActivityDescription files.

Output is one line per problem, ``path:line: message`` like a compiler, so editors can jump
to it, or ``path: OK (activity NAME)`` for a good file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from opus.activities.votable import ActivityDescriptionError, read_activity


def check_files(paths: Iterable[Path | str], out: TextIO | None = None) -> int:
    """Check each file; return the exit status: 0 if all are usable, 1 if any has a problem."""
    out = out or sys.stdout
    status = 0
    for path in map(Path, paths):
        try:
            activity = read_activity(path)
        except ActivityDescriptionError as exc:
            print(exc, file=out)
            status = 1
        else:
            print(f"{path}: OK (activity {activity.name})", file=out)
    return status
