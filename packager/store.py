"""Published media: parts and segments per track, the live window, wake-ups, announcements.

The store lives on the event loop and is the one place media becomes
public. A part is in memory (and so servable) the moment
:meth:`StreamStore.on_part` returns; every change is then announced as a typed
event (:mod:`packager.publication`) to the listeners that subscribed, in order:
*publish first, announce second* is this module's rule and no one else's. The
disk mirror, the stream events and the Redis publisher are such listeners.
Media leaves the manifests first (the sliding window) and memory only
``grace_s`` later (at least 3 target durations, RFC 8216bis 6.2.2).

The origin reads through :mod:`packager.reader`, which :class:`StreamStore`
implements. Waiters (blocking playlist reloads, preload-hinted parts, chunked
segment streams) share one future per distinct position, so a thousand
requests for the same part cost one wake-up.

A replica (the origin's mirror of a Redis store) feeds the same events back in
with :meth:`Store.apply`, so its views, and so its manifests, are the
publisher's byte for byte.

Time (publish dates, the deletion grace, waits' deadlines) comes from the
store's :class:`~packager.timebase.Clock`, so tests drive it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

from packager.cmaf import styp
from packager.config import DEFAULT_TARGETS, PlayerTargets
from packager.model import Part, PartRef, Segment, StreamView, TrackInfo, TrackView
from packager.publication import (
    InitPublished,
    InputSwitched,
    MediaRetired,
    OwnerChanged,
    PartPublished,
    Publication,
    PublicationListener,
    SegmentClosed,
    SpliceScheduled,
    StreamEnded,
    StreamOpened,
    StreamRemoved,
    StreamTiming,
    TracksExpected,
)
from packager.reader import Position, Progress
from packager.splice import SPLICE_TIMESCALE, Splice, kept
from packager.timebase import SYSTEM_CLOCK, Clock, MediaClock

log = logging.getLogger(__name__)

SEGMENT_HEADER = styp()


class FileLookup(Protocol):
    """Where a store's objects lie on disk (the disk mirror answers)."""

    def file(self, stream: str, track: str, name: str) -> Path | None: ...


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
        self.switching = False  # the next part is a new owner's first (see _switch_overlap)
        self._waiters: dict[Position, asyncio.Future[None]] = {}
        self.held_count = 0  # calls waiting right now (several may share one future)
        ts = info.timescale
        self.segment_ticks = int(stream.segment_s * ts)
        self.part_ticks = int(stream.part_s * ts)

    @property
    def header(self) -> bytes:
        """What leads a segment's parts: ``styp`` for CMAF, nothing for a WebVTT file."""
        return b"" if self.info.kind == "text" else SEGMENT_HEADER

    def position_of(self, ticks: int) -> tuple[int, int]:
        msn = ticks // self.segment_ticks
        return msn, (ticks - msn * self.segment_ticks) // self.part_ticks

    # -- publishing
    def set_init(self, data: bytes) -> None:
        self.init = data
        self.stream.announce(InitPublished(self.stream.name, self.info, data))

    @property
    def end_ticks(self) -> int | None:
        """Where the newest published media ends (track ticks)."""
        if self.pending:
            return self.pending[-1].end
        return self.segments[-1].end if self.segments else None

    def publish_part(self, part: Part, last_in_segment: bool, discontinuity: bool) -> bool:
        """Publish ``part`` and announce it; False (dropped) when it would overlap what players have."""
        end = self.end_ticks
        if end is not None and self._switch_overlap(part, end):
            end = part.start
        done = self.last_completed_msn
        closed = done is not None and part.msn <= done and self.pending_msn != part.msn
        if closed or (
            end is not None and (part.start < end or (part.msn, part.index) <= (self.last_position() or (-1, -1)))
        ):
            # A returning feed (or a restarted process) may not overwrite, reorder or reopen what players have.
            log.warning(
                "%s/%s: part %d.%d overlaps published media, dropped",
                self.stream.name,
                self.info.name,
                part.msn,
                part.index,
            )
            self.stream.overlaps += 1
            return False
        if self.pending_msn is not None and part.msn != self.pending_msn:
            self.close_segment(self.stream.clock_utc_s())
        if self.pending_msn is None:
            self.pending_msn = part.msn
            self.pending_discontinuity = discontinuity or self.pending_discontinuity
        self.pending.append(part)
        self.parts[(part.msn, part.index)] = part
        self.next_part = self.position_of(part.end)
        self.stream.announce(PartPublished(self.stream.name, part, discontinuity))
        if last_in_segment:
            self.close_segment(self.stream.clock_utc_s())
        self._trim()
        self._wake()
        return True

    def switch_owner(self, resume_msn: int) -> None:
        """Another encoder publishes from segment ``resume_msn`` on (from its first part, or from the part after
        the old owner's last one when it fills the segment the old owner left unfinished): the next part is its
        first."""
        self.switching = True
        if self.next_part is None or self.next_part < (resume_msn, 0):
            self.next_part = (resume_msn, 0)

    def _switch_overlap(self, part: Part, end: int) -> bool:
        """The new owner's first part may begin up to one part before the old owner's media ended: two
        encoders' audio frames fall on different grids, and a part's last frame runs past its boundary. That
        part follows the old owner's last one: in the same segment, or first in a later one."""
        if not self.switching:
            return False
        self.switching = False
        last = self.last_position()
        if last is None or (part.msn, part.index) <= last or (part.index != 0 and part.msn != last[0]):
            return False
        return end - part.start < self.part_ticks

    def close_segment(self, published_utc_s: float, *, cut: bool = False, run: int | None = None) -> None:
        """Complete the segment in production (no-op without one) and announce it.

        ``cut``: its encoder stopped before the segment's end (a failover); see :attr:`Segment.cut`.
        ``run``: the publisher's :attr:`Segment.run` (a replica replaying it); else it follows from the window."""
        if self.pending_msn is None or not self.pending:
            return
        parts = self.pending
        if run is None:
            previous = self.segments[-1] if self.segments else None
            run = previous.run_msn if previous is not None and previous.msn + 1 == self.pending_msn else None
        data = self.header + b"".join(p.data for p in parts)
        seg = Segment(
            track=self.info.name,
            msn=self.pending_msn,
            start=parts[0].start,
            duration=parts[-1].end - parts[0].start,
            parts=tuple(_ref(p) for p in parts),
            size=len(data),
            discontinuity=self.pending_discontinuity,
            published_utc_s=published_utc_s,
            cut=cut,
            run=run,
        )
        self.segments.append(seg)
        self.segment_data[seg.msn] = data
        self.last_completed_msn = seg.msn
        self.pending = []
        self.pending_msn = None
        self.pending_discontinuity = False
        self.stream.announce(SegmentClosed(self.stream.name, seg))

    def finish(self) -> None:
        self.close_segment(self.stream.clock_utc_s())
        self.next_part = None
        self._wake(all_=True)

    def _trim(self) -> None:
        """Slide the window: segments older than window_s leave the manifests now, memory later."""
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
            self.stream.announce(MediaRetired(self.stream.name, self.info.name, r.msn, r.part_keys))

    def adopt(self, segments: list[tuple[Segment, bytes]]) -> None:
        """Seed an empty track's window with segments published before this process (a restart resuming the
        window it had on disk), oldest first: they are listed and served as if just published. Nothing is
        announced (they are not new); the view changes."""
        if self.segments or self.pending:
            raise ValueError(f"{self.stream.name}/{self.info.name}: adopt needs an empty track")
        for seg, data in segments:
            self.segments.append(seg)
            self.segment_data[seg.msn] = data
            self.last_completed_msn = seg.msn
        self.stream.version += 1
        self.stream._view = None

    def keep_through_grace(self, msn: int, data: bytes, part_keys: tuple[tuple[int, int], ...] = ()) -> None:
        """Keep the bytes of a segment no manifest lists any more for the deletion grace (a replica's resync
        moved its window on at once: players may still hold manifests that name the segment)."""
        self.segment_data[msn] = data
        self.retired.append(_Retired(self.stream.store.clock.monotonic_s() + self.stream.grace_s, msn, part_keys))

    # -- lookups
    def segment(self, msn: int) -> Segment | None:
        for seg in reversed(self.segments):
            if seg.msn == msn:
                return seg
            if seg.msn < msn:
                break
        return None

    def progress(self, msn: int) -> Progress | None:
        data = self.segment_data.get(msn)
        if data is not None:
            return Progress((data,), True)
        if self.pending_msn == msn:
            return Progress((self.header, *(p.data for p in self.pending)), False)
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
    def satisfied(self, position: Position) -> bool:
        if self.stream.ended:
            return True
        done = self.last_completed_msn
        if done is not None and done >= position.msn:
            # A closed segment gets no more parts: a cut one's missing parts are listed as gaps from now on.
            return True
        last = self.last_position()
        return position.index is not None and last is not None and last >= (position.msn, position.index)

    async def wait(self, position: Position, timeout_s: float) -> bool:
        """Wait until ``position`` is published; False on timeout. True at once if the stream ended."""
        if self.satisfied(position):
            return True
        fut = self._waiters.get(position)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._waiters[position] = fut
        # The deadline runs on the store's clock; asyncio.wait never cancels the shared future.
        deadline = asyncio.ensure_future(self.stream.store.clock.sleep(timeout_s))
        self.held_count += 1
        try:
            await asyncio.wait((fut, deadline), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.held_count -= 1
            deadline.cancel()
        return fut.done() or self.satisfied(position)

    def _wake(self, all_: bool = False) -> None:
        if not self._waiters:
            return
        for key in [k for k in self._waiters if all_ or self.satisfied(k)]:
            fut = self._waiters.pop(key)
            if not fut.done():
                fut.set_result(None)

    def settle(self) -> None:
        """After its state was set from outside (a replica's resync): slide the window, release who it satisfies."""
        self._trim()
        self._wake()

    def release_all(self) -> None:
        """Release every request held on this track (its stream ended, or is replaced or gone)."""
        self._wake(all_=True)

    @property
    def waiter_count(self) -> int:
        """Distinct positions being waited for."""
        return len(self._waiters)


def _ref(p: Part) -> PartRef:
    return PartRef(p.msn, p.index, p.start, p.duration, p.independent, p.size)


# --------------------------------------------------------------------------- streams


class StreamStore:
    """All tracks of one stream plus the stream's version counter and view cache.

    Implements :class:`packager.reader.StreamReader` for the origin."""

    def __init__(self, store: Store, name: str, timing: StreamTiming, started_utc_s: float) -> None:
        self.store = store
        self._name = name
        self.timing = timing
        self.segment_s = timing.segment_s
        self.part_s = timing.part_s
        self.window_s = timing.window_s
        self.target_duration = timing.target_duration
        self.clock = MediaClock(timing.epoch_s, live=timing.live)
        self.tracks: dict[str, TrackStore] = {}
        self.version = 0
        self.expected_tracks: frozenset[str] = frozenset()  # every track the pipeline will publish
        self.overlaps = 0
        self.ended = False
        self._end_reason = ""
        self.published_utc_s = started_utc_s
        self._started_utc_s = started_utc_s
        self.node: str | None = None  # None: published by this process
        self.splices: tuple[Splice, ...] = ()  # by start; those of breaks that left the window are dropped
        self._view: StreamView | None = None
        # Media leaves memory >= 3 target durations after it left every manifest.
        self.grace_s = 3.0 * timing.target_duration + float(timing.segment_s)
        # Keep part payloads for the segments LL-HLS lists plus a margin.
        self.part_segments_kept = int(3 * timing.target_duration / float(timing.segment_s)) + 3

    @property
    def name(self) -> str:
        return self._name

    @property
    def end_reason(self) -> str:
        return self._end_reason

    @property
    def started_utc_s(self) -> float:
        return self._started_utc_s

    def clock_utc_s(self) -> float:
        return self.store.clock.utc_s()

    def announce(self, event: Publication) -> None:
        """The state changed and is servable: drop the cached view, then tell every listener."""
        self.version += 1
        self._view = None
        self.store.announce(event)

    # -- StreamListener (what the pipeline publishes to)
    def expect_tracks(self, names: frozenset[str]) -> None:
        self.expected_tracks = names
        self._view = None
        self.announce(TracksExpected(self.name, names))

    def on_init(self, info: TrackInfo, data: bytes) -> None:
        track = self.tracks.get(info.name)
        if track is None:
            track = TrackStore(self, info)
            self.tracks[info.name] = track
        else:
            track.info = info
        track.set_init(data)

    def on_part(self, part: Part, last_in_segment: bool, discontinuity: bool) -> None:
        track = self.tracks[part.track]
        before = self.published_utc_s
        self.published_utc_s = part.published_utc_s or self.clock_utc_s()
        if not track.publish_part(part, last_in_segment, discontinuity):
            self.published_utc_s = before

    def on_splice(self, splice: Splice) -> bool:
        """Add a placed splice (the same one twice, a repeated cue, is ignored); False if ignored."""
        same = (splice.event_id, splice.kind, splice.start)
        if any((s.event_id, s.kind, s.start) == same for s in self.splices):
            return False
        self.splices = kept(tuple(sorted((*self.splices, splice), key=lambda s: s.start)), self._window_start())
        self.announce(SpliceScheduled(self.name, splice))
        return True

    def adopt_splices(self, splices: tuple[Splice, ...]) -> None:
        """Seed the splices a restarted process had published (like :meth:`TrackStore.adopt`: listed, not
        announced as new)."""
        merged = {(s.event_id, s.kind, s.start): s for s in (*splices, *self.splices)}
        self.splices = tuple(sorted(merged.values(), key=lambda s: s.start))
        self.version += 1
        self._view = None

    def _window_start(self) -> int | None:
        """Media time (splice ticks) of the oldest segment any track still lists."""
        starts = [
            t.segments[0].start * SPLICE_TIMESCALE // t.info.timescale for t in self.tracks.values() if t.segments
        ]
        return min(starts) if starts else None

    def on_input_switch(self) -> None:
        """The feed's input changed on a continuing timeline: listeners hear of it; the manifests need
        no discontinuity because the encoders carried on."""
        self.announce(InputSwitched(self.name))

    def hand_over(self, event: OwnerChanged) -> None:
        """This process publishes the stream from now on (it took the lease over): every segment the old
        owner left unfinished before ``event.resume_msn`` is closed as cut (none when the new owner fills the
        old owner's segment from the part after its last one), then the change is announced."""
        now = self.clock_utc_s()
        for track in self.tracks.values():
            if track.pending_msn is not None and track.pending_msn < event.resume_msn:
                track.close_segment(now, cut=True)
                track.settle()
            track.switch_owner(event.resume_msn)
        self.node = None
        self.announce(event)

    def on_end(self, reason: str, ended_utc_s: float | None = None) -> None:
        if self.ended:
            return
        for track in self.tracks.values():
            track.finish()
        self.ended = True
        self._end_reason = reason
        self.published_utc_s = self.clock_utc_s() if ended_utc_s is None else ended_utc_s
        self.announce(StreamEnded(self.name, reason, self.published_utc_s))
        for track in self.tracks.values():
            track._wake(all_=True)

    def restored(self, *, ended: bool, end_reason: str, started_utc_s: float, published_utc_s: float) -> None:
        """The stream-wide state a replica's resync sets; the cached view goes."""
        self.ended = ended
        self._end_reason = end_reason
        self._started_utc_s = started_utc_s
        self.published_utc_s = published_utc_s
        self.version += 1
        self._view = None

    # -- replaying a publisher's events (a replica)
    def apply(self, event: Publication) -> None:
        """Make the change ``event`` announces, exactly as the publisher made it."""
        match event:
            case TracksExpected(tracks=names):
                self.expect_tracks(names)
            case InitPublished(info=info, data=data):
                self.on_init(info, data)
            case PartPublished(part=part, discontinuity=discontinuity):
                self.on_part(part, False, discontinuity)
            case SegmentClosed(segment=seg):
                track = self.tracks.get(seg.track)
                if track is not None and track.pending_msn == seg.msn:
                    track.close_segment(seg.published_utc_s, cut=seg.cut, run=seg.run)
                    track.settle()
            case OwnerChanged(to_node=node):
                self.node = node
                for track in self.tracks.values():
                    track.switch_owner(event.resume_msn)
                self.announce(event)
            case InputSwitched():
                self.on_input_switch()
            case SpliceScheduled(splice=splice):
                self.on_splice(splice)
            case StreamEnded(reason=reason, ended_utc_s=ended):
                self.on_end(reason, ended)
            case _:
                pass  # MediaRetired: a replica retires on its own clock

    # -- reading (packager.reader.StreamReader)
    def track(self, name: str) -> TrackStore | None:
        return self.tracks.get(name)

    def _ready(self, name: str) -> TrackStore | None:
        track = self.tracks.get(name)
        return track if track is not None and track.init is not None else None

    def init(self, track: str) -> bytes | None:
        t = self._ready(track)
        return t.init if t is not None else None

    def part(self, track: str, msn: int, index: int) -> Part | None:
        t = self._ready(track)
        return t.parts.get((msn, index)) if t is not None else None

    def segment(self, track: str, msn: int) -> Segment | None:
        t = self._ready(track)
        return t.segment(msn) if t is not None else None

    def segment_bytes(self, track: str, msn: int) -> bytes | None:
        t = self._ready(track)
        return t.segment_data.get(msn) if t is not None else None

    def progress(self, track: str, msn: int) -> Progress | None:
        t = self._ready(track)
        return t.progress(msn) if t is not None else None

    def file(self, track: str, name: str) -> Path | None:
        files = self.store.files
        return files.file(self.name, track, name) if files is not None else None

    async def wait(self, track: str, position: Position, timeout_s: float) -> bool:
        t = self._ready(track)
        if t is None:
            return self.ended
        return await t.wait(position, timeout_s)

    def waiting_positions(self, track: str) -> int:
        t = self.tracks.get(track)
        return t.waiter_count if t is not None else 0

    def ordered_tracks(self) -> list[TrackStore]:
        video = sorted(
            (t for t in self.tracks.values() if t.info.kind == "video"),
            key=lambda t: (t.info.height, t.info.bitrate),
            reverse=True,
        )
        audio = [t for t in self.tracks.values() if t.info.kind == "audio"]
        text = [t for t in self.tracks.values() if t.info.kind == "text"]
        return video + audio + text

    def _listed_splices(self) -> tuple[Splice, ...]:
        """The splices of breaks still in the window (those that slid out are forgotten)."""
        self.splices = kept(self.splices, self._window_start())
        return self.splices

    def _no_init(self, name: str) -> bool:
        track = self.tracks.get(name)
        return track is None or track.init is None

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
                starting=not self.ended and any(self._no_init(name) for name in self.expected_tracks),
                splices=self._listed_splices(),
                hls_cue_tags=self.timing.hls_cue_tags,
                targets=self.timing.targets,
            )
        return self._view


class Store:
    """Every stream this process publishes (or, as a replica, mirrors). Event-loop only.

    Implements :class:`packager.reader.StoreReader` for the origin."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """``clock``: where publish dates, the deletion grace and waits' deadlines read time."""
        self.clock = clock
        self.streams: dict[str, StreamStore] = {}
        self.files: FileLookup | None = None  # set by the disk mirror
        self.available = True
        self._listeners: list[PublicationListener] = []

    # -- listeners
    def subscribe(self, listener: PublicationListener) -> None:
        """``listener`` hears every publication from now on, after those subscribed earlier."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unsubscribe(self, listener: PublicationListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def announce(self, event: Publication) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_publication(event)
            except Exception:
                # one broken listener must not stop publication (or the other listeners)
                log.exception("store: listener %r failed on %s", listener, type(event).__name__)

    # -- streams
    def open_stream(
        self,
        name: str,
        *,
        segment_s: Fraction,
        part_s: Fraction,
        window_s: Fraction,
        target_duration: int,
        clock: MediaClock,
        started_utc_s: float | None = None,
        hls_cue_tags: bool = False,
        targets: PlayerTargets = DEFAULT_TARGETS,
    ) -> StreamStore:
        timing = StreamTiming(
            segment_s, part_s, window_s, target_duration, clock.epoch_s, clock.live, hls_cue_tags, targets
        )
        return self.open(name, timing, self.clock.utc_s() if started_utc_s is None else started_utc_s)

    def open(self, name: str, timing: StreamTiming, started_utc_s: float) -> StreamStore:
        stream = StreamStore(self, name, timing, started_utc_s)
        self.streams[name] = stream
        self.announce(StreamOpened(name, timing, started_utc_s))
        return stream

    def remove(self, name: str) -> StreamStore | None:
        """Stop serving stream ``name``; listeners hear :class:`StreamRemoved` (its files go)."""
        stream = self.streams.pop(name, None)
        if stream is not None:
            self.announce(StreamRemoved(name))
        return stream

    def apply(self, event: Publication) -> StreamStore | None:
        """Replay a publisher's event onto this replica (see :meth:`StreamStore.apply`)."""
        if isinstance(event, StreamOpened):
            return self.open(event.stream, event.timing, event.started_utc_s)
        if isinstance(event, StreamRemoved):
            return self.remove(event.stream)
        stream = self.streams.get(event.stream)
        if stream is not None:
            stream.apply(event)
        return stream

    def get(self, name: str) -> StreamStore | None:
        return self.streams.get(name)

    def __iter__(self) -> Iterator[StreamStore]:
        return iter(list(self.streams.values()))
