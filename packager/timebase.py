"""Time bases and rescaling: ticks always travel with their timescale.

Media time in this project is UTC-anchored for live feeds: a tick count on a
track's timescale measured from the Unix epoch (1970-01-01T00:00:00Z). For a
file packaged as VOD the clock starts at zero instead. Either way a
:class:`MediaClock` says which, so manifests can render wall-clock dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

VIDEO_TIMESCALE = 90_000
AUDIO_TIMESCALE = 48_000


def rescale(ticks: int, src: int | Fraction, dst: int | Fraction) -> int:
    """Convert ``ticks`` from timescale ``src`` (ticks per second) to ``dst``, rounding to nearest."""
    value = Fraction(ticks) * Fraction(dst) / Fraction(src)
    return round(value)


def format_iso(dt: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z suffix, as HLS and DASH want it."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_from_epoch_s(seconds: float | Fraction) -> str:
    base = datetime(1970, 1, 1, tzinfo=UTC)
    micros = round(Fraction(seconds) * 1_000_000)
    return format_iso(base + timedelta(microseconds=micros))


@dataclass(frozen=True)
class MediaClock:
    """Where media time zero sits on the wall clock.

    ``epoch_s`` is the UTC time (seconds since 1970) of media time 0. For live
    feeds it is 0: media time *is* UTC, so a restarted or redundant packager
    derives the same segment numbers. For VOD it is the wall time packaging
    started, so PROGRAM-DATE-TIME stays meaningful.
    """

    epoch_s: Fraction = Fraction(0)
    live: bool = True

    def utc_s(self, ticks: int, timescale: int) -> Fraction:
        return self.epoch_s + Fraction(ticks, timescale)

    def iso(self, ticks: int, timescale: int) -> str:
        return iso_from_epoch_s(self.utc_s(ticks, timescale))
