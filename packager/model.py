"""Value types every stage shares, and the listener protocol stages publish to.

Times are integer ticks on the owning track's timescale. Media time is
UTC-anchored for live feeds (see :mod:`packager.timebase`). A *part* is one
CMAF chunk (``moof`` + ``mdat``); a *segment* is its parts in order, led by a
``styp`` box. Numbers are pure functions of time::

    msn  = start // segment_ticks
    part = (start - msn * segment_ticks) // part_ticks

so every rendition (and every redundant packager) agrees without talking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal, Protocol

from packager.config import DEFAULT_TARGETS, PlayerTargets
from packager.splice import Splice

TrackKind = Literal["video", "audio", "text"]  # text: a WebVTT subtitle rendition

INIT_NAME = "init.mp4"
MEDIA_PLAYLIST_NAME = "index.m3u8"
MASTER_NAME = "master.m3u8"
MPD_NAME = "manifest.mpd"


def segment_name(msn: int) -> str:
    return f"{msn}.m4s"


def part_name(msn: int, index: int) -> str:
    return f"{msn}.{index}.m4s"


def text_segment_name(msn: int) -> str:
    """A subtitle segment: a whole WebVTT file (text tracks have no parts; their ``wvtt`` init and
    ``segment_name`` files are the ISO BMFF form DASH lists)."""
    return f"{msn}.vtt"


def track_segment_name(kind: TrackKind, msn: int) -> str:
    return text_segment_name(msn) if kind == "text" else segment_name(msn)


@dataclass(frozen=True)
class TrackInfo:
    """What a manifest needs to know about one track (one rendition, or the shared audio)."""

    name: str  # rendition id: "720p", "audio"; also the folder name
    kind: TrackKind
    codec: str  # RFC 6381 codec string from the real bitstream: "avc1.64001f", "mp4a.40.2"
    timescale: int
    bitrate: int  # configured (target) bits per second
    width: int = 0
    height: int = 0
    frame_rate: Fraction | None = None
    sample_rate: int = 0
    channels: int = 0
    language: str = "und"  # BCP 47 (HLS LANGUAGE, DASH @lang)
    label: str = ""  # audio, text: the name players show (HLS NAME, DASH Label); "" -> the track name
    default: bool = False  # audio, text: the track players start with (audio, none marked: the first)
    describes_video: bool = False  # audio: an audio description of the video (accessibility)
    # Video: CEA-608 captions (CC1) ride in its SEI, in this language ("und": not said); None: no captions
    captions: str | None = None


@dataclass(frozen=True)
class Sample:
    """One encoded access unit in MP4 form (H.264: length-prefixed NAL units)."""

    data: bytes
    dts: int
    pts: int
    duration: int
    keyframe: bool
    capture_utc_s: float = 0.0  # wall time the source frame was captured/ingested


@dataclass(frozen=True)
class Part:
    """One published CMAF chunk of a track."""

    track: str
    msn: int
    index: int
    start: int  # decode time of the first sample, track ticks
    duration: int
    independent: bool  # starts with a sync sample
    data: bytes  # prft? + moof + mdat
    capture_utc_s: float = 0.0  # capture time of the first sample
    published_utc_s: float = 0.0

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def end(self) -> int:
        return self.start + self.duration


@dataclass(frozen=True)
class Segment:
    """A completed segment: its parts in order. ``size`` counts the styp header too."""

    track: str
    msn: int
    start: int
    duration: int
    parts: tuple[PartRef, ...]
    size: int
    discontinuity: bool = False  # media before it is not continuous with it
    published_utc_s: float = 0.0
    gap: bool = False  # no media: stands for a segment the feed never delivered (HLS EXT-X-GAP)
    # The encoder producing it stopped before its end (a failover to a redundant encoder): its parts are
    # real, the rest of its time never existed. HLS lists it at its nominal duration (not EXT-X-GAP: it
    # holds media) with GAP=YES for the missing parts; DASH lists it up to the next segment's start.
    cut: bool = False
    # msn of the first segment of the unbroken run of consecutive msns this one belongs to: a feed or
    # encoder that stopped and came back later starts a new run, listed as a new DASH Period. None: the
    # run of the segment before it when that one's msn is one less, else its own.
    run: int | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration

    @property
    def run_msn(self) -> int:
        return self.msn if self.run is None else self.run


@dataclass(frozen=True)
class PartRef:
    """A part as manifests list it (no payload, so segments stay light in memory)."""

    msn: int
    index: int
    start: int
    duration: int
    independent: bool
    size: int


@dataclass(frozen=True)
class TrackView:
    """An immutable snapshot of one track, as manifests render it."""

    info: TrackInfo
    segments: tuple[Segment, ...]  # completed segments in the live window, oldest first
    pending: tuple[PartRef, ...]  # parts of the segment in production (may be empty)
    pending_msn: int | None  # msn of the segment in production, None if none
    next_part: tuple[int, int] | None  # (msn, index) the next part will have: the preload hint
    discontinuity_sequence: int = 0  # discontinuities that slid out of the window
    pending_discontinuity: bool = False  # the segment in production follows a discontinuity

    @property
    def last_part(self) -> tuple[int, int] | None:
        """(msn, index) of the newest published part."""
        if self.pending:
            p = self.pending[-1]
            return p.msn, p.index
        if self.segments and self.segments[-1].parts:
            p = self.segments[-1].parts[-1]
            return p.msn, p.index
        return None


@dataclass(frozen=True)
class StreamView:
    """An immutable snapshot of a stream: what one manifest state is rendered from."""

    name: str
    version: int
    segment_s: Fraction
    part_s: Fraction
    window_s: Fraction
    target_duration: int
    epoch_s: Fraction  # UTC seconds of media time 0 (0 for live, UTC-anchored)
    live: bool  # False: a VOD / finished stream (ENDLIST, static MPD)
    ended: bool
    tracks: tuple[TrackView, ...] = field(default=())  # video highest first, then audio, then text
    published_utc_s: float = 0.0  # wall time of the newest change
    starting: bool = False  # a rendition the pipeline announced has no init yet: the ladder is incomplete
    splices: tuple[Splice, ...] = ()  # ad-break splices of the window and ahead of it, by start
    hls_cue_tags: bool = False  # media playlists also carry legacy EXT-X-CUE-OUT/IN
    targets: PlayerTargets = DEFAULT_TARGETS  # hold-backs, DASH latency target, catch-up rate

    def track(self, name: str) -> TrackView | None:
        for t in self.tracks:
            if t.info.name == name:
                return t
        return None

    @property
    def video(self) -> tuple[TrackView, ...]:
        return tuple(t for t in self.tracks if t.info.kind == "video")

    @property
    def audio(self) -> tuple[TrackView, ...]:
        return tuple(t for t in self.tracks if t.info.kind == "audio")

    @property
    def text(self) -> tuple[TrackView, ...]:
        """The WebVTT subtitle renditions."""
        return tuple(t for t in self.tracks if t.info.kind == "text")


class StreamListener(Protocol):
    """What a stage publishes to: the store implements it."""

    def on_init(self, info: TrackInfo, data: bytes) -> None: ...

    def on_part(self, part: Part, last_in_segment: bool, discontinuity: bool) -> None: ...

    def on_end(self, reason: str) -> None: ...
