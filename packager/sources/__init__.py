"""Sources: open an input and deliver decoded frames on one media clock.

``open_source(spec)`` understands ``testsrc[:WxH[@FPS]]`` (synthetic, drawn
with numpy) and anything PyAV opens (files, rtmp://, rtsp://, http(s)://,
udp://, ...). Every source runs on its own thread and calls a
:class:`FrameSink` with frames whose timestamps are already media ticks
(video: 90 kHz, audio: 48 kHz), constant frame rate, UTC-anchored when live.
"""

from __future__ import annotations

from packager.sources.base import AudioStreamInfo, FrameSink, Source, SourceError, SourceInfo
from packager.sources.media import MediaSource
from packager.sources.testsrc import TestSource, parse_testsrc


def open_source(spec: str, *, paced: bool = True, loop: bool = False, fps: object = None) -> Source:
    """Build the source named by ``spec``; raises SourceError with a one-line reason."""
    from fractions import Fraction

    want_fps = Fraction(fps) if fps is not None else None  # type: ignore[arg-type]
    if spec == "testsrc" or spec.startswith("testsrc:"):
        width, height, rate = parse_testsrc(spec)
        if want_fps is not None:
            rate = want_fps
        return TestSource(width, height, rate, paced=paced)
    return MediaSource(spec, paced=paced, loop=loop, fps=want_fps)


__all__ = [
    "AudioStreamInfo",
    "FrameSink",
    "MediaSource",
    "Source",
    "SourceError",
    "SourceInfo",
    "TestSource",
    "open_source",
]
