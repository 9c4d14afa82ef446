"""The activities a server offers: every ActivityDescription file of one directory.

A broken file must not take the whole server down, so it is logged, kept in
:attr:`ActivityRegistry.problems` (shown by ``opus activities check``) and skipped; the
good activities are served.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from opus.activities.model import ActivityDescription
from opus.activities.votable import ActivityDescriptionError, Problem, read_activity
from opus.errors import NotFoundError

log = logging.getLogger("opus.activities")


class ActivityRegistry:
    """Activities by name, in the order of their file names."""

    def __init__(self, activities: Iterable[ActivityDescription] = ()) -> None:
        self._activities: dict[str, ActivityDescription] = {}
        self.problems: dict[Path, ActivityDescriptionError] = {}
        for activity in activities:
            self._add(activity)

    @classmethod
    def load(cls, directory: Path) -> ActivityRegistry:
        """Read every ``*.xml`` file of ``directory``; broken files are logged and skipped."""
        registry = cls()
        for path in sorted(Path(directory).glob("*.xml")):
            try:
                activity = read_activity(path)
            except ActivityDescriptionError as exc:
                registry._reject(path, exc)
                continue
            if activity.name in registry._activities:
                first = registry._activities[activity.name].source
                registry._reject(path, ActivityDescriptionError(path, [Problem(
                    None, f"activity {activity.name!r} is already defined in {first}; skipped")]))
                continue
            registry._add(activity)
        log.info("loaded %d activities from %s", len(registry._activities), directory)
        return registry

    def _add(self, activity: ActivityDescription) -> None:
        if activity.name in self._activities:
            raise ValueError(f"duplicate activity name {activity.name!r}")
        self._activities[activity.name] = activity

    def _reject(self, path: Path, error: ActivityDescriptionError) -> None:
        log.error("skipping activity description %s:\n%s", path, error)
        self.problems[path] = error

    def get(self, name: str) -> ActivityDescription:
        """The activity called ``name`` (exact spelling: it is part of the job URL)."""
        try:
            return self._activities[name]
        except KeyError:
            raise NotFoundError(f"no activity named {name!r}") from None

    def names(self) -> list[str]:
        return list(self._activities)

    def __iter__(self) -> Iterator[ActivityDescription]:
        return iter(self._activities.values())

    def __contains__(self, name: object) -> bool:
        return name in self._activities

    def __len__(self) -> int:
        return len(self._activities)
