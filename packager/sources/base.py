"""The source seam: what a source reports and what it feeds frames to."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av

from packager.audiotracks import AudioStreamInfo
from packager.scte35 import PtsMapper
from packager.subtitles import SubtitleStreamInfo

__all__ = ["AudioStreamInfo", "FrameSink", "Source", "SourceError", "SourceInfo"]


class SourceError(Exception):
    """The input cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class SourceInfo:
    description: str
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: Fraction = Fraction(30)
    live: bool = True  # media time is UTC (live) or starts at zero (VOD)
    duration_s: float | None = None  # the media the input holds (a file's duration; None: unknown, live)
    audio_streams: tuple[AudioStreamInfo, ...] = ()  # every audio stream, in input order
    subtitle_streams: tuple[SubtitleStreamInfo, ...] = ()  # every text subtitle stream, in input order


class FrameSink(Protocol):
    """Receives decoded media on the source thread. Times are media ticks."""

    def video(self, frame: av.VideoFrame, pts: int, capture_utc_s: float) -> None: ...

    def audio(self, frame: av.AudioFrame, pts: int, capture_utc_s: float, stream: int) -> None:
        """``stream``: which input audio stream (its index among the input's audio streams) it comes from."""
        ...

    def cue(self, section: bytes, to_media: PtsMapper) -> None:
        """An SCTE-35 splice_info_section from the input; ``to_media`` maps its 90 kHz pts to media ticks."""
        ...

    def text(self, stream: int, start_ms: int, end_ms: int, text: str) -> None:
        """A subtitle cue of input text subtitle stream ``stream`` (its index among them), in media
        milliseconds, its text already plain WebVTT cue text."""
        ...


class Source(Protocol):
    info: SourceInfo

    def probe(self) -> SourceInfo:
        """Open the input and learn its streams (blocking; call off the event loop)."""
        ...

    def select_audio(self, streams: tuple[int, ...]) -> None:
        """Decode these input audio streams (indices among the input's audio streams); call before ``run``."""
        ...

    def run(self, sink: FrameSink, stop: threading.Event, duration_s: float | None = None) -> str:
        """Deliver frames until the input ends, ``stop`` is set or ``duration_s`` of media passed.

        Returns the end reason ("end of input", "stopped", "duration reached", or an error)."""
        ...
