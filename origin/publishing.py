"""How each stream is being published, over the last minutes: latency per stage, bitrate per rendition.

A store listener (:class:`Publishing`) hears every part the store publishes
and files it into 5-second buckets of wall time (:mod:`origin.timeline`):

* **capture → published** per rendition: the part's first sample was
  captured (or ingested) until the store published it (what
  ``packager_publish_latency_seconds`` measures);
* **published → servable** on this origin, over a shared store (what
  ``origin_publish_to_servable_seconds`` measures), fed by the replica;
* **published → released**: a blocking playlist request held for a part was
  answered (what ``origin_blocking_release_seconds`` measures), fed by the
  playlist handler;
* **measured bitrate** per rendition: the bytes of the parts published in the
  bucket over their media duration.

Only the store's own streams and tracks ever get a bucket, and a stream's
buckets go with it (``StreamRemoved``). The event loop owns it; the clock is
injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from origin.timeline import BUCKET_S, WINDOW_S, Samples, Timeline
from packager.publication import InitPublished, PartPublished, Publication, StreamRemoved

MAX_TRACKS = 64  # per stream, however many renditions a ladder has


@dataclass
class TrackFigures:
    latency_s: Samples = field(default_factory=Samples)  # capture -> published
    bytes: int = 0
    media_s: float = 0.0

    @property
    def bitrate_bps(self) -> float | None:
        return self.bytes * 8 / self.media_s if self.media_s > 0 else None


@dataclass
class PublishBucket:
    tracks: dict[str, TrackFigures] = field(default_factory=dict)
    servable_s: Samples = field(default_factory=Samples)  # published -> servable here (shared store)
    release_s: Samples = field(default_factory=Samples)  # published -> blocking playlist answered

    def track(self, name: str) -> TrackFigures | None:
        figures = self.tracks.get(name)
        if figures is None and len(self.tracks) < MAX_TRACKS:
            figures = self.tracks[name] = TrackFigures()
        return figures


def _pair(samples: Samples | None) -> tuple[float | None, float | None]:
    if samples is None or not samples.count:
        return None, None
    return _seconds(samples.quantile(0.5)), _seconds(samples.maximum)


def _seconds(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


class Publishing:
    """Per-stream publishing figures over the last ``window_s`` seconds; ``clock``: wall-clock seconds."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        bucket_s: int = BUCKET_S,
        window_s: int = WINDOW_S,
        timescale: Callable[[str, str], int | None] = lambda _stream, _track: None,
        on_latency: Callable[[str, str, float], None] = lambda _stream, _track, _seconds: None,
    ) -> None:
        """``timescale(stream, track)``: a track's timescale when its init was not heard (a replica restored
        from a snapshot); the init's own is used otherwise. ``on_latency(stream, track, seconds)`` hears
        the capture -> published time of every part (the ``/metrics`` histogram), buckets or none."""
        self.clock = clock
        self.timescale = timescale
        self.on_latency = on_latency
        self.bucket_s, self.window_s = bucket_s, window_s
        self.streams: dict[str, Timeline[PublishBucket]] = {}
        self.timescales: dict[tuple[str, str], int] = {}

    def _bucket(self, stream: str) -> PublishBucket:
        timeline = self.streams.get(stream)
        if timeline is None:
            timeline = self.streams[stream] = Timeline(PublishBucket, self.bucket_s, self.window_s)
        return timeline.at(self.clock())

    def on_publication(self, event: Publication) -> None:
        if isinstance(event, PartPublished):
            self._part(event)
        elif isinstance(event, InitPublished):
            self.timescales[(event.stream, event.info.name)] = event.info.timescale
        elif isinstance(event, StreamRemoved):
            self.streams.pop(event.stream, None)
            for key in [k for k in self.timescales if k[0] == event.stream]:
                del self.timescales[key]

    def _part(self, event: PartPublished) -> None:
        part = event.part
        latency_s = max(0.0, part.published_utc_s - part.capture_utc_s) if part.capture_utc_s else None
        if latency_s is not None:
            self.on_latency(event.stream, part.track, latency_s)
        figures = self._bucket(event.stream).track(part.track)
        if figures is None:
            return
        if latency_s is not None:
            figures.latency_s.add(latency_s)
        key = (event.stream, part.track)
        timescale = self.timescales.get(key)
        if timescale is None and (timescale := self.timescale(*key)):
            self.timescales[key] = timescale
        if timescale:
            figures.bytes += part.size
            figures.media_s += part.duration / timescale

    def servable(self, stream: str, seconds: float) -> None:
        """A part published elsewhere became servable here ``seconds`` after it was published."""
        if stream in self.streams:
            self._bucket(stream).servable_s.add(max(0.0, seconds))

    def released(self, stream: str, seconds: float) -> None:
        """A blocking playlist request was answered ``seconds`` after the part it waited for was published."""
        if stream in self.streams:
            self._bucket(stream).release_s.add(max(0.0, seconds))

    def series(self, stream: str, now_s: float) -> dict[str, Any]:
        """The window ending at ``now_s`` as columns, one value per bucket, oldest first: latency p50/max per
        stage (capture -> published per rendition), measured bitrate per rendition."""
        timeline = self.streams.get(stream) or Timeline(PublishBucket, self.bucket_s, self.window_s)
        window = timeline.window(now_s)
        buckets = [b for _, b in window]
        names = sorted({name for b in buckets if b for name in b.tracks})

        def stage(pick: Callable[[PublishBucket], Samples | None]) -> dict[str, list[float | None]]:
            pairs = [_pair(pick(b)) if b else (None, None) for b in buckets]
            return {"p50": [p for p, _ in pairs], "max": [m for _, m in pairs]}

        def figures(b: PublishBucket, name: str) -> TrackFigures | None:
            return b.tracks.get(name)

        return {
            "t": [start for start, _ in window],
            "capture_to_publish": {name: stage(lambda b, n=name: _latency(figures(b, n))) for name in names},
            "publish_to_servable": stage(lambda b: b.servable_s),
            "publish_to_release": stage(lambda b: b.release_s),
            "bitrate_bps": {name: [_bps(figures(b, name)) if b else None for b in buckets] for name in names},
        }


def _latency(figures: TrackFigures | None) -> Samples | None:
    return figures.latency_s if figures is not None else None


def _bps(figures: TrackFigures | None) -> float | None:
    rate = figures.bitrate_bps if figures is not None else None
    return float(round(rate)) if rate is not None else None
