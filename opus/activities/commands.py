"""How an activity is started: its argv, from the operator's description (never from user
text), and the hash of the description it was dispatched with. Used by the scheduler (to
start a job) and by replays (to tell whether the program changed since a run)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from opus.activities.model import ActivityDescription
from opus.config import PROJECT_ROOT


def activity_command(activity: ActivityDescription, job_dir: Path,
                     python: str) -> tuple[str, ...] | None:
    """The argv of an activity. Relative executables are found beside the activity
    descriptions (the project root); a ``.py`` executable runs with OPUS's Python; an
    old-dialect ``script`` is written to the job directory and run by bash. All of it is
    operator text from the description: user values only ever travel as environment
    variables and parameters.json."""
    if activity.script is not None:
        script = job_dir / "activity.sh"
        script.write_text(activity.script)
        return ("/bin/bash", str(script))
    if not activity.command:
        return None
    argv = list(activity.command)
    base = (activity.source.parent.parent if activity.source else PROJECT_ROOT)
    executable = Path(argv[0])
    if not executable.is_absolute() and "/" in argv[0]:
        executable = base / executable
        argv[0] = str(executable)
    if argv[0].endswith(".py"):
        argv.insert(0, python)
    return tuple(argv)


def description_sha256(activity: ActivityDescription) -> str | None:
    """sha256 of the description file the job was dispatched with."""
    if activity.source is None:
        return None
    try:
        return hashlib.sha256(activity.source.read_bytes()).hexdigest()
    except OSError:
        return None
