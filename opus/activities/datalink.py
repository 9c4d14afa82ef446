"""DataLink service descriptors for activities (DataLink 1.1, section 4 "Service Descriptors").

Every activity's UWS job list is described by one ``RESOURCE type="meta"
utype="adhoc:service"`` (section 4.1) in a VOTable 1.4 document, so that a VO client
(pyvo's ``DatalinkQuery.from_resource``, TOPCAT) can build the creation request of a job:

- descriptive PARAMs (section 4.2): ``accessURL`` (the job list ``/rest/{name}``, where a
  POST creates a job, UWS 1.1 section 2.2.3.1), ``standardID``
  ``ivo://ivoa.net/std/UWS#rest-1.1`` (UWS 1.1 section 2.2.1.1; the capability accepts GET
  and POST, so clients may POST) and ``contentType`` (the UWS job document a creation
  leads to);
- ``GROUP name="inputParams"`` (section 4.3): one PARAM per activity parameter with its
  datatype, arraysize, xtype (a media type, which DALI 1.1 section 3.3 does not define as
  an xtype, is said in the DESCRIPTION instead), unit, ucd, utype, DESCRIPTION and
  ``VALUES`` (MIN / MAX / OPTION). ``value`` holds the default, as in the standard's own
  examples (empty: the user must give a value), so a client that sends every non-empty
  value sends the defaults, which changes nothing. Then the UWS control parameters a
  creation accepts: ``PHASE`` (``RUN`` to start the job at once), ``RUNID`` and
  ``EXECUTIONDURATION``, with empty values (optional).

The RESOURCE carries ``ID="opus-{name}"`` so that ``{links}`` responses can point their
``service_def`` column at it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from lxml import etree

from opus.activities.model import ActivityDescription, ParameterDescription

__all__ = ["UWS_STANDARD_ID", "service_descriptor", "service_resource"]

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"  # VOTable 1.3 to 1.5; written as 1.4
UWS_STANDARD_ID = "ivo://ivoa.net/std/UWS#rest-1.1"
JOB_CONTENT_TYPE = "application/xml"


def _element(parent: etree._Element | None, tag: str, **attributes: str | None) -> etree._Element:
    """A VOTable element; attributes given as None are left out."""
    kept = {key: value for key, value in attributes.items() if value is not None}
    if parent is None:
        return etree.Element(f"{{{VOTABLE_NS}}}{tag}", kept, nsmap={None: VOTABLE_NS})
    return etree.SubElement(parent, f"{{{VOTABLE_NS}}}{tag}", kept)


def _text_param(parent: etree._Element, name: str, value: str, **attributes: str | None
                ) -> etree._Element:
    return _element(parent, "PARAM", name=name, datatype="char", arraysize="*", value=value,
                    **attributes)


def _input_param(group: etree._Element, p: ParameterDescription, value: str | None) -> None:
    # A media type as xtype (the older OPUS dialect's application/octet-stream for a file)
    # is not a DALI 1.1 xtype (section 3.3): it is said in the DESCRIPTION instead.
    media_type = p.xtype if p.xtype and "/" in p.xtype else None
    param = _element(group, "PARAM", name=p.name, datatype=p.datatype, arraysize=p.arraysize,
                     xtype=None if media_type else p.xtype, unit=p.unit, ucd=p.ucd,
                     utype=p.utype, value=value if value is not None
                     else p.default if p.default is not None else "")
    help_text = p.description or ""
    if media_type:
        help_text = f"{help_text} (a file of type {media_type}; uploads are not accepted " \
                    "yet)".strip()
    if p.required:
        help_text = f"{help_text} (required)".strip()
    if help_text:
        _element(param, "DESCRIPTION").text = help_text
    if p.minimum is not None or p.maximum is not None or p.options:
        values = _element(param, "VALUES")
        if p.minimum is not None:
            _element(values, "MIN", value=p.minimum,
                     inclusive="yes" if p.minimum_inclusive else "no")
        if p.maximum is not None:
            _element(values, "MAX", value=p.maximum,
                     inclusive="yes" if p.maximum_inclusive else "no")
        for option in p.options:
            _element(values, "OPTION", value=option.value, name=option.name)


def service_resource(activity: ActivityDescription, access_url: str,
                     values: Mapping[str, str] | None = None) -> etree._Element:
    """The ``adhoc:service`` RESOURCE describing the job list of ``activity`` at
    ``access_url``; to be added to any VOTable (a ``{links}`` response, for instance).
    ``values`` (by parameter name) replace the defaults: a descriptor opened for a dataset
    carries what the dataset gives (DataLink 1.1 section 4.3)."""
    resource = _element(None, "RESOURCE", ID=f"opus-{activity.name}", name=activity.name,
                        type="meta", utype="adhoc:service")
    description = activity.description or f"Create a job of the OPUS activity {activity.name}"
    _element(resource, "DESCRIPTION").text = (
        f"{description}\nPOST the parameters to accessURL to create a UWS 1.1 job; "
        "add PHASE=RUN to start it at once.")
    _text_param(resource, "accessURL", access_url, ucd="meta.ref.url")
    _text_param(resource, "standardID", UWS_STANDARD_ID)
    _text_param(resource, "contentType", JOB_CONTENT_TYPE)

    group = _element(resource, "GROUP", name="inputParams")
    for parameter in activity.parameters:
        _input_param(group, parameter, (values or {}).get(parameter.name))
    phase = _text_param(group, "PHASE", "", utype="uws:Job.phase")
    _element(phase, "DESCRIPTION").text = "RUN to queue the job at once; leave empty to " \
                                          "create it PENDING (UWS 1.1 section 2.2.3.1)."
    _element(_element(phase, "VALUES"), "OPTION", value="RUN")
    run_id = _text_param(group, "RUNID", "", utype="uws:Job.runId")
    _element(run_id, "DESCRIPTION").text = "A label of your choice for the job."
    duration = _element(group, "PARAM", name="EXECUTIONDURATION", datatype="int", value="",
                        unit="s", utype="uws:Job.executionDuration")
    default = activity.execution_duration
    _element(duration, "DESCRIPTION").text = (
        "Longest run time in seconds (0: the server's limit); default "
        f"{default if default is not None else 'set by the server'}.")
    _element(_element(duration, "VALUES"), "MIN", value="0")
    return resource


def service_descriptor(activity: ActivityDescription, access_url: str,
                       values: Mapping[str, str] | None = None) -> bytes:
    """A VOTable 1.4 document holding only the service descriptor of ``activity``."""
    root = _element(None, "VOTABLE", version="1.4")
    _element(root, "DESCRIPTION").text = f"DataLink service descriptor of the OPUS " \
                                         f"activity {activity.name}"
    root.append(service_resource(activity, access_url, values))
    # lxml has no type information: tostring() without encoding="unicode" gives bytes.
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                      pretty_print=True))
