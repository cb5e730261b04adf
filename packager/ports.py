"""Every port a ``run`` listens on, bound before any pipeline starts: HTTP, RTMP, RTMPS, SRT.

A busy port stops the start with one line (:class:`ListenError`), never a
traceback, and nothing has been encoded by then.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssl import SSLContext

    from packager.tls import ServerTls


class ListenError(Exception):
    """A port could not be listened on; the message is the line the user sees (after ``packager: ``)."""

    @classmethod
    def of(cls, host: str, port: int, exc: OSError) -> ListenError:
        # asyncio wraps bind errors in a long message; the errno's own text is the useful part
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or str(exc))
        return cls(f"cannot listen on {host}:{port}: {reason.lower()}")


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (the first address ``host`` resolves to)."""
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
            0
        ]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop (TIME_WAIT)
        sock.bind(addr)
        sock.listen(4096)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ListenError.of(host, port, exc) from None
    sock.setblocking(False)
    return sock


def check_udp(host: str, port: int) -> None:
    """ListenError when UDP ``host:port`` is taken: libsrt's own bind error does not say why."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((socket.gethostbyname(host), port))
    except OSError as exc:
        raise ListenError.of(host, port, exc) from None


class Ports:
    """Every port ``run`` listens on: the origin's socket and the ingest servers (RTMP, RTMPS, SRT).

    With ``--origin-workers`` the HTTP port is only *reserved* (bound, never listening) while workers serve it."""

    def __init__(self) -> None:
        self.http: socket.socket | None = None
        self.reserved: socket.socket | None = None
        self.servers: list[object] = []
        self.transport: Any = None  # origin.transport.Transport: the origin's TLS and redirect port

    async def close(self) -> None:
        for server in self.servers:
            await server.close()  # type: ignore[attr-defined]
        self.servers.clear()
        for sock in (self.http, self.reserved):
            if sock is not None:
                sock.close()
        self.http = self.reserved = None


async def listen(
    args: argparse.Namespace, ingest: object, gate: object, manager: object, tls: ServerTls | None = None
) -> Ports:
    """Bind the HTTP port and start the ingest servers ``ingest`` turns on; RTMPS uses ``tls``'s context."""
    ports = Ports()
    try:
        if args.origin_workers:
            ports.reserved = _reserve(args.host, args.port)
        elif not args.no_serve:
            ports.http = bind_tcp(args.host, args.port)
        if gate is not None:
            await _start_ingest(ports, args.host, ingest, gate, manager, tls)
    except ListenError:
        await ports.close()
        raise
    return ports


async def _start_ingest(
    ports: Ports, host: str, ingest: object, gate: object, manager: object, tls: ServerTls | None
) -> None:
    if ingest.rtmp_port:  # type: ignore[attr-defined]
        ports.servers.append(await _start_rtmp(host, ingest.rtmp_port, gate, manager))  # type: ignore[attr-defined]
    rtmps_port = ingest.rtmps_port  # type: ignore[attr-defined]
    if rtmps_port:
        if tls is None:  # settings refuse this already; a caller that forgot the certificate gets one line
            raise ListenError(f"cannot listen on {host}:{rtmps_port}: RTMPS needs a TLS certificate and key")
        ports.servers.append(await _start_rtmp(host, rtmps_port, gate, manager, tls.context))
    if ingest.srt_port:  # type: ignore[attr-defined]
        srt = await _start_srt(host, ingest.srt_port, gate, manager)  # type: ignore[attr-defined]
        if srt is not None:
            ports.servers.append(srt)


def _reserve(host: str, port: int) -> socket.socket:
    from origin.workers import reuseport_socket

    try:
        return reuseport_socket(host, port, listen=False)
    except OSError as exc:
        raise ListenError.of(host, port, exc) from None


async def _start_srt(host: str, port: int, gate: object, manager: object) -> object:
    from packager.ingest.bridge import start_srt
    from packager.ingest.srt import SrtUnavailable

    try:
        check_udp(host, port)
        return await start_srt(host, port, gate, manager)  # type: ignore[arg-type]
    except SrtUnavailable as exc:
        print(f"packager: warning: SRT ingest off: {exc}", file=sys.stderr)
        return None
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {str(exc).rsplit(': ', 1)[-1]}") from None


async def _start_rtmp(host: str, port: int, gate: object, manager: object, context: SSLContext | None = None) -> object:
    from packager.ingest.bridge import start_rtmp

    try:
        return await start_rtmp(host, port, gate, manager, context)  # type: ignore[arg-type]
    except OSError as exc:
        raise ListenError.of(host, port, exc) from None
