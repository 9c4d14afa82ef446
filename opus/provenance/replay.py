"""Regenerating a product from its provenance (``POST /provenance/replay``).

Given an entity (or the activity, or the UWS job, that made it), a replay creates a new job
through :meth:`JobService.create` with the recorded activity and parameters
(ProvenanceDM 1.0: the Activity's ActivityDescription and its Parameters, the Entities it
used). It is refused (409) when the result could not be the same because something the
record pins down changed:

- the activity's description: its version, or the sha256 of the description file now on
  disk against ``prov_activity.description_sha256`` (what the runner was dispatched with);
- the activity's program, when its sha256 was recorded (``script_sha256``);
- an input: a result of an earlier job (``opus:ent-...``) that was deleted (invalidated)
  or whose file no longer has the recorded sha256; an uploaded file (``param:NAME``) that is
  gone or changed. URL inputs are fetched again by the new run and compared afterwards.

``FORCE=true`` overrides these (the overridden problems are recorded with the replay);
problems that make a replay impossible (the activity is gone, a deleted input, a lost
upload) are refused whatever FORCE says.

When the new run has ended, :func:`replay_status` compares, per result id, the sha256 of
the new products with the originals ("identical", "different", "missing", or "extra" for a
product the original run did not make), stores the verdict once, and links each new product
to the one it regenerates (``prov_replay_pair``, in PROV-DM terms ``alternateOf``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import sqlalchemy as sa

from opus.activities.model import ActivityDescription
from opus.auth import Identity
from opus.db import write_lock
from opus.errors import ClientError, NotFoundError, ParameterError
from opus.provenance import tables as t
from opus.provenance.provsap import local_id
from opus.provenance.replay_tables import replay
from opus.uws import params
from opus.uws.models import Job, utcnow
from opus.uws.tables import results as results_table

if TYPE_CHECKING:
    from opus.app import Services

_ENTITY_VALUE = re.compile(r"^opus:(ent-[0-9a-f]{32})$")
_BOOLEAN = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
UPLOAD_PREFIX = "param:"


class ReplayRefusedError(ClientError):
    """The run cannot be replayed as recorded (409 Conflict: the state of the server, not
    the request, is in the way)."""

    status = 409


@dataclass
class Checks:
    """What stands between a recorded run and its replay."""

    #: Problems FORCE=true may override.
    problems: list[str] = field(default_factory=list)
    #: Problems that make the replay impossible.
    blocking: list[str] = field(default_factory=list)
    #: Things not checked beforehand (URL inputs), for the record.
    notes: list[str] = field(default_factory=list)
    #: Uploaded inputs to send again: {input name: file}.
    uploads: dict[str, Path] = field(default_factory=dict)


@contextlib.contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction as the job store makes them (SQLite: file lock, BEGIN IMMEDIATE)."""
    with write_lock(engine), engine.connect() as connection:
        connection.execution_options(write=True)
        with connection.begin():
            yield connection


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _boolean(name: str, text: str | None) -> bool:
    if text is None:
        return False
    try:
        return _BOOLEAN[text.strip().lower()]
    except KeyError:
        raise ParameterError(name, f"must be true or false (got {params.shown(text)})") from None


def _single(name: str, items: Sequence[tuple[str, str]]) -> str | None:
    values = [value for key, value in items if key.upper() == name]
    if len(values) > 1:
        raise ParameterError(name, "given more than once")
    return values[0] if values else None


# -- what is replayed ------------------------------------------------------------------
def original_activity(connection: sa.Connection, given: str,
                      namespace: str) -> dict[str, Any]:
    """The recorded activity behind ``given`` (an entity, an activity or a job id)."""
    node = local_id(given, namespace)
    if node.startswith("ent-"):
        row = connection.execute(sa.select(t.was_generated_by.c.activity_id)
                                 .where(t.was_generated_by.c.entity_id == node)).first()
        if row is None:
            if connection.execute(sa.select(t.entity.c.id)
                                  .where(t.entity.c.id == node)).first():
                raise ParameterError("ID", f"{given} was not generated by a run of this "
                                           f"server (it is an input); give a product")
            raise NotFoundError(f"ID: no provenance record for {given}")
        node = row.activity_id
    row = connection.execute(sa.select(t.activity).where(t.activity.c.id == node)).first()
    if row is None:
        raise NotFoundError(f"ID: no provenance record for {given} (a job's provenance is "
                            f"recorded when it ends)")
    return dict(row._mapping)


def recorded_parameters(connection: sa.Connection, activity_id: str) -> dict[str, str]:
    return {row.name: row.value for row in connection.execute(
        sa.select(t.parameter.c.name, t.parameter.c.value)
        .where(t.parameter.c.activity_id == activity_id))}


def recorded_inputs(connection: sa.Connection, activity_id: str) -> dict[str, dict[str, Any]]:
    """{role: used entity row} of a run (the inputs it used)."""
    e = t.entity
    return {row.role: dict(row._mapping) for row in connection.execute(
        sa.select(t.used.c.role, e).join(e, e.c.id == t.used.c.entity_id)
        .where(t.used.c.activity_id == activity_id))}


# -- the checks ------------------------------------------------------------------------
def _short(sha: str | None) -> str:
    return f"{sha[:12]}..." if sha else "none"


def current_script_sha256(activity: ActivityDescription) -> str | None:
    """sha256 of the activity's program as the runner would hash it now (None if unknown:
    an inline script is part of the description and hashed with it)."""
    if activity.script is not None or not activity.command:
        return None
    try:
        from opus.execution.runner import Runner
        from opus.execution.scheduler import activity_command

        with tempfile.TemporaryDirectory() as scratch:
            argv = activity_command(activity, Path(scratch), sys.executable)
            return Runner.script_sha256(list(argv)) if argv else None
    except Exception:  # the runner's rules moved: the description check still holds
        return None


def check_activity(checks: Checks, row: dict[str, Any],
                   activity: ActivityDescription) -> None:
    name = row["name"]
    if row["description_version"] != activity.version:
        checks.problems.append(
            f"the activity {name} is now version {activity.version}; the run used version "
            f"{row['description_version']}")
    current: str | None = None
    if activity.source is not None:
        try:
            current = sha256_file(activity.source)
        except OSError:
            current = None
    recorded = row["description_sha256"]
    if current is None:
        checks.problems.append(f"the description of {name} cannot be read now, so it cannot "
                               f"be shown unchanged")
    elif recorded is None:
        checks.problems.append(f"no sha256 of the description of {name} was recorded for "
                               f"the run, so it cannot be shown unchanged")
    elif current != recorded:
        checks.problems.append(
            f"the description of {name} changed since the run (sha256 {_short(recorded)} "
            f"then, {_short(current)} now)")
    script = current_script_sha256(activity)
    if row["script_sha256"] and script and script != row["script_sha256"]:
        checks.problems.append(
            f"the program of {name} changed since the run (sha256 "
            f"{_short(row['script_sha256'])} then, {_short(script)} now)")


def _result_file(connection: sa.Connection, jobs_dir: Path, job_id: str | None,
                 result_id: str | None) -> Path | None:
    if not job_id or not result_id:
        return None
    row = connection.execute(sa.select(results_table.c.path).where(
        results_table.c.job_id == job_id, results_table.c.result_id == result_id)).first()
    if row is None:
        return None
    base = (jobs_dir / job_id).resolve()
    path = (base / row.path).resolve()
    return path if path.is_relative_to(base) and path.is_file() else None


def _upload_file(jobs_dir: Path, job_id: str | None, name: str) -> Path | None:
    if not job_id:
        return None
    try:
        from opus.uws.inputs import upload_path
    except ImportError:
        return None
    path = upload_path(jobs_dir / job_id, name)
    return path if path.is_file() else None


def check_inputs(checks: Checks, connection: sa.Connection, jobs_dir: Path,
                 row: dict[str, Any], parameters: dict[str, str],
                 activity: ActivityDescription) -> None:
    """Every input of the run still has the bytes it had (ProvenanceDM: the Entities the
    Activity used, with their recorded sha256)."""
    used = recorded_inputs(connection, row["id"])
    input_names = set(used) | {e.name for e in getattr(activity, "used", ())}
    for name, value in parameters.items():
        if name not in input_names:
            continue  # a plain parameter: part of the record, nothing to check
        match = _ENTITY_VALUE.match(value)
        if match:
            entity_id = match.group(1)
            entity = connection.execute(sa.select(t.entity)
                                        .where(t.entity.c.id == entity_id)).first()
            if entity is None:
                checks.blocking.append(f"input {name}: the result {entity_id} is unknown")
            elif entity.invalidated_at_time is not None:
                checks.blocking.append(
                    f"input {name}: the result {entity_id} was deleted "
                    f"({params.format_datetime(entity.invalidated_at_time)})")
            else:
                path = _result_file(connection, jobs_dir, entity.job_id, entity.result_id)
                if path is None:
                    checks.blocking.append(f"input {name}: the file of result {entity_id} "
                                           f"is gone")
                elif entity.sha256 and sha256_file(path) != entity.sha256:
                    checks.problems.append(f"input {name}: the bytes of result {entity_id} "
                                           f"changed since the run")
        elif value.startswith(UPLOAD_PREFIX):
            path = _upload_file(jobs_dir, row["job_id"], value[len(UPLOAD_PREFIX):])
            recorded = (used.get(name) or {}).get("sha256")
            if path is None:
                checks.blocking.append(f"input {name}: the uploaded file is no longer kept "
                                       f"(its job was deleted); upload it to a new job")
                continue
            if recorded and sha256_file(path) != recorded:
                checks.problems.append(f"input {name}: the uploaded file changed since "
                                       f"the run")
            checks.uploads[name] = path
        elif value.startswith(("http://", "https://")):
            checks.notes.append(f"input {name}: {value} is fetched again by the new run; "
                                f"its sha256 is compared when the run ends")


# -- the replay ------------------------------------------------------------------------
def create_replay(services: "Services", identity: Identity,
                  items: Sequence[tuple[str, str]]) -> tuple[Job, dict[str, Any]]:
    """Check and create the replay job; returns (the new job, the original activity row)."""
    for key, _ in items:
        if key.upper() not in {"ID", "FORCE", "PHASE"}:
            raise ParameterError(params.shown(key), "unknown parameter; use ID, FORCE, PHASE")
    given = _single("ID", items)
    if given is None or not given.strip():
        raise ParameterError("ID", "required: an entity, activity or job identifier")
    force = _boolean("FORCE", _single("FORCE", items))
    phase = (_single("PHASE", items) or "RUN").strip().upper()
    if phase not in {"RUN", "PENDING"}:
        raise ParameterError("PHASE", f"must be RUN or PENDING (got {params.shown(phase)})")
    engine = services.store.engine
    checks = Checks()
    with engine.connect() as connection:
        row = original_activity(connection, given, services.settings.provenance_namespace)
        parameters = recorded_parameters(connection, row["id"])
        if row["name"] not in services.registry:
            raise ReplayRefusedError(f"cannot replay {given}: the activity {row['name']!r} "
                                     f"is no longer offered by this server")
        activity = services.registry.get(row["name"])
        check_activity(checks, row, activity)
        check_inputs(checks, connection, services.settings.jobs_dir, row, parameters,
                     activity)
    if checks.blocking:
        raise ReplayRefusedError(f"cannot replay {given}: " + "; ".join(checks.blocking))
    if checks.problems and not force:
        raise ReplayRefusedError(
            f"refusing to replay {given}, the result could differ: "
            + "; ".join(checks.problems) + ". Send FORCE=true to replay anyway.")
    submitted = [(name, value) for name, value in parameters.items()
                 if name not in checks.uploads]
    if phase == "RUN":
        submitted.append(("PHASE", "RUN"))
    job = _create_job(services, identity, row["name"], submitted, checks.uploads)
    with write_transaction(engine) as connection:
        connection.execute(replay.insert().values(
            new_job_id=job.job_id, original_activity_id=row["id"],
            original_job_id=row["job_id"], requested_id=given[:255],
            owner_id=identity.owner_id, forced=force, created=utcnow(),
            checks=json.dumps({"overridden": checks.problems, "notes": checks.notes}),
        ))
    return job, row


def _create_job(services: "Services", identity: Identity, name: str,
                submitted: list[tuple[str, str]], uploads: dict[str, Path]) -> Job:
    with contextlib.ExitStack() as stack:
        files: dict[str, BinaryIO] = {key: stack.enter_context(open(path, "rb"))
                                      for key, path in uploads.items()}
        try:
            if files:
                return services.jobs.create(identity, name, submitted,
                                            uploads=files)  # type: ignore[call-arg]
            return services.jobs.create(identity, name, submitted)
        except ParameterError as error:
            raise ReplayRefusedError(f"the recorded parameters are not accepted by the "
                                     f"current description of {name}: {error.message}") from None
