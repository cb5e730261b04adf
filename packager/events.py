"""Stream lifecycle events: the :class:`Event` value, the loop-owned :class:`EventBus`, the emitters.

An event is a small JSON object with a unique ``id``, a ``type``, the
``stream`` it concerns, the UTC ``time`` (ISO 8601, ms) and a ``data``
object. :class:`StreamEvents` turns store happenings into events (a stream's
first media, its end, discontinuities, segments, the final manifests on disk)
and watches each rendition: one timer per rendition, re-armed when it fires,
declares it stalled when no part arrived for ``stall_parts`` part targets.
:func:`ingest_rejected` reports the ingest gate's refusals (never the key).

The :class:`EventBus` lives on the event loop: loop code calls
:meth:`EventBus.publish`, worker threads :meth:`EventBus.publish_threadsafe`.
It keeps a bounded backlog for replay (SSE ``Last-Event-ID``), hands each
event to synchronous sinks (the webhook queues) and to subscribers with
bounded queues; a subscriber that falls behind is closed, never waited for.
Ids are ``<boot>-<seq>``: ``boot`` is random per process (so ids stay unique
across restarts, as webhook receivers dedupe on them) and ``seq`` counts up.

Pure: no aiohttp, no codecs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from packager.model import MASTER_NAME, MPD_NAME, Part, segment_name
from packager.store import Store, StreamStore
from packager.timebase import iso_from_epoch_s

log = logging.getLogger(__name__)

STREAM_STARTED = "stream.started"
STREAM_STOPPED = "stream.stopped"
STREAM_DISCONTINUITY = "stream.discontinuity"
RENDITION_STALLED = "rendition.stalled"
RENDITION_RECOVERED = "rendition.recovered"
SEGMENT_PUBLISHED = "segment.published"
VOD_READY = "vod.ready"
INGEST_REJECTED = "ingest.rejected"

EVENT_TYPES: tuple[str, ...] = (
    STREAM_STARTED,
    STREAM_STOPPED,
    STREAM_DISCONTINUITY,
    RENDITION_STALLED,
    RENDITION_RECOVERED,
    SEGMENT_PUBLISHED,
    VOD_READY,
    INGEST_REJECTED,
)
OPT_IN_TYPES = frozenset({SEGMENT_PUBLISHED})  # frequent: only delivered when asked for by name
DEFAULT_TYPES = frozenset(EVENT_TYPES) - OPT_IN_TYPES

_SHOWABLE = re.compile(r"[A-Za-z0-9._-]{1,40}")
EVENT_ID = re.compile(r"([0-9a-f]{12})-([0-9]{1,18})")


def parse_types(items: Iterable[str], where: str) -> frozenset[str]:
    """Event type names (``"*"`` = every type but the opt-in ones); ValueError naming ``where`` otherwise."""
    out: set[str] = set()
    for item in items:
        if item == "*":
            out |= DEFAULT_TYPES
        elif item in EVENT_TYPES:
            out.add(item)
        else:
            shown = repr(item) if _SHOWABLE.fullmatch(item) else "(not a type name)"  # never echo markup
            raise ValueError(f"{where}: unknown event type {shown} (known: {', '.join(EVENT_TYPES)} or '*')")
    if not out:
        raise ValueError(f"{where}: name at least one event type")
    return frozenset(out)


def parse_event_id(text: str) -> tuple[str, int] | None:
    """``(boot, seq)`` of an id this kind of bus hands out, or None if ``text`` is not one."""
    m = EVENT_ID.fullmatch(text)
    return (m.group(1), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Event:
    id: str
    seq: int  # order on this bus (the number in the id)
    type: str
    stream: str | None
    time: str  # UTC, ISO 8601 with milliseconds
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "stream": self.stream, "time": self.time, "data": self.data}

    @cached_property
    def json(self) -> str:
        """The event as one line of JSON (what webhooks sign and SSE sends)."""
        return json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=False)


class Subscription:
    """One consumer's bounded queue of events (a live SSE client). Loop only."""

    def __init__(self, types: frozenset[str], maxsize: int) -> None:
        self.types = types
        self.maxsize = maxsize
        self.overflowed = False
        self.closed = False
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def offer(self, event: Event) -> bool:
        """Queue ``event`` if wanted; False (and closed) if the consumer fell too far behind."""
        if self.closed:
            return False
        if event.type not in self.types:
            return True
        if self._queue.qsize() >= self.maxsize:
            self.overflowed = True
            self.close()
            return False
        self._queue.put_nowait(event)
        return True

    def close(self) -> None:
        """Deliver what is queued, then end (``get`` returns None)."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def get(self) -> Event | None:
        return await self._queue.get()


Sink = Callable[[Event], None]


class EventBus:
    """Publishes events to a replay backlog, sinks and subscribers. Owned by one event loop."""

    def __init__(
        self,
        *,
        backlog: int = 1000,
        frequent_backlog: int = 256,
        queue_size: int = 512,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if backlog < 1 or frequent_backlog < 1 or queue_size < 1:
            raise ValueError("backlog, frequent_backlog and queue_size must be >= 1")
        self.boot = secrets.token_hex(6)
        self.queue_size = queue_size
        self._clock = clock
        self._seq = 0
        # Frequent (opt-in) events get their own ring so they never push the rare ones out of the replay.
        self._backlog: deque[Event] = deque(maxlen=backlog)
        self._frequent: deque[Event] = deque(maxlen=frequent_backlog)
        self._subs: dict[Subscription, None] = {}
        self._sinks: list[Sink] = []
        self.dropped_subscribers = 0
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._loop = loop

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that owns the bus (where :meth:`publish_threadsafe` hands events to)."""
        self._loop = loop

    # -- publishing
    def publish(self, type: str, stream: str | None, data: dict[str, Any] | None = None) -> Event:
        """Record and fan out one event. Event-loop only; never blocks."""
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        self._seq += 1
        event = Event(f"{self.boot}-{self._seq}", self._seq, type, stream, iso_from_epoch_s(self._clock()), data or {})
        (self._frequent if type in OPT_IN_TYPES else self._backlog).append(event)
        for sub in list(self._subs):
            if not sub.offer(event):
                self._subs.pop(sub, None)
                if sub.overflowed:
                    self.dropped_subscribers += 1
                    log.info("events: a subscriber fell %d events behind and was dropped", sub.maxsize)
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:
                log.exception("events: sink failed on %s", event.type)
        return event

    def publish_threadsafe(self, type: str, stream: str | None, data: dict[str, Any] | None = None) -> None:
        """:meth:`publish` from any thread (through ``loop.call_soon_threadsafe``)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("EventBus has no event loop: create it on the loop or call bind()")
        try:
            loop.call_soon_threadsafe(self.publish, type, stream, data)
        except RuntimeError:  # the loop is closed (process shutting down)
            log.debug("events: %s for %s after the loop closed, dropped", type, stream)

    # -- sinks and subscribers
    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def subscribe(
        self, types: Collection[str] = DEFAULT_TYPES, *, last_id: str | None = None
    ) -> tuple[Subscription, list[Event]]:
        """A live subscription plus the backlog events after ``last_id`` (atomically: no gap, no repeat)."""
        sub = Subscription(frozenset(types), self.queue_size)
        self._subs[sub] = None
        return sub, self.replay(last_id, sub.types) if last_id is not None else []

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub, None)
        sub.close()

    def close_subscribers(self) -> None:
        """End every subscription (server shutdown): consumers see the end of their queue."""
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def replay(self, last_id: str, types: Collection[str] = DEFAULT_TYPES) -> list[Event]:
        """Backlog events after ``last_id``, oldest first. An id from another process: the whole backlog.

        Raises ValueError for text that is not an event id."""
        parsed = parse_event_id(last_id)
        if parsed is None:
            raise ValueError("not an event id")
        boot, seq = parsed
        after = seq if boot == self.boot else 0
        out = [e for ring in (self._backlog, self._frequent) for e in ring if e.seq > after and e.type in types]
        out.sort(key=lambda e: e.seq)
        return out


# --------------------------------------------------------------------------- emitters


class RefusalInfo(Protocol):
    """What a refused push reports (:class:`packager.ingest.gate.Refusal`); never the key."""

    @property
    def stream(self) -> str | None: ...  # None unless a configured stream name (it may be a pasted key)

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    @property
    def peer(self) -> str: ...


def ingest_rejected(bus: EventBus, refusal: RefusalInfo) -> Event:
    """Publish ``ingest.rejected`` for a refused or cut-off push (a gate refusal listener)."""
    return bus.publish(
        INGEST_REJECTED,
        refusal.stream,
        {"status": refusal.status, "reason": refusal.reason, "protocol": refusal.protocol, "peer": refusal.peer},
    )


@dataclass
class _Watch:
    """One rendition's watchdog: when its last part came and the timer that checks for silence."""

    last: float  # loop time of the newest part
    position: tuple[int, int]
    timer: asyncio.TimerHandle | None = None
    stalled: bool = False


@dataclass
class _StreamState:
    started: bool = False
    stopped: bool = False
    started_utc_s: float = 0.0
    last_discontinuity: float = float("-inf")
    segments_seen: dict[str, int] = field(default_factory=dict)
    watches: dict[str, _Watch] = field(default_factory=dict)


class StreamEvents:
    """Listens to a :class:`~packager.store.Store` and publishes its streams' events. Event-loop only."""

    def __init__(self, bus: EventBus, store: Store, *, stall_parts: float = 3.0) -> None:
        if stall_parts <= 0:
            raise ValueError("stall_parts must be > 0")
        self.bus = bus
        self.store = store
        self.stall_parts = stall_parts
        self._states: weakref.WeakKeyDictionary[StreamStore, _StreamState] = weakref.WeakKeyDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attached = False

    def attach(self) -> None:
        """Start listening (call on the loop); streams already publishing are picked up at their next change."""
        if self._attached:
            return
        self._loop = asyncio.get_running_loop()
        self.bus.bind(self._loop)
        self.store.change_listeners.append(self._changed)
        self.store.part_listeners.append(self._part)
        self.store.discontinuity_listeners.append(self._discontinuity)
        self._attached = True

    def close(self) -> None:
        """Stop listening and cancel every watchdog timer."""
        if not self._attached:
            return
        for listeners, fn in (
            (self.store.change_listeners, self._changed),
            (self.store.part_listeners, self._part),
            (self.store.discontinuity_listeners, self._discontinuity),
        ):
            if fn in listeners:
                listeners.remove(fn)  # type: ignore[arg-type]
        for state in list(self._states.values()):
            self._stop_watches(state)
        self._attached = False

    def stalled(self, stream: StreamStore) -> list[str]:
        """Renditions of ``stream`` that are stalled right now."""
        state = self._states.get(stream)
        return sorted(name for name, w in state.watches.items() if w.stalled) if state else []

    def threshold_s(self, stream: StreamStore) -> float:
        return float(stream.part_s) * self.stall_parts

    # -- store listeners
    def _state(self, stream: StreamStore) -> _StreamState:
        state = self._states.get(stream)
        if state is None:
            state = self._states[stream] = _StreamState()
        return state

    def _changed(self, stream: StreamStore) -> None:
        state = self._state(stream)
        if not state.started:
            if not any(t.end_ticks is not None for t in stream.tracks.values()):
                return  # inits only (or ended before any media): nothing has started
            ready = {name for name, t in stream.tracks.items() if t.init is not None}
            if not stream.expected_tracks <= ready and not stream.ended:
                return  # announce the stream once every rendition is known
            state.started = True
            state.started_utc_s = time.time()
            self.bus.publish(STREAM_STARTED, stream.name, _started_data(stream))
        self._new_segments(stream, state)
        if stream.ended and not state.stopped:
            state.stopped = True
            self._stop_watches(state)
            self.bus.publish(
                STREAM_STOPPED,
                stream.name,
                {"reason": stream.end_reason, "duration_s": round(time.time() - state.started_utc_s, 3)},
            )
            self._vod_ready(stream)

    def _new_segments(self, stream: StreamStore, state: _StreamState) -> None:
        for name, track in stream.tracks.items():
            last = track.last_completed_msn
            seen = state.segments_seen.get(name, -1)
            if last is None or last <= seen:
                continue
            fresh = []
            for seg in reversed(track.segments):
                if seg.msn <= seen:
                    break
                fresh.append(seg)
            state.segments_seen[name] = last
            ts = track.info.timescale
            for seg in reversed(fresh):
                self.bus.publish(
                    SEGMENT_PUBLISHED,
                    stream.name,
                    {
                        "rendition": name,
                        "msn": seg.msn,
                        "duration_s": round(seg.duration / ts, 6),
                        "size": seg.size,
                        "uri": f"/live/{stream.name}/{name}/{segment_name(seg.msn)}",
                        "discontinuity": seg.discontinuity,
                    },
                )

    def _discontinuity(self, stream: StreamStore) -> None:
        state = self._state(stream)
        now = time.monotonic()
        # every track reports the same break; one event per segment duration is enough
        if state.stopped or now - state.last_discontinuity < float(stream.segment_s):
            return
        state.last_discontinuity = now
        self.bus.publish(STREAM_DISCONTINUITY, stream.name, {"renditions": sorted(stream.tracks)})

    # -- watchdog
    def _part(self, stream: StreamStore, part: Part) -> None:
        state = self._state(stream)
        if state.stopped or stream.ended or self._loop is None:
            return
        now = self._loop.time()
        watch = state.watches.get(part.track)
        if watch is None:
            watch = state.watches[part.track] = _Watch(now, (part.msn, part.index))
        elif watch.stalled:
            watch.stalled = False
            self.bus.publish(
                RENDITION_RECOVERED,
                stream.name,
                {
                    "rendition": part.track,
                    "silent_s": round(now - watch.last, 3),
                    "part": f"{part.msn}.{part.index}",
                },
            )
        watch.last = now
        watch.position = (part.msn, part.index)
        if watch.timer is None:  # re-armed by the check itself: no timer churn per part
            watch.timer = self._loop.call_at(now + self.threshold_s(stream), self._check, stream, part.track)

    def _check(self, stream: StreamStore, track: str) -> None:
        state = self._states.get(stream)
        watch = state.watches.get(track) if state else None
        if state is None or watch is None or self._loop is None:
            return
        watch.timer = None
        if state.stopped or stream.ended:
            return
        limit = self.threshold_s(stream)
        now = self._loop.time()
        due = watch.last + limit
        if now < due - 0.001:
            watch.timer = self._loop.call_at(due, self._check, stream, track)
            return
        watch.stalled = True  # the next part re-arms the timer and reports the recovery
        msn, index = watch.position
        self.bus.publish(
            RENDITION_STALLED,
            stream.name,
            {
                "rendition": track,
                "silent_s": round(now - watch.last, 3),
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

    # -- final manifests
    def _vod_ready(self, stream: StreamStore) -> None:
        folder = stream.folder
        data = {
            "reason": stream.end_reason,
            "hls": f"/live/{stream.name}/{MASTER_NAME}",
            "dash": f"/live/{stream.name}/{MPD_NAME}",
            "folder": str(folder) if folder is not None else None,
        }
        disk = self.store.disk
        if disk is None or self._loop is None:
            self.bus.publish(VOD_READY, stream.name, data)
            return
        name, bus, loop = stream.name, self.bus, self._loop

        def queued() -> None:
            # the writer thread calls back once everything queued before this point is on disk
            disk.notify(lambda: bus.publish_threadsafe(VOD_READY, name, data))

        # Two hops: the manifest writer queued its final render (call_soon) in the same turn as this end,
        # so by the second hop the final manifests are in the disk queue ahead of the notification.
        loop.call_soon(loop.call_soon, queued)


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
