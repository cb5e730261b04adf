"""Subtitle renditions: cues collected on the event loop, cut into WebVTT segments on the media grid.

Each subtitle rendition (one per input subtitle stream, or per language fed
through the live subtitle API) is a text track of the stream: every segment
is one part holding a whole WebVTT file (no partial segments for text), and
its init is the ``wvtt`` init segment of the ISO BMFF form DASH lists
(:mod:`packager.cmaf.wvtt`, rendered from those files). Segment ``msn`` is
published once media time passes its end, with or without cues, so the
numbering stays continuous like the media's. Event-loop only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from packager.audiotracks import check_label
from packager.cmaf.init import text_init
from packager.cmaf.wvtt import TEXT_TRACK_ID
from packager.config import ConfigError
from packager.languages import UNDETERMINED, bcp47_or_und, display_name
from packager.model import Part, StreamListener, TrackInfo
from packager.webvtt import WEBVTT_TIMESCALE, Cue, render_segment

TEXT_CODEC = "wvtt"
TEXT_INIT = text_init(track_id=TEXT_TRACK_ID, timescale=WEBVTT_TIMESCALE)
TEXT_BITRATE = 1000  # nominal: a WebVTT rendition is a few hundred bytes a segment
TRACK_PREFIX = "subs"
TEXT_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})  # FFmpeg decoder names


@dataclass(frozen=True)
class SubtitleStreamInfo:
    """One text subtitle stream of the input, as its container describes it."""

    index: int  # among the input's text subtitle streams, from 0
    language: str = UNDETERMINED  # as tagged (usually ISO 639-2)
    title: str = ""
    default: bool = False  # FFmpeg disposition "default"


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


def track_name(language: str) -> str:
    """The folder of a subtitle rendition: ``subs-en``; ``subs`` when the language is not said."""
    return TRACK_PREFIX if language == UNDETERMINED else f"{TRACK_PREFIX}-{language.lower()}"


def plan_subtitles(streams: Sequence[SubtitleStreamInfo]) -> tuple[SubtitleTrack, ...]:
    """One rendition per input stream: BCP 47 language, NAME from the title (else the language's name),
    names and folders unique, the stream marked default (none: none) the default."""
    tracks: list[SubtitleTrack] = []
    for s in streams:
        language = bcp47_or_und(s.language)
        name, n = track_name(language), 1
        while any(t.name == name for t in tracks):
            n += 1
            name = f"{track_name(language)}-{n}"
        tracks.append(SubtitleTrack(name, language, _label(s, language, name), default=s.default))
    first_default = next((t.name for t in tracks if t.default), None)
    return tuple(SubtitleTrack(t.name, t.language, t.label, t.name == first_default) for t in tracks)


def _label(stream: SubtitleStreamInfo, language: str, fallback: str) -> str:
    if stream.title.strip():
        try:
            return check_label(stream.title, "input title")
        except ConfigError:
            pass  # an unusable title falls back to the language's name
    return display_name(language) or fallback


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
        self.sink.on_init(track.info(), TEXT_INIT)

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
