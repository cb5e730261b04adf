"""A clock tests drive by hand: ``advance`` moves time and wakes the sleepers that are due."""

from __future__ import annotations

import asyncio


class ManualClock:
    """Implements ``packager.timebase.Clock``; time moves only when ``advance`` is called."""

    def __init__(self, utc_s: float = 1_700_000_000.0) -> None:
        self.now_s = 0.0
        self.utc_offset_s = utc_s
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def utc_s(self) -> float:
        return self.utc_offset_s + self.now_s

    def monotonic_s(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now_s + seconds, fut))
        await fut

    @property
    def sleeping(self) -> int:
        """Sleepers still waiting for their time."""
        return sum(1 for _due, fut in self._sleepers if not fut.done())

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self.now_s]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self.now_s and not f.done()]
        for _t, fut in due:
            if not fut.done():
                fut.set_result(None)


async def until(condition, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Let the loop run until ``condition()`` holds; fail after ``timeout_s`` of loop time."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.002)
