"""Which peers are trusted reverse proxies, and what they may tell the server.

A request's headers are the client's word. ``X-Forwarded-For``, ``X-Forwarded-Proto``,
``X-Forwarded-Host`` and the identity header of an authenticating proxy are believed only
when the peer of the TCP connection (``REMOTE_ADDR``) is one of the ``trusted_proxies``
(addresses or CIDR networks). ``Host`` is never believed: it names whatever the client
likes.

URLs the server writes (``Location``, result and job hrefs, DataLink ``access_url``, VOSI
``accessURL``) start with the configured ``base_url``. A trusted proxy may replace its
scheme (``X-Forwarded-Proto``: ``http`` or ``https``) and its host (``X-Forwarded-Host``:
a host name or address, optionally with a port); the path of ``base_url`` stays. Of a
comma-separated list the last value counts, the one the nearest proxy (the trusted one)
added; a value that is not a plain scheme or host is ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])"
                   rf"(?::(?P<port>[0-9]{{1,5}}))?")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _last(value: str | None) -> str:
    """The last of a comma-separated header value (the nearest proxy's), stripped."""
    return (value or "").rsplit(",", 1)[-1].strip()


def _plain_host(text: str) -> bool:
    """Whether ``text`` is ``host``, ``host:port`` or ``[v6]:port`` and nothing more."""
    match = _HOST.fullmatch(text)
    return match is not None and int(match.group("port") or 0) <= 65535


class TrustedProxies:
    """The setting ``trusted_proxies``, and the rules above."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in networks)

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` (an address as text) is a trusted proxy."""
        address = _address(peer)
        return address is not None and any(address in network for network in self.networks)

    def client_address(self, environ: Mapping[str, Any]) -> str | None:
        """The client's address: the peer, or, through trusted proxies, the rightmost
        ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries left of it
        are the client's word)."""
        client: str | None = environ.get("REMOTE_ADDR")
        hops = [hop.strip() for hop in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        for hop in reversed([hop for hop in hops if hop]):
            if not self.trusts(client) or _address(hop) is None:
                break
            client = hop
        return client

    def root_url(self, environ: Mapping[str, Any], base_url: str) -> str:
        """The scheme, host and path every written URL starts with, for this request."""
        if not self.networks or not self.trusts(environ.get("REMOTE_ADDR")):
            return base_url
        scheme, netloc, path, _, _ = urlsplit(base_url)
        proto = _last(environ.get("HTTP_X_FORWARDED_PROTO")).lower()
        host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
        if proto in ("http", "https"):
            scheme = proto
        if _plain_host(host):
            netloc = host
        return urlunsplit((scheme, netloc, path, "", ""))
