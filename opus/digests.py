"""sha256 of files, as provenance records them: shared by the runner (which hashes inputs,
outputs and the activity's program) and replays (which check them again). Standard library
only: the runner imports it on every compute node."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def script_sha256(command: Sequence[str]) -> str | None:
    """sha256 of an activity's program: the script an interpreter runs, else the
    executable itself (None if it is not a file here)."""
    name = Path(command[0]).name
    interpreted = name.startswith("python") or name in {"bash", "sh"}
    path = Path(command[1] if interpreted and len(command) > 1 else command[0])
    return sha256_of(path) if path.is_file() else None
