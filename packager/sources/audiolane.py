"""One decoded input audio stream on its way to its encoder: its description, resampler and timeline.

Each selected audio stream of an input has its own :class:`AudioLane`: a
resampler to 48 kHz stereo float planar (the AAC encoders' input), and its own
next sample time, so a late or jumping stream never shifts another's samples.
"""

from __future__ import annotations

from fractions import Fraction

import av

from packager.audiotracks import AudioStreamInfo
from packager.languages import UNDETERMINED
from packager.timebase import AUDIO_TIMESCALE

REANCHOR_TICKS = AUDIO_TIMESCALE // 10  # a stream more than 0.1 s off its own timeline restarts there


def describe(stream: av.audio.stream.AudioStream, index: int) -> AudioStreamInfo:
    """What the container says about one audio stream (``index``: its place among the audio streams)."""
    metadata = stream.metadata or {}
    language = stream.language or metadata.get("language") or UNDETERMINED
    channels = stream.codec_context.channels if stream.codec_context is not None else 0
    return AudioStreamInfo(
        index=index,
        language=language,
        title=metadata.get("title", ""),
        channels=channels,
        dispositions=tuple(str(flag.name) for flag in av.stream.Disposition if stream.disposition & flag),
    )


def _resampler() -> av.AudioResampler:
    return av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_TIMESCALE)


class AudioLane:
    """The source thread's state for one selected input audio stream."""

    def __init__(self, stream: int, clock_key: str) -> None:
        self.stream = stream  # index among the input's audio streams
        self.clock_key = clock_key  # its name on the shared Rebaser ("a" for the first lane)
        self.next: int | None = None  # media tick (48 kHz) of its next sample
        self._resampler = _resampler()

    def place(self, media_s: Fraction) -> None:
        """The decoded frame starts at ``media_s``: follow it when it is far from where the lane is."""
        start = round(media_s * AUDIO_TIMESCALE)
        if self.next is None or abs(start - self.next) > REANCHOR_TICKS:
            self.next = start

    def resample(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        """48 kHz stereo frames; a resampler that failed is replaced before the error is raised on."""
        frame.pts = None
        try:
            return self._resampler.resample(frame)
        except (av.error.FFmpegError, ValueError):
            self._resampler = _resampler()
            raise

    def advance(self, samples: int) -> int:
        """The tick the next ``samples`` start at; moves the lane past them."""
        assert self.next is not None
        start = self.next
        self.next += samples
        return start
