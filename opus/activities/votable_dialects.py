"""How an ActivityDescription is written in VOTable: the two dialects OPUS reads.

ProvenanceDM 1.0 (section 2.4, "Descriptions", and 2.6, "Activity configuration") defines
the classes but leaves their VOTable serialisation to ProvTAP, so OPUS fixes the mapping
below. A file holds one ``RESOURCE type="meta" utype="voprov:ActivityDescription"``
anywhere in a VOTable of version 1.1 to 1.5 (namespace ``.../VOTable/v1.1``, ``v1.2``,
``v1.3``, or none).

REC dialect (written by :func:`~opus.activities.votable_writer.write_activity`; utypes are
``Class.attribute`` of the ProvenanceDM VO-DML model, ``opus:`` marks OPUS extensions the
model has no attribute for):

==================================  ===========================================================
model                               VOTable
==================================  ===========================================================
name                                ``RESOURCE/@name``, and ``PARAM name="name"``
                                    ``utype="voprov:ActivityDescription.name"`` (must agree)
description                         ``RESOURCE/DESCRIPTION`` (or ``PARAM`` utype
                                    ``voprov:ActivityDescription.description``)
version, docurl, type, subtype      ``PARAM`` utype ``voprov:ActivityDescription.<attribute>``
contact_name, contact_email         ``PARAM`` utype ``voprov:Agent.name`` / ``voprov:Agent.email``
execution_duration, quote           ``PARAM datatype="int"`` (seconds) utype
                                    ``uws:Job.executionDuration`` / ``uws:Job.quote``
command                             ``PARAM name="command"`` utype
                                    ``opus:ActivityDescription.command``: one argv line,
                                    split with :func:`shlex.split`
script                              ``PARAM name="script"`` utype
                                    ``opus:ActivityDescription.script`` (shell text)
parameters                          the ``PARAM`` s of ``GROUP name="inputParams"``;
                                    valueType = datatype/arraysize/xtype, ``value`` = default
                                    (empty: required), ``VALUES/MIN``, ``MAX``, ``OPTION``
used / generated                    ``GROUP`` utype ``voprov:UsageDescription`` /
                                    ``voprov:GenerationDescription``, ``GROUP/@name`` = entity
                                    name (the UWS result id), ``DESCRIPTION``, and ``PARAM`` s
                                    ``role``, ``multiplicity`` (utype
                                    ``voprov:UsageDescription.role`` ...), ``contentType``
                                    (``voprov:DatasetDescription.contentType``, section 2.5.2),
                                    ``defaultFileName`` (``opus:EntityDescription.defaultFileName``:
                                    the file the activity reads or writes in its directory)
==================================  ===========================================================

Older OPUS dialect (read only): ``doculink`` (renamed ``docurl`` in ProvenanceDM 1.0, see its
change log), ``GROUP name="InputParams"``, entity groups inside ``GROUP name="Used"`` /
``name="Generated"`` (utype ``voprov:UsedDescription`` / ``voprov:WasGeneratedBy``), with
``PARAM name="default"`` (utype ``voprov:Entity.id``) as default file name and
``content_type``; ``url`` and other unknown entity PARAMs are ignored.

Top-level and entity PARAMs are recognised by utype first, then by name, both compared
case-insensitively; the tables below say which utypes and names stand for which model
field, in either dialect. The reader is :mod:`opus.activities.votable`, the writer
:mod:`opus.activities.votable_writer`.
"""

from __future__ import annotations

VOTABLE_NAMESPACES = frozenset(
    {"", *(f"http://www.ivoa.net/xml/VOTable/v1.{minor}" for minor in (1, 2, 3))}
)
#: Namespace of VOTable 1.3 to 1.5; written with version="1.4".
VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"

ACTIVITY_UTYPE = "voprov:activitydescription"
USAGE_UTYPES = {"voprov:usagedescription", "voprov:useddescription", "voprov:used"}
GENERATION_UTYPES = {
    "voprov:generationdescription",
    "voprov:wasgeneratedbydescription",
    "voprov:wasgeneratedby",
}

#: Top-level PARAMs: model field -> (utypes, names) that identify it, lower-case.
ACTIVITY_FIELDS = {
    "name": ({"voprov:activitydescription.name"}, {"name"}),
    "description": ({"voprov:activitydescription.description"}, {"description"}),
    "version": ({"voprov:activitydescription.version"}, {"version"}),
    "docurl": (
        {"voprov:activitydescription.docurl", "voprov:activitydescription.doculink"},
        {"docurl", "doculink"},
    ),
    "type": ({"voprov:activitydescription.type"}, {"type"}),
    "subtype": ({"voprov:activitydescription.subtype"}, {"subtype"}),
    "contact_name": ({"voprov:agent.name"}, {"contact_name"}),
    "contact_email": ({"voprov:agent.email"}, {"contact_email"}),
    "execution_duration": ({"uws:job.executionduration"}, {"executionduration"}),
    "quote": ({"uws:job.quote"}, {"quote"}),
    "command": ({"opus:activitydescription.command"}, {"command"}),
    "script": ({"opus:activitydescription.script"}, {"script"}),
}
#: Entity PARAMs, identified by the attribute part of the utype or by name.
ENTITY_FIELDS = {
    "role": {"role"},
    "multiplicity": {"multiplicity"},
    "content_type": {"contenttype", "content_type"},
    "default_filename": {"defaultfilename", "default", "id"},
}
