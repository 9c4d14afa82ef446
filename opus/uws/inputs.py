"""Inputs that are files: the entities an activity uses (ProvenanceDM UsageDescription).

A used entity called ``N`` is given like a parameter ``N``, in one of three ways:

- an upload: a multipart/form-data part named ``N`` (UWS 1.1 section 2.2.3.1.1, DALI
  ``param:`` scheme); the job's parameter is then ``param:N`` and the bytes are served at
  ``/{jobs}/{job-id}/parameters/N``;
- a URL (http or https only), fetched by the runner with size and time limits;
- a result of an earlier job, by its entity identifier (``opus:ent-...``) or by its result
  URL on this server; jobs chain this way and the provenance record links them. A product
  may be used by whoever may read it (:class:`opus.auth.AccessPolicy`): one the caller may
  not read is unknown to them (its identifier is refused as an unknown one, its URL taken
  for a URL of elsewhere, which the runner fetches without credentials), and the
  scheduler checks again, for the job's owner, when it stages the input.

Each appears as a ``byReference="true"`` parameter of the job. File names sent by clients
are never used: an input is stored under the entity's name and staged under the file name
the activity description declares.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from opus.activities.model import ActivityDescription, EntityDescription
from opus.diskspace import disk_full
from opus.errors import InsufficientStorageError, ParameterError, PayloadTooLargeError

UPLOAD_PREFIX = "param:"
ENTITY_PREFIX = "opus:"
_ENTITY = re.compile(r"^(?:opus:)?(ent-[0-9a-f]{32})$")
_RESULT_PATH = re.compile(r"/rest/([^/]+)/([0-9a-f]{32})/results/([^/?#]+)$")


class KnownEntity(Protocol):
    """What the UWS core needs to know of a provenance entity."""

    @property
    def id(self) -> str: ...

    @property
    def invalidated_at_time(self) -> dt.datetime | None: ...

    @property
    def owner_key(self) -> str | None: ...

    @property
    def public(self) -> bool: ...


#: Whether the caller may read something of this owner (None: anonymous), published or
#: not: :meth:`opus.auth.AccessPolicy.may_read` for the caller.
MayRead = Callable[[str | None, bool], bool]


class EntityLookup(Protocol):
    """The provenance record, as input references need it (wired in :mod:`opus.services`
    to :class:`opus.storage.provenance.ProvenanceStore`)."""

    def entity(self, entity_id: str) -> KnownEntity | None: ...

    def entity_of_result(self, job_id: str, result_id: str) -> KnownEntity | None: ...


def used_entity(activity: ActivityDescription, name: str) -> EntityDescription | None:
    """The used entity called ``name`` (case-insensitive, like every parameter name)."""
    wanted = name.lower()
    return next((e for e in activity.used if e.name.lower() == wanted), None)


def split_inputs(activity: ActivityDescription, submitted: Mapping[str, str]
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """(inputs by entity name, the other parameters)."""
    inputs: dict[str, str] = {}
    rest: dict[str, str] = {}
    for name, value in submitted.items():
        entity = used_entity(activity, name)
        if entity is None:
            rest[name] = value
        else:
            inputs[entity.name] = value
    return inputs, rest


def upload_names(activity: ActivityDescription, uploads: Mapping[str, BinaryIO],
                 references: Mapping[str, str]) -> dict[str, str]:
    """{multipart part name: used entity name}, refusing parts that are no file input
    of the activity or that duplicate an input given by reference."""
    names: dict[str, str] = {}
    for part in uploads:
        entity = used_entity(activity, part)
        if entity is None:
            accepted = ", ".join(e.name for e in activity.used) or "none"
            raise ParameterError(part[:100], f"is not a file input of {activity.name} "
                                             f"(file inputs: {accepted})")
        if entity.name in references or entity.name in names.values():
            raise ParameterError(entity.name, "given more than once")
        names[part] = entity.name
    return names


def kind_of(value: str) -> str:
    """'upload', 'entity' or 'url' for a stored input value."""
    if value.startswith(UPLOAD_PREFIX):
        return "upload"
    if value.startswith(ENTITY_PREFIX):
        return "entity"
    return "url"


def resolve_reference(entities: EntityLookup, name: str, value: str, may_read: MayRead) -> str:
    """The stored form of an input given by reference, or a ParameterError naming it; a
    product is known only to those who ``may_read`` it."""
    text = value.strip()
    match = _ENTITY.match(text)
    if match is None:
        parts = urlsplit(text)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ParameterError(name, "must be an http(s) URL, the identifier of an earlier "
                                       "result (opus:ent-...), or an uploaded file")
        result = _RESULT_PATH.search(parts.path)
        if result is None:
            return text  # somewhere else: the runner fetches it
        entity = entities.entity_of_result(result.group(2), result.group(3))
        if entity is None or not may_read(entity.owner_key, entity.public):
            return text  # a result URL of another server that looks like ours
        entity_id = entity.id
    else:
        entity_id = match.group(1)
        entity = entities.entity(entity_id)
    if entity is None or not may_read(entity.owner_key, entity.public):
        raise ParameterError(name, f"no result {entity_id} is known here")
    if entity.invalidated_at_time is not None:
        raise ParameterError(name, f"the result {entity_id} was deleted")
    return ENTITY_PREFIX + entity_id


def upload_path(job_dir: Path, name: str) -> Path:
    return job_dir / "uploads" / name


def save_upload(job_dir: Path, name: str, stream: BinaryIO, limit: int) -> int:
    """Copy an uploaded part to the job directory; 413 (and nothing kept) past ``limit``."""
    target = upload_path(job_dir, name)
    job_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.parent.mkdir(exist_ok=True, mode=0o700)
    size = 0
    try:
        with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            for block in iter(lambda: stream.read(1 << 20), b""):
                size += len(block)
                if size > limit:
                    out.close()
                    shutil.rmtree(job_dir, ignore_errors=True)
                    raise PayloadTooLargeError(f"{name}: the upload exceeds the limit of "
                                               f"{limit} bytes")
                out.write(block)
    except OSError as error:
        shutil.rmtree(job_dir, ignore_errors=True)  # nothing kept of a refused job
        if disk_full(error):
            raise InsufficientStorageError(f"no space left on device writing the upload "
                                           f"{name} ({size} bytes read)", 60) from error
        raise
    return size
