"""The DataLink 1.1 ``{links}`` rules: which rows an ID of a job result gets.

DataLink 1.1 section 2 ("The {links} endpoint"): a DALI-sync resource taking ``ID``
(repeatable, section 2.1.1) and ``RESPONSEFORMAT`` (section 2.1.2); its answer (section 3)
is a VOTable whose ``RESOURCE type="results"`` holds the INFO ``standardID``
``ivo://ivoa.net/std/DataLink#links-1.1`` (section 3.3.1, mandatory from 1.1) and one table
with the fields of section 3.2: ``ID``, ``access_url``, ``service_def``, ``error_message``,
``description``, ``semantics``, ``content_type``, ``content_length`` (``long``, unit
``byte``) and the optional 1.1 fields ``content_qualifier``, ``local_semantics``,
``link_auth`` and ``link_authorized`` (``boolean``). One extra column, ``opus_input``
(``FIELD ID="opus_input"``; extra columns are allowed by section 3.2 precisely for this),
holds the value to give an activity's file input to use the result, and the service
descriptors refer to it.

**IDs accepted.** A result's provenance entity (``opus:ent-<hex>`` or ``ent-<hex>``, as
ProvSAP and chained jobs name it) or the result's URL (``.../rest/{activity}/{job}/results/
{result}``). An entity that is no job result (an upload or a URL a job used) gets only its
``#this`` and ``#provenance`` links.

**Rows for one result** (consecutive, as section 3.2 requires; semantics from the core
vocabulary ``http://www.ivoa.net/rdf/datalink/core``, section 3.2.6):

- ``#this``: the result's own URL, content type and size;
- ``#preview``: the preview of the job's other (non-log) results. The rule: a generated
  entity of the activity whose name or role is ``preview`` (gammapy_maps declares one); if
  the activity declares none, the job's one image output (``image/png``, ``image/jpeg`` or
  ``image/gif``) when it has exactly one. The preview itself and the logs get no preview;
- ``#progenitor``: every input the job used (``prov_used``) that the caller may read, at its
  location;
- provenance: the ProvSAP URL of the entity, ``DIRECTION=BACK&DEPTH=ALL``, as
  ``application/x-prov+json``. Its semantics is :data:`PROVENANCE_SEMANTICS`
  (``http://www.w3.org/ns/prov#has_provenance``), not ``#provenance``: the core vocabulary
  has no such term, and section 3.2.6 requires full URIs for concepts outside it;
- ``#auxiliary``: the job's ``stdout`` and ``stderr`` results;
- ``#proc``, one ``service_def`` row per (activity, used entity) accepting the result's
  content type (the used entity's declared content type equals it, or is ``type/*``,
  ``*/*`` or ``application/octet-stream``, or is not declared), pointing at that activity's
  service descriptor (section 4; built by :func:`opus.activities.datalink.service_resource`)
  which is included once in the response with a PARAM for the used entity whose
  ``ref="opus_input"`` pre-sets the input (section 4.3, "params where the values come from
  the results"), so a client chains a new job from the result.

**Access.** Every row passes :class:`opus.auth.AccessPolicy`: an ID of a result or an
entity the caller may not read gets the very row an unknown one gets (``NotFoundFault``,
nothing else known: no existence oracle, hence no ``link_authorized`` false either), and a
progenitor they may not read is left out, as in ProvSAP graphs.

**Errors** (section 3.4). A problem with one ID is a row for it with an ``error_message``
starting ``NotFoundFault`` (unknown, deleted or invisible result) or ``UsageFault`` (not an
identifier this service knows how to read), the semantics of the link that could not be made
and, from 1.1 (section 3.2.4), the content type and size when known. Request-level problems
(an unsupported ``RESPONSEFORMAT``: 415; parameters that cannot be decoded or given twice:
400) are answered with a DALI 1.1 (section 4.4) VOTable error document whose
``INFO name="QUERY_STATUS" value="ERROR"`` starts with the fault name. A request without any
ID is not an error: section 2.1.1 requires a normal response, here an empty table and the
self-describing service descriptor (``utype="adhoc:this"``, section 4.4). At most
:data:`MAX_IDS` distinct IDs are processed; beyond that the table ends with the DALI
``QUERY_STATUS`` ``OVERFLOW`` INFO (section 2.1.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from opus.activities.model import ActivityDescription, EntityDescription
from opus.activities.registry import ActivityRegistry
from opus.auth import ANONYMOUS, AccessPolicy, Identity
from opus.datalink.votable import (
    MAX_IDS,
    NOT_XML,
    Link,
    Links,
    chaining_descriptor,
    descriptor_id,
)
from opus.errors import NotFoundError
from opus.storage.jobs import JobStore
from opus.storage.provenance import EntityRecord, ProvenanceStore, activity_id
from opus.uws.models import Job, JobResult

PROV_JSON = "application/x-prov+json"
#: The semantics of the provenance link. ``provenance`` is no term of the core DataLink
#: vocabulary (http://www.ivoa.net/rdf/datalink/core, as of 2024), and section 3.2.6 wants
#: the full URI of any other concept: W3C PROV-AQ's ``has_provenance`` relation ("the
#: provenance of this resource"), which resolves to its definition.
PROVENANCE_SEMANTICS = "http://www.w3.org/ns/prov#has_provenance"
JOB_DOCUMENT = "application/xml"
#: Longest ID value looked up; anything longer cannot be one of ours.
MAX_ID_LENGTH = 2048
LOG_RESULTS = ("stdout", "stderr")
PREVIEW_NAME = "preview"
PREVIEW_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif"})
#: A used entity declaring one of these accepts any content type.
ANY_CONTENT = frozenset({"*/*", "application/octet-stream"})
ENTITY_ID = re.compile(r"^(?:opus:)?(ent-[0-9a-f]{32})$")
RESULT_PATH = re.compile(r"/rest/([^/]+)/([0-9a-f]{32})/results/([^/?#]+)$")


class LinkFault(Exception):
    """A problem with one ID: becomes its error row (DataLink 1.1 section 3.2.4)."""

    def __init__(self, fault: str, message: str, **known: Any) -> None:
        super().__init__(f"{fault}: {message}")
        self.message = f"{fault}: {message}"
        self.known = known


def media_type(content_type: str | None) -> str | None:
    """The bare media type of a Content-Type value (parameters dropped, lower case)."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def accepts(used: EntityDescription, content_type: str | None) -> bool:
    """Whether the used entity accepts a file of ``content_type``."""
    declared = media_type(used.content_type)
    if declared is None or declared in ANY_CONTENT:
        return True
    given = media_type(content_type)
    if given is None:
        return False
    if declared.endswith("/*"):
        return given.split("/", 1)[0] == declared[:-2]
    return given == declared


@dataclass
class Target:
    """What an ID names: a job result (job and result set) or another entity."""

    entity: EntityRecord | None
    job: Job | None = None
    result: JobResult | None = None


class LinksBuilder:
    """Turns the IDs of one request into rows and service descriptors."""

    def __init__(self, store: JobStore, provenance: ProvenanceStore,
                 registry: ActivityRegistry, policy: AccessPolicy, identity: Identity,
                 root: str) -> None:
        self.store = store
        self.provenance = provenance
        self.registry = registry
        self.policy = policy
        self.identity = identity
        self.root = root
        self.links = Links()

    # URLs
    def result_url(self, activity: str, job_id: str, result_id: str) -> str:
        return f"{self.root}/rest/{activity}/{job_id}/results/{quote(result_id, safe='')}"

    def provenance_url(self, entity_id: str) -> str:
        return f"{self.root}/provsap?ID=opus:{entity_id}&DIRECTION=BACK&DEPTH=ALL"

    def may_read(self, owner_key: str | None, public: bool) -> bool:
        return self.policy.may_read(self.identity, owner_key, public)

    # entry point
    def add(self, ids: Sequence[str]) -> Links:
        unique = list(dict.fromkeys(ids))
        if len(unique) > MAX_IDS:
            unique, self.links.overflow = unique[:MAX_IDS], True
        for value in unique:
            try:
                self.links.rows.extend(self.rows_for(value))
            except LinkFault as fault:
                self.links.rows.append(Link(id=value, semantics="#this",
                                            error_message=fault.message, **fault.known))
        return self.links

    def resolve(self, value: str) -> Target:
        text = value.strip()
        if len(text) > MAX_ID_LENGTH or NOT_XML.search(text):
            raise LinkFault("UsageFault", "not an identifier of an OPUS result")
        match = ENTITY_ID.match(text)
        job_id: str | None
        result_id: str | None
        if match is not None:
            entity = self.provenance.entity(match.group(1))
            if entity is None or not self.may_read(entity.owner_key, entity.public):
                raise LinkFault("NotFoundFault", f"no result {match.group(1)} is known here")
            job_id, result_id = entity.job_id, entity.result_id
        else:
            parts = urlsplit(text)
            found = RESULT_PATH.search(parts.path) \
                if parts.scheme in {"http", "https"} and parts.netloc else None
            if found is None:
                raise LinkFault("UsageFault", "expected the identifier of an OPUS result "
                                              "(opus:ent-...) or a result URL "
                                              "(.../rest/{activity}/{job}/results/{id})")
            job_id, result_id = found.group(2), unquote(found.group(3))
            entity = self.provenance.entity_of_result(job_id, result_id)
            if entity is not None and not self.may_read(entity.owner_key, entity.public):
                raise LinkFault("NotFoundFault", f"no job {job_id} holds this result")
        known = {}
        if entity is not None:
            known = {"content_type": entity.content_type, "content_length": entity.size}
            if entity.invalidated_at_time is not None:
                raise LinkFault("NotFoundFault", f"the result {entity.id} was deleted "
                                                 f"(its job was destroyed or archived)",
                                **known)
            if job_id is None:
                return Target(entity)
        job = self.store.get(job_id) if job_id is not None else None
        if job is None or not self.may_read(job.owner_key, job.public):
            raise LinkFault("NotFoundFault", f"no job {job_id} holds this result",
                            **(known if job is None else {}))
        result = next((r for r in job.results if r.result_id == result_id), None)
        if result is None:
            raise LinkFault("NotFoundFault", f"job {job_id} has no result {result_id!r}",
                            **known)
        return Target(entity, job, result)

    def rows_for(self, value: str) -> list[Link]:
        target = self.resolve(value)
        entity, job, result = target.entity, target.job, target.result
        if job is None or result is None:  # an input from outside (upload, URL)
            assert entity is not None
            return [Link(id=value, semantics="#this", access_url=entity.location,
                         description=f"the input {entity.name or entity.id} of a job",
                         content_type=entity.content_type, content_length=entity.size,
                         local_semantics=entity.name),
                    self.provenance_link(value, entity.id)]
        # link_auth: whether reading the result takes credentials (not for public ones)
        auth = "false" if self.policy.may_read(ANONYMOUS, job.owner_key, job.public) else "true"
        own: dict[str, Any] = dict(link_auth=auth, link_authorized=True)
        opus_input = f"opus:{entity.id}" if entity is not None else \
            self.result_url(job.activity, job.job_id, result.result_id)
        rows = [Link(id=value, semantics="#this",
                     access_url=self.result_url(job.activity, job.job_id, result.result_id),
                     description=f"result {result.result_id} of the {job.activity} job "
                                 f"{job.job_id}",
                     content_type=result.mime_type, content_length=result.size,
                     local_semantics=result.result_id, **own)]
        try:
            activity: ActivityDescription | None = self.registry.get(job.activity)
        except NotFoundError:
            activity = None
        for preview in self.previews(activity, job, result):
            rows.append(Link(id=value, semantics="#preview",
                             access_url=self.result_url(job.activity, job.job_id,
                                                        preview.result_id),
                             description=f"preview ({preview.result_id}) of the "
                                         f"{job.activity} job {job.job_id}",
                             content_type=preview.mime_type, content_length=preview.size,
                             local_semantics=preview.result_id, **own))
        rows.extend(self.progenitors(value, job))
        if entity is not None:
            rows.append(self.provenance_link(value, entity.id))
        for log in job.results:
            if log.result_id in LOG_RESULTS and log.result_id != result.result_id:
                rows.append(Link(id=value, semantics="#auxiliary",
                                 access_url=self.result_url(job.activity, job.job_id,
                                                            log.result_id),
                                 description=f"{log.result_id} of the {job.activity} job "
                                             f"{job.job_id} (log)",
                                 content_type=log.mime_type, content_length=log.size,
                                 local_semantics=log.result_id, **own))
        rows.extend(self.services_for(value, result))
        # opus_input describes the ID, so every row of it carries the value: a client
        # invoking a service descriptor from a #proc row reads it there (section 4.3).
        for row in rows:
            row.opus_input = opus_input
        return rows

    def provenance_link(self, value: str, entity_id: str) -> Link:
        return Link(id=value, semantics=PROVENANCE_SEMANTICS,
                    access_url=self.provenance_url(entity_id),
                    description="how this was made: its provenance (ProvSAP, PROV-JSON; "
                                "ask RESPONSEFORMAT=svg for a picture)",
                    content_type=PROV_JSON, local_semantics="provenance",
                    link_auth="false", link_authorized=True)

    @staticmethod
    def previews(activity: ActivityDescription | None, job: Job,
                 result: JobResult) -> list[JobResult]:
        """The #preview rule of the module docstring."""
        if result.result_id in LOG_RESULTS:
            return []
        produced = {r.result_id: r for r in job.results}
        declared = [e.name for e in (activity.generated if activity else ())
                    if PREVIEW_NAME in {e.name.lower(), (e.role or "").lower()}]
        if declared:
            previews = [produced[name] for name in declared if name in produced]
        else:
            images = [r for r in job.results if r.result_id not in LOG_RESULTS
                      and media_type(r.mime_type) in PREVIEW_IMAGE_TYPES]
            previews = images if len(images) == 1 else []
        return [p for p in previews if p.result_id != result.result_id]

    def progenitors(self, value: str, job: Job) -> list[Link]:
        """#progenitor: the entities the job's activity used (ProvenanceDM ``used``)."""
        used = self.provenance.used_inputs(activity_id(job.job_id))
        rows = []
        for item in used:
            row, role = item.entity, item.role
            if not self.may_read(row.owner_key, row.public):
                continue  # another owner's input: left out, as in ProvSAP
            link = Link(id=value, semantics="#progenitor",
                        description=f"the input {role} the {job.activity} job "
                                    f"{job.job_id} used",
                        content_type=row.content_type, content_length=row.size,
                        local_semantics=role)
            if row.invalidated_at_time is not None:
                link.error_message = (f"NotFoundFault: the input {role} "
                                      f"(opus:{row.id}) was deleted")
            elif row.job_id and row.result_id and (origin := _activity_of(row.location)):
                # a result of this server: its URL as this request reaches the server
                link.access_url = self.result_url(origin, row.job_id, row.result_id)
            else:
                link.access_url = row.location
            if link.access_url is None and link.error_message is None:
                link.error_message = f"NotFoundFault: the input {role} has no location"
            rows.append(link)
        return rows

    def services_for(self, value: str, result: JobResult) -> list[Link]:
        """#proc rows: every activity that accepts this result as one of its inputs."""
        rows = []
        for activity in self.registry:
            for used in activity.used:
                if not accepts(used, result.mime_type):
                    continue
                key = descriptor_id(activity, used)
                if key not in self.links.services:
                    self.links.services[key] = chaining_descriptor(
                        activity, used, f"{self.root}/rest/{activity.name}")
                rows.append(Link(
                    id=value, semantics="#proc", service_def=key,
                    description=f"run the activity {activity.name} on this result (as its "
                                f"input {used.name}): "
                                f"{activity.description or activity.name}",
                    content_type=JOB_DOCUMENT, local_semantics=f"{activity.name}.{used.name}"))
        return rows


def _activity_of(location: str | None) -> str | None:
    """The activity name in a result URL of this server, or None."""
    if not location:
        return None
    found = RESULT_PATH.search(urlsplit(location).path)
    return found.group(1) if found else None


