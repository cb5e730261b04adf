"""Text subtitle streams of an input: what the container says about them, and their cues on the media clock.

FFmpeg (>= 5) decodes SubRip, ASS/SSA, WebVTT and mov_text into ASS events;
PyAV hands each as an ``AssSubtitle`` whose ``ass`` field holds the event's
fields. A cue's time comes from its packet (start and duration in the
stream's time base) and is moved onto the media clock with the offset the
video uses (:class:`packager.sources.clock.Rebaser`); cues demuxed before
the first video frame fixed that offset wait for it.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import av

from packager.languages import UNDETERMINED
from packager.sources.clock import Rebaser
from packager.subtitles import TEXT_CODECS, SubtitleStreamInfo
from packager.webvtt import WEBVTT_TIMESCALE, ass_text, clean_text

log = logging.getLogger(__name__)

DEFAULT_CUE_S = Fraction(3)  # a cue whose packet says no duration stays this long
TextCue = tuple[int, int, int, str]  # (stream among the text subtitle streams, start ms, end ms, text)


def text_streams(container: av.container.InputContainer) -> list:  # type: ignore[type-arg]
    """The input's subtitle streams that carry text (bitmap subtitles are not converted)."""
    return [
        s for s in container.streams.subtitles if s.codec_context is not None and s.codec_context.name in TEXT_CODECS
    ]


def describe_text(stream: av.stream.Stream, index: int) -> SubtitleStreamInfo:
    metadata = stream.metadata or {}
    return SubtitleStreamInfo(
        index=index,
        language=stream.language or metadata.get("language") or UNDETERMINED,
        title=metadata.get("title", ""),
        default=bool(stream.disposition & av.stream.Disposition.default),
    )


def _text(subtitle: object) -> str:
    kind = getattr(subtitle, "type", b"")
    if kind == b"ass":
        return ass_text(bytes(subtitle.ass).decode("utf-8", "replace"))  # type: ignore[attr-defined]
    if kind == b"text":
        return clean_text(bytes(subtitle.text).decode("utf-8", "replace"))  # type: ignore[attr-defined]
    return ""  # a bitmap


class TextLane:
    """The source thread's state for the input's text subtitle streams."""

    def __init__(self, streams: list, rebaser: Rebaser) -> None:  # type: ignore[type-arg]
        self.index = {s.index: i for i, s in enumerate(streams)}  # container index -> among text streams
        self.rebaser = rebaser
        self.early: list[tuple[int, Fraction, Fraction, str]] = []  # before the media offset is known
        self.decode_errors = 0

    def cues(self, packet: av.Packet) -> list[TextCue]:
        """The cues of one subtitle packet, plus any that waited for the media clock, on that clock."""
        if packet.pts is None or packet.time_base is None or packet.stream.index not in self.index:
            return []
        start = Fraction(packet.pts * packet.time_base)
        duration = Fraction(packet.duration * packet.time_base) if packet.duration else DEFAULT_CUE_S
        try:
            texts = [t for sub in packet.decode() if (t := _text(sub))]
        except av.error.FFmpegError as exc:
            self.decode_errors += 1
            log.debug("subtitle decode error: %s", exc)
            return []
        stream = self.index[packet.stream.index]
        self.early += [(stream, start, duration, t) for t in texts]
        return self.flush()

    def flush(self) -> list[TextCue]:
        offset = self.rebaser.offset_s
        if offset is None:
            return []
        out = []
        for stream, start, duration, text in self.early:
            begin = round((start + offset) * WEBVTT_TIMESCALE)
            out.append((stream, begin, begin + max(1, round(duration * WEBVTT_TIMESCALE)), text))
        self.early = []
        return out
