"""The last few minutes in fixed buckets of wall time: the ring behind the dashboard's charts.

:class:`Timeline` keeps one bucket per ``bucket_s`` seconds for the last
``window_s`` seconds, made by a factory the first time something lands in it;
older buckets are dropped as time moves on, so memory stays at
``window_s / bucket_s`` buckets however long a stream runs. :class:`Samples`
is the bounded set of values a bucket keeps for its quantiles. The event loop
owns both; callers pass the time (an injectable clock upstream).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

BUCKET_S = 5
WINDOW_S = 300
SAMPLE_CAP = 256  # values a bucket keeps; past it new values overwrite old ones in turn

B = TypeVar("B")


@dataclass
class Samples:
    """Up to ``cap`` values (later ones overwrite earlier ones in turn) with the exact count, low and high."""

    cap: int = SAMPLE_CAP
    values: list[float] = field(default_factory=list)
    count: int = 0
    low: float = math.inf
    high: float = -math.inf

    def add(self, value: float) -> None:
        if len(self.values) < self.cap:
            self.values.append(value)
        else:
            self.values[self.count % self.cap] = value
        self.count += 1
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def quantile(self, q: float) -> float | None:
        """The nearest-rank ``q`` quantile of the values kept (None: no values)."""
        return quantile(self.values, q)

    @property
    def minimum(self) -> float | None:
        return self.low if self.count else None

    @property
    def maximum(self) -> float | None:
        return self.high if self.count else None


def quantile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


class Timeline(Generic[B]):
    """Buckets of ``bucket_s`` seconds over the last ``window_s`` seconds (``now_s``: wall-clock seconds)."""

    def __init__(self, factory: Callable[[], B], bucket_s: int = BUCKET_S, window_s: int = WINDOW_S) -> None:
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError("a timeline needs bucket_s > 0 and window_s >= bucket_s")
        self.factory = factory
        self.bucket_s = bucket_s
        self.slots = window_s // bucket_s
        self._buckets: deque[tuple[int, B]] = deque()

    def at(self, now_s: float) -> B:
        """The bucket ``now_s`` falls in (made now if it is new; a clock stepped back keeps the newest)."""
        index = int(now_s // self.bucket_s)
        if self._buckets and self._buckets[-1][0] >= index:
            return self._buckets[-1][1]
        bucket = self.factory()
        self._buckets.append((index, bucket))
        self._trim(index)
        return bucket

    def window(self, now_s: float) -> list[tuple[float, B | None]]:
        """Every slot of the window, oldest first: (its start in seconds, its bucket or None when empty)."""
        index = int(now_s // self.bucket_s)
        self._trim(index)
        held = dict(self._buckets)
        return [(i * self.bucket_s, held.get(i)) for i in range(index - self.slots + 1, index + 1)]

    def recent(self, now_s: float, seconds: float) -> list[B]:
        """The buckets that hold anything of the last ``seconds``."""
        first = int((now_s - seconds) // self.bucket_s) + 1
        return [b for i, b in self._buckets if i >= first]

    def span_s(self, start_s: float, now_s: float) -> float:
        """Seconds of a bucket that have passed (the current one is still filling; at least 1 s)."""
        return max(1.0, min(float(self.bucket_s), now_s - start_s))

    def _trim(self, index: int) -> None:
        while self._buckets and self._buckets[0][0] <= index - self.slots:
            self._buckets.popleft()
