"""HTTP push ingest: ``PUT``/``POST /ingest/{stream}`` with a chunked body of TS, FLV, MKV or fMP4.

The key comes as ``?key=KEY`` or ``Authorization: Bearer KEY``. The body is
streamed into the stream's pipeline as it arrives, with backpressure; the
response (sent when the push ends) says how it ended. Refusals: 401 (no
key), 403 (unknown stream or wrong key), 409 (already live), 429/503 (limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from origin.handlers import KIND, NAME, STATE
from origin.policy import Kind
from packager.ingest.gate import IngestGate
from packager.ingest.manager import IngestManager
from packager.ingest.pipe import ByteQueue, ByteQueueClosed

log = logging.getLogger(__name__)

GATE = web.AppKey("ingest_gate", IngestGate)
MANAGER = web.AppKey("ingest_manager", IngestManager)


def _reply(request: web.Request, status: int, reason: str) -> web.Response:
    request[KIND] = Kind.OTHER
    cors = request.app[STATE].cors_origin
    return web.Response(
        status=status,
        text=f"{status}: {reason}\n",
        headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": cors},
    )


def _key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("key")


async def ingest(request: web.Request) -> web.StreamResponse:
    stream = request.match_info["stream"]
    if not NAME.match(stream):
        return _reply(request, 404, "no such stream")
    gate, manager = request.app[GATE], request.app[MANAGER]
    verdict = gate.check(stream, _key(request), protocol="http", peer=request.remote or "?")
    if not verdict.ok:
        log.warning("ingest %s from %s refused: %s", stream, request.remote, verdict.reason)
        return _reply(request, verdict.status, verdict.reason)
    ticket = gate.begin(stream, "http", request.remote or "?")
    queue = ByteQueue()
    task = asyncio.create_task(manager.publish(stream, queue, protocol="http"))
    status, reason = 200, ""
    try:
        async for chunk in request.content.iter_any():
            limit = gate.account(ticket, len(chunk))
            if not limit.ok:
                status, reason = limit.status, limit.reason
                break
            try:
                await queue.put(chunk)
            except ByteQueueClosed:
                break  # the pipeline stopped reading (bad data or stopped)
        queue.close()
        result = await task
        if not result.published and status == 200:
            status = 415
        reason = reason or result.reason
    except (ConnectionResetError, asyncio.CancelledError):
        queue.close()
        with contextlib.suppress(Exception):
            await asyncio.shield(task)
        raise
    finally:
        gate.end(ticket)
    if status != 200:
        queue.abort()
    log.info("ingest %s ended: %s (%d bytes)", stream, reason, ticket.bytes_in)
    return _reply(request, status, f"push ended: {reason}; {ticket.bytes_in} bytes received")
