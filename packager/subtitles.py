"""Subtitle renditions: cues collected on the event loop, cut into WebVTT segments on the media grid.

Each subtitle rendition (one per input subtitle stream, or per language fed
through the live subtitle API) is a text track of the stream: its "init" is
:data:`packager.webvtt.INIT_MARKER` and every segment is one part holding a
whole WebVTT file (no partial segments for text). Segment ``msn`` is
published once media time passes its end, with or without cues, so the
numbering stays continuous like the media's. Event-loop only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from packager.model import Part, StreamListener, TrackInfo
from packager.webvtt import INIT_MARKER, WEBVTT_TIMESCALE, Cue, render_segment

TEXT_CODEC = "wvtt"
TEXT_BITRATE = 1000  # nominal: a WebVTT rendition is a few hundred bytes a segment


@dataclass(frozen=True)
class SubtitleTrack:
    """A subtitle rendition as configured: its track name (folder), BCP 47 language and display name."""

    name: str
    language: str
    label: str
    default: bool = False

    def info(self) -> TrackInfo:
        return TrackInfo(
            name=self.name,
            kind="text",
            codec=TEXT_CODEC,
            timescale=WEBVTT_TIMESCALE,
            bitrate=TEXT_BITRATE,
            language=self.language,
            label=self.label,
            default=self.default,
        )


@dataclass
class _Rendition:
    track: SubtitleTrack
    cues: list[Cue] = field(default_factory=list)
    next_msn: int | None = None  # the next segment to publish; None: not started


class Subtitles:
    """Every subtitle rendition of one stream; publishes their segments to ``sink`` (the stream store)."""

    def __init__(self, sink: StreamListener, segment_s: Fraction) -> None:
        self.sink = sink
        self.segment_ms = int(segment_s * WEBVTT_TIMESCALE)
        self.renditions: dict[str, _Rendition] = {}
        self.media_ms: int | None = None  # how far the media has gone

    def add_track(self, track: SubtitleTrack) -> None:
        """Announce a rendition (no-op when it exists): its segments start with the one in production."""
        if track.name in self.renditions:
            return
        r = _Rendition(track)
        if self.media_ms is not None:
            r.next_msn = self.media_ms // self.segment_ms
        self.renditions[track.name] = r
        self.sink.on_init(track.info(), INIT_MARKER)

    def has(self, name: str) -> bool:
        return name in self.renditions

    def add_cue(self, name: str, cue: Cue) -> bool:
        """Queue ``cue`` on rendition ``name``; False when it ends in a segment already published."""
        r = self.renditions[name]
        if r.next_msn is not None and cue.end <= r.next_msn * self.segment_ms:
            return False
        r.cues.append(cue)
        return True

    def advance(self, media_ms: int) -> None:
        """Media reached ``media_ms``: publish every segment that ends at or before it."""
        if self.media_ms is not None and media_ms <= self.media_ms:
            return
        self.media_ms = media_ms
        for r in self.renditions.values():
            if r.next_msn is None:
                r.next_msn = media_ms // self.segment_ms
            while (r.next_msn + 1) * self.segment_ms <= media_ms:
                self._publish(r, r.next_msn)
                r.next_msn += 1

    def finish(self) -> None:
        """The media ended: publish the segment in production (it is the last)."""
        if self.media_ms is None:
            return
        for r in self.renditions.values():
            if r.next_msn is not None and r.next_msn * self.segment_ms < self.media_ms:
                self._publish(r, r.next_msn, end_ms=self.media_ms)
                r.next_msn += 1

    def _publish(self, r: _Rendition, msn: int, end_ms: int | None = None) -> None:
        start = msn * self.segment_ms
        end = (msn + 1) * self.segment_ms if end_ms is None else end_ms
        data = render_segment(r.cues, start, end)
        r.cues = [c for c in r.cues if c.end > end]
        part = Part(r.track.name, msn, 0, start, end - start, True, data)
        self.sink.on_part(part, True, False)
