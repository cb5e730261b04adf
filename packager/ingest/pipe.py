"""A bounded byte pipe from the event loop to a blocking reader thread (PyAV's file-like input).

``ByteQueue`` is fed on the loop (``await put`` / ``close``) and read on a
worker thread with a blocking ``read(n)``, which is all PyAV needs from a
file-like object: ``av.open(queue, format="flv")`` (call it on that thread, it
blocks). The queue is not seekable on purpose, so PyAV treats it as a stream.
``put`` waits for room, so a slow reader pushes back on the writer instead of
growing memory; a ``read_timeout_s`` makes a stalled writer a read error
(``TimeoutError``) instead of a reader blocked for ever.
"""

from __future__ import annotations

import asyncio
import collections
import threading

DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class ByteQueueClosed(Exception):
    """The queue no longer takes data: the writer closed it or the reader aborted."""


def take(chunks: collections.deque[bytes], n: int, size: int) -> bytes:
    """Remove and return the first ``n`` bytes (all ``size`` if ``n < 0``) from a deque of byte chunks."""
    if n < 0 or n >= size:
        out = b"".join(chunks)
        chunks.clear()
        return out
    parts: list[bytes] = []
    need = n
    while need:
        head = chunks[0]
        if len(head) <= need:
            parts.append(chunks.popleft())
            need -= len(head)
        else:
            parts.append(head[:need])
            chunks[0] = head[need:]
            need = 0
    return b"".join(parts)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ByteQueue:
    """Bytes in on the loop, a blocking ``read(n)`` out on another thread, at most ``max_bytes`` held."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, *, read_timeout_s: float | None = None) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s  # the default for ``read``: None waits for ever
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._aborted = False
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._space_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def buffered(self) -> int:
        """Bytes waiting to be read."""
        return self._size

    @property
    def closed(self) -> bool:
        """True once the writer closed the queue or the reader aborted it."""
        return self._eof or self._aborted

    def _room_for(self, size: int) -> bool:
        return self._size == 0 or self._size + size <= self.max_bytes

    async def put(self, data: bytes) -> None:
        """Append ``data``, waiting (on the running loop) until the reader has made room."""
        if not data:
            return
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._eof or self._aborted:
                    raise ByteQueueClosed("byte queue is closed")
                if self._room_for(len(data)):
                    self._chunks.append(bytes(data))
                    self._size += len(data)
                    self._readable.notify_all()
                    return
                fut: asyncio.Future[None] = loop.create_future()
                self._space_waiters = [(lp, f) for lp, f in self._space_waiters if not f.done()]
                self._space_waiters.append((loop, fut))
            await fut

    def close(self) -> None:
        """Writer side: no more data; the reader gets what is buffered, then ``b""``."""
        with self._lock:
            self._eof = True
            self._readable.notify_all()
            waiters, self._space_waiters = self._space_waiters, []
        self._wake_writers(waiters)

    def abort(self) -> None:
        """Reader side: stop. Buffered data is dropped; ``put`` raises ``ByteQueueClosed``."""
        with self._lock:
            self._aborted = True
            self._chunks.clear()
            self._size = 0
            self._readable.notify_all()
            waiters, self._space_waiters = self._space_waiters, []
        self._wake_writers(waiters)

    def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Block until data is available; return up to ``n`` bytes (all buffered if ``n < 0``), ``b""`` at the end.

        With a ``timeout`` (seconds, default ``read_timeout_s``) and nothing arriving in time, raises
        ``TimeoutError``."""
        if n == 0:
            return b""
        if timeout is None:
            timeout = self.read_timeout_s
        with self._lock:
            if not self._readable.wait_for(lambda: self._size > 0 or self._eof or self._aborted, timeout):
                raise TimeoutError(f"no data for {timeout:g} s")
            if self._aborted or self._size == 0:
                return b""
            out = self._take(n)
            waiters, self._space_waiters = self._space_waiters, []
        self._wake_writers(waiters)
        return out

    def peek(self, n: int, more_than: int, timeout: float) -> bytes:
        """Reader side: wait up to ``timeout`` s until more than ``more_than`` bytes are buffered (or the end).

        Returns the first ``n`` buffered bytes without taking them (``b""`` once aborted), so a
        look at the stream's start (``packager.prescan``) leaves every byte to the demuxer."""
        with self._lock:
            self._readable.wait_for(lambda: self._size > more_than or self._eof or self._aborted, timeout)
            if self._aborted:
                return b""
            out = bytearray()
            for chunk in self._chunks:
                if len(out) >= n:
                    break
                out += chunk[: n - len(out)]
            return bytes(out)

    def _take(self, n: int) -> bytes:
        out = take(self._chunks, n, self._size)
        self._size -= len(out)
        return out

    @staticmethod
    def _wake_writers(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
        for loop, fut in waiters:
            if loop.is_closed():
                continue
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
                continue
