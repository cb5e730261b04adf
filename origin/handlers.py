"""Request handlers: manifests (with LL-HLS blocking reload), media, time, health.

Every path segment a client sends is matched against a strict pattern before
it is used, so nothing outside the store can be named (the player pages are
served by ``origin.players``).
Held requests (blocking playlist reload, preload-hinted parts, the segment in
production) wait on the store's shared wake-ups, never on sleeps or polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiohttp import web

from origin import policy
from origin.cors import CorsPolicy
from origin.metrics import OriginMetrics, RequestRates
from origin.policy import Kind
from origin.publishing import Publishing
from origin.render import RenderCache
from origin.responses import Body, error, send
from origin.signing import signed
from origin.viewers import Viewers
from packager.cmaf.wvtt import from_webvtt
from packager.events import EventBus
from packager.lifecycle import NO_FAILOVERS, StreamEvents
from packager.manifest.timeline import still_producing
from packager.model import (
    INIT_NAME,
    MEDIA_PLAYLIST_NAME,
    StreamView,
    TrackView,
    part_name,
    segment_name,
)
from packager.reader import Position, StoreReader, StreamReader
from packager.redisstore.health import NodeWatch, status_json
from packager.splice import SPLICE_TIMESCALE, Break, breaks
from packager.timebase import iso_from_epoch_s

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # \Z, not $: "$" also matches before a final newline
SEGMENT_FILE = re.compile(r"^([0-9]{1,18})\.m4s\Z")  # [0-9]: \d also matches other scripts' digits
PART_FILE = re.compile(r"^([0-9]{1,18})\.([0-9]{1,6})\.m4s\Z")
TEXT_FILE = re.compile(r"^([0-9]{1,18})\.vtt\Z")  # a subtitle rendition's WebVTT segment
UINT = re.compile(r"^[0-9]{1,18}\Z")


@dataclass
class OriginState:
    store: StoreReader
    cors: CorsPolicy = field(default_factory=CorsPolicy)
    metrics: OriginMetrics = field(default_factory=OriginMetrics)
    cache: RenderCache = field(default_factory=RenderCache)
    pipelines: dict[str, Any] = field(default_factory=dict)
    events: EventBus | None = None  # the /events feed (live store only)
    lifecycle: StreamEvents | None = None  # stream events and rendition watchdog, while the app runs
    rates: RequestRates = field(default_factory=RequestRates)  # requests per stream, for the dashboard
    viewers: Viewers = field(default_factory=Viewers)  # requests and CMCD per stream, for the charts
    publishing: Publishing = field(default_factory=Publishing)  # latency per stage, bitrate per rendition
    sse_keepalive_s: float = 15.0
    ingest: tuple[Any, Any] | None = None  # (IngestGate, IngestManager) when HTTP push is on
    nodes: NodeWatch | None = None  # every stream's encoder nodes, over a shared store


STATE = web.AppKey("origin_state", OriginState)
KIND = web.RequestKey("kind", Kind)
HELD = web.RequestKey("held", bool)
SENT = web.RequestKey("sent_bytes", int)
TOKEN = web.RequestKey("playback_token", str)  # a playback token from the query: manifests carry it on


def allow_origin(request: web.Request) -> str | None:
    """This request's ``Access-Control-Allow-Origin`` value (None: its origin is not allowed)."""
    return request.app[STATE].cors.allow(request.headers.get("Origin"))


def manifest(request: web.Request, body: Body, kind: Kind, headers: dict[str, str]) -> web.Response:
    """Send a manifest, with the request's playback token (if any) on every URI it names."""
    return send(request, signed(body, kind, request.get(TOKEN)), headers)


def _state(request: web.Request) -> OriginState:
    return request.app[STATE]


def _timing(view: StreamView) -> policy.Timing:
    return policy.Timing(float(view.segment_s), float(view.part_s), view.target_duration, True)


def _fail(
    request: web.Request, status: int, reason: str, kind: Kind = Kind.OTHER, stream: StreamReader | None = None
) -> web.Response:
    request[KIND] = kind
    timing = _timing(stream.view()) if stream else None
    headers = policy.response_headers(kind, status, timing, allow_origin=allow_origin(request))
    return error(status, reason, headers)


def _headers(request: web.Request, kind: Kind, stream: StreamReader | None = None) -> dict[str, str]:
    request[KIND] = kind
    view = stream.view() if stream else None
    return policy.response_headers(
        kind,
        200,
        _timing(view) if view else None,
        allow_origin=allow_origin(request),
        ended=bool(view and view.ended),
    )


def _stream(request: web.Request) -> StreamReader | web.Response:
    name = request.match_info["stream"]
    if not NAME.match(name):
        return _fail(request, 404, "no such stream")
    store = _state(request).store
    stream = store.get(name)
    if stream is None:
        if not store.available:
            return _fail(request, 503, "the store is unreachable; try again shortly", Kind.PLAYLIST)
        return _fail(request, 404, f"no stream named {name!r}")
    return stream


def _track(request: web.Request, stream: StreamReader) -> TrackView | web.Response:
    name = request.match_info["track"]
    track = stream.view().track(name) if NAME.match(name) else None
    if track is None:
        return _fail(request, 404, "no such rendition in this stream", stream=stream)
    return track


def _unknowable(request: web.Request, kind: Kind, stream: StreamReader) -> web.Response | None:
    """503 for what cannot be known while the store's backend is unreachable (the live edge may have moved on)."""
    if _state(request).store.available:
        return None
    return _fail(request, 503, "the store is unreachable; try again shortly", kind, stream)


# --------------------------------------------------------------------------- manifests


async def master(request: web.Request) -> web.StreamResponse:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    view = stream.view()
    if not view.tracks or view.starting:  # a ladder listed before every rendition exists would stay short
        return _fail(request, 404, "stream has no media yet", Kind.MASTER, stream)
    return manifest(request, _state(request).cache.master(view), Kind.MASTER, _headers(request, Kind.MASTER, stream))


async def mpd(request: web.Request) -> web.StreamResponse:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    view = stream.view()
    if not view.tracks or view.starting:
        return _fail(request, 404, "stream has no media yet", Kind.MPD, stream)
    # while the shared store is unreachable the last MPD stays served: all it names is in memory, and a
    # player retrying a 503 MPD gives up after a few tries (dash.js), while a stale one only shows no news
    low_latency = request.query.get("ll", "1") not in ("0", "no", "false")
    st = _state(request)
    body = st.cache.mpd(view, low_latency, producing=still_producing(view, st.store.clock.utc_s()))
    return manifest(request, body, Kind.MPD, _headers(request, Kind.MPD, stream))


@dataclass(frozen=True)
class Directives:
    msn: int | None
    part: int | None
    skip: bool


def parse_directives(query: Any) -> Directives | str:
    """The ``_HLS_*`` query parameters, or a reason string for a 400."""
    msn_s, part_s, skip_s = query.get("_HLS_msn"), query.get("_HLS_part"), query.get("_HLS_skip")
    for key in ("_HLS_msn", "_HLS_part", "_HLS_skip"):
        if len(query.getall(key, [])) > 1:
            return f"{key} given more than once"
    if msn_s is not None and not UINT.match(msn_s):
        return "_HLS_msn must be a non-negative integer"
    if part_s is not None and not UINT.match(part_s):
        return "_HLS_part must be a non-negative integer"
    if part_s is not None and msn_s is None:
        return "_HLS_part requires _HLS_msn"
    if skip_s is not None and skip_s not in ("YES", "v2"):
        return "_HLS_skip must be YES or v2"
    return Directives(
        int(msn_s) if msn_s is not None else None,
        int(part_s) if part_s is not None else None,
        skip_s is not None,
    )


def _awaited(view: StreamView, d: Directives) -> Position:
    """The position a blocking reload waits for (past a segment's last part: part 0 of the next one)."""
    assert d.msn is not None
    if d.part is None:
        return Position(d.msn)
    if d.part >= int(view.segment_s / view.part_s):
        return Position(d.msn + 1, 0)
    return Position(d.msn, d.part)


async def _block(
    request: web.Request, stream: StreamReader, track: TrackView, d: Directives
) -> web.Response | Position:
    """Hold a blocking playlist reload until its position is published; the position, or the error answer."""
    kind = Kind.PLAYLIST_BLOCKING
    if (refused := _unknowable(request, kind, stream)) is not None:
        return refused
    view = stream.view()
    want = _awaited(view, d)
    last = track.last_part
    last_msn = last[0] if last else (track.next_part[0] if track.next_part else None)
    if last_msn is None:
        return _fail(request, 503, "no media published yet", kind, stream)
    if want.msn > last_msn + 2 or (want.index is not None and want.msn == last_msn + 2 and want.index > 0):
        return _fail(request, 400, f"_HLS_msn={d.msn} is too far ahead of the live edge ({last_msn})", kind, stream)
    request[HELD] = True
    if not await stream.wait(track.info.name, want, 3 * view.target_duration):
        if not _state(request).store.available:
            return _fail(request, 503, "the store is unreachable; try again shortly", kind, stream)
        return _fail(request, 503, "the requested segment/part did not become available in time", kind, stream)
    return want


async def media_playlist(request: web.Request) -> web.StreamResponse:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    track = _track(request, stream)
    if isinstance(track, web.Response):
        return track
    d = parse_directives(request.query)
    if isinstance(d, str):
        return _fail(request, 400, d, Kind.PLAYLIST, stream)
    kind = Kind.PLAYLIST
    awaited: Position | None = None
    if d.msn is not None and not stream.view().ended:
        kind = Kind.PLAYLIST_BLOCKING
        held = await _block(request, stream, track, d)
        if isinstance(held, web.Response):
            return held
        awaited = held
    view = stream.view()
    skip = d.skip and view.live
    st = _state(request)
    response = manifest(request, st.cache.media(view, track.info.name, skip), kind, _headers(request, kind, stream))
    if awaited is not None and awaited.index is not None:
        part = stream.part(track.info.name, awaited.msn, awaited.index)
        if part is not None and part.published_utc_s:
            released_s = max(0.0, time.time() - part.published_utc_s)
            st.metrics.release.observe(released_s)
            st.publishing.released(stream.name, released_s)
    return response


# --------------------------------------------------------------------------- media


async def media_object(request: web.Request) -> web.StreamResponse:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    track = _track(request, stream)
    if isinstance(track, web.Response):
        return track
    name = request.match_info["name"]
    if track.info.kind == "text":
        return await _text_object(request, stream, track, name)
    if name == INIT_NAME:
        init = stream.init(track.info.name)
        if init is None:
            return _fail(request, 404, "no such rendition in this stream", Kind.INIT, stream)
        return send(request, Body.of(init, stream.started_utc_s), _headers(request, Kind.INIT, stream))
    if name == MEDIA_PLAYLIST_NAME:
        return await media_playlist(request)
    m = PART_FILE.match(name)
    if m:
        return await _part(request, stream, track, int(m.group(1)), int(m.group(2)))
    m = SEGMENT_FILE.match(name)
    if m:
        return await _segment(request, stream, track, int(m.group(1)))
    return _fail(request, 404, "no such object", Kind.OTHER, stream)


async def _text_object(request: web.Request, stream: StreamReader, track: TrackView, name: str) -> web.StreamResponse:
    """A subtitle rendition's playlist, one of its WebVTT segments (HLS) or their ISO BMFF form (DASH: the
    ``wvtt`` init and ``{msn}.m4s``, rendered from the WebVTT file); whole segments only, no parts."""
    if name == MEDIA_PLAYLIST_NAME:
        return await media_playlist(request)
    if name == INIT_NAME:
        init = stream.init(track.info.name)
        if init is None:
            return _fail(request, 404, "no such rendition in this stream", Kind.INIT, stream)
        return send(request, Body.of(init, stream.started_utc_s), _headers(request, Kind.INIT, stream))
    iso = TEXT_FILE.match(name) is None
    m = SEGMENT_FILE.match(name) if iso else TEXT_FILE.match(name)
    if m is None:
        return _fail(request, 404, "no such object", Kind.OTHER, stream)
    kind = Kind.SEGMENT if iso else Kind.SUBTITLE
    msn = int(m.group(1))
    data = stream.segment_bytes(track.info.name, msn)
    if data is not None:
        seg = stream.segment(track.info.name, msn)  # None: out of the window, kept through the deletion grace
        if iso:
            ticks = int(stream.view().segment_s * track.info.timescale)
            start, end = (seg.start, seg.end) if seg else (msn * ticks, (msn + 1) * ticks)
            data = from_webvtt(data, start, end, msn)
        modified = seg.published_utc_s if seg else time.time()
        body = Body.of(data, modified, tag=f"{track.info.name}-{name}-{len(data)}")
        return send(request, body, _headers(request, kind, stream))
    if (body := await _disk_body(stream.file(track.info.name, name))) is not None:
        return send(request, body, _headers(request, kind, stream))
    if (refused := _unknowable(request, kind, stream)) is not None:
        return refused
    return _fail(request, 404, "segment not available", kind, stream)


async def _disk_body(path: Path | None) -> Body | None:
    if path is None:
        return None
    try:
        data = await asyncio.to_thread(path.read_bytes)
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return Body.of(data, mtime, tag=f"{path.name}-{len(data)}-{int(mtime)}")


async def _part(
    request: web.Request, stream: StreamReader, track: TrackView, msn: int, index: int
) -> web.StreamResponse:
    name = track.info.name
    part = stream.part(name, msn, index)
    if part is None and not stream.view().ended and track.next_part == (msn, index):
        # the part advertised by EXT-X-PRELOAD-HINT (or the one being produced right now)
        request[HELD] = True
        await stream.wait(name, Position(msn, index), 3 * stream.view().target_duration)
        part = stream.part(name, msn, index)
    if part is not None:
        body = Body.of(part.data, part.published_utc_s, tag=f"{name}-{msn}.{index}-{part.size}")
        return send(request, body, _headers(request, Kind.PART, stream))
    if (body := await _disk_body(stream.file(name, part_name(msn, index)))) is not None:
        return send(request, body, _headers(request, Kind.PART, stream))
    if (refused := _unknowable(request, Kind.PART, stream)) is not None:
        return refused
    return _fail(request, 404, "part not available", Kind.PART, stream)


async def _segment(request: web.Request, stream: StreamReader, track: TrackView, msn: int) -> web.StreamResponse:
    name = track.info.name
    data = stream.segment_bytes(name, msn)
    if data is None and not stream.view().ended:
        in_production = track.pending_msn == msn
        upcoming = track.next_part is not None and track.next_part[0] == msn and not in_production
        if in_production or upcoming:
            return await _stream_segment(request, stream, name, msn)
    if data is not None:
        seg = stream.segment(name, msn)
        modified = seg.published_utc_s if seg else time.time()
        body = Body.of(data, modified, tag=f"{name}-{msn}-{len(data)}")
        return send(request, body, _headers(request, Kind.SEGMENT, stream))
    if (body := await _disk_body(stream.file(name, segment_name(msn)))) is not None:
        return send(request, body, _headers(request, Kind.SEGMENT, stream))
    if (refused := _unknowable(request, Kind.SEGMENT, stream)) is not None:
        return refused
    return _fail(request, 404, "segment not available", Kind.SEGMENT, stream)


async def _stream_segment(request: web.Request, stream: StreamReader, track: str, msn: int) -> web.StreamResponse:
    """Send the segment in production with chunked transfer, each CMAF chunk as it is published."""
    request[HELD] = True
    headers = _headers(request, Kind.SEGMENT_LIVE, stream)
    view = stream.view()
    deadline = time.monotonic() + float(view.segment_s) * 2 + 3 * view.target_duration
    # The segment may not have started yet (requested one part early): wait for its first part.
    if stream.progress(track, msn) is None:
        await stream.wait(track, Position(msn, 0), max(0.1, deadline - time.monotonic()))
        if stream.progress(track, msn) is None:
            if (refused := _unknowable(request, Kind.SEGMENT, stream)) is not None:
                return refused  # it may well exist by now: the store cannot say
            return _fail(request, 404, "segment not available", Kind.SEGMENT, stream)
    resp = web.StreamResponse(status=200, headers=headers)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    started = time.monotonic()
    sent = 0
    try:
        sent = await _send_progress(resp, stream, track, msn, deadline)
        request[SENT] = sent
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        # The client went away mid-segment (a player abandoning a download): nothing to clean up.
        log.debug("%s/%s/%d.m4s: client left after %.2f s", stream.name, track, msn, time.monotonic() - started)
        return resp
    log.debug("%s/%s/%d.m4s: streamed %d bytes in %.2f s", stream.name, track, msn, sent, time.monotonic() - started)
    return resp


async def _send_progress(resp: web.StreamResponse, stream: StreamReader, track: str, msn: int, deadline: float) -> int:
    """Write segment ``msn``'s chunks as they are published until it is complete; the bytes sent."""
    sent = 0
    while True:
        progress = stream.progress(track, msn)
        if progress is None:
            return sent  # the segment left memory (cannot happen while it is this fresh)
        offset = 0
        for chunk in progress.chunks:
            end = offset + len(chunk)
            if end > sent:
                await resp.write(chunk[sent - offset :] if sent > offset else chunk)
                sent = end
            offset = end
        view = stream.view()
        remaining = deadline - time.monotonic()
        if progress.complete or view.ended or remaining <= 0:
            return sent
        tv = view.track(track)
        last = tv.pending[-1] if tv is not None and tv.pending_msn == msn and tv.pending else None
        want = Position(msn) if last is None else Position(last.msn, last.index + 1)
        await stream.wait(track, want, remaining)


# --------------------------------------------------------------------------- pages, time, health


async def time_now(request: web.Request) -> web.StreamResponse:
    text = iso_from_epoch_s(time.time())
    return web.Response(text=text, headers=_headers(request, Kind.TIME))


async def healthz(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    streams = {s.name: {"live": not s.view().ended, "version": s.view().version} for s in st.store}
    body = {"status": "ok" if st.store.available else "store unreachable", "streams": streams}
    return web.Response(text=json.dumps(body), headers=_headers(request, Kind.HEALTH))


def _latency_s(stream: StreamReader, track: TrackView) -> float | None:
    """Capture to publish of the newest part (None without a capture time)."""
    last = track.last_part
    part = stream.part(track.info.name, *last) if last is not None else None
    if part is None or not part.capture_utc_s or not part.published_utc_s:
        return None
    return round(max(0.0, part.published_utc_s - part.capture_utc_s), 3)


def _measured_bps(track: TrackView, segments: int = 3) -> int | None:
    """Bits per second of the newest complete segments, as published."""
    recent = track.segments[-segments:]
    seconds = sum(seg.duration for seg in recent) / track.info.timescale
    return round(sum(seg.size for seg in recent) * 8 / seconds) if seconds > 0 else None


def _stream_json(
    s: StreamReader, stalled: list[str], rate: float | None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    view = s.view()
    renditions = [
        {
            "name": t.info.name,
            "kind": t.info.kind,
            "width": t.info.width,
            "height": t.info.height,
            "bitrate": t.info.bitrate,
            "codec": t.info.codec,
            "measured_bitrate": _measured_bps(t),
            "latency_s": _latency_s(s, t),
            "stalled": t.info.name in stalled,
        }
        for t in view.tracks
    ]
    latencies = [r["latency_s"] for r in renditions if r["latency_s"] is not None]
    return {
        "name": s.name,
        "live": not view.ended,
        "state": "ended" if view.ended else "stalled" if stalled else "live",
        "end_reason": s.end_reason or None,
        "node": s.node,
        "started": iso_from_epoch_s(s.started_utc_s),
        "updated": iso_from_epoch_s(view.published_utc_s),
        "publish_latency_s": max(latencies) if latencies else None,
        "requests_per_s": round(rate, 2) if rate is not None else None,
        "hls": f"/live/{s.name}/master.m3u8",
        "dash": f"/live/{s.name}/manifest.mpd",
        "renditions": renditions,
        "breaks": [_break_json(b, view.epoch_s) for b in breaks(view.splices)],
        **(extra or {}),
    }


def _break_json(b: Break, epoch_s: Fraction) -> dict[str, Any]:
    """An ad break of the window: its id, start, where it returns (None: open) and where its cues came from."""
    end = b.end
    return {
        "id": b.event_id,
        "start": iso_from_epoch_s(epoch_s + Fraction(b.start, SPLICE_TIMESCALE)),
        "end": None if end is None else iso_from_epoch_s(epoch_s + Fraction(end, SPLICE_TIMESCALE)),
        "from": (b.out or b.back).origin,  # type: ignore[union-attr]
    }


def _failover_json(name: str, lifecycle: StreamEvents | None, nodes: NodeWatch | None) -> dict[str, Any]:
    """The stream's encoder nodes (over a shared store) and its owner changes, for the dashboard."""
    now = nodes.clock.utc_s() if nodes is not None else 0.0
    return {
        "nodes": [status_json(n, now) for n in nodes.nodes(name)] if nodes is not None else [],
        "failovers": (lifecycle.failovers(name) if lifecycle is not None else NO_FAILOVERS).as_json(),
    }


def streams_json(
    store: StoreReader,
    *,
    lifecycle: StreamEvents | None = None,
    rates: RequestRates | None = None,
    nodes: NodeWatch | None = None,
    viewers: Viewers | None = None,
) -> dict[str, Any]:
    out = [
        _stream_json(
            s,
            lifecycle.stalled(s.name) if lifecycle is not None else [],
            rates.rate(s.name) if rates is not None else None,
            {
                **_failover_json(s.name, lifecycle, nodes),
                **({"viewers": viewers.summary(s.name)} if viewers is not None else {}),
            },
        )
        for s in store
    ]
    names = {s["name"] for s in out}
    if rates is not None:
        rates.forget_except(names)
    if viewers is not None:
        viewers.forget_except(names)
    return {"streams": out, "store": "ok" if store.available else "unreachable"}


async def api_streams(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    data = streams_json(st.store, lifecycle=st.lifecycle, rates=st.rates, nodes=st.nodes, viewers=st.viewers)
    for stream in data["streams"]:
        pipeline = st.pipelines.get(stream["name"])
        progress = getattr(pipeline, "progress", None)
        if progress is not None:  # this process encodes it: media time done, speed, time left
            stream["progress"] = progress.now().as_json()
    return web.Response(text=json.dumps(data), headers=_headers(request, Kind.API))


async def push(request: web.Request) -> web.StreamResponse:
    """``PUT``/``POST /ingest/{stream}``: routed to the HTTP push ingest (:mod:`packager.ingest.http`)."""
    from packager.ingest import http as push_ingest

    request[KIND] = Kind.OTHER
    st = _state(request)
    stream = request.match_info["stream"]
    if not NAME.match(stream) or st.ingest is None:
        peer = request.remote or "?"
        push_ingest.refusals.warning(("ingest-name", peer), "ingest from %s refused: not a stream name", peer)
        status, reason = 404, "no such stream"
    else:
        gate, manager = st.ingest
        status, reason = await push_ingest.receive(request, stream, gate, manager)
    headers = {"Cache-Control": "no-store", **policy.cors_headers(allow_origin(request))}
    return web.Response(status=status, text=f"{status}: {reason}\n", headers=headers)


async def preflight(request: web.Request) -> web.StreamResponse:
    request[KIND] = Kind.OTHER
    allowed = allow_origin(request)
    if allowed is None:
        return _fail(request, 403, "this origin may not read from this server")
    return web.Response(status=204, headers=policy.preflight_headers(allowed))


async def metrics(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    return web.Response(text=st.metrics.registry.render(), headers=_headers(request, Kind.METRICS))


async def not_found(request: web.Request) -> web.StreamResponse:
    return _fail(request, 404, "no such resource")
