"""Published media: parts and segments per track, the live window, wake-ups, files.

The store lives on the event loop. A part is in memory (and so servable) the
moment :meth:`StreamStore.publish_part` returns; its file is written by the
:class:`DiskWriter` thread through a temp file and ``os.replace``, in order, so
a manifest written to disk after it never names a missing or half-written
file. Media leaves the manifests first (the sliding window) and memory and
disk only ``grace_s`` later (at least 3 target durations, RFC 8216bis 6.2.2).

Waiters (blocking playlist reloads, preload-hinted parts, chunked segment
streams) share one future per distinct position, so a thousand requests for
the same part cost one wake-up.

Time (publish dates, the deletion grace, waits' deadlines) comes from the
store's :class:`~packager.timebase.Clock`, so tests drive it. An ended stream's
folder is removed by the writer thread behind the writes queued for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from packager.cmaf import styp
from packager.model import (
    INIT_NAME,
    Part,
    PartRef,
    Segment,
    StreamView,
    TrackInfo,
    TrackView,
    part_name,
    segment_name,
)
from packager.timebase import SYSTEM_CLOCK, Clock, MediaClock

log = logging.getLogger(__name__)

SEGMENT_HEADER = styp()


# --------------------------------------------------------------------------- disk


class DiskWriter:
    """One thread that writes and deletes files in submission order, atomically.

    Who calls what: ``write``, ``delete``, ``remove_tree`` and ``notify`` only put a job on the
    thread-safe queue and never block (the event loop calls them); ``flush`` and ``close`` block, so
    they are called off the loop or at shutdown. Jobs run on the writer thread, which alone writes
    ``errors``; ``_closing``, ``_stopped`` and ``_at_exit`` are shared and stay behind ``_lock``.
    """

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[str, Path, bytes] | Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closing = False
        self._stopped = False
        self._at_exit: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._run, name="disk-writer", daemon=True)
        self._thread.start()
        self.errors = 0

    def write(self, path: Path, data: bytes) -> None:
        self._q.put(("write", path, data))

    def delete(self, path: Path) -> None:
        self._q.put(("delete", path, b""))

    def remove_tree(self, path: Path) -> None:
        """Delete the folder ``path`` and all in it, after every job queued so far. Never blocks."""
        self._q.put(("rmtree", path, b""))

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything queued so far is on disk; False if ``timeout`` s passed first.

        Call it off the loop, or at shutdown."""
        done = threading.Event()
        self.notify(done.set)
        return done.wait(timeout)

    def notify(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the writer thread once everything queued so far is on disk. Never blocks.

        After :meth:`close` it runs when the writer has finished (or at once if it already has)."""
        with self._lock:
            if not self._closing:
                self._q.put(callback)
                return
            if not self._stopped:
                self._at_exit.append(callback)
                return
        _call(callback)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._q.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                with self._lock:
                    self._stopped = True
                    at_exit, self._at_exit = self._at_exit, []
                for callback in at_exit:
                    _call(callback)
                return
            if callable(item):
                _call(item)
                continue
            op, path, data = item
            try:
                _apply(op, path, data)
            except OSError as exc:
                self.errors += 1
                log.error("disk: %s %s failed: %s", op, path, exc)


def _apply(op: str, path: Path, data: bytes) -> None:
    """One job of the writer thread."""
    if op == "write":
        atomic_write(path, data)
    elif op == "delete":
        path.unlink(missing_ok=True)
    elif op == "rmtree" and path.exists():
        shutil.rmtree(path)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("disk: notify callback failed")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so no reader ever sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- tracks


@dataclass
class _Retired:
    due_s: float
    msn: int
    part_keys: tuple[tuple[int, int], ...]


class TrackStore:
    """One track's published media, window and waiters. Event-loop only."""

    def __init__(self, stream: StreamStore, info: TrackInfo) -> None:
        self.stream = stream
        self.info = info
        self.init: bytes | None = None
        self.segments: deque[Segment] = deque()
        self.segment_data: dict[int, bytes] = {}
        self.parts: dict[tuple[int, int], Part] = {}
        self.pending: list[Part] = []
        self.pending_msn: int | None = None
        self.pending_discontinuity = False
        self.next_part: tuple[int, int] | None = None
        self.discontinuity_sequence = 0
        self.retired: deque[_Retired] = deque()
        self.last_completed_msn: int | None = None
        self._waiters: dict[tuple[int, int], asyncio.Future[None]] = {}
        self.held_count = 0  # calls waiting right now (several may share one future)
        ts = info.timescale
        self.segment_ticks = stream.timing_segment_ticks(ts)
        self.part_ticks = stream.timing_part_ticks(ts)

    # -- naming / paths
    @property
    def folder(self) -> Path | None:
        return self.stream.folder / self.info.name if self.stream.folder else None

    def position_of(self, ticks: int) -> tuple[int, int]:
        msn = ticks // self.segment_ticks
        return msn, (ticks - msn * self.segment_ticks) // self.part_ticks

    # -- publishing
    def set_init(self, data: bytes) -> None:
        self.init = data
        if self.folder:
            self.stream.disk_write(self.folder / INIT_NAME, data)

    @property
    def end_ticks(self) -> int | None:
        """Where the newest published media ends (track ticks)."""
        if self.pending:
            return self.pending[-1].end
        return self.segments[-1].end if self.segments else None

    def publish_part(self, part: Part, last_in_segment: bool, discontinuity: bool) -> None:
        end = self.end_ticks
        if end is not None and (part.start < end or (part.msn, part.index) <= (self.last_position() or (-1, -1))):
            # A returning feed may not overwrite or reorder what players already have.
            log.warning(
                "%s/%s: part %d.%d overlaps published media, dropped",
                self.stream.name,
                self.info.name,
                part.msn,
                part.index,
            )
            self.stream.overlaps += 1
            return
        if self.pending_msn is not None and part.msn != self.pending_msn:
            self._close_segment()
        if self.pending_msn is None:
            self.pending_msn = part.msn
            self.pending_discontinuity = discontinuity or self.pending_discontinuity
        self.pending.append(part)
        self.parts[(part.msn, part.index)] = part
        if self.folder:
            self.stream.disk_write(self.folder / part_name(part.msn, part.index), part.data)
        self.next_part = self.position_of(part.end)
        if last_in_segment:
            self._close_segment()
        self._trim()
        self._wake()

    def _close_segment(self) -> None:
        if self.pending_msn is None or not self.pending:
            return
        parts = self.pending
        data = SEGMENT_HEADER + b"".join(p.data for p in parts)
        seg = Segment(
            track=self.info.name,
            msn=self.pending_msn,
            start=parts[0].start,
            duration=parts[-1].end - parts[0].start,
            parts=tuple(_ref(p) for p in parts),
            size=len(data),
            discontinuity=self.pending_discontinuity,
            published_utc_s=self.stream.clock_utc_s(),
        )
        self.segments.append(seg)
        self.segment_data[seg.msn] = data
        self.last_completed_msn = seg.msn
        if self.folder:
            self.stream.disk_write(self.folder / segment_name(seg.msn), data)
        self.pending = []
        self.pending_msn = None
        self.pending_discontinuity = False

    def finish(self) -> None:
        self._close_segment()
        self.next_part = None
        self._wake(all_=True)

    def _trim(self) -> None:
        """Slide the window: segments older than window_s leave the manifests now, memory/disk later."""
        if not self.segments:
            return
        newest_end = self.pending[-1].end if self.pending else self.segments[-1].end
        limit = newest_end - int(self.stream.window_s * self.info.timescale)
        now = self.stream.store.clock.monotonic_s()
        while len(self.segments) > 1 and self.segments[0].end <= limit:
            seg = self.segments.popleft()
            if self.segments[0].discontinuity:
                self.discontinuity_sequence += 1
            keys = tuple((p.msn, p.index) for p in seg.parts)
            self.retired.append(_Retired(now + self.stream.grace_s, seg.msn, keys))
        # Part payloads are only listed for the last few segments; keep memory bounded.
        keep_from = self.segments[max(0, len(self.segments) - self.stream.part_segments_kept)].msn
        for key in [k for k in self.parts if k[0] < keep_from]:
            del self.parts[key]
        while self.retired and self.retired[0].due_s <= now:
            r = self.retired.popleft()
            self.segment_data.pop(r.msn, None)
            if self.folder and self.stream.delete_expired:
                self.stream.disk_delete(self.folder / segment_name(r.msn))
                for msn, idx in r.part_keys:
                    self.stream.disk_delete(self.folder / part_name(msn, idx))

    # -- lookups
    def segment(self, msn: int) -> Segment | None:
        for seg in reversed(self.segments):
            if seg.msn == msn:
                return seg
            if seg.msn < msn:
                break
        return None

    def get_segment_bytes(self, msn: int) -> bytes | None:
        return self.segment_data.get(msn)

    def get_part(self, msn: int, index: int) -> Part | None:
        return self.parts.get((msn, index))

    def in_progress_chunks(self, msn: int) -> tuple[list[bytes], bool] | None:
        """The bytes of segment ``msn`` so far (styp first) and whether it is complete."""
        data = self.segment_data.get(msn)
        if data is not None:
            return [data], True
        if self.pending_msn == msn:
            return [SEGMENT_HEADER, *(p.data for p in self.pending)], False
        return None

    def last_position(self) -> tuple[int, int] | None:
        if self.pending:
            return self.pending[-1].msn, self.pending[-1].index
        if self.segments:
            p = self.segments[-1].parts[-1]
            return p.msn, p.index
        return None

    def view(self) -> TrackView:
        return TrackView(
            info=self.info,
            segments=tuple(self.segments),
            pending=tuple(_ref(p) for p in self.pending),
            pending_msn=self.pending_msn,
            next_part=None if self.stream.ended else self.next_part,
            discontinuity_sequence=self.discontinuity_sequence,
            pending_discontinuity=self.pending_discontinuity,
        )

    # -- waiting
    def has_part_at_or_after(self, msn: int, index: int) -> bool:
        last = self.last_position()
        return last is not None and last >= (msn, index)

    def has_segment(self, msn: int) -> bool:
        return self.last_completed_msn is not None and self.last_completed_msn >= msn

    async def wait_part(self, msn: int, index: int, timeout_s: float) -> bool:
        """Wait until a part at or after (msn, index) exists; False on timeout. True if ended."""
        return await self._wait((msn, index), timeout_s)

    async def wait_segment(self, msn: int, timeout_s: float) -> bool:
        """Wait until segment ``msn`` is complete (a later part exists); False on timeout."""
        return await self._wait((msn, 1 << 30), timeout_s)

    def _satisfied(self, key: tuple[int, int]) -> bool:
        if self.stream.ended:
            return True
        msn, index = key
        if index >= 1 << 30:
            return self.has_segment(msn)
        return self.has_part_at_or_after(msn, index)

    async def _wait(self, key: tuple[int, int], timeout_s: float) -> bool:
        if self._satisfied(key):
            return True
        fut = self._waiters.get(key)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._waiters[key] = fut
        # The deadline runs on the store's clock; asyncio.wait never cancels the shared future.
        deadline = asyncio.ensure_future(self.stream.store.clock.sleep(timeout_s))
        self.held_count += 1
        try:
            await asyncio.wait((fut, deadline), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.held_count -= 1
            deadline.cancel()
        return fut.done() or self._satisfied(key)

    def _wake(self, all_: bool = False) -> None:
        if not self._waiters:
            return
        for key in [k for k in self._waiters if all_ or self._satisfied(k)]:
            fut = self._waiters.pop(key)
            if not fut.done():
                fut.set_result(None)

    @property
    def waiter_count(self) -> int:
        """Distinct positions being waited for."""
        return len(self._waiters)


def _ref(p: Part) -> PartRef:
    return PartRef(p.msn, p.index, p.start, p.duration, p.independent, p.size)


# --------------------------------------------------------------------------- streams


class StreamStore:
    """All tracks of one stream plus the stream's version counter and view cache."""

    def __init__(
        self,
        store: Store,
        name: str,
        *,
        segment_s: Fraction,
        part_s: Fraction,
        window_s: Fraction,
        target_duration: int,
        clock: MediaClock,
    ) -> None:
        self.store = store
        self.name = name
        self.segment_s = segment_s
        self.part_s = part_s
        self.window_s = window_s
        self.target_duration = target_duration
        self.clock = clock
        self.tracks: dict[str, TrackStore] = {}
        self.version = 0
        self.expected_tracks: frozenset[str] = frozenset()  # every track the pipeline will publish
        self.overlaps = 0
        self.ended = False
        self.end_reason = ""
        self.published_utc_s = store.clock.utc_s()
        self.started_utc_s = self.published_utc_s
        self.files_removed = False
        self._view: StreamView | None = None
        # Media leaves disk >= 3 target durations after it left every manifest.
        self.grace_s = 3.0 * target_duration + float(segment_s)
        # Keep part payloads for the segments LL-HLS lists plus a margin.
        self.part_segments_kept = int(3 * target_duration / float(segment_s)) + 3
        self.delete_expired = clock.live

    # -- settings shared with tracks
    def timing_segment_ticks(self, timescale: int) -> int:
        return int(self.segment_s * timescale)

    def timing_part_ticks(self, timescale: int) -> int:
        return int(self.part_s * timescale)

    def clock_utc_s(self) -> float:
        return self.store.clock.utc_s()

    @property
    def folder(self) -> Path | None:
        """Where the stream's files go; None when not mirrored to disk or once its files were removed."""
        if self.store.root is None or self.files_removed:
            return None
        return self.store.root / self.name

    def remove_files(self) -> None:
        """Delete the stream's folder after every write already queued for it; later writes for it are dropped.

        The writer thread does the deletion, in order, so no file of the stream reappears afterwards."""
        folder = self.folder
        self.files_removed = True  # folder is None from now on: tracks and manifest files write nothing
        if folder is not None and self.store.disk is not None:
            self.store.disk.remove_tree(folder)

    def disk_write(self, path: Path, data: bytes) -> None:
        if self.store.disk:
            self.store.disk.write(path, data)

    def disk_delete(self, path: Path) -> None:
        if self.store.disk:
            self.store.disk.delete(path)

    # -- StreamListener
    def on_init(self, info: TrackInfo, data: bytes) -> None:
        track = self.tracks.get(info.name)
        if track is None:
            track = TrackStore(self, info)
            self.tracks[info.name] = track
        else:
            track.info = info
        track.set_init(data)
        self._changed()

    def on_part(self, part: Part, last_in_segment: bool, discontinuity: bool) -> None:
        track = self.tracks[part.track]
        track.publish_part(part, last_in_segment, discontinuity)
        self.published_utc_s = part.published_utc_s or self.clock_utc_s()
        self._changed()
        for listener in self.store.part_listeners:
            listener(self, part)
        if discontinuity:
            self._discontinuous()

    def on_input_switch(self) -> None:
        """The feed's input changed (a publisher came back or took over) on a continuing timeline:
        listeners hear of it; the manifests need no discontinuity because the encoders carried on."""
        self._discontinuous()

    def _discontinuous(self) -> None:
        for listener in self.store.discontinuity_listeners:
            listener(self)

    def on_end(self, reason: str) -> None:
        if self.ended:
            return
        for track in self.tracks.values():
            track.finish()
        self.ended = True
        self.end_reason = reason
        self.published_utc_s = self.clock_utc_s()
        self._changed()
        for track in self.tracks.values():
            track._wake(all_=True)

    def _changed(self) -> None:
        self.version += 1
        self._view = None
        for listener in self.store.change_listeners:
            listener(self)

    # -- reading
    def track(self, name: str) -> TrackStore | None:
        return self.tracks.get(name)

    def ordered_tracks(self) -> list[TrackStore]:
        video = sorted(
            (t for t in self.tracks.values() if t.info.kind == "video"),
            key=lambda t: (t.info.height, t.info.bitrate),
            reverse=True,
        )
        audio = [t for t in self.tracks.values() if t.info.kind == "audio"]
        return video + audio

    def view(self) -> StreamView:
        if self._view is None:
            self._view = StreamView(
                name=self.name,
                version=self.version,
                segment_s=self.segment_s,
                part_s=self.part_s,
                window_s=self.window_s,
                target_duration=self.target_duration,
                epoch_s=self.clock.epoch_s,
                live=self.clock.live and not self.ended,
                ended=self.ended,
                tracks=tuple(t.view() for t in self.ordered_tracks() if t.init is not None),
                published_utc_s=self.published_utc_s,
            )
        return self._view


class Store:
    """Every stream this process publishes, optionally mirrored to ``root`` on disk."""

    def __init__(self, root: Path | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """``clock``: where publish dates, the deletion grace and waits' deadlines read time."""
        self.root = root
        self.clock = clock
        self.disk = DiskWriter() if root is not None else None
        self.streams: dict[str, StreamStore] = {}
        self.change_listeners: list[Callable[[StreamStore], None]] = []
        self.part_listeners: list[Callable[[StreamStore, Part], None]] = []
        # called when media stops continuing the previous (once per track part flagged, once per resume)
        self.discontinuity_listeners: list[Callable[[StreamStore], None]] = []

    def open_stream(
        self,
        name: str,
        *,
        segment_s: Fraction,
        part_s: Fraction,
        window_s: Fraction,
        target_duration: int,
        clock: MediaClock,
    ) -> StreamStore:
        stream = StreamStore(
            self,
            name,
            segment_s=segment_s,
            part_s=part_s,
            window_s=window_s,
            target_duration=target_duration,
            clock=clock,
        )
        self.streams[name] = stream
        return stream

    def get(self, name: str) -> StreamStore | None:
        return self.streams.get(name)

    def __iter__(self) -> Iterator[StreamStore]:
        return iter(list(self.streams.values()))

    def close(self) -> None:
        if self.disk:
            self.disk.close()
