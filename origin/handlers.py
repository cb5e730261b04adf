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
from pathlib import Path
from typing import Any

from aiohttp import web

from origin import policy
from origin.metrics import OriginMetrics, RequestRates
from origin.policy import Kind
from origin.render import RenderCache
from origin.responses import Body, error, send
from packager.events import EventBus, StreamEvents
from packager.model import INIT_NAME, MEDIA_PLAYLIST_NAME
from packager.store import Store, StreamStore, TrackStore
from packager.timebase import iso_from_epoch_s

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # \Z, not $: "$" also matches before a final newline
SEGMENT_FILE = re.compile(r"^([0-9]{1,18})\.m4s\Z")  # [0-9]: \d also matches other scripts' digits
PART_FILE = re.compile(r"^([0-9]{1,18})\.([0-9]{1,6})\.m4s\Z")
UINT = re.compile(r"^[0-9]{1,18}\Z")


@dataclass
class OriginState:
    store: Store
    cors_origin: str = "*"
    metrics: OriginMetrics = field(default_factory=OriginMetrics)
    cache: RenderCache = field(default_factory=RenderCache)
    pipelines: dict[str, Any] = field(default_factory=dict)
    events: EventBus | None = None  # the /events feed (live store only)
    lifecycle: StreamEvents | None = None  # stream events and rendition watchdog, while the app runs
    rates: RequestRates = field(default_factory=RequestRates)  # requests per stream, for the dashboard
    sse_keepalive_s: float = 15.0


STATE = web.AppKey("origin_state", OriginState)
KIND = web.RequestKey("kind", Kind)
HELD = web.RequestKey("held", bool)
SENT = web.RequestKey("sent_bytes", int)


def _state(request: web.Request) -> OriginState:
    return request.app[STATE]


def _timing(stream: StreamStore) -> policy.Timing:
    return policy.Timing(float(stream.segment_s), float(stream.part_s), stream.target_duration, True)


def _fail(
    request: web.Request, status: int, reason: str, kind: Kind = Kind.OTHER, stream: StreamStore | None = None
) -> web.Response:
    request[KIND] = kind
    st = _state(request)
    headers = policy.response_headers(kind, status, _timing(stream) if stream else None, allow_origin=st.cors_origin)
    return error(status, reason, headers)


def _headers(request: web.Request, kind: Kind, stream: StreamStore | None = None) -> dict[str, str]:
    request[KIND] = kind
    st = _state(request)
    return policy.response_headers(
        kind,
        200,
        _timing(stream) if stream else None,
        allow_origin=st.cors_origin,
        ended=bool(stream and stream.ended),
    )


def _stream(request: web.Request) -> StreamStore | web.Response:
    name = request.match_info["stream"]
    if not NAME.match(name):
        return _fail(request, 404, "no such stream")
    stream = _state(request).store.get(name)
    if stream is None:
        return _fail(request, 404, f"no stream named {name!r}")
    return stream


def _track(request: web.Request, stream: StreamStore) -> TrackStore | web.Response:
    name = request.match_info["track"]
    track = stream.track(name) if NAME.match(name) else None
    if track is None or track.init is None:
        return _fail(request, 404, "no such rendition in this stream", stream=stream)
    return track


# --------------------------------------------------------------------------- manifests


async def master(request: web.Request) -> web.StreamResponse:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    view = stream.view()
    if not view.tracks:
        return _fail(request, 404, "stream has no media yet", Kind.MASTER, stream)
    return send(request, _state(request).cache.master(view), _headers(request, Kind.MASTER, stream))


async def mpd(request: web.Request) -> web.StreamResponse:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    view = stream.view()
    if not view.tracks:
        return _fail(request, 404, "stream has no media yet", Kind.MPD, stream)
    low_latency = request.query.get("ll", "1") not in ("0", "no", "false")
    return send(request, _state(request).cache.mpd(view, low_latency), _headers(request, Kind.MPD, stream))


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
    if d.msn is not None and not stream.ended:
        kind = Kind.PLAYLIST_BLOCKING
        msn, part = d.msn, d.part
        pps = track.segment_ticks // track.part_ticks
        if part is not None and part >= pps:
            msn, part = msn + 1, 0  # past the segment's last part: part 0 of the next one
        last = track.last_position()
        last_msn = last[0] if last else (track.next_part[0] if track.next_part else None)
        if last_msn is None:
            return _fail(request, 503, "no media published yet", kind, stream)
        if msn > last_msn + 2 or (part is not None and msn == last_msn + 2 and part > 0):
            return _fail(request, 400, f"_HLS_msn={d.msn} is too far ahead of the live edge ({last_msn})", kind, stream)
        timeout = 3 * stream.target_duration
        request[HELD] = True
        if part is None:
            ok = await track.wait_segment(msn, timeout)
        else:
            ok = await track.wait_part(msn, part, timeout)
        if not ok:
            return _fail(request, 503, "the requested segment/part did not become available in time", kind, stream)
    view = stream.view()
    skip = d.skip and view.live
    st = _state(request)
    response = send(request, st.cache.media(view, track.info.name, skip), _headers(request, kind, stream))
    if kind is Kind.PLAYLIST_BLOCKING:
        awaited = track.get_part(msn, part if part is not None else 0) if part is not None else None
        if awaited is not None and awaited.published_utc_s:
            st.metrics.release.observe(max(0.0, time.time() - awaited.published_utc_s))
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
    if name == INIT_NAME:
        assert track.init is not None
        body = Body.of(track.init, stream.started_utc_s)
        return send(request, body, _headers(request, Kind.INIT, stream))
    if name == MEDIA_PLAYLIST_NAME:
        return await media_playlist(request)
    m = PART_FILE.match(name)
    if m:
        return await _part(request, stream, track, int(m.group(1)), int(m.group(2)))
    m = SEGMENT_FILE.match(name)
    if m:
        return await _segment(request, stream, track, int(m.group(1)))
    return _fail(request, 404, "no such object", Kind.OTHER, stream)


def _from_disk(stream: StreamStore, track: TrackStore, name: str) -> Path | None:
    folder = track.folder
    if folder is None:
        return None
    path = folder / name
    return path if path.is_file() else None


async def _disk_body(path: Path) -> Body | None:
    try:
        data = await asyncio.to_thread(path.read_bytes)
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return Body.of(data, mtime, tag=f"{path.name}-{len(data)}-{int(mtime)}")


async def _part(
    request: web.Request, stream: StreamStore, track: TrackStore, msn: int, index: int
) -> web.StreamResponse:
    part = track.get_part(msn, index)
    if part is None and not stream.ended and _is_hinted(track, msn, index):
        request[HELD] = True
        await track.wait_part(msn, index, 3 * stream.target_duration)
        part = track.get_part(msn, index)
    if part is not None:
        body = Body.of(part.data, part.published_utc_s, tag=f"{track.info.name}-{msn}.{index}-{part.size}")
        return send(request, body, _headers(request, Kind.PART, stream))
    path = _from_disk(stream, track, f"{msn}.{index}.m4s")
    if path is not None and (body := await _disk_body(path)) is not None:
        return send(request, body, _headers(request, Kind.PART, stream))
    return _fail(request, 404, "part not available", Kind.PART, stream)


def _is_hinted(track: TrackStore, msn: int, index: int) -> bool:
    """The part advertised by EXT-X-PRELOAD-HINT (or the one being produced right now)."""
    hint = track.next_part
    return hint is not None and (msn, index) == hint


async def _segment(request: web.Request, stream: StreamStore, track: TrackStore, msn: int) -> web.StreamResponse:
    data = track.get_segment_bytes(msn)
    if data is None and not stream.ended:
        progress = track.in_progress_chunks(msn)
        upcoming = track.next_part is not None and track.next_part[0] == msn and track.pending_msn != msn
        if progress is not None or upcoming:
            return await _stream_segment(request, stream, track, msn)
    if data is not None:
        seg = track.segment(msn)
        modified = seg.published_utc_s if seg else time.time()
        body = Body.of(data, modified, tag=f"{track.info.name}-{msn}-{len(data)}")
        return send(request, body, _headers(request, Kind.SEGMENT, stream))
    path = _from_disk(stream, track, f"{msn}.m4s")
    if path is not None and (body := await _disk_body(path)) is not None:
        return send(request, body, _headers(request, Kind.SEGMENT, stream))
    return _fail(request, 404, "segment not available", Kind.SEGMENT, stream)


async def _stream_segment(request: web.Request, stream: StreamStore, track: TrackStore, msn: int) -> web.StreamResponse:
    """Send the segment in production with chunked transfer, each CMAF chunk as it is published."""
    request[HELD] = True
    headers = _headers(request, Kind.SEGMENT_LIVE, stream)
    deadline = time.monotonic() + float(stream.segment_s) * 2 + 3 * stream.target_duration
    # The segment may not have started yet (requested one part early): wait for its first part.
    if track.in_progress_chunks(msn) is None:
        await track.wait_part(msn, 0, max(0.1, deadline - time.monotonic()))
        if track.in_progress_chunks(msn) is None:
            return _fail(request, 404, "segment not available", Kind.SEGMENT, stream)
    resp = web.StreamResponse(status=200, headers=headers)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    sent = 0
    started = time.monotonic()
    try:
        while True:
            progress = track.in_progress_chunks(msn)
            if progress is None:
                break  # the segment left memory (cannot happen while it is this fresh)
            chunks, complete = progress
            offset = 0
            for chunk in chunks:
                end = offset + len(chunk)
                if end > sent:
                    await resp.write(chunk[sent - offset :] if sent > offset else chunk)
                    sent = end
                offset = end
            if complete or stream.ended:
                break
            last = track.pending[-1] if track.pending_msn == msn and track.pending else None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if last is None:
                await track.wait_segment(msn, remaining)
            else:
                await track.wait_part(last.msn, last.index + 1, remaining)
        request[SENT] = sent
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        # The client went away mid-segment (a player abandoning a download): nothing to clean up.
        log.debug(
            "%s/%s/%d.m4s: client left after %d bytes, %.2f s",
            stream.name,
            track.info.name,
            msn,
            sent,
            time.monotonic() - started,
        )
        request[SENT] = sent
        return resp
    log.debug(
        "%s/%s/%d.m4s: streamed %d bytes in %.2f s", stream.name, track.info.name, msn, sent, time.monotonic() - started
    )
    return resp


# --------------------------------------------------------------------------- pages, time, health


async def time_now(request: web.Request) -> web.StreamResponse:
    text = iso_from_epoch_s(time.time())
    return web.Response(text=text, headers=_headers(request, Kind.TIME))


async def healthz(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    streams = {s.name: {"live": not s.ended, "version": s.version} for s in st.store}
    return web.Response(text=json.dumps({"status": "ok", "streams": streams}), headers=_headers(request, Kind.HEALTH))


def _latency_s(track: TrackStore | None) -> float | None:
    """Capture to publish of the newest part (None without a capture time)."""
    last = track.last_position() if track is not None else None
    part = track.get_part(*last) if track is not None and last is not None else None
    if part is None or not part.capture_utc_s or not part.published_utc_s:
        return None
    return round(max(0.0, part.published_utc_s - part.capture_utc_s), 3)


def _measured_bps(track: TrackStore | None, segments: int = 3) -> int | None:
    """Bits per second of the newest complete segments, as published."""
    if track is None or not track.segments:
        return None
    recent = list(track.segments)[-segments:]
    seconds = sum(seg.duration for seg in recent) / track.info.timescale
    return round(sum(seg.size for seg in recent) * 8 / seconds) if seconds > 0 else None


def streams_json(
    store: Store, *, lifecycle: StreamEvents | None = None, rates: RequestRates | None = None
) -> dict[str, Any]:
    out = []
    for s in store:
        view = s.view()
        stalled = lifecycle.stalled(s) if lifecycle is not None else []
        renditions = []
        for t in view.tracks:
            track = s.track(t.info.name)
            renditions.append(
                {
                    "name": t.info.name,
                    "kind": t.info.kind,
                    "width": t.info.width,
                    "height": t.info.height,
                    "bitrate": t.info.bitrate,
                    "codec": t.info.codec,
                    "measured_bitrate": _measured_bps(track),
                    "latency_s": _latency_s(track),
                    "stalled": t.info.name in stalled,
                }
            )
        latencies = [r["latency_s"] for r in renditions if r["latency_s"] is not None]
        out.append(
            {
                "name": s.name,
                "live": not s.ended,
                "state": "ended" if s.ended else "stalled" if stalled else "live",
                "end_reason": s.end_reason or None,
                "started": iso_from_epoch_s(s.started_utc_s),
                "updated": iso_from_epoch_s(s.published_utc_s),
                "publish_latency_s": max(latencies) if latencies else None,
                "requests_per_s": round(rates.rate(s.name), 2) if rates is not None else None,
                "hls": f"/live/{s.name}/master.m3u8",
                "dash": f"/live/{s.name}/manifest.mpd",
                "renditions": renditions,
            }
        )
    if rates is not None:
        rates.forget_except({s["name"] for s in out})
    return {"streams": out}


async def api_streams(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    data = streams_json(st.store, lifecycle=st.lifecycle, rates=st.rates)
    return web.Response(text=json.dumps(data), headers=_headers(request, Kind.API))


async def preflight(request: web.Request) -> web.StreamResponse:
    request[KIND] = Kind.OTHER
    headers = policy.preflight_headers(_state(request).cors_origin)
    return web.Response(status=204, headers=headers)


async def metrics(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    return web.Response(text=st.metrics.registry.render(), headers=_headers(request, Kind.METRICS))


async def not_found(request: web.Request) -> web.StreamResponse:
    return _fail(request, 404, "no such resource")
