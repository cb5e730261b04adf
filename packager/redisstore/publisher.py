"""The publisher side: every publication of the local store goes to Redis, in order, without blocking.

:meth:`RedisPublisher.on_publication` encodes the event into *ops* (the log
entry, its media key, a snapshot when one is due) and appends them to a
bounded in-memory queue; one writer task drains the queue in order, a batch
per MULTI/EXEC pipeline. While Redis is down the store carries on and the
queue keeps filling; past ``buffer_bytes`` the oldest *media* items go and
their stream is marked for resync. A stream is *healed* (its inits, the
window's segments, the parts in memory and a fresh snapshot re-written from
the local store, with a sync marker in its log) when entries were dropped,
when Redis came back without its data (the ``lp:boot`` token changed), or
when a claim found an older log ahead of our ids. Only streams whose lease
this node holds are published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from packager.publication import (
    InitPublished,
    MediaRetired,
    PartPublished,
    Publication,
    SegmentClosed,
    StreamEnded,
    StreamOpened,
    StreamRemoved,
)
from packager.redisstore.codec import SYNC, Fields, encode
from packager.redisstore.keys import Keys
from packager.redisstore.logid import LogIds, parse_id
from packager.redisstore.registry import Registry
from packager.redisstore.snapshot import capture
from packager.redisstore.target import RedisTarget
from packager.redisstore.tasks import stop
from packager.store import Store, StreamStore
from packager.timebase import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

MEDIA_MARGIN_S = 10.0
BATCH_ITEMS = 512
BATCH_BYTES = 8 << 20
CTL_MAXLEN = 10_000

Op = tuple[Any, ...]


@dataclass
class _Item:
    stream: str
    kind: str  # "ops", "claim", "release"
    ops: list[Op] = field(default_factory=list)
    size: int = 0
    media: bool = False


@dataclass
class _StreamState:
    status: str = "claiming"  # claiming -> held | lost
    prev_id: str = "0-0"
    first_id: str | None = None  # our first id (a claim checks the log holds nothing at or after it)
    resync: bool = False
    first_track: str | None = None
    epoch: int = 0


@dataclass
class PublisherCounters:
    entries: int = 0
    bytes: int = 0
    reconnects: int = 0
    dropped: int = 0
    heals: int = 0


class RedisPublisher:
    """A :class:`~packager.publication.PublicationListener` mirroring one store into Redis."""

    def __init__(
        self,
        store: Store,
        target: RedisTarget,
        node_id: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        buffer_bytes: int = 64 << 20,
        registry: Registry | None = None,
        horizon_s: float = 60.0,
        ended_keep_s: float = 3600.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.store = store
        self.target = target
        self.node_id = node_id
        self.clock = clock
        self.buffer_bytes = buffer_bytes
        self.horizon_s = horizon_s
        self.ended_keep_s = ended_keep_s
        self.keys = Keys(target.prefix)
        self.client = client or target.client()
        self.registry = registry or Registry(self.client, node_id, clock=clock, keys=self.keys)
        if self.registry.on_lost is None:
            self.registry.on_lost = self._lost
        self.counters = PublisherCounters()
        self.connected = False
        self._ids = LogIds(clock)
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._streams: dict[str, _StreamState] = {}
        self._boot: bytes | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle
    async def start(self) -> None:
        """Subscribe to the store (streams already open are healed in) and start the writer."""
        for stream in self.store:
            self._streams[stream.name] = _StreamState(resync=True)
        self.store.subscribe(self)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self, timeout_s: float = 2.0) -> None:
        """Unsubscribe, flush what is queued (up to ``timeout_s``), release our leases, disconnect."""
        self.store.unsubscribe(self)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._queue or not self._idle.is_set():
                    self._wake.set()
                    await asyncio.sleep(0.01)
        self._closing = True
        if self._task is not None:
            await stop(self._task, self.client)
            self._task = None
        await self.registry.close()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(timeout_s):
                for stream in list(self.registry.claimed):
                    await self.registry.release(stream)
        await self.client.aclose()

    def metrics(self) -> dict[str, int]:
        c = self.counters
        return {
            "entries_written": c.entries,
            "bytes_written": c.bytes,
            "reconnects": c.reconnects,
            "dropped": c.dropped,
            "heals": c.heals,
            "queued_bytes": self._queued_bytes,
            "connected": int(self.connected),
        }

    # -- listening (on the loop, never blocks)
    def on_publication(self, event: Publication) -> None:
        if isinstance(event, StreamOpened):
            self._streams[event.stream] = _StreamState()
            self._enqueue(_Item(event.stream, "claim"))
        st = self._streams.get(event.stream)
        if st is None or st.status == "lost" or isinstance(event, MediaRetired):
            return
        stream = self.store.get(event.stream)
        fields = encode(event)
        if isinstance(event, InitPublished) and st.first_track is None:
            st.first_track = event.info.name
        snapshot = stream is not None and self._snapshot_due(event, st)
        entry_id = self._entry(st, fields, snapshot)
        item = _Item(event.stream, "ops", [("xadd", self.keys.log(event.stream), fields, entry_id)])
        item.size = sum(len(v) for v in fields.values())
        self._media_ops(event, stream, item)
        if snapshot and stream is not None:
            self._snapshot_ops(stream, st, entry_id, item)
        if isinstance(event, StreamRemoved):
            self._removal_ops(event.stream, item)
        self._enqueue(item)
        if isinstance(event, StreamRemoved):
            self._enqueue(_Item(event.stream, "release"))
            del self._streams[event.stream]

    def _snapshot_due(self, event: Publication, st: _StreamState) -> bool:
        if isinstance(event, SegmentClosed):
            return event.segment.track == st.first_track
        return isinstance(event, StreamOpened | StreamEnded)

    def _entry(self, st: _StreamState, fields: Fields, snapshot: bool) -> str:
        entry_id = self._ids.next()
        fields[b"p"] = st.prev_id.encode()
        if snapshot:
            fields[b"k"] = b"1"
        st.prev_id = entry_id
        if st.first_id is None:
            st.first_id = entry_id
        return entry_id

    def _media_px(self, stream: StreamStore) -> int:
        return int((float(stream.window_s) + stream.grace_s + MEDIA_MARGIN_S) * 1000)

    def _media_ops(self, event: Publication, stream: StreamStore | None, item: _Item) -> None:
        if stream is None:
            return
        px = self._media_px(stream)
        match event:
            case PartPublished(part=p):
                item.ops.append(("set", self.keys.part(event.stream, p.track, p.msn, p.index), p.data, px))
                item.size += p.size
                item.media = True
            case SegmentClosed(segment=seg):
                data = stream.segment_bytes(seg.track, seg.msn)
                if data is not None:
                    item.ops.append(("set", self.keys.seg(event.stream, seg.track, seg.msn), data, px))
                    item.size += len(data)
                    item.media = True
            case InitPublished(info=info, data=data):
                item.ops.append(("set", self.keys.init(event.stream, info.name), data, px))

    def _snapshot_ops(self, stream: StreamStore, st: _StreamState, entry_id: str, item: _Item) -> None:
        """The snapshot as of ``entry_id``, written in the entry's pipeline; never dropped."""
        data = capture(stream, entry_id)
        item.ops.append(("set", self.keys.snap(stream.name), data, None))
        item.ops.append(("registry", stream.name))
        item.size += len(data)
        item.media = False
        px = int(self.ended_keep_s * 1000) if stream.ended else self._media_px(stream)
        for track in stream.tracks.values():
            item.ops.append(("pexpire", self.keys.init(stream.name, track.info.name), px))
            if stream.ended:
                item.ops.extend(self._keep_ops(stream, track.info.name, px))
        if isinstance(item.ops[0][2], dict) and item.ops[0][2].get(b"t") == b"o":
            item.ops.append(("ctl", "opened", stream.name))

    def _keep_ops(self, stream: StreamStore, track: str, px: int) -> list[Op]:
        """An ended stream's media stays as long as the stream is served as VOD."""
        t = stream.tracks[track]
        ops: list[Op] = [("pexpire", self.keys.seg(stream.name, track, s.msn), px) for s in t.segments]
        ops += [("pexpire", self.keys.part(stream.name, track, m, i), px) for m, i in t.parts]
        return ops

    def _removal_ops(self, name: str, item: _Item) -> None:
        item.ops.append(("del", self.keys.snap(name)))
        item.ops.append(("hdel", self.keys.streams, name))
        item.ops.append(("ctl", "removed", name))
        item.ops.append(("pexpire", self.keys.log(name), int(self.horizon_s * 1000)))

    # -- the queue
    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        self._queued_bytes += item.size
        if self._queued_bytes > self.buffer_bytes:
            self._drop_media()
        self._idle.clear()
        self._wake.set()

    def _drop_media(self) -> None:
        """Over budget: drop the oldest media items; their streams are healed on the next write."""
        keep: deque[_Item] = deque()
        while self._queue:
            item = self._queue.popleft()
            if item.media and self._queued_bytes > self.buffer_bytes:
                self._queued_bytes -= item.size
                self.counters.dropped += 1
                st = self._streams.get(item.stream)
                if st is not None:
                    st.resync = True
            else:
                keep.append(item)
        self._queue = keep

    def _purge(self, name: str) -> None:
        kept = deque(i for i in self._queue if i.stream != name or i.kind == "release")
        self._queued_bytes = sum(i.size for i in kept)
        self._queue = kept

    def _lost(self, stream: str, holder: str | None) -> None:
        st = self._streams.get(stream)
        if st is not None and st.status != "lost":
            st.status = "lost"
            log.warning("redis: stream %s is held by %s; not publishing it from %s", stream, holder, self.node_id)
            self._purge(stream)

    # -- healing
    def _heal(self, name: str, st: _StreamState) -> None:
        """Replace the stream's queued items by a claim and a full re-publication from the local store."""
        self._purge(name)
        st.resync = False
        stream = self.store.get(name)
        if stream is None:
            return
        self.counters.heals += 1
        st.status = "claiming"
        st.first_id = None
        fields: Fields = {b"t": SYNC, b"s": name.encode()}
        entry_id = self._entry(st, fields, True)
        item = _Item(name, "ops", self._republish_ops(stream))
        item.ops.append(("xadd", self.keys.log(name), fields, entry_id))
        item.size = sum(len(op[2]) for op in item.ops if op[0] == "set")
        self._snapshot_ops(stream, st, entry_id, item)
        item.ops.append(("ctl", "opened", name))
        self._queue.appendleft(item)
        self._queue.appendleft(_Item(name, "claim"))
        self._queued_bytes += item.size

    def _republish_ops(self, stream: StreamStore) -> list[Op]:
        px = int(self.ended_keep_s * 1000) if stream.ended else self._media_px(stream)
        ops: list[Op] = []
        name = stream.name
        for t in stream.tracks.values():
            track = t.info.name
            if t.init is not None:
                ops.append(("set", self.keys.init(name, track), t.init, px))
            for seg in t.segments:
                data = t.segment_data.get(seg.msn)
                if data is not None:
                    ops.append(("set", self.keys.seg(name, track, seg.msn), data, px))
            ops += [("set", self.keys.part(name, track, k[0], k[1]), p.data, px) for k, p in t.parts.items()]
        return ops

    def _heal_due(self) -> None:
        for name, st in list(self._streams.items()):
            if st.resync and st.status != "lost":
                self._heal(name, st)

    # -- the writer
    async def _run(self) -> None:
        backoff_s = 0.1
        while not self._closing:
            try:
                if not self.connected:
                    await self._connect()
                    backoff_s = 0.1
                await self._drain()
            except (RedisError, OSError) as exc:
                if self.connected:
                    self.counters.reconnects += 1
                    log.warning("redis: %s unreachable (%s); buffering", self.target.url, exc)
                self.connected = False
                await self.clock.sleep(backoff_s)
                backoff_s = min(2.0, backoff_s * 2)

    async def _connect(self) -> None:
        """Check the boot token: a Redis that lost its data gets every stream healed."""
        boot = await self.client.get(self.keys.boot)
        if boot is None:
            await self.client.set(self.keys.boot, secrets.token_hex(8), nx=True)
            boot = await self.client.get(self.keys.boot)
        if self._boot is not None and boot != self._boot:
            log.warning("redis: %s restarted without its data; re-publishing", self.target.url)
            for st in self._streams.values():
                st.resync = st.status != "lost"
        self._boot = boot
        self.connected = True

    async def _drain(self) -> None:
        while True:
            self._heal_due()
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._queue[0]
            if head.kind == "claim":
                await self._claim(head.stream)
                self._pop(head)
            elif head.kind == "release":
                await self.registry.release(head.stream)
                self._pop(head)
            else:
                await self._write(self._take_batch())

    def _pop(self, item: _Item) -> None:
        if self._queue and self._queue[0] is item:
            self._queue.popleft()

    async def _claim(self, name: str) -> None:
        st = self._streams.get(name)
        if st is None or st.status == "lost":
            return
        claim = await self.registry.claim(name)
        if not claim.ok:
            self._lost(name, claim.node)
            return
        st.status, st.epoch = "held", claim.epoch
        top = await self.client.xrevrange(self.keys.log(name), count=1)
        if top:
            top_id = top[0][0].decode()
            self._ids.floor(top_id)
            if st.first_id is not None and parse_id(st.first_id) <= parse_id(top_id):
                st.resync = True  # an older log runs ahead of our ids: write ours after it

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        size = 0
        while self._queue and self._queue[0].kind == "ops" and len(batch) < BATCH_ITEMS and size < BATCH_BYTES:
            item = self._queue.popleft()
            self._queued_bytes -= item.size
            st = self._streams.get(item.stream)
            if st is not None and st.status == "lost":
                continue
            batch.append(item)
            size += item.size
        return batch

    async def _write(self, batch: list[_Item]) -> None:
        if not batch:
            return
        pipe = self.client.pipeline(transaction=True)
        for item in batch:
            for op in item.ops:
                self._add(pipe, op)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException:
            for item in reversed(batch):  # back at the front, in order, for the next connection
                self._queue.appendleft(item)
                self._queued_bytes += item.size
            raise
        self._count(batch, results)

    def _count(self, batch: list[_Item], results: list[Any]) -> None:
        for result in results:
            if isinstance(result, ResponseError) and "equal or smaller" not in str(result):
                log.warning("redis: write refused: %s", result)
        for item in batch:
            self.counters.entries += 1
            self.counters.bytes += item.size

    def _add(self, pipe: Any, op: Op) -> None:
        match op:
            case ("xadd", key, fields, entry_id):
                minid = f"{max(0, int(self.clock.utc_s() * 1000) - int(self.horizon_s * 1000))}"
                pipe.xadd(key, fields, id=entry_id, minid=minid, approximate=True)
            case ("set", key, value, px):
                pipe.set(key, value, px=px)
            case ("pexpire", key, px):
                pipe.pexpire(key, px)
            case ("del", key):
                pipe.delete(key)
            case ("hdel", key, name):
                pipe.hdel(key, name)
            case ("registry", name):
                pipe.hset(self.keys.streams, name, self._registry_entry(name))
            case ("ctl", what, name):
                epoch = self._streams[name].epoch if name in self._streams else 0
                fields = {"op": what, "s": name, "node": self.node_id, "epoch": str(epoch)}
                pipe.xadd(self.keys.ctl, fields, maxlen=CTL_MAXLEN, approximate=True)

    def _registry_entry(self, name: str) -> bytes:
        stream = self.store.get(name)
        st = self._streams.get(name)
        entry = {
            "node": self.node_id,
            "epoch": st.epoch if st is not None else 0,
            "state": "ended" if stream is None or stream.ended else "live",
            "started": stream.started_utc_s if stream is not None else 0.0,
            "updated": self.clock.utc_s(),
        }
        return json.dumps(entry, separators=(",", ":")).encode()
