"""How far packaging a source has got: media time done of the total, speed, time left.

:class:`MediaProgress` is fed every encoded sample on the event loop (which
owns it) and counts, per rendition, media seconds from its first sample to
the end of its newest; the stream is as far as its slowest rendition.
:meth:`MediaProgress.now` gives a :class:`Progress` value with the speed (x
realtime) and, when the total is known (a file's duration, or ``--duration``),
the fraction and the time left. The clock is injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    done_s: float  # media seconds packaged (the slowest rendition)
    total_s: float | None  # media seconds the source holds (None: not known, e.g. live)
    elapsed_s: float  # wall seconds since the first sample
    renditions: tuple[str, ...]

    @property
    def speed(self) -> float:
        """Media seconds per wall second (x realtime); 0 before any progress."""
        return self.done_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        if not self.total_s:
            return None
        return min(1.0, self.done_s / self.total_s)

    @property
    def eta_s(self) -> float | None:
        """Wall seconds left at the speed so far (None: no total or no speed yet)."""
        if self.total_s is None or self.speed <= 0:
            return None
        return max(0.0, self.total_s - self.done_s) / self.speed

    def as_json(self) -> dict[str, object]:
        return {
            "done_s": round(self.done_s, 3),
            "total_s": None if self.total_s is None else round(self.total_s, 3),
            "fraction": None if self.fraction is None else round(self.fraction, 4),
            "speed": round(self.speed, 3),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "renditions": list(self.renditions),
        }


@dataclass
class _Track:
    first: int  # ticks (-1: nothing yet)
    newest_end: int
    timescale: int

    @property
    def done_s(self) -> float:
        return (self.newest_end - self.first) / self.timescale if self.first >= 0 else 0.0


@dataclass
class MediaProgress:
    """Event-loop owned: :meth:`advance` per sample, :meth:`now` to read."""

    total_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    _tracks: dict[str, _Track] = field(default_factory=dict)
    _started: float | None = None

    def expect(self, names: list[str]) -> None:
        """The renditions that count: one that has produced nothing yet holds the progress at zero."""
        for name in names:
            self._tracks.setdefault(name, _Track(-1, -1, 1))

    def advance(self, track: str, pts: int, duration: int, timescale: int) -> None:
        if self._started is None:
            self._started = self.clock()
        t = self._tracks.get(track)
        if t is None or t.first < 0:
            t = _Track(pts, pts + duration, timescale)
            self._tracks[track] = t
        t.newest_end = max(t.newest_end, pts + duration)

    def now(self) -> Progress:
        done = min((t.done_s for t in self._tracks.values()), default=0.0)
        elapsed = self.clock() - self._started if self._started is not None else 0.0
        return Progress(max(0.0, done), self.total_s, elapsed, tuple(self._tracks))
