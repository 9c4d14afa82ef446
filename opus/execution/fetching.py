"""Fetching an input given by URL, on the node, for the runner (standard library only).

Only http and https, within a size and a time limit. Unless the operator allows it
(``fetch_block_private: false``), an address that is private, loopback, link-local,
reserved, multicast or unspecified is refused (server-side request forgery). The host name
is resolved once per connection, and the connection goes to an address that was checked:
resolving it again to connect would let a DNS server answer a public address to the check
and a private one to the connection (DNS rebinding). Each redirect is checked the same way.
HTTPS still verifies the certificate against the host name. Proxies from the environment
are not used: the connection must go where the check looked.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any


class InputProblem(Exception):
    """An input could not be fetched; the job ends in ERROR with this message."""


def checked_addresses(host: str | None, port: int, block_private: bool
                      ) -> list[tuple[Any, ...]]:
    """The addresses (getaddrinfo entries) of ``host`` to connect to, each checked."""
    if not host:
        raise InputProblem("the URL has no host")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise InputProblem(f"cannot resolve {host}: {error}") from None
    if block_private:
        for info in found:
            # sockaddr[0] is the address text for AF_INET / AF_INET6. typeshed also allows
            # the (family, raw bytes) pair CPython gives for a family it does not know: the
            # str() of that int is no IP address, so ip_address() raises and nothing passes.
            address = str(info[4][0])
            try:
                ip = ipaddress.ip_address(address.split("%")[0])
            except ValueError:
                raise InputProblem(f"{host} has an address that is not IP; refused") from None
            if (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                    or ip.is_multicast or ip.is_unspecified):
                raise InputProblem(f"{host} is a private address ({address}); refused")
    return list(found)


def _connect(host: str, port: int, timeout: float, block_private: bool) -> socket.socket:
    """A socket connected to a checked address of ``host`` (the first that answers)."""
    problem: OSError | None = None
    for family, kind, protocol, _name, address in checked_addresses(host, port,
                                                                      block_private):
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as error:
            sock.close()
            problem = error
    raise problem or OSError(f"no address for {host}")


def _handlers(block_private: bool) -> list[urllib.request.BaseHandler]:
    class PinnedHTTP(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = _connect(self.host, self.port, self.timeout or 60, block_private)

    class PinnedHTTPS(http.client.HTTPSConnection):
        def connect(self) -> None:
            sock = _connect(self.host, self.port, self.timeout or 60, block_private)
            self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                sock, server_hostname=self.host)

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(PinnedHTTP, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(PinnedHTTPS, req, context=ssl.create_default_context())

    class CheckedRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                             msg: str, headers: http.client.HTTPMessage,
                             newurl: str) -> urllib.request.Request | None:
            if urllib.parse.urlsplit(newurl).scheme not in {"http", "https"}:
                raise InputProblem("redirected to a URL that is not http(s)")
            # the new host is checked when the pinned connection to it is made
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return [urllib.request.ProxyHandler({}), HTTP(), HTTPS(), CheckedRedirects()]


def fetch(url: str, target: Path, *, max_bytes: int, timeout: float,
          block_private: bool) -> None:
    """Download ``url`` (http/https only) to ``target`` within the limits; redirects are
    checked like the first address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise InputProblem("only http and https URLs are fetched")
    if not parts.hostname:
        raise InputProblem("the URL has no host")
    opener = urllib.request.build_opener(*_handlers(block_private))
    deadline = time.monotonic() + timeout
    size = 0
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "opus-runner"}),
                         timeout=min(timeout, 60)) as response, open(target, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                size += len(block)
                if size > max_bytes:
                    raise InputProblem(f"larger than the limit of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise InputProblem(f"not fetched within {timeout:.0f} s")
                out.write(block)
    except InputProblem:
        target.unlink(missing_ok=True)
        raise
    except urllib.error.URLError as error:
        target.unlink(missing_ok=True)
        if isinstance(error.reason, InputProblem):
            raise error.reason from None
        raise InputProblem(f"cannot fetch {url}: {error}") from None
    except (OSError, ValueError) as error:
        target.unlink(missing_ok=True)
        raise InputProblem(f"cannot fetch {url}: {error}") from None
