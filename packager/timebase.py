"""Time bases and clocks: ticks always travel with their timescale; wall time comes from a clock.

Media time in this project is UTC-anchored for live feeds: a tick count on a
track's timescale measured from the Unix epoch (1970-01-01T00:00:00Z). For a
file packaged as VOD the clock starts at zero instead. Either way a
:class:`MediaClock` says which, so manifests can render wall-clock dates.

Parts that read the wall clock (publish dates, retirement grace, waits with a
deadline) take a :class:`Clock`, so tests drive time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Protocol

VIDEO_TIMESCALE = 90_000
AUDIO_TIMESCALE = 48_000


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


class Clock(Protocol):
    """Wall time (dates), monotonic time (durations) and sleeping, as one seam."""

    def utc_s(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def monotonic_s(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock's monotonic time have passed."""
        ...


class SystemClock:
    """The real clocks and the running loop's timer."""

    def utc_s(self) -> float:
        return time.time()

    def monotonic_s(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
