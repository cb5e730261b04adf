"""The publisher side: every publication of the local store goes to Redis, in order, without blocking.

:meth:`RedisPublisher.on_publication` encodes the event into *ops* (the log
entry, its media key, a snapshot when one is due) and appends them to a
bounded in-memory queue; one writer task drains the queue in order, a batch
per pipeline of *fenced* writes: each stream's share of a batch is one Lua
script that first checks the stream's lease epoch (``lp:epoch:{stream}``) is
still the one this node claimed, so a paused node that wakes up after another
took its lease over can never write over the new owner. While Redis is down the store carries on and the
queue keeps filling; past ``buffer_bytes`` the oldest *media* items go and
their stream is marked for resync. A stream is *healed* (its inits, the
window's segments, the parts in memory and a fresh snapshot re-written from
the local store, with a sync marker in its log) when entries were dropped,
when Redis came back without its data (the ``lp:boot`` token changed), or
when a claim found an older log ahead of our ids. Only streams whose lease
this node holds are published.

Streams under failover control (:meth:`RedisPublisher.manage`) are never
claimed here: the failover controller claims them and calls :meth:`promote`
(publish from the log's end on), :meth:`demote` (stop at once) or
:meth:`hand_off` (stop, flush what is queued, then release the lease).
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

# KEYS[1]: the stream's epoch counter. ARGV[1]: the epoch this node claimed; then, per command, its
# argument count and its arguments. Nothing is written unless the epoch is still ours. A refused command
# (an id at or below the log's top, after a heal) does not stop the others; the first error is returned.
FENCED_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, ''} end
local i, n, err = 2, #ARGV, ''
while i <= n do
  local c = tonumber(ARGV[i])
  local r = redis.pcall(unpack(ARGV, i + 1, i + c))
  if type(r) == 'table' and r.err and err == '' then err = r.err end
  i = i + c + 1
end
return {1, err}
"""

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
    status: str = "claiming"  # claiming -> held | lost; a managed stream: standby -> held -> standby
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
        lease_s: float = 5.0,
    ) -> None:
        """``lease_s``: the expiry of this node's stream leases (renewed every quarter of it)."""
        self.store = store
        self.target = target
        self.node_id = node_id
        self.clock = clock
        self.buffer_bytes = buffer_bytes
        self.horizon_s = horizon_s
        self.ended_keep_s = ended_keep_s
        self.keys = Keys(target.prefix)
        self.client = client or target.client()
        self.registry = registry or Registry(self.client, node_id, lease_s=lease_s, clock=clock, keys=self.keys)
        if self.registry.on_lost is None:
            self.registry.on_lost = self._lost
        self.counters = PublisherCounters()
        self.connected = False
        self._ids = LogIds(clock)
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._streams: dict[str, _StreamState] = {}
        self._managed: set[str] = set()
        self._fenced_sha: str | None = None
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
            self._opened(event.stream)
        st = self._streams.get(event.stream)
        if st is None or st.status in ("lost", "standby") or isinstance(event, MediaRetired):
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

    def _opened(self, name: str) -> None:
        if name not in self._managed:
            self._streams[name] = _StreamState()
            self._enqueue(_Item(name, "claim"))
            return
        st = self._streams.get(name)
        if st is None or st.status != "held":  # a standby's replayed opening: not ours to publish
            self._streams[name] = _StreamState(status="standby")

    # -- failover control (the controller claims; the publisher follows)
    def manage(self, name: str) -> None:
        """``name`` is under failover control: its lease is claimed by the controller, never here."""
        self._managed.add(name)
        self._streams.setdefault(name, _StreamState(status="standby"))

    def promote(self, name: str, prev_id: str) -> None:
        """Publish ``name`` from now on, continuing the log after entry ``prev_id`` (its last entry)."""
        stream = self.store.get(name)
        st = _StreamState(status="held", prev_id=prev_id, epoch=self.registry.epoch(name) or 0)
        if stream is not None and stream.tracks:
            st.first_track = next(iter(stream.tracks))
        self._streams[name] = st
        self._ids.floor(prev_id)

    def demote(self, name: str) -> None:
        """Stop publishing ``name`` at once (the lease is gone); what is queued for it is dropped."""
        self._streams[name] = _StreamState(status="standby")
        self._purge(name)

    def hand_off(self, name: str) -> None:
        """Stop publishing ``name``: what is queued for it is still written, then the lease is released."""
        st = self._streams.get(name)
        if st is not None and st.status == "held":
            st.status = "standby"
            self._enqueue(_Item(name, "release"))

    def _snapshot_due(self, event: Publication, st: _StreamState) -> bool:
        if isinstance(event, SegmentClosed):
            return event.segment.track == st.first_track
        return isinstance(event, StreamOpened | StreamEnded)

    def _entry(self, st: _StreamState, fields: Fields, snapshot: bool) -> str:
        entry_id = self._ids.next()
        fields[b"p"] = st.prev_id.encode()
        fields[b"nd"] = self.node_id.encode()
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
        if st is not None and st.status not in ("lost", "standby"):
            st.status = "standby" if stream in self._managed else "lost"
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
            if st.resync and st.status not in ("lost", "standby"):
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
        self._fenced_sha = await self.client.script_load(FENCED_WRITE)
        if self._boot is not None and boot != self._boot:
            log.warning("redis: %s restarted without its data; re-publishing", self.target.url)
            for st in self._streams.values():
                st.resync = st.status not in ("lost", "standby")
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
                if head.stream in self._managed:
                    self._streams[head.stream] = _StreamState(status="standby")
            else:
                await self._write(self._take_batch())

    def _pop(self, item: _Item) -> None:
        if self._queue and self._queue[0] is item:
            self._queue.popleft()

    async def _claim(self, name: str) -> None:
        st = self._streams.get(name)
        if st is None or st.status in ("lost", "standby"):
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
            if self.registry.epoch(item.stream) is None:
                continue  # not (or no longer) ours: nothing of it may be written
            batch.append(item)
            size += item.size
        return batch

    async def _write(self, batch: list[_Item]) -> None:
        if not batch:
            return
        groups = _by_stream(batch)
        pipe = self.client.pipeline(transaction=False)
        for name, items in groups:
            args: list[Any] = [str(self.registry.epoch(name) or 0)]
            for item in items:
                for op in item.ops:
                    command = self._command(op, args[0])
                    args.append(len(command))
                    args.extend(command)
            pipe.evalsha(self._fenced_sha, 1, self.keys.epoch(name), *args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException:
            for item in reversed(batch):  # back at the front, in order, for the next connection
                self._queue.appendleft(item)
                self._queued_bytes += item.size
            raise
        self._count(groups, results)

    def _count(self, groups: list[tuple[str, list[_Item]]], results: list[Any]) -> None:
        for (name, items), result in zip(groups, results, strict=True):
            if isinstance(result, ResponseError):
                if "NOSCRIPT" in str(result):
                    raise ConnectionError("redis: the fenced-write script is gone (Redis restarted)")
                log.warning("redis: write of %s refused: %s", name, result)
                continue
            ok, error = int(result[0]), result[1]
            if not ok:
                log.warning("redis: %s: write refused, the lease epoch moved on; not publishing it", name)
                self.registry.fenced(name)
                continue
            if error and b"equal or smaller" not in error:
                log.warning("redis: %s: a command was refused: %s", name, error.decode(errors="replace"))
            for item in items:
                self.counters.entries += 1
                self.counters.bytes += item.size

    def _command(self, op: Op, epoch: str) -> list[Any]:
        """The Redis command of one op; a log entry carries the epoch it is written under (field ``e``)."""
        match op:
            case ("xadd", key, fields, entry_id):
                minid = f"{max(0, int(self.clock.utc_s() * 1000) - int(self.horizon_s * 1000))}"
                return ["XADD", key, "MINID", "~", minid, entry_id, *_flat(fields), b"ep", epoch]
            case ("set", key, value, px):
                return ["SET", key, value] if px is None else ["SET", key, value, "PX", px]
            case ("pexpire", key, px):
                return ["PEXPIRE", key, px]
            case ("del", key):
                return ["DEL", key]
            case ("hdel", key, name):
                return ["HDEL", key, name]
            case ("registry", name):
                return ["HSET", self.keys.streams, name, self._registry_entry(name)]
            case ("ctl", what, name):
                fields = {"op": what, "s": name, "node": self.node_id, "epoch": epoch}
                return ["XADD", self.keys.ctl, "MAXLEN", "~", CTL_MAXLEN, "*", *_flat(fields)]
        raise ValueError(f"unknown op {op[0]!r}")

    def _registry_entry(self, name: str) -> bytes:
        stream = self.store.get(name)
        st = self._streams.get(name)
        entry = {
            "node": self.node_id,
            "epoch": self.registry.epoch(name) or (st.epoch if st is not None else 0),
            "state": "ended" if stream is None or stream.ended else "live",
            "started": stream.started_utc_s if stream is not None else 0.0,
            "updated": self.clock.utc_s(),
        }
        return json.dumps(entry, separators=(",", ":")).encode()


def _by_stream(batch: list[_Item]) -> list[tuple[str, list[_Item]]]:
    """Consecutive items of one stream, together (one fenced script each), in order."""
    groups: list[tuple[str, list[_Item]]] = []
    for item in batch:
        if groups and groups[-1][0] == item.stream:
            groups[-1][1].append(item)
        else:
            groups.append((item.stream, [item]))
    return groups


def _flat(fields: dict[Any, Any]) -> list[Any]:
    return [x for pair in fields.items() for x in pair]
