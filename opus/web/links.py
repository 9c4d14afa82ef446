"""The DataLink 1.1 ``{links}`` endpoint for job results: ``GET|POST /datalink/links?ID=...``.

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
- ``#progenitor``: every input the job used (``prov_used``), at its location;
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import bottle
import sqlalchemy as sa
from bottle import HTTPResponse
from lxml import etree

from opus.activities.datalink import VOTABLE_NS, service_resource
from opus.activities.model import ActivityDescription, EntityDescription
from opus.errors import ClientError, NotFoundError, PermissionDeniedError
from opus.provenance import tables as prov
from opus.provenance.record import activity_id
from opus.uws.models import Job, JobResult
from opus.uws.routes import identity, root_url, submitted_parameters

if TYPE_CHECKING:
    from opus.app import Services

__all__ = ["LINKS_PATH", "LINKS_STANDARD_ID", "Link", "install", "links_document"]

LINKS_PATH = "/datalink/links"
LINKS_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.1"
#: Section 3.1: the preferred media type of a {links} response.
DATALINK_MEDIA_TYPE = "application/x-votable+xml;content=datalink"
VOTABLE_MEDIA_TYPE = "application/x-votable+xml"
PROV_JSON = "application/x-prov+json"
#: The semantics of the provenance link. ``provenance`` is no term of the core DataLink
#: vocabulary (http://www.ivoa.net/rdf/datalink/core, as of 2024), and section 3.2.6 wants
#: the full URI of any other concept: W3C PROV-AQ's ``has_provenance`` relation ("the
#: provenance of this resource"), which resolves to its definition.
PROVENANCE_SEMANTICS = "http://www.w3.org/ns/prov#has_provenance"
JOB_DOCUMENT = "application/xml"
#: Distinct IDs processed per request (section 2.1.1 lets a service set a limit).
MAX_IDS = 100
#: Longest ID value looked up; anything longer cannot be one of ours.
MAX_ID_LENGTH = 2048
LOG_RESULTS = ("stdout", "stderr")
PREVIEW_NAME = "preview"
PREVIEW_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif"})
#: A used entity declaring one of these accepts any content type.
ANY_CONTENT = frozenset({"*/*", "application/octet-stream"})
INPUT_FIELD_ID = "opus_input"

_ENTITY = re.compile(r"^(?:opus:)?(ent-[0-9a-f]{32})$")
_RESULT_PATH = re.compile(r"/rest/([^/]+)/([0-9a-f]{32})/results/([^/?#]+)$")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_XML_ID = re.compile(r"[^A-Za-z0-9._-]")

#: (name, datatype, ucd, unit, description, extra attributes) of the table's FIELDs, in
#: the order of DataLink 1.1 Table 1 (section 3.2), then the OPUS column.
FIELDS: tuple[tuple[str, str, str | None, str | None, str, dict[str, str]], ...] = (
    ("ID", "char", "meta.id;meta.main", None, "Input identifier", {}),
    ("access_url", "char", "meta.ref.url", None, "Link to data or service", {}),
    ("service_def", "char", "meta.ref", None,
     "Reference to a service descriptor resource", {}),
    ("error_message", "char", "meta.code.error", None,
     "Error if an access_url cannot be created", {}),
    ("description", "char", "meta.note", None,
     "Human-readable text describing this link", {}),
    ("semantics", "char", "meta.code", None,
     "Term from a controlled vocabulary describing the link", {}),
    ("content_type", "char", "meta.code.mime", None,
     "Mime-type of the content the link returns", {}),
    ("content_length", "long", "phys.size;meta.file", "byte",
     "Size of the download the link returns", {}),
    ("content_qualifier", "char", None, None,
     "Nature of the content the link returns (product-type vocabulary)", {}),
    ("local_semantics", "char", "meta.id.assoc", None,
     "Identifies corresponding links of different IDs: the OPUS result, input or "
     "activity name", {}),
    ("link_auth", "char", "meta.code", None,
     "Use of the link requires authentication (false, optional, true)", {}),
    ("link_authorized", "boolean", "meta.code", None,
     "The caller is authorized to use the link", {}),
    (INPUT_FIELD_ID, "char", "meta.id", None,
     "The value to give a file input of an OPUS activity to use this result (the "
     "service descriptors refer to this column)", {"ID": INPUT_FIELD_ID}),
)


@dataclass
class Link:
    """One row of the links table (DataLink 1.1 section 3.2)."""

    id: str
    semantics: str
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None
    link_auth: str | None = None
    link_authorized: bool | None = None
    opus_input: str | None = None

    def cells(self) -> list[str | None]:
        authorized = None if self.link_authorized is None else \
            ("true" if self.link_authorized else "false")
        length = None if self.content_length is None else str(self.content_length)
        return [self.id, self.access_url, self.service_def, self.error_message,
                self.description, self.semantics, self.content_type, length,
                self.content_qualifier, self.local_semantics, self.link_auth, authorized,
                self.opus_input]


class LinkFault(Exception):
    """A problem with one ID: becomes its error row (DataLink 1.1 section 3.2.4)."""

    def __init__(self, fault: str, message: str, **known: Any) -> None:
        super().__init__(f"{fault}: {message}")
        self.message = f"{fault}: {message}"
        self.known = known


@dataclass
class Links:
    """What one request produced: the rows and the service descriptors they refer to."""

    rows: list[Link] = field(default_factory=list)
    services: dict[str, etree._Element] = field(default_factory=dict)
    overflow: bool = False


# -- building the document ---------------------------------------------------------------

def _element(parent: etree._Element | None, tag: str, **attributes: str | None
             ) -> etree._Element:
    kept = {key: value for key, value in attributes.items() if value is not None}
    if parent is None:
        return etree.Element(f"{{{VOTABLE_NS}}}{tag}", kept, nsmap={None: VOTABLE_NS})
    return etree.SubElement(parent, f"{{{VOTABLE_NS}}}{tag}", kept)


def xml_text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot carry replaced by U+FFFD (an ID
    echoed back must not break the document)."""
    return _NOT_XML.sub("\ufffd", value)


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def self_description(access_url: str) -> etree._Element:
    """The {links} endpoint describing itself (DataLink 1.1 section 4.4, ``adhoc:this``;
    the descriptor of section 4.5)."""
    resource = _element(None, "RESOURCE", ID="opus-links", name="links", type="meta",
                        utype="adhoc:this")
    _element(resource, "DESCRIPTION").text = (
        "DataLink 1.1 {links} of OPUS job results: give the identifier of a result "
        "(opus:ent-..., as ProvSAP names it) or its URL as ID to get its file, preview, "
        "inputs, provenance, logs and the activities that can process it.")
    for name, value in (("accessURL", access_url), ("standardID", LINKS_STANDARD_ID),
                        ("contentType", DATALINK_MEDIA_TYPE)):
        _element(resource, "PARAM", name=name, datatype="char", arraysize="*", value=value)
    group = _element(resource, "GROUP", name="inputParams")
    id_param = _element(group, "PARAM", name="ID", datatype="char", arraysize="*", value="",
                        ucd="meta.id;meta.main")
    _element(id_param, "DESCRIPTION").text = (
        "Identifier of a job result: opus:ent-<hex>, ent-<hex>, or the result URL "
        "(repeatable).")
    response_format = _element(group, "PARAM", name="RESPONSEFORMAT", datatype="char",
                               arraysize="*", value="")
    _element(response_format, "DESCRIPTION").text = "VOTable (the default) is the only format."
    values = _element(response_format, "VALUES")
    for option in ("votable", VOTABLE_MEDIA_TYPE, DATALINK_MEDIA_TYPE, "text/xml"):
        _element(values, "OPTION", value=option)
    return resource


def links_document(links: Links, self_url: str | None = None, *,
                   error: str | None = None) -> bytes:
    """The VOTable 1.4 {links} response (DataLink 1.1 section 3.3.1); with ``error``, the
    DALI 1.1 (section 4.4) error document: QUERY_STATUS ERROR and an empty table."""
    root = _element(None, "VOTABLE", version="1.4")
    results = _element(root, "RESOURCE", type="results")
    status = _element(results, "INFO", name="QUERY_STATUS",
                      value="OK" if error is None else "ERROR")
    if error is not None:
        status.text = xml_text(error)
    _element(results, "INFO", name="standardID", value=LINKS_STANDARD_ID)
    table = _element(results, "TABLE", name="links")
    for name, datatype, ucd, unit, description, extra in FIELDS:
        column = _element(table, "FIELD", name=name, datatype=datatype,
                          arraysize="*" if datatype == "char" else None, ucd=ucd, unit=unit,
                          **extra)
        _element(column, "DESCRIPTION").text = description
    tabledata = _element(_element(table, "DATA"), "TABLEDATA")
    for link in links.rows:
        tr = _element(tabledata, "TR")
        for cell in link.cells():
            _element(tr, "TD").text = None if cell is None else xml_text(cell)
    if links.overflow:
        _element(results, "INFO", name="QUERY_STATUS", value="OVERFLOW").text = (
            f"only the first {MAX_IDS} distinct ID values were processed")
    for resource in links.services.values():
        root.append(resource)
    if self_url is not None:
        root.append(self_description(self_url))
    return _serialize(root)


def error_document(message: str) -> bytes:
    """A DALI 1.1 (section 4.4) VOTable error document; ``message`` starts with one of the
    faults of DataLink 1.1 section 3.4. It keeps the (empty) links table, so that it is a
    well-formed {links} response for clients and validators that expect one."""
    return links_document(Links(), error=message)


# -- resolving IDs -----------------------------------------------------------------------

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


def descriptor_id(activity: ActivityDescription, used: EntityDescription) -> str:
    """XML ID of the service descriptor for ``activity`` fed through ``used``: the
    ``opus-{name}`` of :mod:`opus.activities.datalink`, qualified by the input when the
    activity has several."""
    base = f"opus-{_NOT_XML_ID.sub('_', activity.name)}"
    if len(activity.used) <= 1:
        return base
    return f"{base}.{_NOT_XML_ID.sub('_', used.name)}"


def chaining_descriptor(activity: ActivityDescription, used: EntityDescription,
                        access_url: str) -> etree._Element:
    """The activity's service descriptor (DataLink 1.1 section 4), with one PARAM per used
    entity: ``used`` takes its value from the ``opus_input`` column (``ref``, section 4.3),
    the others are left to the user."""
    resource = service_resource(activity, access_url)
    resource.set("ID", descriptor_id(activity, used))
    group = resource.find(f"{{{VOTABLE_NS}}}GROUP[@name='inputParams']")
    assert group is not None
    for position, entity in enumerate(activity.used):
        param = etree.Element(f"{{{VOTABLE_NS}}}PARAM", name=entity.name, datatype="char",
                              arraysize="*", value="")
        kind = f" ({entity.content_type})" if entity.content_type else ""
        if entity is used:
            param.set("ref", INPUT_FIELD_ID)
            text = f"The result to use as the input {entity.name}{kind}: set from the " \
                   f"{INPUT_FIELD_ID} column."
        else:
            text = f"The input {entity.name}{kind}: the identifier of a result " \
                   "(opus:ent-...), its URL, or any http(s) URL (required)."
        if entity.description:
            text = f"{entity.description} {text}"
        etree.SubElement(param, f"{{{VOTABLE_NS}}}DESCRIPTION").text = text
        group.insert(position, param)
    return resource


@dataclass
class Target:
    """What an ID names: a job result (job and result set) or another entity."""

    entity: Any | None  # a prov_entity row
    job: Job | None = None
    result: JobResult | None = None


class LinksBuilder:
    """Turns the IDs of one request into rows and service descriptors."""

    def __init__(self, services: "Services", root: str) -> None:
        self.services = services
        self.root = root
        self.engine = services.store.engine
        self.identity = identity()
        self.links = Links()

    # URLs
    def result_url(self, activity: str, job_id: str, result_id: str) -> str:
        return f"{self.root}/rest/{activity}/{job_id}/results/{quote(result_id, safe='')}"

    def provenance_url(self, entity_id: str) -> str:
        return f"{self.root}/provsap?ID=opus:{entity_id}&DIRECTION=BACK&DEPTH=ALL"

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

    def entity_row(self, connection: sa.Connection, **where: str) -> Any | None:
        clauses = [getattr(prov.entity.c, key) == value for key, value in where.items()]
        return connection.execute(sa.select(prov.entity).where(*clauses)).first()

    def resolve(self, value: str) -> Target:
        text = value.strip()
        if len(text) > MAX_ID_LENGTH or _NOT_XML.search(text):
            raise LinkFault("UsageFault", "not an identifier of an OPUS result")
        match = _ENTITY.match(text)
        with self.engine.connect() as connection:
            if match is not None:
                entity = self.entity_row(connection, id=match.group(1))
                if entity is None:
                    raise LinkFault("NotFoundFault", f"no result {match.group(1)} is known "
                                                     "here")
                job_id, result_id = entity.job_id, entity.result_id
            else:
                parts = urlsplit(text)
                found = _RESULT_PATH.search(parts.path) \
                    if parts.scheme in {"http", "https"} and parts.netloc else None
                if found is None:
                    raise LinkFault("UsageFault", "expected the identifier of an OPUS result "
                                                  "(opus:ent-...) or a result URL "
                                                  "(.../rest/{activity}/{job}/results/{id})")
                job_id, result_id = found.group(2), unquote(found.group(3))
                entity = self.entity_row(connection, job_id=job_id, result_id=result_id)
        known = {}
        if entity is not None:
            known = {"content_type": entity.content_type, "content_length": entity.size}
            if entity.invalidated_at_time is not None:
                raise LinkFault("NotFoundFault", f"the result {entity.id} was deleted "
                                                 f"(its job was destroyed or archived)",
                                **known)
            if job_id is None:
                return Target(entity)
        job = self.services.store.get(job_id)
        if job is None:
            raise LinkFault("NotFoundFault", f"no job {job_id} holds this result", **known)
        try:
            self.services.jobs.policy.check_read(self.identity, job)
        except PermissionDeniedError as error:
            raise LinkFault("NotFoundFault", f"{error.message}", link_auth="true",
                            link_authorized=False) from None
        result = next((r for r in job.results if r.result_id == result_id), None)
        if result is None:
            raise LinkFault("NotFoundFault", f"job {job_id} has no result {result_id!r}",
                            **known)
        return Target(entity, job, result)

    def rows_for(self, value: str) -> list[Link]:
        target = self.resolve(value)
        entity, job, result = target.entity, target.job, target.result
        if job is None or result is None:  # an input from outside (upload, URL)
            return [Link(id=value, semantics="#this", access_url=entity.location,
                         description=f"the input {entity.name or entity.id} of a job",
                         content_type=entity.content_type, content_length=entity.size,
                         local_semantics=entity.name),
                    self.provenance_link(value, entity.id)]
        auth = "true" if job.owner_id is not None else "false"
        own = dict(link_auth=auth, link_authorized=True)
        opus_input = f"opus:{entity.id}" if entity is not None else \
            self.result_url(job.activity, job.job_id, result.result_id)
        rows = [Link(id=value, semantics="#this",
                     access_url=self.result_url(job.activity, job.job_id, result.result_id),
                     description=f"result {result.result_id} of the {job.activity} job "
                                 f"{job.job_id}",
                     content_type=result.mime_type, content_length=result.size,
                     local_semantics=result.result_id, **own)]
        try:
            activity: ActivityDescription | None = self.services.registry.get(job.activity)
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
        query = (sa.select(prov.used.c.role, prov.entity)
                 .join(prov.entity, prov.entity.c.id == prov.used.c.entity_id)
                 .where(prov.used.c.activity_id == activity_id(job.job_id))
                 .order_by(prov.used.c.role, prov.entity.c.id))
        with self.engine.connect() as connection:
            used = connection.execute(query).all()
        rows = []
        for row in used:
            link = Link(id=value, semantics="#progenitor",
                        description=f"the input {row.role} the {job.activity} job "
                                    f"{job.job_id} used",
                        content_type=row.content_type, content_length=row.size,
                        local_semantics=row.role)
            if row.invalidated_at_time is not None:
                link.error_message = (f"NotFoundFault: the input {row.role} "
                                      f"(opus:{row.id}) was deleted")
            elif row.job_id and row.result_id and _activity_of(row.location):
                # a result of this server: its URL as this request reaches the server
                link.access_url = self.result_url(_activity_of(row.location), row.job_id,
                                                  row.result_id)
            else:
                link.access_url = row.location
            if link.access_url is None and link.error_message is None:
                link.error_message = f"NotFoundFault: the input {row.role} has no location"
            rows.append(link)
        return rows

    def services_for(self, value: str, result: JobResult) -> list[Link]:
        """#proc rows: every activity that accepts this result as one of its inputs."""
        rows = []
        for activity in self.services.registry:
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
    found = _RESULT_PATH.search(urlsplit(location).path)
    return found.group(1) if found else None


# -- the route ---------------------------------------------------------------------------

def response_media_type(items: Iterable[tuple[str, str]]) -> str:
    """The Content-Type the RESPONSEFORMAT asks for (DataLink 1.1 section 2.1.2: strip MIME
    parameters; no value, ``votable`` and ``application/x-votable+xml`` give VOTable), or a
    ClientError."""
    values = [value for key, value in items if key.upper() == "RESPONSEFORMAT"]
    if len(values) > 1:
        raise ClientError("UsageFault: RESPONSEFORMAT given more than once")
    if not values or not values[0].strip():
        return DATALINK_MEDIA_TYPE
    requested = values[0].strip()
    bare = media_type(requested)
    if bare == "votable":
        return DATALINK_MEDIA_TYPE
    if bare in {VOTABLE_MEDIA_TYPE, "text/xml"}:
        # DALI 1.1 section 3.2.5: a media type asked for is the Content-Type given.
        return requested if "content=datalink" in requested.replace(" ", "") else bare
    error = ClientError(f"UsageFault: RESPONSEFORMAT={requested!r} is not supported; "
                        f"use votable or {VOTABLE_MEDIA_TYPE}")
    error.status = 415
    raise error


def install(app: bottle.Bottle, services: "Services") -> None:
    """Add ``GET|POST /datalink/links`` (a DALI-sync resource: both methods)."""

    @app.route(LINKS_PATH, method=["GET", "POST"])
    def links() -> HTTPResponse:
        try:
            items = submitted_parameters()
            content_type = response_media_type(items)
        except ClientError as error:
            message = error.message if error.message.startswith("UsageFault") \
                else f"UsageFault: {error.message}"
            return HTTPResponse(body=error_document(message), status=error.status,
                                headers={"Content-Type": VOTABLE_MEDIA_TYPE})
        ids = [value for key, value in items if key.upper() == "ID" and value.strip()]
        root = root_url()
        built = LinksBuilder(services, root).add(ids)
        body = links_document(built, f"{root}{LINKS_PATH}" if not ids else None)
        return HTTPResponse(body=body, headers={"Content-Type": content_type})
