"""Peer addresses as ingest limits and events key them: the host of ``"1.2.3.4:5678"`` or ``"[::1]:5"``.

Every new connection comes from a new port, so whatever counts a flood (the
refusal throttle, ``ingest.rejected`` coalescing) must key on the host alone.
"""

from __future__ import annotations

import ipaddress


def peer_host(peer: str) -> str:
    """``peer`` without its port (``"1.2.3.4:5678"`` -> ``"1.2.3.4"``, ``"[::1]:5"`` -> ``"::1"``); else as given."""
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    if peer.count(":") == 1:
        return peer.partition(":")[0]
    return peer


def peer_address(peer: str) -> str | None:
    """The IP address in ``peer`` (``"1.2.3.4"``, ``"1.2.3.4:5678"``, ``"[::1]:5678"``, ``"::1"``), else None."""
    try:
        return str(ipaddress.ip_address(peer_host(peer)))
    except ValueError:
        return None


def format_peer(addr: tuple) -> str:  # type: ignore[type-arg]
    """``host:port`` of a socket address, ``[host]:port`` for IPv6, so :func:`peer_host` reads the host back."""
    host, port = str(addr[0]), addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
