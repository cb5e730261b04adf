"""Stream lifecycle events: the :class:`Event` value, the loop-owned :class:`EventBus`, the emitters.

An event is a small JSON object with a unique ``id``, a ``type``, the
``stream`` it concerns, the UTC ``time`` (ISO 8601, ms) and a ``data``
object. The emitter that turns store publications into events is
:class:`packager.lifecycle.StreamEvents`.
:func:`ingest_rejected` reports the ingest gate's refusals (never the key),
coalesced by :class:`RejectionReports`: a flood of refusals from one peer is
one event at once and then one summary per interval carrying a ``count``.

Every event type belongs to a class (:func:`event_class`): *lifecycle*
(started, stopped, discontinuity, vod.ready), *noisy* (ingest.rejected,
rendition stalled/recovered: a hostile peer or a flapping feed can make many)
and *frequent* (segment.published, opt-in). Each class has its own bound in
the replay backlog and in every consumer's :class:`EventQueue`, so one class
can never push another out: noise is dropped (oldest first) before a
lifecycle event could be, and a reader is never disconnected for noise.

The :class:`EventBus` lives on the event loop: loop code calls
:meth:`EventBus.publish`, worker threads :meth:`EventBus.publish_threadsafe`.
It keeps the bounded backlog for replay (SSE ``Last-Event-ID``), hands each
event to synchronous sinks (the webhook queues) and to subscribers; a
subscriber whose lifecycle or segment queue overflows is closed (it reconnects
and replays), never waited for. Ids are ``<boot>-<seq>``: ``boot`` is random
per process (so ids stay unique across restarts, as webhook receivers dedupe
on them) and ``seq`` counts up. Time comes from a
:class:`~packager.timebase.Clock` (the watchdog and the coalescing timers
sleep on it), so tests drive it by hand.

Pure: no aiohttp, no codecs.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from packager.peer import peer_host
from packager.timebase import SYSTEM_CLOCK, Clock, iso_from_epoch_s

log = logging.getLogger(__name__)

STREAM_STARTED = "stream.started"
STREAM_STOPPED = "stream.stopped"
STREAM_DISCONTINUITY = "stream.discontinuity"
STREAM_FAILOVER = "stream.failover"
STREAM_SPLICE = "stream.splice"
RENDITION_STALLED = "rendition.stalled"
RENDITION_RECOVERED = "rendition.recovered"
SEGMENT_PUBLISHED = "segment.published"
VOD_READY = "vod.ready"
INGEST_REJECTED = "ingest.rejected"

EVENT_TYPES: tuple[str, ...] = (
    STREAM_STARTED,
    STREAM_STOPPED,
    STREAM_DISCONTINUITY,
    STREAM_FAILOVER,
    STREAM_SPLICE,
    RENDITION_STALLED,
    RENDITION_RECOVERED,
    SEGMENT_PUBLISHED,
    VOD_READY,
    INGEST_REJECTED,
)
OPT_IN_TYPES = frozenset({SEGMENT_PUBLISHED})  # frequent: only delivered when asked for by name
DEFAULT_TYPES = frozenset(EVENT_TYPES) - OPT_IN_TYPES

LIFECYCLE = "lifecycle"
NOISY = "noisy"
FREQUENT = "frequent"
EVENT_CLASSES: dict[str, str] = {
    STREAM_STARTED: LIFECYCLE,
    STREAM_STOPPED: LIFECYCLE,
    STREAM_DISCONTINUITY: LIFECYCLE,
    STREAM_FAILOVER: LIFECYCLE,
    VOD_READY: LIFECYCLE,
    RENDITION_STALLED: NOISY,
    RENDITION_RECOVERED: NOISY,
    INGEST_REJECTED: NOISY,
    SEGMENT_PUBLISHED: FREQUENT,
}
DEFAULT_REJECTION_INTERVAL_S = 10.0

_SHOWABLE = re.compile(r"[A-Za-z0-9._-]{1,40}")
EVENT_ID = re.compile(r"([0-9a-f]{12})-([0-9]{1,18})")


def event_class(type: str) -> str:
    """``lifecycle``, ``noisy`` or ``frequent``: which bound an event of ``type`` counts against."""
    return EVENT_CLASSES[type]


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


class QueueFull(Exception):
    """An event did not fit its class's bound in an :class:`EventQueue` (and that class is not dropped)."""


class EventQueue:
    """One consumer's waiting events, bounded per class and handed out in id order. Loop only.

    ``bounds`` maps each class to its size. When a class in ``droppable`` is
    full, its oldest event makes room (counted in ``dropped``); any other full
    class raises :class:`QueueFull` and the event is not queued. ``task_done``
    and ``join`` work like :class:`asyncio.Queue`'s."""

    def __init__(self, bounds: Mapping[str, int], droppable: Collection[str] = (NOISY,)) -> None:
        if any(size < 1 for size in bounds.values()):
            raise ValueError("every queue bound must be >= 1")
        self.bounds = dict(bounds)
        self.droppable = frozenset(droppable)
        self.dropped = 0
        self._queues: dict[str, deque[Event]] = {name: deque() for name in bounds}
        self._ready = asyncio.Event()
        self._closed = False
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, event: Event) -> Event | None:
        """Queue ``event``; the droppable event it pushed out, if any. Raises QueueFull (event not queued)."""
        name = event_class(event.type)
        queue = self._queues[name]
        evicted = None
        if len(queue) >= self.bounds[name]:
            if name not in self.droppable:
                raise QueueFull(f"{self.bounds[name]} {name} events waiting")
            evicted = queue.popleft()
            self.dropped += 1
            self._unfinished -= 1
        queue.append(event)
        self._unfinished += 1
        self._idle.clear()
        self._ready.set()
        return evicted

    def get_nowait(self) -> Event | None:
        """The oldest waiting event; None once closed and empty; raises asyncio.QueueEmpty otherwise."""
        heads = [q for q in self._queues.values() if q]
        if heads:
            return min(heads, key=lambda q: q[0].seq).popleft()
        if self._closed:
            return None
        raise asyncio.QueueEmpty

    async def get(self) -> Event | None:
        """The oldest waiting event; None once :meth:`close` was called and everything queued was taken."""
        while True:
            try:
                return self.get_nowait()
            except asyncio.QueueEmpty:
                self._ready.clear()
                await self._ready.wait()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def task_done(self) -> None:
        self._unfinished = max(0, self._unfinished - 1)
        if self._unfinished == 0:
            self._idle.set()

    async def join(self) -> None:
        await self._idle.wait()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())


class Subscription:
    """One consumer's bounded, per-class queue of events (a live SSE client). Loop only.

    Noisy events beyond ``noisy_size`` waiting are dropped oldest first (the
    reader stays connected; ``dropped`` counts them); a lifecycle or segment
    backlog beyond ``maxsize`` closes the subscription (the reader replays)."""

    def __init__(self, types: frozenset[str], maxsize: int, noisy_size: int | None = None) -> None:
        self.types = types
        self.maxsize = maxsize
        self.overflowed = False
        self.closed = False
        noisy = noisy_size if noisy_size is not None else maxsize
        self._queue = EventQueue({LIFECYCLE: maxsize, FREQUENT: maxsize, NOISY: noisy})

    @property
    def dropped(self) -> int:
        """Noisy events dropped because this reader was behind."""
        return self._queue.dropped

    def offer(self, event: Event) -> bool:
        """Queue ``event`` if wanted; False (and closed) if the consumer fell too far behind on what matters."""
        if self.closed:
            return False
        if event.type not in self.types:
            return True
        try:
            self._queue.put(event)
        except QueueFull:
            self.overflowed = True
            self.close()
            return False
        return True

    def close(self) -> None:
        """Deliver what is queued, then end (``get`` returns None)."""
        if not self.closed:
            self.closed = True
            self._queue.close()

    async def get(self) -> Event | None:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        """Like :meth:`get` without waiting: raises asyncio.QueueEmpty when nothing is queued yet."""
        return self._queue.get_nowait()


Sink = Callable[[Event], None]


class EventBus:
    """Publishes events to a replay backlog, sinks and subscribers. Owned by one event loop.

    The backlog keeps ``backlog`` lifecycle, ``noisy_backlog`` noisy and
    ``frequent_backlog`` segment events, each in its own ring."""

    def __init__(
        self,
        *,
        backlog: int = 1000,
        noisy_backlog: int = 256,
        frequent_backlog: int = 256,
        queue_size: int = 512,
        noisy_queue_size: int = 64,
        rejection_interval_s: float = DEFAULT_REJECTION_INTERVAL_S,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if min(backlog, noisy_backlog, frequent_backlog, queue_size, noisy_queue_size) < 1:
            raise ValueError("backlog and queue sizes must be >= 1")
        self.boot = secrets.token_hex(6)
        self.queue_size = queue_size
        self.noisy_queue_size = noisy_queue_size
        self.clock = clock
        self._seq = 0
        # one ring per class: a flood of one class never pushes another out of the replay
        self._rings: dict[str, deque[Event]] = {
            LIFECYCLE: deque(maxlen=backlog),
            NOISY: deque(maxlen=noisy_backlog),
            FREQUENT: deque(maxlen=frequent_backlog),
        }
        self._subs: dict[Subscription, None] = {}
        self._sinks: list[Sink] = []
        self.dropped_subscribers = 0
        self.rejections = RejectionReports(self, interval_s=rejection_interval_s)
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
        when = iso_from_epoch_s(self.clock.utc_s())
        event = Event(f"{self.boot}-{self._seq}", self._seq, type, stream, when, data or {})
        self._rings[event_class(type)].append(event)
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
        sub = Subscription(frozenset(types), self.queue_size, self.noisy_queue_size)
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

    def close(self) -> None:
        """Stop the coalescing timer (pending rejection summaries are dropped) and end every subscription."""
        self.rejections.close()
        self.close_subscribers()

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
        merged = heapq.merge(*self._rings.values(), key=lambda e: e.seq)  # each ring is already in id order
        return [e for e in merged if e.seq > after and e.type in types]


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


def ingest_rejected(bus: EventBus, refusal: RefusalInfo) -> Event | None:
    """Report a refused or cut-off push (a gate refusal listener), coalesced per peer: the event, if one went out."""
    return bus.rejections.report(refusal)


MAX_REJECTION_KEYS = 4096  # coalescing windows remembered at once; past it the oldest is summarised early


@dataclass
class _Window:
    """Refusals of one (peer, stream, reason) since the last event about them."""

    opened: float  # clock monotonic seconds
    status: int
    protocol: str
    pending: int = 0  # refusals not reported yet


_RejectionKey = tuple[str, str | None, str]  # peer host, stream, reason


class RejectionReports:
    """Coalesces ``ingest.rejected``: one event per peer, stream and reason per ``interval_s``. Loop only.

    The first refusal of a kind is published at once (``count`` = the attempts
    it stands for); later ones within the interval are summed and published
    as one summary when the interval ends, which opens the next interval. An
    interval that ends with nothing new forgets the kind. One timer task
    sleeps on the bus's clock until the oldest interval ends."""

    def __init__(self, bus: EventBus, *, interval_s: float = DEFAULT_REJECTION_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError("rejection_interval_s must be > 0")
        self.bus = bus
        self.interval_s = interval_s
        self._windows: OrderedDict[_RejectionKey, _Window] = OrderedDict()  # oldest interval first
        self._timer: asyncio.Task[None] | None = None

    def report(self, refusal: RefusalInfo) -> Event | None:
        count = max(1, int(getattr(refusal, "count", 1)))
        host = peer_host(refusal.peer)
        key = (host, refusal.stream, refusal.reason)
        window = self._windows.get(key)
        if window is not None:
            window.pending += count
            window.status, window.protocol = refusal.status, refusal.protocol
            return None
        self._windows[key] = _Window(self.bus.clock.monotonic_s(), refusal.status, refusal.protocol)
        while len(self._windows) > MAX_REJECTION_KEYS:
            self._flush(*self._windows.popitem(last=False))
        self._arm()
        return self._publish(key, refusal.status, refusal.protocol, count)

    @property
    def pending(self) -> int:
        """Refusals waiting for their summary."""
        return sum(w.pending for w in self._windows.values())

    @property
    def watched(self) -> int:
        """Kinds of refusal (peer, stream, reason) inside an interval now."""
        return len(self._windows)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._windows.clear()

    def _publish(self, key: _RejectionKey, status: int, protocol: str, count: int) -> Event:
        host, stream, reason = key
        data = {"status": status, "reason": reason, "protocol": protocol, "peer": host, "count": count}
        return self.bus.publish(INGEST_REJECTED, stream, data)

    def _flush(self, key: _RejectionKey, window: _Window) -> None:
        if window.pending:
            self._publish(key, window.status, window.protocol, window.pending)

    def _arm(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._run(), name="ingest.rejected summaries")

    async def _run(self) -> None:
        clock = self.bus.clock
        while self._windows:
            key, window = next(iter(self._windows.items()))
            wait_s = window.opened + self.interval_s - clock.monotonic_s()
            if wait_s > 0:
                await clock.sleep(wait_s)
                continue
            del self._windows[key]
            if window.pending:  # a summary opens the next interval for this kind
                self._flush(key, window)
                self._windows[key] = _Window(clock.monotonic_s(), window.status, window.protocol)
        self._timer = None
