"""Header policy: object kind -> Cache-Control, Content-Type and CORS headers (pure).

The one place that decides what a CDN may cache and for how long:

* init, segments and parts never change under their URL: a year, immutable;
* a plain playlist or MPD request: half a part (LL) or half a segment, in
  whole seconds and at least one (a CDN then hands out an MPD up to a second
  old, longer than an LL minimumUpdatePeriod: the shipped dash.js page asks
  for each new segment's MPD under a key of its own, ``due=``);
* a blocking playlist request names one playlist state, so it may be cached
  for several target durations;
* errors: ``no-store`` for 4xx/5xx (a 404 for media not yet published must
  not stick in a cache), ``max-age=1`` at most for ``_HLS`` 503s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    MASTER = "master"
    PLAYLIST = "playlist"
    PLAYLIST_BLOCKING = "playlist_blocking"
    MPD = "mpd"
    INIT = "init"
    SEGMENT = "segment"
    SEGMENT_LIVE = "segment_live"  # still being produced: streamed with chunked transfer
    PART = "part"
    SUBTITLE = "subtitle"  # a whole WebVTT segment of a subtitle rendition
    TIME = "time"
    PAGE = "page"
    LIBRARY = "library"
    API = "api"
    HEALTH = "health"
    METRICS = "metrics"
    EVENTS = "events"  # the server-sent events feed: never cached
    OTHER = "other"


CONTENT_TYPES = {
    Kind.MASTER: "application/vnd.apple.mpegurl",
    Kind.PLAYLIST: "application/vnd.apple.mpegurl",
    Kind.PLAYLIST_BLOCKING: "application/vnd.apple.mpegurl",
    Kind.MPD: "application/dash+xml",
    Kind.INIT: "video/mp4",
    Kind.SEGMENT: "video/iso.segment",
    Kind.SEGMENT_LIVE: "video/iso.segment",
    Kind.PART: "video/iso.segment",
    Kind.SUBTITLE: "text/vtt; charset=utf-8",
    Kind.TIME: "text/plain; charset=utf-8",
    Kind.API: "application/json",
    Kind.HEALTH: "application/json",
    Kind.METRICS: "text/plain; version=0.0.4; charset=utf-8",
    Kind.EVENTS: "text/event-stream; charset=utf-8",
}

MEDIA_KINDS = frozenset({Kind.INIT, Kind.SEGMENT, Kind.SEGMENT_LIVE, Kind.PART, Kind.SUBTITLE})
MANIFEST_KINDS = frozenset({Kind.MASTER, Kind.PLAYLIST, Kind.PLAYLIST_BLOCKING, Kind.MPD})

ALLOWED_METHODS = "GET, HEAD, OPTIONS"
# CMCD-*: players that send CTA-5004 client data as headers (origin.cmcd) rather than as the CMCD= query
ALLOWED_HEADERS = (
    "Range, If-None-Match, If-Modified-Since, Accept-Encoding, Origin, Content-Type, Authorization, "
    "CMCD-Request, CMCD-Object, CMCD-Status, CMCD-Session"
)
EXPOSED_HEADERS = (
    "Content-Length, Content-Range, Content-Type, Date, Age, ETag, Last-Modified, Cache-Control, X-Cache-Status"
)
YEAR = 31_536_000


@dataclass(frozen=True)
class Timing:
    """What the policy needs about a stream's timing (seconds)."""

    segment_s: float = 2.0
    part_s: float = 0.5
    target_duration: int = 2
    low_latency: bool = True


def cache_control(kind: Kind, status: int = 200, timing: Timing | None = None, *, ended: bool = False) -> str:
    t = timing or Timing()
    if status >= 400:
        if status == 503 and kind in MANIFEST_KINDS:
            return "max-age=1"
        return "no-store"
    if kind in (Kind.INIT, Kind.SEGMENT, Kind.PART, Kind.SUBTITLE):
        return f"public, max-age={YEAR}, immutable, no-transform"
    if kind is Kind.SEGMENT_LIVE:
        # Still growing: a cache must not keep a copy of the unfinished body.
        return "no-store, no-transform"
    if ended and kind in MANIFEST_KINDS:
        return "public, max-age=60"
    if kind is Kind.PLAYLIST_BLOCKING:
        return f"public, max-age={3 * t.target_duration}"
    if kind in (Kind.PLAYLIST, Kind.MPD):
        half = (t.part_s if t.low_latency else t.segment_s) / 2
        return f"public, max-age={max(1, math.floor(half))}"
    if kind is Kind.MASTER:
        return "public, max-age=5"
    if kind in (Kind.TIME, Kind.API, Kind.HEALTH, Kind.METRICS, Kind.EVENTS):
        return "no-store"
    if kind is Kind.LIBRARY:
        return "public, max-age=86400"
    return "public, max-age=60"


def cors_headers(allow_origin: str | None) -> dict[str, str]:
    """CORS headers for an answer: ``*``, one allowed origin (the answer varies by Origin), or None (not
    allowed: no grant, but still ``Vary: Origin`` since an allowed origin gets another answer)."""
    if allow_origin is None:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": allow_origin,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        **({"Vary": "Origin"} if allow_origin != "*" else {}),
    }


def preflight_headers(allow_origin: str) -> dict[str, str]:
    """A preflight answer: the same fixed method and header lists whatever the browser asks for."""
    headers = cors_headers(allow_origin)
    headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    headers["Access-Control-Max-Age"] = "86400"
    return headers


def response_headers(
    kind: Kind, status: int = 200, timing: Timing | None = None, *, allow_origin: str | None = "*", ended: bool = False
) -> dict[str, str]:
    headers = cors_headers(allow_origin)
    headers["Cache-Control"] = cache_control(kind, status, timing, ended=ended)
    ctype = CONTENT_TYPES.get(kind)
    if ctype and status < 400:
        headers["Content-Type"] = ctype
    if kind in (Kind.SEGMENT_LIVE, Kind.EVENTS):
        # Pass each chunk on at once through nginx-style proxies (their buffering would hold it back).
        headers["X-Accel-Buffering"] = "no"
    if kind in MEDIA_KINDS or kind in MANIFEST_KINDS:
        headers["Accept-Ranges"] = "bytes" if kind in MEDIA_KINDS and kind is not Kind.SEGMENT_LIVE else "none"
    return headers


def content_type_for_name(name: str) -> tuple[Kind, str]:
    """Kind and type of a file in an output folder, by name."""
    if name == "master.m3u8":
        return Kind.MASTER, CONTENT_TYPES[Kind.MASTER]
    if name.endswith(".m3u8"):
        return Kind.PLAYLIST, CONTENT_TYPES[Kind.PLAYLIST]
    if name.endswith(".mpd"):
        return Kind.MPD, CONTENT_TYPES[Kind.MPD]
    if name.endswith(".mp4"):
        return Kind.INIT, CONTENT_TYPES[Kind.INIT]
    if name.count(".") == 2 and name.endswith(".m4s"):
        return Kind.PART, CONTENT_TYPES[Kind.PART]
    if name.endswith(".m4s"):
        return Kind.SEGMENT, CONTENT_TYPES[Kind.SEGMENT]
    if name.endswith(".vtt"):
        return Kind.SUBTITLE, CONTENT_TYPES[Kind.SUBTITLE]
    return Kind.OTHER, "application/octet-stream"
