"""Connects the RTMP, RTMPS and SRT servers to the ingest gate (keys, limits) and manager (pipelines).

RTMPS is a second RTMP server on its own port with a TLS context, in front of
the same gate and manager: keys, publisher and bitrate limits, takeover, the
refusal throttle and the stream events apply to both alike (reported with
protocol ``rtmps``); each port has its own connection slots.

Each accepted publisher's FLV stream (RTMP) or MPEG-TS (SRT) is pumped into a
:class:`ByteQueue` that the stream's pipeline reads on its source thread (PyAV).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from ssl import SSLContext

from packager.ingest.gate import IngestGate, Ticket
from packager.ingest.manager import IngestManager, PublishResult
from packager.ingest.pipe import ByteQueue, ByteQueueClosed
from packager.ingest.rtmp import (
    PUBLISH_BADNAME,
    PUBLISH_UNAUTHORIZED,
    Authorizer,
    Decision,
    PublishSession,
    RtmpServer,
)
from packager.ingest.srt import Admission, SrtConnection, SrtServer, StreamId
from packager.peer import peer_host
from packager.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


def authorizer(
    gate: IngestGate, reserved: dict[str, Ticket], refusals: RateLimitedLog | None = None, *, protocol: str = "rtmp"
) -> Authorizer:
    """Checks the key and reserves the stream at once, so two publishers cannot both get in.

    Refusals are logged at most once per interval and peer address (a key-guessing
    client repeats them at will), with the count of those swallowed."""
    refusals = refusals or RateLimitedLog(log)

    def authorize(app: str, stream: str, key: str | None, peer: str) -> Decision:
        if app != "live":
            return Decision(False, stream, f"unknown application {app!r} (use /live)", PUBLISH_BADNAME)
        verdict = gate.check(stream, key, protocol=protocol, peer=peer)
        if verdict.ok:
            reserved[stream] = gate.begin(stream, protocol, peer)
            return Decision(True, stream)
        status = PUBLISH_BADNAME if verdict.status in (409, 503) else PUBLISH_UNAUTHORIZED
        # a broadcaster who typed only the key sends it as the stream name: never log an unknown name
        shown = stream if stream in gate.settings.streams else "***"
        host = peer_host(peer)
        line = (host, f"{protocol}-refused")
        refusals.warning(line, "%s %s: publish to %s refused: %s", protocol, peer, shown, verdict.reason)
        return Decision(False, stream, verdict.reason, status)

    return authorize


def publisher(
    gate: IngestGate, manager: IngestManager, reserved: dict[str, Ticket], *, protocol: str = "rtmp"
) -> Callable[[PublishSession], Awaitable[None]]:
    async def on_publish(session: PublishSession) -> None:
        ticket = reserved.pop(session.stream, None) or gate.begin(session.stream, protocol, session.peer)
        queue = ByteQueue()
        task = asyncio.create_task(
            manager.publish(
                session.stream,
                queue,
                protocol=protocol,
                fmt="flv",
                options={"analyzeduration": "0", "probesize": "32768"},
            )
        )
        try:
            while True:
                data = await session.read(READ_SIZE)
                if not data:
                    break
                verdict = gate.account(ticket, len(data))
                if not verdict.ok:
                    log.warning("%s %s: %s dropped: %s", protocol, session.peer, session.stream, verdict.reason)
                    session.close(verdict.reason)
                    break
                try:
                    await queue.put(data)
                except ByteQueueClosed:
                    session.close("the stream stopped reading this feed")
                    break
            queue.close()
            result = await task
            log.info("%s %s: %s ended: %s", protocol, session.peer, session.stream, result.reason)
        finally:
            gate.end(ticket)
            if not task.done():
                queue.abort()

    return on_publish


async def start_rtmp(
    host: str, port: int, gate: IngestGate, manager: IngestManager, tls: SSLContext | None = None
) -> RtmpServer:
    """An RTMP listener feeding ``gate`` and ``manager``; RTMPS (RTMP over TLS) with a ``tls`` server context."""
    protocol = "rtmp" if tls is None else "rtmps"
    reserved: dict[str, Ticket] = {}
    limits = gate.settings.rtmp_limits
    server = RtmpServer(
        host,
        port,
        authorizer(gate, reserved, protocol=protocol),
        publisher(gate, manager, reserved, protocol=protocol),
        max_sessions=limits.max_connections,
        max_connections_per_peer=limits.max_per_peer,
        max_unauthenticated=limits.max_unauthenticated,
        handshake_timeout_s=limits.publish_timeout_s,
        ssl=tls,
    )
    await server.start()
    log.info("%s: listening on %s://%s:%d/live/{stream}?key=KEY", protocol, protocol, host, server.port)
    return server


class SrtBridge:
    """The gate and manager behind the SRT listener (an ``SrtIngest``); both methods run on the event loop."""

    def __init__(self, gate: IngestGate, manager: IngestManager) -> None:
        self.gate, self.manager = gate, manager
        self._refusals = RateLimitedLog(log)  # a wrong-key flood becomes one line with a count

    async def admit(self, sid: StreamId, peer: str) -> Admission:
        """Handshake time: the key check and the stream's passphrase; reserves nothing."""
        verdict = self.gate.check(sid.stream, sid.key, protocol="srt", peer=peer)
        if not verdict.ok:
            # a broadcaster who pasted the key as the stream name would see it here: never log an unknown name
            shown = sid.stream if sid.stream in self.gate.settings.streams else "***"
            key = ("srt-refused", peer, verdict.status)
            self._refusals.warning(key, "srt %s: publish to %s refused: %s", peer, shown, verdict.reason)
            return Admission(verdict.status, verdict.reason)
        stream = self.gate.settings.streams[sid.stream]
        return Admission(200, "ok", stream.passphrase, stream.pbkeylen)

    async def publish(self, sid: StreamId, peer: str, conn: SrtConnection) -> None:
        """Reserve the stream (check and begin with no await between), feed it, release it on every path."""
        if not self.gate.check(sid.stream, sid.key, protocol="srt", peer=peer).ok:
            return
        ticket = self.gate.begin(sid.stream, "srt", peer)
        try:
            result = await self._feed(ticket, conn)
            log.info("srt %s: %s ended: %s", peer, sid.stream, result.reason)
        finally:
            conn.close()
            self.gate.end(ticket)

    async def _feed(self, ticket: Ticket, conn: SrtConnection) -> PublishResult:
        queue = ByteQueue()

        async def deliver(data: bytes) -> bool:
            verdict = self.gate.account(ticket, len(data))
            if not verdict.ok:
                log.warning("srt %s: %s dropped: %s", ticket.peer, ticket.stream, verdict.reason)
                return False
            try:
                await queue.put(data)
            except ByteQueueClosed:
                return False
            return True

        conn.start(deliver, lambda _reason: queue.close())
        try:
            return await self.manager.publish(
                ticket.stream,
                queue,
                protocol="srt",
                fmt="mpegts",
                options={"analyzeduration": "500000", "probesize": "262144"},
            )
        finally:
            queue.abort()  # the input is done: a deliver still waiting for room returns at once


async def start_srt(host: str, port: int, gate: IngestGate, manager: IngestManager) -> SrtServer:
    """An SRT listener feeding the same gate and manager (MPEG-TS over SRT)."""
    server = SrtServer(host, port, SrtBridge(gate, manager))
    await server.start()
    return server
