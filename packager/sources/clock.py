"""One media clock: rebase source timestamps, absorb jumps, convert to constant frame rate.

Pure logic (no PyAV) so it is tested on its own. Source timestamps arrive in
seconds (Fractions) and may start anywhere, jump, go backwards or wander (VFR);
what leaves is a continuous, monotonic media timeline in integer ticks on a
frame grid anchored to the Unix epoch (live) or to zero (VOD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

CUE_CLOCK_HZ = 90_000  # SCTE-35 pts_time, MPEG-TS PTS and the media clock's video/splice ticks
PTS_WRAP = 1 << 33


@dataclass
class Rebaser:
    """Maps source seconds to media seconds: ``media = src + offset``, shared by all streams.

    A stream whose next timestamp is more than ``jump_s`` away from where it
    was expected (a jump forward or back, a DTS reset, a wrapped clock) moves
    the shared offset so the media timeline continues where it was; the other
    streams then follow without a second correction.
    """

    anchor_s: Fraction
    jump_s: Fraction = Fraction(1)
    offset_s: Fraction | None = None
    expected: dict[str, Fraction] = field(default_factory=dict)
    jumps: int = 0

    def media_s(self, stream: str, src_s: Fraction, duration_s: Fraction) -> Fraction:
        if self.offset_s is None:
            self.offset_s = self.anchor_s - src_s
        media = src_s + self.offset_s
        expected = self.expected.get(stream)
        if expected is not None and abs(media - expected) > self.jump_s:
            self.offset_s += expected - media
            media = expected
            self.jumps += 1
        self.expected[stream] = media + duration_s
        return media


@dataclass
class CfrScheduler:
    """Assigns frames to a constant-rate grid: drop early duplicates, repeat to fill small holes.

    ``slots(t)`` returns the grid times (ticks) at which the frame captured at
    ``t`` is shown: empty when it falls on a slot already taken, several when
    frames were missing. Holes longer than ``max_fill`` slots are not filled:
    the timeline skips ahead (the packager marks that as a gap).
    """

    frame_ticks: int
    start_ticks: int
    max_fill: int = 30
    next_index: int = 0
    dropped: int = 0
    repeated: int = 0
    gaps: int = 0

    def slots(self, t_ticks: int) -> list[int]:
        index = round(Fraction(t_ticks - self.start_ticks, self.frame_ticks))
        if index < self.next_index:
            self.dropped += 1
            return []
        if index - self.next_index > self.max_fill:
            self.gaps += 1
            first = index
        else:
            first = self.next_index
            self.repeated += index - self.next_index
        self.next_index = index + 1
        return [self.start_ticks + i * self.frame_ticks for i in range(first, index + 1)]


def grid_ticks(t_s: Fraction, frame_ticks: int, timescale: int) -> int:
    """The first frame-grid time (ticks since the epoch) at or after ``t_s`` seconds."""
    ticks = t_s * timescale
    n = -(-ticks // frame_ticks)
    return int(n) * frame_ticks


@dataclass
class CueClock:
    """Maps an SCTE-35 cue's 33-bit 90 kHz pts (the input's own clock) to media ticks.

    The cue's pts is on the same clock as the input's video timestamps: the
    33-bit value is unwrapped next to the newest video source time and moved
    by the rebaser's offset. Before the first video frame it is unknown.
    """

    rebaser: Rebaser
    last_video_src_s: Fraction | None = None

    def saw_video(self, src_s: Fraction) -> None:
        self.last_video_src_s = src_s

    def to_media(self, pts: int) -> int | None:
        if self.rebaser.offset_s is None or self.last_video_src_s is None:
            return None
        reference = round(self.last_video_src_s * CUE_CLOCK_HZ)
        wraps = round((reference - pts) / PTS_WRAP)
        src_s = Fraction(pts + wraps * PTS_WRAP, CUE_CLOCK_HZ)
        return round((src_s + self.rebaser.offset_s) * CUE_CLOCK_HZ)
