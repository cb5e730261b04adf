"""Log entry ids the publisher makes itself: ``ms-seq``, strictly increasing, so a snapshot can name one."""

from __future__ import annotations

from packager.timebase import Clock


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class LogIds:
    """Ids from the clock's milliseconds; never repeats or goes back, even when the clock does."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._ms = 0
        self._seq = -1

    def next(self) -> str:
        ms = int(self.clock.utc_s() * 1000)
        if ms > self._ms:
            self._ms, self._seq = ms, 0
        else:
            self._seq += 1
        return f"{self._ms}-{self._seq}"

    def floor(self, entry_id: str) -> None:
        """Ids from now on come after ``entry_id``."""
        ms, seq = parse_id(entry_id)
        if (ms, seq) >= (self._ms, self._seq):
            self._ms, self._seq = ms, seq
