"""Staging a job's file inputs into its working directory before it is submitted.

Uploads and results of earlier jobs are already on the server's shared file system: they
are copied into ``JOB_DIR/work`` under the file name the activity description declares,
never under a name a client chose. A copy, not a hard link: the activity may write in its
work folder, and through a link it would rewrite the upload the server keeps or an earlier
job's result, whose recorded sha256 would then describe bytes no longer served. URLs are
left to the runner, which fetches them on the node with size and time limits. Each input is described in ``job.json`` so that
the runner can hash it and the provenance record can say exactly what was used.

A result of an earlier job is staged only if the job's owner may read it now, as the record
says (:meth:`opus.auth.Viewer.may_read` on the entity's owner and flag): its owner may have
withdrawn it since the job was created.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from opus.activities.model import ActivityDescription
from opus.auth import Viewer
from opus.config import Settings
from opus.diskspace import disk_full, space_problem
from opus.storage.provenance import ProvenanceStore
from opus.uws import inputs
from opus.uws.models import Job


log = logging.getLogger("opus.scheduler")


class StagingError(RuntimeError):
    """An input cannot be provided (its source is gone); the job ends in ERROR."""


def _copy(source: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        shutil.copyfile(source, target)  # a new inode: the activity's own bytes
    except OSError as error:
        if disk_full(error):  # the job ends in ERROR saying so, not "exited with status 1"
            raise StagingError(f"no space left on device writing {target}") from error
        raise


def hold_for_space(settings: Settings) -> bool:
    """Whether the scheduler should hold QUEUED jobs: the data dir has less than
    ``min_free_space`` (or cannot be written). Nothing has run yet, so they wait safely and
    are dispatched when space returns; logged once when the hold starts and once when it
    ends."""
    problem = space_problem(settings.jobs_dir, settings.min_free_space)
    if (problem is not None) != _held.is_set():
        if problem is not None:
            _held.set()
            log.error("QUEUED jobs held: %s", problem)
        else:
            _held.clear()
            log.warning("space is back in %s: dispatching QUEUED jobs again",
                        settings.jobs_dir)
    return problem is not None


_held = threading.Event()


def stage_inputs(settings: Settings, provenance: ProvenanceStore,
                 activity: ActivityDescription, job: Job, job_dir: Path,
                 owner: Viewer) -> list[dict[str, Any]]:
    """Put the job's inputs in place, results of earlier jobs only if the job's ``owner``
    may read them; returns their descriptions for ``job.json``."""
    staged = []
    for entity in activity.used:
        value = job.parameters.get(entity.name)
        if value is None:
            continue
        filename = entity.default_filename or entity.name
        target = job_dir / "work" / filename
        kind = inputs.kind_of(value)
        spec: dict[str, Any] = {"name": entity.name, "filename": filename, "kind": kind}
        if kind == "upload":
            _copy(inputs.upload_path(job_dir, entity.name), target)
            spec["location"] = (f"{settings.base_url}/rest/{job.activity}/{job.job_id}"
                                f"/parameters/{entity.name}")
        elif kind == "entity":
            entity_id = value[len(inputs.ENTITY_PREFIX):]
            source, location = _result_file(settings, provenance, entity.name, entity_id,
                                            owner)
            _copy(source, target)
            spec.update(entity_id=entity_id, location=location)
        else:
            spec.update(url=value, location=value)
        staged.append(spec)
    return staged


def _result_file(settings: Settings, provenance: ProvenanceStore, name: str,
                 entity_id: str, owner: Viewer) -> tuple[Path, str]:
    found = provenance.result_path(entity_id)
    job_id = found[0].job_id if found is not None else None
    if found is None or job_id is None or not owner.may_read(found[0].owner_key,
                                                             found[0].public):
        raise StagingError(f"input {name}: the result {entity_id} is no longer available")
    entity, relative = found
    base = (settings.jobs_dir / job_id).resolve()
    source = (base / relative).resolve()
    if not source.is_relative_to(base) or not source.is_file():
        raise StagingError(f"input {name}: the file of result {entity_id} is gone")
    return source, entity.location or ""
