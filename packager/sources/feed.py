"""A pushed live feed that survives drops: successive inputs, a slate in between.

Broadcasters' connections drop and come back. ``FeedSource`` keeps one
pipeline (and its encoders) running for a stream across those inputs: while
an input is attached its frames pass through; when it ends, a slate (colour
bars with the pixel timecode, and silence) continues the same media timeline
in real time until the next input is attached or ``window_s`` passes. Players
see one continuous timeline (no gap, no reload); the next input is anchored
at the grid slot right after the last frame delivered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

import av
import numpy as np

from packager.scte35 import PtsMapper
from packager.sources.base import FrameSink, SourceInfo
from packager.sources.media import MediaSource
from packager.sources.testsrc import Painter
from packager.timebase import AUDIO_TIMESCALE, VIDEO_TIMESCALE

log = logging.getLogger(__name__)

SLATE_AUDIO_CHUNK = 1024


@dataclass
class Attached:
    """One input's place in the feed: ``done`` is set (with ``reason``) when it stops delivering.

    ``finished()`` is the same moment as a future of the caller's loop, so waiting for an input
    never holds a thread."""

    source: MediaSource
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]] = field(default_factory=list, repr=False)

    def finish(self, reason: str) -> None:
        """Any thread: this input stopped delivering, because of ``reason``."""
        with self._lock:
            if self.done.is_set():
                return
            self.reason = reason
            self.done.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_settle, fut, reason)
            except RuntimeError:  # that loop closed: nobody is waiting any more
                continue

    def finished(self) -> asyncio.Future[str]:
        """On a running loop: a future that gets the end reason once this input stopped delivering."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        with self._lock:
            if not self.done.is_set():
                self._waiters.append((loop, fut))
                return fut
        fut.set_result(self.reason)
        return fut


def _settle(fut: asyncio.Future[str], reason: str) -> None:
    if not fut.done():
        fut.set_result(reason)


class _Either:
    """``is_set``/``wait`` true when either event is set (global stop or this input's stop)."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        end = time.monotonic() + (timeout or 0)
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.a.wait(min(left, 0.05))
        return True


class _Tracker:
    """Passes frames on and remembers where the timeline is."""

    def __init__(self, sink: FrameSink) -> None:
        self.sink = sink
        self.next_video: int | None = None  # 90 kHz
        self.next_audio: dict[int, int] = {}  # input audio stream -> its next sample time, 48 kHz
        self.frame_ticks = 3000

    def video(self, frame: av.VideoFrame, pts: int, capture_utc_s: float) -> None:
        self.sink.video(frame, pts, capture_utc_s)
        self.next_video = pts + self.frame_ticks

    def audio(self, frame: av.AudioFrame, pts: int, capture_utc_s: float, stream: int) -> None:
        self.sink.audio(frame, pts, capture_utc_s, stream)
        self.next_audio[stream] = pts + frame.samples

    @property
    def audio_end(self) -> int | None:
        """Where the furthest audio stream is (48 kHz ticks), None before any audio."""
        return max(self.next_audio.values(), default=None)

    def cue(self, section: bytes, to_media: PtsMapper) -> None:
        self.sink.cue(section, to_media)

    def text(self, stream: int, start_ms: int, end_ms: int, text: str) -> None:
        self.sink.text(stream, start_ms, end_ms, text)


class FeedSource:
    """Implements the Source protocol for a stream fed by pushes (RTMP, HTTP)."""

    def __init__(self, first: MediaSource, *, window_s: float) -> None:
        self.first = Attached(first)
        self.window_s = window_s
        self.info = SourceInfo("feed", False, False)
        self._next: Attached | None = None
        self._current: Attached | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.slate_frames = 0
        self.finished = False  # run() returned: nothing can be attached any more
        self.audio_streams: tuple[int, ...] = (0,)  # every input decodes these audio streams
        self._input_since_utc_s = time.time()

    def probe(self) -> SourceInfo:
        info = self.first.source.probe()
        self.info = info
        return info

    def select_audio(self, streams: tuple[int, ...]) -> None:
        self.audio_streams = tuple(streams)

    def input_state(self) -> tuple[str, float]:
        """("live" | "slate", since when in UTC seconds); called from the loop, written by the feed thread."""
        with self._lock:
            return ("live" if self._current is not None else "slate"), self._input_since_utc_s

    def _set_current(self, entry: Attached | None) -> None:
        with self._lock:
            self._current = entry
            self._input_since_utc_s = time.time()

    def attach(self, source: MediaSource) -> Attached | None:
        """Make ``source`` (already probed) the feed's input; a current input is stopped (takeover).

        Returns None when the feed has already ended (the caller starts a new one)."""
        entry = Attached(source)
        with self._lock:
            if self.finished:
                return None
            if self._next is not None:
                self._next.finish("replaced before it started")
            self._next = entry
            if self._current is not None:
                self._current.stop.set()
        self._wake.set()
        return entry

    def run(self, sink: FrameSink, stop: threading.Event, duration_s: float | None = None) -> str:
        try:
            return self._run(sink, stop)
        finally:
            with self._lock:
                self.finished = True
                pending, self._next = self._next, None
            for entry in (pending, self.first):  # the first one too, if a stop came before it ran
                if entry is not None:
                    entry.finish("the feed ended before this input started")

    def _run(self, sink: FrameSink, stop: threading.Event) -> str:
        tracker = _Tracker(sink)
        tracker.frame_ticks = round(VIDEO_TIMESCALE / self.info.fps)
        entry: Attached | None = self.first
        while not stop.is_set():
            if entry is not None:
                self._set_current(entry)
                if tracker.next_video is not None:
                    entry.source.not_before_s = tracker.next_video / VIDEO_TIMESCALE
                elif tracker.audio_end is not None:
                    entry.source.not_before_s = tracker.audio_end / AUDIO_TIMESCALE
                entry.source.select_audio(self.audio_streams)
                try:
                    reason = entry.source.run(tracker, _Either(stop, entry.stop), None)  # type: ignore[arg-type]
                except Exception as exc:  # an input failing ends that input, not the stream
                    log.exception("feed input failed")
                    reason = f"input error: {exc}"
                self._set_current(None)
                entry.finish(reason)
                log.info("feed input ended: %s", reason)
                entry = None
                continue
            entry = self._slate(tracker, stop)
            if entry is None:
                return "stopped" if stop.is_set() else "feed lost"
        return "stopped"

    def _take_next(self) -> Attached | None:
        with self._lock:
            entry, self._next = self._next, None
        return entry

    def _slate(self, tracker: _Tracker, stop: threading.Event) -> Attached | None:
        """Colour bars and silence on the same timeline until an input is attached or the window ends."""
        info = self.info
        width = max(64, info.width or 640) // 2 * 2
        height = max(64, info.height or 360) // 2 * 2
        painter = Painter(width, height) if info.has_video else None
        ft = tracker.frame_ticks
        video_t = tracker.next_video if tracker.next_video is not None else None
        if video_t is None:
            now_ticks = int(time.time() * VIDEO_TIMESCALE)
            video_t = -(-now_ticks // ft) * ft
        first_audio_t = round(video_t * AUDIO_TIMESCALE / VIDEO_TIMESCALE)
        audio_t = {s: tracker.next_audio.get(s, first_audio_t) for s in self.audio_streams} if info.has_audio else {}
        silence = np.zeros((2, SLATE_AUDIO_CHUNK), dtype=np.float32)
        started = time.monotonic()
        log.info("feed: no input, showing the slate for up to %.0f s", self.window_s)
        n = video_t // ft
        while not stop.is_set():
            entry = self._take_next()
            if entry is not None:
                return entry
            if time.monotonic() - started > self.window_s:
                return None
            t_s = video_t / VIDEO_TIMESCALE
            delay = t_s - time.time()
            if delay > 0:
                self._wake.wait(min(delay, 0.1))
                self._wake.clear()
                continue
            if painter is not None:
                planes = painter.draw(n, int(t_s * 1000))
                tracker.video(av.VideoFrame.from_ndarray(planes, format="yuv420p"), video_t, t_s)
                self.slate_frames += 1
            end = round((video_t + ft) * AUDIO_TIMESCALE / VIDEO_TIMESCALE)
            for stream, t in audio_t.items():
                while t + SLATE_AUDIO_CHUNK <= end:
                    af = av.AudioFrame.from_ndarray(silence, format="fltp", layout="stereo")
                    af.sample_rate = AUDIO_TIMESCALE
                    tracker.audio(af, t, t / AUDIO_TIMESCALE, stream)
                    t += SLATE_AUDIO_CHUNK
                audio_t[stream] = t
            video_t += ft
            tracker.next_video = video_t
            n += 1
        return None
