"""What each stream's viewers experience, from their requests and the CMCD their players send.

Every request for a stream's manifests or media is counted (the request rate);
one that carries CMCD (:mod:`origin.cmcd`) adds what its player reported:
its session (``sid``), buffer length, measured throughput, the bitrate it
asked for (video and muxed objects: an audio rendition's would blur it),
buffer starvation (``bs``: a stall) and startup (``su``). Figures
go into 5-second buckets over the last five minutes (:mod:`origin.timeline`)
for the dashboard's charts, plus a summary of the last
:data:`ACTIVE_S` seconds for ``/api/streams``.

Bounded whatever clients send: sessions are remembered per stream up to
:data:`MAX_SESSIONS` (the least recently seen go first) and for the window
only, a bucket keeps a bounded sample of values and at most
:data:`MAX_BITRATES` distinct requested bitrates, and streams are only those
the caller passes (existing ones). The event loop owns it; the clock is
injectable.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from origin.cmcd import VIDEO_OBJECTS, CmcdReport
from origin.timeline import BUCKET_S, WINDOW_S, Samples, Timeline, quantile

ACTIVE_S = 30.0  # a session seen within this long is an active viewer
MAX_SESSIONS = 10_000  # per stream
MAX_BITRATES = 16  # distinct requested bitrates a bucket counts; others are not counted by value


@dataclass
class ViewerBucket:
    requests: int = 0  # every request for the stream's manifests and media
    reports: int = 0  # of which carried readable CMCD
    sessions: int = 0  # distinct sessions seen in the bucket
    joins: int = 0  # sessions seen for the first time
    stalls: int = 0  # requests flagged bs (the buffer ran dry before it)
    startups: int = 0  # requests flagged su
    buffer_s: Samples = field(default_factory=Samples)
    throughput_bps: Samples = field(default_factory=Samples)
    bitrate_bps: Samples = field(default_factory=Samples)
    bitrates: Counter[int] = field(default_factory=Counter)  # requested bitrate (b/s) -> requests

    def add(self, report: CmcdReport) -> None:
        self.reports += 1
        self.stalls += report.starved
        self.startups += report.startup
        if report.buffer_s is not None:
            self.buffer_s.add(report.buffer_s)
        if report.throughput_bps is not None:
            self.throughput_bps.add(report.throughput_bps)
        if report.bitrate_bps is not None and report.object_type in VIDEO_OBJECTS:
            self.bitrate_bps.add(report.bitrate_bps)
            key = round(report.bitrate_bps)
            if key in self.bitrates or len(self.bitrates) < MAX_BITRATES:
                self.bitrates[key] += 1


@dataclass(frozen=True)
class Session:
    last_s: float
    format: str | None  # sf: "h" HLS, "d" DASH, ...


class StreamViewers:
    """One stream's buckets and the sessions seen in the window."""

    def __init__(self, bucket_s: int = BUCKET_S, window_s: int = WINDOW_S) -> None:
        self.timeline: Timeline[ViewerBucket] = Timeline(ViewerBucket, bucket_s, window_s)
        self.window_s = window_s
        self.sessions: OrderedDict[str, Session] = OrderedDict()  # least recently seen first

    def record(self, report: CmcdReport | None, now_s: float) -> None:
        bucket = self.timeline.at(now_s)
        bucket.requests += 1
        if report is None:
            return
        bucket.add(report)
        if report.sid is not None:
            self._seen(bucket, report, now_s)

    def _seen(self, bucket: ViewerBucket, report: CmcdReport, now_s: float) -> None:
        sid = report.sid
        assert sid is not None
        before = self.sessions.pop(sid, None)
        if before is None:
            bucket.joins += 1
        size = self.timeline.bucket_s
        if before is None or before.last_s // size != now_s // size:
            bucket.sessions += 1
        self.sessions[sid] = Session(now_s, report.format or (before.format if before else None))
        while self.sessions and (
            len(self.sessions) > MAX_SESSIONS or next(iter(self.sessions.values())).last_s < now_s - self.window_s
        ):
            self.sessions.popitem(last=False)

    def active(self, now_s: float) -> Iterator[Session]:
        """The sessions seen in the last :data:`ACTIVE_S` seconds, most recent first."""
        for session in reversed(self.sessions.values()):
            if session.last_s < now_s - ACTIVE_S:
                return
            yield session


def _median(bucket: ViewerBucket | None, pick: Callable[[ViewerBucket], Samples]) -> float | None:
    return pick(bucket).quantile(0.5) if bucket is not None else None


class Viewers:
    """Every stream's :class:`StreamViewers`; ``clock``: wall-clock seconds."""

    def __init__(self, clock: Callable[[], float] = time.time, bucket_s: int = BUCKET_S, window_s: int = WINDOW_S):
        self.clock = clock
        self.bucket_s, self.window_s = bucket_s, window_s
        self.streams: dict[str, StreamViewers] = {}

    def record(self, stream: str, report: CmcdReport | None) -> None:
        """One request for ``stream`` (an existing stream: the caller checks), with its CMCD if any."""
        viewers = self.streams.get(stream)
        if viewers is None:
            viewers = self.streams[stream] = StreamViewers(self.bucket_s, self.window_s)
        viewers.record(report, self.clock())

    def forget_except(self, names: Collection[str]) -> None:
        for name in [n for n in self.streams if n not in names]:
            del self.streams[name]

    def active_sessions(self) -> Iterator[tuple[str, int]]:
        now = self.clock()
        for name, viewers in self.streams.items():
            yield name, sum(1 for _ in viewers.active(now))

    def summary(self, stream: str) -> dict[str, Any]:
        """The last :data:`ACTIVE_S` seconds: active sessions (by streaming format), buffer, throughput, stalls."""
        viewers = self.streams.get(stream)
        now = self.clock()
        buckets = viewers.timeline.recent(now, ACTIVE_S) if viewers is not None else []
        formats = Counter(s.format or "other" for s in viewers.active(now)) if viewers is not None else Counter()
        return {
            "sessions": sum(formats.values()),
            "formats": dict(sorted(formats.items())),
            "buffer_s": _rounded(quantile((v for b in buckets for v in b.buffer_s.values), 0.5), 3),
            "throughput_bps": _rounded(quantile((v for b in buckets for v in b.throughput_bps.values), 0.5), 0),
            "stalls": sum(b.stalls for b in buckets),
            "cmcd_requests": sum(b.reports for b in buckets),
        }

    def series(self, stream: str, now_s: float) -> dict[str, Any]:
        """The window ending at ``now`` as columns, one value per bucket, oldest first (``t``: bucket starts)."""
        viewers = self.streams.get(stream) or StreamViewers(self.bucket_s, self.window_s)
        window = viewers.timeline.window(now_s)
        buckets = [b for _, b in window]
        rates = [round((b.requests if b else 0) / viewers.timeline.span_s(start, now_s), 3) for start, b in window]

        def count(pick: Callable[[ViewerBucket], int]) -> list[int]:
            return [pick(b) if b else 0 for b in buckets]

        def median(pick: Callable[[ViewerBucket], Samples], digits: int) -> list[float | None]:
            return [_rounded(_median(b, pick), digits) for b in buckets]

        return {
            "t": [start for start, _ in window],
            "requests_per_s": rates,
            "sessions": count(lambda b: b.sessions),
            "joins": count(lambda b: b.joins),
            "stalls": count(lambda b: b.stalls),
            "startups": count(lambda b: b.startups),
            "cmcd_requests": count(lambda b: b.reports),
            "buffer_s": {
                "p50": median(lambda b: b.buffer_s, 3),
                "min": [_rounded(b.buffer_s.minimum, 3) if b else None for b in buckets],
            },
            "throughput_bps": {"p50": median(lambda b: b.throughput_bps, 0)},
            "bitrate_bps": {"p50": median(lambda b: b.bitrate_bps, 0)},
            "bitrates": _bitrate_columns(buckets),
        }


def _bitrate_columns(buckets: list[ViewerBucket | None]) -> dict[str, list[int]]:
    """Requested bitrate (b/s, as text) -> requests per bucket: the :data:`MAX_BITRATES` most requested."""
    totals: Counter[int] = Counter()
    for b in buckets:
        if b:
            totals.update(b.bitrates)
    rates = sorted(rate for rate, _ in totals.most_common(MAX_BITRATES))
    return {str(rate): [b.bitrates.get(rate, 0) if b else 0 for b in buckets] for rate in rates}


def _rounded(value: float | None, digits: int) -> float | None:
    if value is None:
        return None
    return round(value, digits) if digits else float(round(value))
