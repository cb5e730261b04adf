"""Stream events from the store's publications: started, stopped, discontinuity, failover, segments, stalls, vod.ready.

:class:`StreamEvents` is one listener of the store (:mod:`packager.publication`).
It announces a stream once every rendition it expects has published, each
completed segment, each break in the media (a part flagged discontinuous, an
input switch; one event per segment duration at most), the end, and, with a
disk mirror, ``vod.ready`` once the final manifests are on disk. It watches
each rendition: one timer per rendition, re-armed when it fires, declares it
stalled when no part arrived for ``stall_parts`` part targets, and recovered
at its next part. Each change of the node publishing a stream (an
:class:`~packager.publication.OwnerChanged`) is a ``stream.failover`` event and
is kept, the last ``FAILOVER_HISTORY`` per stream, for ``/api/streams``. Durations and the watchdog run on a
:class:`~packager.timebase.Clock`, so tests drive them by hand. Event-loop only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packager.events import (
    RENDITION_RECOVERED,
    RENDITION_STALLED,
    SEGMENT_PUBLISHED,
    STREAM_DISCONTINUITY,
    STREAM_FAILOVER,
    STREAM_SPLICE,
    STREAM_STARTED,
    STREAM_STOPPED,
    VOD_READY,
    EventBus,
)
from packager.model import MASTER_NAME, MPD_NAME, Part, Segment, segment_name, track_segment_name
from packager.publication import (
    InitPublished,
    InputSwitched,
    OwnerChanged,
    PartPublished,
    Publication,
    SegmentClosed,
    SpliceScheduled,
    StreamEnded,
    StreamOpened,
    StreamRemoved,
    TracksExpected,
)
from packager.splice import SPLICE_TIMESCALE, Splice
from packager.store import Store, StreamStore
from packager.timebase import Clock, iso_from_epoch_s

FAILOVER_HISTORY = 10  # owner changes kept per stream


class FinalNotices(Protocol):
    """Who says when an ended stream's final manifests are on disk (the disk mirror)."""

    def when_final(self, listener: Any) -> None: ...


@dataclass
class _Watch:
    """One rendition's watchdog: when its last part came and the timer that checks for silence."""

    last: float  # clock monotonic seconds of the newest part
    position: tuple[int, int]
    timer: asyncio.Task[None] | None = None
    stalled: bool = False


@dataclass(frozen=True)
class Failovers:
    """How many times a stream changed hands since this process saw it open, and the last few changes."""

    count: int
    last: tuple[OwnerChanged, ...]  # oldest first

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "last": [_failover_entry(e) for e in self.last]}


NO_FAILOVERS = Failovers(0, ())


@dataclass
class _StreamState:
    started: bool = False
    stopped: bool = False
    started_utc_s: float = 0.0
    last_discontinuity: float = float("-inf")
    early_segments: list[Segment] = field(default_factory=list)  # closed before the stream was announced
    watches: dict[str, _Watch] = field(default_factory=dict)
    failovers: int = 0
    owner_changes: deque[OwnerChanged] = field(default_factory=lambda: deque(maxlen=FAILOVER_HISTORY))


class StreamEvents:
    """Listens to a :class:`~packager.store.Store` and publishes its streams' events. Event-loop only.

    ``files``: the disk mirror, when there is one: ``vod.ready`` then waits for the final manifests on disk.
    Durations and the watchdog run on ``clock`` (default: the store's)."""

    def __init__(
        self,
        bus: EventBus,
        store: Store,
        *,
        files: FinalNotices | None = None,
        stall_parts: float = 3.0,
        clock: Clock | None = None,
    ) -> None:
        if stall_parts <= 0:
            raise ValueError("stall_parts must be > 0")
        self.bus = bus
        self.store = store
        self.files = files
        self.stall_parts = stall_parts
        self.clock: Clock = clock if clock is not None else store.clock
        self._states: dict[str, _StreamState] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attached = False

    def attach(self) -> None:
        """Start listening (call on the loop); streams already publishing are picked up at their next change."""
        if self._attached:
            return
        self._loop = asyncio.get_running_loop()
        self.bus.bind(self._loop)
        self.store.subscribe(self)
        if self.files is not None:
            self.files.when_final(self._final_on_disk)
        self._attached = True

    def close(self) -> None:
        """Stop listening and cancel every watchdog timer."""
        if not self._attached:
            return
        self.store.unsubscribe(self)
        for state in self._states.values():
            self._stop_watches(state)
        self._attached = False

    def stalled(self, stream: str) -> list[str]:
        """Renditions of ``stream`` that are stalled right now."""
        state = self._states.get(stream)
        return sorted(name for name, w in state.watches.items() if w.stalled) if state else []

    def failovers(self, stream: str) -> Failovers:
        """The owner changes of ``stream`` seen since it opened (the last ``FAILOVER_HISTORY`` of them)."""
        state = self._states.get(stream)
        return Failovers(state.failovers, tuple(state.owner_changes)) if state else NO_FAILOVERS

    def threshold_s(self, stream: StreamStore) -> float:
        return float(stream.part_s) * self.stall_parts

    # -- the listener
    def on_publication(self, event: Publication) -> None:
        if isinstance(event, StreamOpened):
            self._forget(event.stream)
            self._states[event.stream] = _StreamState()
            return
        if isinstance(event, StreamRemoved):
            self._forget(event.stream)
            return
        stream = self.store.get(event.stream)
        if stream is None:
            return
        state = self._states.get(event.stream)
        if state is None:  # a stream that was publishing before we attached
            state = self._states[event.stream] = _StreamState()
        match event:
            case PartPublished(part=part, discontinuity=discontinuity):
                self._maybe_start(stream, state)
                self._part(stream, state, part)
                if discontinuity:
                    self._discontinuity(stream, state)
            case SegmentClosed(segment=seg):
                self._segment(stream, state, seg)
            case InputSwitched():
                self._discontinuity(stream, state)
            case InitPublished() | TracksExpected():
                self._maybe_start(stream, state)
            case StreamEnded():
                self._ended(stream, state)
            case OwnerChanged():
                self._failover(stream, state, event)
            case SpliceScheduled(splice=splice):
                self.bus.publish(STREAM_SPLICE, stream.name, _splice_data(stream, splice))

    def _forget(self, name: str) -> None:
        state = self._states.pop(name, None)
        if state is not None:
            self._stop_watches(state)

    def _maybe_start(self, stream: StreamStore, state: _StreamState) -> None:
        if state.started:
            return
        if not any(t.end_ticks is not None for t in stream.tracks.values()):
            return  # inits only (or ended before any media): nothing has started
        ready = {name for name, t in stream.tracks.items() if t.init is not None}
        if not stream.expected_tracks <= ready and not stream.ended:
            return  # announce the stream once every rendition is known
        state.started = True
        state.started_utc_s = self.clock.utc_s()
        self.bus.publish(STREAM_STARTED, stream.name, _started_data(stream))
        early, state.early_segments = state.early_segments, []
        for seg in early:
            self._segment(stream, state, seg)

    def _segment(self, stream: StreamStore, state: _StreamState, seg: Segment) -> None:
        if not state.started:
            state.early_segments.append(seg)
            return
        track = stream.track(seg.track)
        ts = track.info.timescale if track is not None else 1
        name = track_segment_name(track.info.kind, seg.msn) if track is not None else segment_name(seg.msn)
        self.bus.publish(
            SEGMENT_PUBLISHED,
            stream.name,
            {
                "rendition": seg.track,
                "msn": seg.msn,
                "duration_s": round(seg.duration / ts, 6),
                "size": seg.size,
                "uri": f"/live/{stream.name}/{seg.track}/{name}",
                "discontinuity": seg.discontinuity,
            },
        )

    def _discontinuity(self, stream: StreamStore, state: _StreamState) -> None:
        now = self.clock.monotonic_s()
        # every track reports the same break; one event per segment duration is enough
        if state.stopped or now - state.last_discontinuity < float(stream.segment_s):
            return
        state.last_discontinuity = now
        self.bus.publish(STREAM_DISCONTINUITY, stream.name, {"renditions": sorted(stream.tracks)})

    def _failover(self, stream: StreamStore, state: _StreamState, event: OwnerChanged) -> None:
        state.failovers += 1
        state.owner_changes.append(event)
        self.bus.publish(STREAM_FAILOVER, stream.name, {"stream": stream.name, **_failover_data(event)})

    def _ended(self, stream: StreamStore, state: _StreamState) -> None:
        self._maybe_start(stream, state)
        if state.stopped:
            return
        state.stopped = True
        self._stop_watches(state)
        if state.started:
            self.bus.publish(
                STREAM_STOPPED,
                stream.name,
                {"reason": stream.end_reason, "duration_s": round(self.clock.utc_s() - state.started_utc_s, 3)},
            )
            if self.files is None:
                self.bus.publish(VOD_READY, stream.name, _vod_data(stream.name, stream.end_reason, None))

    def _final_on_disk(self, name: str, folder: Path) -> None:
        """Called on the disk writer's thread once an ended stream's final manifests are on disk."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._vod_ready, name, folder)
            except RuntimeError:
                pass  # the loop closed meanwhile: nobody is left to tell

    def _vod_ready(self, name: str, folder: Path) -> None:
        state = self._states.get(name)
        stream = self.store.get(name)
        if state is not None and state.started and stream is not None:
            self.bus.publish(VOD_READY, name, _vod_data(name, stream.end_reason, folder))

    # -- watchdog
    def _part(self, stream: StreamStore, state: _StreamState, part: Part) -> None:
        if state.stopped or stream.ended or self._loop is None:
            return
        now = self.clock.monotonic_s()
        watch = state.watches.get(part.track)
        if watch is None:
            watch = state.watches[part.track] = _Watch(now, (part.msn, part.index))
        elif watch.stalled:
            watch.stalled = False
            self.bus.publish(
                RENDITION_RECOVERED,
                stream.name,
                {"rendition": part.track, "silent_s": round(now - watch.last, 3), "part": f"{part.msn}.{part.index}"},
            )
        watch.last = now
        watch.position = (part.msn, part.index)
        if watch.timer is None:  # the timer sleeps on until the silence is long enough: no churn per part
            watch.timer = self._loop.create_task(self._watch(stream, part.track, watch), name=f"watch {part.track}")

    async def _watch(self, stream: StreamStore, track: str, watch: _Watch) -> None:
        """Sleep until ``track`` has been silent for the threshold, then report the stall once."""
        try:
            while True:
                state = self._states.get(stream.name)
                if state is None or state.stopped or stream.ended:
                    return
                limit = self.threshold_s(stream)
                wait_s = watch.last + limit - self.clock.monotonic_s()
                if wait_s > 0.001:
                    await self.clock.sleep(wait_s)
                    continue
                self._stall(stream, track, watch, limit)
                return
        finally:
            if watch.timer is asyncio.current_task():
                watch.timer = None

    def _stall(self, stream: StreamStore, track: str, watch: _Watch, limit: float) -> None:
        watch.stalled = True  # the next part re-arms the timer and reports the recovery
        msn, index = watch.position
        self.bus.publish(
            RENDITION_STALLED,
            stream.name,
            {
                "rendition": track,
                "silent_s": round(self.clock.monotonic_s() - watch.last, 3),
                "threshold_s": round(limit, 3),
                "last_part": f"{msn}.{index}",
            },
        )

    def _stop_watches(self, state: _StreamState) -> None:
        for watch in state.watches.values():
            if watch.timer is not None:
                watch.timer.cancel()
                watch.timer = None
            watch.stalled = False


def _vod_data(name: str, reason: str, folder: Path | None) -> dict[str, Any]:
    return {
        "reason": reason,
        "hls": f"/live/{name}/{MASTER_NAME}",
        "dash": f"/live/{name}/{MPD_NAME}",
        "folder": str(folder) if folder is not None else None,
    }


def _started_data(stream: StreamStore) -> dict[str, Any]:
    return {
        "renditions": [
            {
                "name": t.info.name,
                "kind": t.info.kind,
                "codec": t.info.codec,
                "bitrate": t.info.bitrate,
                **({"width": t.info.width, "height": t.info.height} if t.info.kind == "video" else {}),
            }
            for t in stream.ordered_tracks()
        ],
        "segment_s": float(stream.segment_s),
        "part_s": float(stream.part_s),
        "hls": f"/live/{stream.name}/{MASTER_NAME}",
        "dash": f"/live/{stream.name}/{MPD_NAME}",
    }


def _splice_data(stream: StreamStore, splice: Splice) -> dict[str, Any]:
    """A placed ad-break splice: its id, kind, instant (UTC, as EXT-X-PROGRAM-DATE-TIME counts) and source."""
    return {
        "id": splice.event_id,
        "kind": splice.kind,
        "start": iso_from_epoch_s(stream.clock.epoch_s + splice.start_s),
        "duration_s": None if splice.duration is None else splice.duration / SPLICE_TIMESCALE,
        "from": splice.origin,
    }


def _failover_summary(event: OwnerChanged) -> dict[str, Any]:
    return {"from": event.from_node, "to": event.to_node, "reason": event.reason, "gap_s": round(event.gap_s, 6)}


def _failover_data(event: OwnerChanged) -> dict[str, Any]:
    """The ``stream.failover`` event's data."""
    return {**_failover_summary(event), "epoch": event.epoch, "resume_msn": event.resume_msn}


def _failover_entry(event: OwnerChanged) -> dict[str, Any]:
    """One of ``/api/streams``' ``failovers``."""
    return {**_failover_summary(event), "at": iso_from_epoch_s(event.changed_utc_s)}
