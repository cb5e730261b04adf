"""Hand freed native memory back to the operating system after a stream's codecs are gone.

Encoders, decoders and frame pools live in C allocations (x264, FFmpeg). A
stream's pipeline objects form reference cycles, so their C memory stays
held until Python's next full collection, which may come much later; and what
is freed then stays in glibc's arenas. Measured: without this, the process grew
by about 9 MiB per publisher that came and went; with a full collection and
``malloc_trim(0)`` after each, it stays flat. :class:`MemoryReturner` does both
on a short-lived thread (a full collection and a trim of every arena take
milliseconds), at most once per ``min_interval_s``. Where the C library has no
``malloc_trim`` it does nothing. Called on the event loop only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from collections.abc import Callable

Trim = Callable[[], object]


def glibc_trim() -> Trim | None:
    """``malloc_trim(0)`` of the C library, or None when it has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def _collect_then(fn: Trim) -> None:
    gc.collect()  # codec objects caught in reference cycles hold their C memory until a full collection
    fn()


def _in_thread(fn: Trim) -> None:
    threading.Thread(target=_collect_then, args=(fn,), name="malloc-trim", daemon=True).start()


class MemoryReturner:
    """Coalesced ``malloc_trim`` after big frees; one owner (the event loop)."""

    def __init__(
        self,
        trim: Trim | None = None,
        *,
        min_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Trim], None] = _in_thread,
    ) -> None:
        self.trim = trim if trim is not None else glibc_trim()
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.spawn = spawn
        self._last: float | None = None

    def after_free(self) -> bool:
        """Memory was just freed: trim now unless a trim started within the interval. True when one started."""
        if self.trim is None:
            return False
        now = self.clock()
        if self._last is not None and now - self._last < self.min_interval_s:
            return False
        self._last = now
        self.spawn(self.trim)
        return True
