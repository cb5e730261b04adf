"""``GET /events``: the event bus as server-sent events (``text/event-stream``).

Each event is sent as ``id:``, ``event:`` and ``data:`` (one line of JSON)
lines. A client that reconnects with ``Last-Event-ID`` first receives the
events it missed from the bus's bounded backlog (subscription and replay are
taken in one step on the loop, so nothing is missed or repeated), then the
live ones. ``?types=a,b`` picks event types; ``segment.published`` is
frequent and only sent when named. A comment line goes out every 15 s so
proxies keep the connection open. A client too slow to take its events
never holds anyone else up: noisy events (ingest.rejected, rendition
stall/recovery) it has not taken are dropped oldest first, with a comment line
saying how many, and it stays connected; only a lifecycle or segment backlog it
cannot take disconnects it (it reconnects and replays).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from origin.handlers import STATE, _fail, _headers
from origin.policy import Kind
from packager.events import DEFAULT_TYPES, Event, Subscription, parse_event_id, parse_types

RETRY_MS = 2000
MAX_TYPES_TEXT = 512


def parse_filter(values: Sequence[str]) -> frozenset[str] | str:
    """The ``types`` query values as a set of event types, or a reason string for a 400."""
    values = [v for v in values if v]
    if not values:
        return DEFAULT_TYPES
    if len(values) > 1:
        return "types given more than once (use types=a,b)"
    text = values[0]
    if len(text) > MAX_TYPES_TEXT:
        return f"types is longer than {MAX_TYPES_TEXT} characters"
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        return "types has an empty entry"
    try:
        return parse_types(items, "types")
    except ValueError as exc:
        return str(exc)


def parse_last_id(value: str | None) -> str | None:
    """The ``Last-Event-ID`` to replay after (None when absent); ValueError when it is not an event id."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if parse_event_id(value) is None:
        raise ValueError("Last-Event-ID is not an event id this server hands out")
    return value


def frame(event: Event) -> bytes:
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.json}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    bus = st.events
    if bus is None:
        return _fail(request, 404, "no event feed on this server", Kind.EVENTS)
    types = parse_filter(request.query.getall("types", []))
    if isinstance(types, str):
        return _fail(request, 400, types, Kind.EVENTS)
    try:
        last_id = parse_last_id(request.headers.get("Last-Event-ID"))
    except ValueError as exc:
        return _fail(request, 400, str(exc), Kind.EVENTS)
    headers = _headers(request, Kind.EVENTS)
    resp = web.StreamResponse(status=200, headers=headers)
    if request.method == "HEAD":
        await resp.prepare(request)
        return resp
    sub, backlog = bus.subscribe(types, last_id=last_id)
    st.metrics.sse_clients.inc(1)
    try:
        await resp.prepare(request)
        await resp.write(f"retry: {RETRY_MS}\n: connected\n\n".encode() + b"".join(frame(e) for e in backlog))
        await _follow(resp, sub, st.sse_keepalive_s)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        bus.unsubscribe(sub)
        st.metrics.sse_clients.inc(-1)
    return resp


async def _follow(resp: web.StreamResponse, sub: Subscription, keepalive_s: float) -> None:
    """Write live events until the subscription ends; a comment says when noisy ones were dropped."""
    dropped = 0
    while True:
        try:
            event = await asyncio.wait_for(sub.get(), keepalive_s)
        except TimeoutError:
            await resp.write(b": keep-alive\n\n")
            continue
        if event is None:  # the server is shutting down, or this client fell too far behind
            return
        if sub.dropped > dropped:
            await resp.write(f": {sub.dropped - dropped} noisy events dropped (reader behind)\n\n".encode())
            dropped = sub.dropped
        await resp.write(frame(event))


async def close_feeds(app: web.Application) -> None:
    """``on_shutdown``: end every SSE response so the server does not wait for them; stop the bus's timers."""
    bus = app[STATE].events
    if bus is not None:
        bus.close()
