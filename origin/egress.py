"""Outbound connection guard: keeps webhook requests away from loopback, link-local and private networks.

A config file edited by a less-trusted operator must not turn the packager
into a way to reach the services next to it (SSRF). :func:`is_private_address`
says whether an address is off limits (loopback, link-local, private, shared
CGNAT, unspecified, multicast, reserved; IPv4 addresses embedded in IPv6 are
judged as IPv4); :func:`private_host` applies it to a URL host (literal
addresses, legacy numeric IPv4 forms and ``localhost``). The load-time check
in :mod:`packager.settings` and the send-time check in :mod:`origin.webhooks`
both use them. :class:`PublicOnlyResolver` wraps aiohttp's resolver and drops
every resolved address that is off limits, so a public-looking name that
resolves (or is rebound) to a private address is refused at connect time with
:class:`EgressRefused`. :func:`client_tls` is the verifying TLS context for
outbound https.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address


class EgressRefused(OSError):
    """An outbound connection the guard will not make; ``str()`` says why. Never worth retrying."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_private_address(ip: IPAddress) -> bool:
    """True if ``ip`` is not a public unicast address: loopback, link-local, private, CGNAT, unspecified,
    multicast, reserved, documentation and the like (anything Python does not call global)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return is_private_address(inner)
    return not ip.is_global or ip.is_multicast or ip.is_reserved


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one (also ``[v6]``, a zone, and numeric IPv4 such as ``127.1``)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # 2130706433, 0x7f.1, 127.1: what sockets accept
    except OSError:
        return None


def private_host(host: str) -> bool:
    """True if a URL host is ``localhost`` (or a name under it) or an off-limits literal address."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    ip = parse_address(name)
    return ip is not None and is_private_address(ip)


def _resolved_private(result: ResolveResult) -> bool:
    ip = parse_address(result["host"])
    return ip is None or is_private_address(ip)  # something unparseable is not let through


class PublicOnlyResolver(AbstractResolver):
    """aiohttp resolver (``TCPConnector(resolver=...)``) that only returns public addresses.

    Wraps ``inner`` (default: aiohttp's :class:`~aiohttp.resolver.ThreadedResolver`); when every address
    a name resolves to is off limits it raises :class:`EgressRefused`, which aiohttp wraps in a
    ``ClientConnectorDNSError`` (see :func:`refusal`). aiohttp never asks a resolver about literal IP
    hosts: check those with :func:`private_host` before connecting."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        public = [r for r in results if not _resolved_private(r)]
        if not public:
            found = ", ".join(dict.fromkeys(r["host"] for r in results)) or "nothing"
            raise EgressRefused(f"{host} resolves only to private addresses ({found})")
        return public

    async def close(self) -> None:
        await self.inner.close()


def refusal(exc: BaseException) -> EgressRefused | None:
    """The :class:`EgressRefused` behind ``exc`` (itself, or what aiohttp wrapped), if there is one."""
    seen: BaseException | None = exc
    for _ in range(8):  # a few wrappers deep at most
        if seen is None or isinstance(seen, EgressRefused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None


def client_tls(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client TLS context: the system CAs, or only ``ca_file`` (PEM) when given."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
