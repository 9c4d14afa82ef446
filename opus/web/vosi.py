"""VOSI 1.1 documents: ``/capabilities`` and ``/availability``, as DALI 1.1 section 2.5
("Capabilities: VOSI-capabilities") and 2.4 ("Availability: VOSI-availability") show them.

The capabilities document has the root ``vosi:capabilities`` (namespace
``http://www.ivoa.net/xml/VOSICapabilities/v1.0``) holding ``capability`` elements of the
VOResource 1.1 type, each with a ``standardID`` and a ``vs:ParamHTTP`` interface
(VODataService 1.1) whose ``accessURL`` is complete (``use="full"``). OPUS declares one
capability per job list with the UWS 1.1 standardID ``ivo://ivoa.net/std/UWS#rest-1.1``
(UWS 1.1 section 2.2.1.1), plus the VOSI capabilities and availability endpoints.

Each capability has one interface without ``securityMethod`` (anonymous access: VOResource
1.1, "services not requiring authentication must provide at least one interface definition
without a securityMethod"), then one interface per accepted authentication scheme, each with
its one ``securityMethod`` (at most one per interface in VOResource 1.1; SSO 2.0 REC section
3: its ``standardID`` names the mechanism), the same ``accessURL`` in all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from lxml import etree

CAPABILITIES_NS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
AVAILABILITY_NS = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VR_NS = "http://www.ivoa.net/xml/VOResource/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

UWS_STANDARD_ID = "ivo://ivoa.net/std/UWS#rest-1.1"
CAPABILITIES_ID = "ivo://ivoa.net/std/VOSI#capabilities"
AVAILABILITY_ID = "ivo://ivoa.net/std/VOSI#availability"

XML_CONTENT_TYPE = "text/xml; charset=UTF-8"


def _capability(parent: etree._Element, standard_id: str, url: str,
                security_methods: Sequence[str], description: str | None = None) -> None:
    capability = etree.SubElement(parent, "capability", standardID=standard_id)
    if description:
        etree.SubElement(capability, "description").text = description
    for method in (None, *security_methods):
        interface = etree.SubElement(capability, "interface",
                                     {f"{{{XSI_NS}}}type": "vs:ParamHTTP", "role": "std"})
        etree.SubElement(interface, "accessURL", use="full").text = url
        if method is not None:
            etree.SubElement(interface, "securityMethod", standardID=method)


def capabilities(root_url: str, job_lists: Iterable[tuple[str, str | None]],
                 security_methods: Sequence[str] = ()) -> bytes:
    """The VOSI capabilities of the server at ``root_url``; ``job_lists`` are
    (activity name, description) pairs, each served at ``{root_url}/rest/{name}``;
    ``security_methods`` the standardIDs of the accepted authentication schemes."""
    root = etree.Element(f"{{{CAPABILITIES_NS}}}capabilities",
                         nsmap={"vosi": CAPABILITIES_NS, "vr": VR_NS, "vs": VS_NS,
                                "xsi": XSI_NS})
    _capability(root, CAPABILITIES_ID, f"{root_url}/capabilities", security_methods)
    _capability(root, AVAILABILITY_ID, f"{root_url}/availability", security_methods)
    for name, description in job_lists:
        _capability(root, UWS_STANDARD_ID, f"{root_url}/rest/{name}", security_methods,
                    f"{name}: {description}" if description else name)
    # lxml has no type information: tostring() without encoding="unicode" gives bytes.
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                      pretty_print=True))


def availability(available: bool = True, note: str | None = None) -> bytes:
    """The VOSI availability document (VOSI 1.1 section 2.2)."""
    root = etree.Element(f"{{{AVAILABILITY_NS}}}availability", nsmap={"vosi": AVAILABILITY_NS})
    etree.SubElement(root, f"{{{AVAILABILITY_NS}}}available").text = \
        "true" if available else "false"
    if note:
        etree.SubElement(root, f"{{{AVAILABILITY_NS}}}note").text = note
    # lxml has no type information: tostring() without encoding="unicode" gives bytes.
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                      pretty_print=True))
