"""HTTP push ingest: ``PUT``/``POST /ingest/{stream}`` with a chunked body of TS, FLV, MKV or fMP4.

The origin routes the request here (:func:`receive`) and sends the answer this returns.

The key comes as ``?key=KEY`` or ``Authorization: Bearer KEY``. The first
bytes decide the container (:func:`packager.admission.sniff`); anything else
is refused with 415 before any pipeline work. The body is then streamed into
the stream's pipeline as it arrives, with backpressure; the response (sent
when the push ends) says how it ended. Refusals: 401 (no key), 403 (unknown
stream or wrong key), 404 (not a stream name), 409 (already live), 415 (not
an accepted container or not usable media), 422 (over the input limits),
429/503 (limits). A push that sends nothing for ``push_idle_timeout`` seconds
ends with 408, a malformed chunked body with 400; the stream's slate takes
over at once either way. A name that is not a configured stream is never
logged (it may be a key pasted into the URL), and refusal lines are
rate-limited per peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from packager.admission import SNIFF_BYTES, UnsupportedPush, sniff
from packager.ingest.gate import IngestGate, Ticket
from packager.ingest.manager import IngestManager, PublishResult
from packager.ingest.pipe import ByteQueue, ByteQueueClosed
from packager.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
refusals = RateLimitedLog(log)  # one owner: the event loop

FRAMING_POLL_S = 0.2  # how often a waiting read checks for a broken chunked framing


class PushEnded(Exception):
    """The body ended badly: ``status`` and a one-line ``reason`` for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("key")


def _framing_broken(request: web.Request) -> bool:
    """True when aiohttp gave up parsing this connection while our body is still open.

    aiohttp's C parser answers a malformed chunk by queueing a 400 for the
    connection and dropping the body stream without an error, so the reader
    would wait for ever; that queued message is the only trace. No other
    message can be queued while a request body is unfinished."""
    return bool(getattr(request.protocol, "_messages", None))


async def next_chunk(request: web.Request, idle_s: float) -> bytes:
    """The next piece of the body (``b""`` at its end); raises :class:`PushEnded` when idle or malformed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + idle_s
    read = asyncio.ensure_future(request.content.readany())
    try:
        while True:
            done, _ = await asyncio.wait({read}, timeout=max(0.0, min(deadline - loop.time(), FRAMING_POLL_S)))
            if done:
                return read.result()
            if _framing_broken(request):
                raise PushEnded(400, "malformed chunked body")
            if loop.time() >= deadline:
                raise PushEnded(408, f"no data for {idle_s:g} s")
    except HttpProcessingError as exc:  # the pure-Python parser reports bad framing here
        raise PushEnded(400, f"malformed body: {exc.message}") from None
    finally:
        if not read.done():
            read.cancel()


async def read_head(request: web.Request, idle_s: float) -> bytes:
    """The first ``SNIFF_BYTES`` of the body (fewer only if it is shorter)."""
    head = b""
    while len(head) < SNIFF_BYTES:
        chunk = await next_chunk(request, idle_s)
        if not chunk:
            break
        head += chunk
    return head


async def receive(request: web.Request, stream: str, gate: IngestGate, manager: IngestManager) -> tuple[int, str]:
    """Take the push of ``stream`` (a name already checked against the name pattern) to its end.

    Returns the answer's status and one-line reason."""
    peer = request.remote or "?"
    verdict = gate.check(stream, _key(request), protocol="http", peer=peer)
    if not verdict.ok:
        shown = stream if stream in gate.settings.streams else "***"  # an unknown name may be a pasted key
        refusals.warning(
            ("ingest-refused", peer, verdict.status), "ingest %s from %s refused: %s", shown, peer, verdict.reason
        )
        return verdict.status, verdict.reason
    ticket = gate.begin(stream, "http", peer)
    try:
        status, reason = await _push(request, gate, manager, ticket)
    finally:
        gate.end(ticket)
    log.info("ingest %s ended: %s (%d bytes)", stream, reason, ticket.bytes_in)
    return status, f"push ended: {reason}; {ticket.bytes_in} bytes received"


async def _push(request: web.Request, gate: IngestGate, manager: IngestManager, ticket: Ticket) -> tuple[int, str]:
    """Sniff the container, then feed the body to the stream's pipeline; the answer's status and reason."""
    idle_s = manager.settings.push_idle_timeout_s
    try:
        head = await read_head(request, idle_s)
        fmt = sniff(head)
    except PushEnded as end:
        return end.status, end.reason
    except UnsupportedPush as exc:
        return 415, str(exc)
    queue = ByteQueue(read_timeout_s=idle_s)  # a stalled body is a read error for the demuxer, not a hang
    task = asyncio.create_task(manager.publish(ticket.stream, queue, protocol="http", fmt=fmt))
    try:
        status, reason = await _feed(request, gate, ticket, queue, head, idle_s)
    except (ConnectionResetError, asyncio.CancelledError):
        queue.abort()
        with contextlib.suppress(Exception):
            await asyncio.shield(task)
        raise
    result: PublishResult = await task
    if status == 200 and not result.published:
        status = result.status
    return status, reason or result.reason


async def _feed(
    request: web.Request, gate: IngestGate, ticket: Ticket, queue: ByteQueue, head: bytes, idle_s: float
) -> tuple[int, str]:
    """Copy the body into ``queue`` until it ends, the pipeline stops reading, a limit or a bad body ends it."""
    chunk = head
    try:
        while chunk:
            limit = gate.account(ticket, len(chunk))
            if not limit.ok:
                queue.abort()
                return limit.status, limit.reason
            try:
                await queue.put(chunk)
            except ByteQueueClosed:
                break  # the pipeline stopped reading (bad data or stopped)
            chunk = await next_chunk(request, idle_s)
    except PushEnded as end:
        queue.abort()  # the slate takes over now, not after the demuxer's own read timeout
        return end.status, end.reason
    queue.close()
    return 200, ""
