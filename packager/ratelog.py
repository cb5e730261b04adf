"""Rate-limited log lines: a flood of one kind of message becomes one line with a count.

A hostile peer can make the same refusal happen thousands of times a second;
logging each one fills disks and hides everything else. :class:`RateLimitedLog`
lets the first line of a kind (a caller-chosen key, e.g. ``("rtmp-refused",
peer)``) through at once, swallows repeats for ``interval_s``, and then writes
the next one with ``(+N similar in the last S s)`` appended. Pure apart from
the logger call; the clock is injectable so tests drive it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

DEFAULT_INTERVAL_S = 10.0
MAX_KEYS = 4096  # distinct keys remembered; past it the oldest windows are forgotten


@dataclass
class _Window:
    opened: float
    suppressed: int = 0


class RateLimitedLog:
    """One owner (the event loop, or a single thread) calls :meth:`log`; not thread-safe by design."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._windows: dict[Hashable, _Window] = {}

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless a line of ``key`` was logged in the last interval; True when written."""
        now = self.clock()
        window = self._windows.get(key)
        if window is not None and now - window.opened < self.interval_s:
            window.suppressed += 1
            return False
        suppressed = window.suppressed if window is not None else 0
        if window is not None:
            del self._windows[key]  # re-insert at the end: the dict stays ordered oldest first
        self._windows[key] = _Window(now)
        self._forget_oldest()
        if suppressed:
            since = now - window.opened if window is not None else 0.0
            msg = f"{msg} (+{suppressed} similar in the last {since:.0f} s)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, key, msg, *args)

    def _forget_oldest(self) -> None:
        while len(self._windows) > MAX_KEYS:
            self._windows.pop(next(iter(self._windows)))
