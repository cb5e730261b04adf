"""The origin's replica of a Redis store: snapshots to start from, stream logs to follow.

:class:`RedisReplica` implements :class:`~packager.reader.StoreReader` over a
local :class:`~packager.store.Store`: each stream is restored from its snapshot
(and the media keys it names), then its log is replayed with
:meth:`Store.apply`, so the origin's handlers and renderers work unchanged and
its manifests are the publisher's byte for byte. One task follows every log
and ``lp:ctl`` in a single ``XREAD BLOCK`` call. Each entry names the id of the
stream's previous entry; a mismatch (entries dropped by the publisher, trimmed
or lost in a Redis restart) makes the stream resync from the newest snapshot,
rebuilt in place so held requests are woken, never stranded.

A redundant encoder embeds a replica in its own store (``store=``, following
only the streams it stands by for): while standby it mirrors what the active
node publishes; :meth:`RedisReplica.take_over` stops following a stream after
bringing it up to the log's end, so the new owner continues it from there, and
:meth:`RedisReplica.follow` starts again when the node goes back to standby.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from redis.exceptions import RedisError

from packager.publication import PartPublished, StreamOpened, StreamRemoved
from packager.redisstore.codec import CodecError, decode
from packager.redisstore.keys import Keys
from packager.redisstore.logid import parse_id
from packager.redisstore.snapshot import media_keys, parse, restore, wake_all
from packager.redisstore.target import RedisTarget
from packager.redisstore.tasks import stop
from packager.store import Store, StreamStore
from packager.timebase import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

Servable = Callable[[str, str, float], None]
READ_COUNT = 1000


@dataclass
class ReplicaCounters:
    applied: int = 0
    resyncs: int = 0
    reconnects: int = 0
    malformed: int = 0


@dataclass
class _Follow:
    """Where the replica is in one stream's log."""

    last_id: str = "0-0"
    synced: bool = False
    tried_id: str | None = None  # the snapshot the last resync used
    node: str | None = None
    removed: bool = False


class RedisReplica:
    """A read-only mirror of every stream in one Redis, for the origin. Event-loop only."""

    def __init__(
        self,
        target: RedisTarget,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_servable: Servable | None = None,
        block_ms: int = 500,
        store: Store | None = None,
        follows: set[str] | None = None,
    ) -> None:
        """``store``: replay into this store (a node's own) instead of one of the replica's; it then follows
        only the streams in ``follows`` (see :meth:`follow`), and the store's availability stays its owner's."""
        self.target = target
        self.clock = clock
        self.on_servable = on_servable
        self.block_ms = block_ms
        self.keys = Keys(target.prefix)
        self.embedded = store is not None
        self.store = store if store is not None else Store(clock=clock)
        self._only: set[str] | None = (follows if follows is not None else set()) if self.embedded else None
        self._ready = False
        self._set_ready(False)
        self.client = target.client(read_timeout_s=block_ms / 1000 + 1.0)
        self.counters = ReplicaCounters()
        self._follow: dict[str, _Follow] = {}
        self._ctl_id = "0-0"
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- StoreReader
    def get(self, name: str) -> StreamStore | None:
        return self.store.get(name)

    def __iter__(self) -> Iterator[StreamStore]:
        return iter(self.store)

    @property
    def available(self) -> bool:
        return self._ready

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        if not self.embedded:
            self.store.available = ready

    def _wants(self, name: str) -> bool:
        return self._only is None or name in self._only

    # -- an embedded replica's streams (a standby encoder's)
    async def follow(self, name: str) -> None:
        """Mirror stream ``name`` from now on (rebuilt from its snapshot; retried by the log if not there)."""
        if self._only is not None:
            self._only.add(name)
        follow = self._follow.setdefault(name, _Follow())
        follow.synced = False
        follow.tried_id = None
        try:
            follow.node = _node_of(await self.client.hget(self.keys.streams, name) or b"")
            await self._resync(name)
        except (RedisError, OSError) as exc:
            log.warning("redis: %s: cannot resync yet (%s); the log will bring it", name, exc)

    async def take_over(self, name: str) -> str | None:
        """Stop following ``name`` after replaying its log to the end; the id of its last entry applied,
        None when the stream could not be brought up to date (no snapshot to start from)."""
        if self._only is not None:
            self._only.discard(name)
        follow = self._follow.pop(name, None) or _Follow()
        if not follow.synced:
            await self._resync(name, follow)
        while True:
            entries = await self.client.xrange(self.keys.log(name), min=f"({follow.last_id}", count=READ_COUNT)
            if not entries:
                break
            await self._entries(name, entries, follow)
        return follow.last_id if follow.synced else None

    # -- lifecycle
    async def start(self) -> None:
        """Restore every registered stream (when Redis answers), then follow the logs in the background."""
        try:
            await self._bootstrap()
        except (RedisError, OSError) as exc:
            log.warning("redis: %s unreachable at start (%s); retrying", self.target.url, exc)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            await stop(self._task, self.client)
            self._task = None
        self._set_ready(False)
        await self.client.aclose()

    def metrics(self) -> dict[str, int]:
        c = self.counters
        return {"applied": c.applied, "resyncs": c.resyncs, "reconnects": c.reconnects, "malformed": c.malformed}

    # -- catching up
    async def _bootstrap(self) -> None:
        """Registry first (after noting the control stream's end), so no opening is missed."""
        top = await self.client.xrevrange(self.keys.ctl, count=1)
        if top and self._ctl_id == "0-0":
            self._ctl_id = top[0][0].decode()
        await self._reconcile()
        self._set_ready(True)

    async def _reconcile(self) -> None:
        registry = await self.client.hgetall(self.keys.streams)
        for raw, entry in registry.items():
            name = raw.decode()
            if not self._wants(name):
                continue
            node = _node_of(entry)
            follow = self._follow.get(name)
            if follow is None:
                self._follow[name] = _Follow(node=node)
                await self._resync(name)
            elif not follow.synced:
                await self._resync(name)

    async def _resync(self, name: str, follow: _Follow | None = None) -> bool:
        """Rebuild the stream from its snapshot and the media it names; False if either is not there (yet)."""
        follow = follow if follow is not None else self._follow[name]
        data = await self.client.get(self.keys.snap(name))
        if data is None:
            follow.synced = False
            return False
        snap = parse(data)
        if snap.log_id == follow.tried_id and not follow.synced:
            return False  # the same snapshot again: wait for a newer one
        follow.tried_id = snap.log_id
        keys = media_keys(self.keys, snap)
        values = await self.client.mget(keys) if keys else []
        media = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
        if len(media) < len(keys):
            log.warning("redis: snapshot of %s names %d missing objects; waiting", name, len(keys) - len(media))
            follow.synced = False
            return False
        restore(self.store, snap, media, self.keys, follow.node)
        follow.last_id = snap.log_id
        follow.synced = True
        self.counters.resyncs += 1
        return True

    # -- following
    async def _run(self) -> None:
        backoff_s = 0.1
        while not self._closing:
            try:
                if not self._ready:
                    await self._bootstrap()
                    backoff_s = 0.1
                await self._read()
            except (RedisError, OSError) as exc:
                if self._ready:
                    self.counters.reconnects += 1
                    log.warning("redis: %s unreachable (%s); reconnecting", self.target.url, exc)
                self._set_ready(False)
                await self.clock.sleep(backoff_s)
                backoff_s = min(2.0, backoff_s * 2)

    async def _read(self) -> None:
        streams = {self.keys.ctl: self._ctl_id}
        streams.update({self.keys.log(name): f.last_id for name, f in self._follow.items()})
        response = await self.client.xread(streams, count=READ_COUNT, block=self.block_ms)
        for raw_key, entries in response or ():
            key = raw_key.decode()
            if key == self.keys.ctl:
                await self._control(entries)
            else:
                name = self.keys.stream_of_log(key)
                follow = self._follow.get(name)
                if follow is not None:  # not taken over or removed meanwhile
                    await self._entries(name, entries, follow)

    async def _control(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for raw_id, fields in entries:
            self._ctl_id = raw_id.decode()
            name = fields.get(b"s", b"").decode()
            node = fields.get(b"node", b"").decode() or None
            if not self._wants(name):
                continue
            if fields.get(b"op") == b"removed":
                self._remove(name)
            elif fields.get(b"op") == b"opened":
                follow = self._follow.setdefault(name, _Follow())
                follow.node = node
                stream = self.store.get(name)
                if stream is not None:
                    stream.node = node
                if not follow.synced:
                    await self._resync(name)

    def _remove(self, name: str, follow: _Follow | None = None) -> None:
        for f in (self._follow.pop(name, None), follow):
            if f is not None:
                f.removed = True
        stream = self.store.remove(name)
        if stream is not None:
            wake_all(stream)

    async def _entries(self, name: str, entries: list[tuple[bytes, dict[bytes, bytes]]], follow: _Follow) -> None:
        for raw_id, fields in entries:
            if follow.removed:
                return
            entry_id = raw_id.decode()
            if parse_id(entry_id) <= parse_id(follow.last_id):
                continue
            if follow.synced and fields.get(b"p", b"").decode() == follow.last_id:
                follow.last_id = entry_id
                self._apply(name, fields, follow)
                continue
            if await self._gap(name, follow, fields) and parse_id(follow.last_id) < parse_id(entry_id):
                return  # restored from an older snapshot: the next read replays the log from its id
            if not follow.synced:
                follow.last_id = max(follow.last_id, entry_id, key=parse_id)

    async def _gap(self, name: str, follow: _Follow, fields: dict[bytes, bytes]) -> bool:
        """The log does not continue what we have: resync (an unsynced stream waits for a snapshot entry)."""
        if follow.synced:
            log.info("redis: %s: gap in the log at %s; resyncing", name, follow.last_id)
            follow.synced = False
            follow.tried_id = None
        elif fields.get(b"k") != b"1" and follow.tried_id is not None:
            return False
        return await self._resync(name, follow)

    def _apply(self, name: str, fields: dict[bytes, bytes], follow: _Follow) -> None:
        try:
            event = decode(fields)
        except CodecError as exc:
            self.counters.malformed += 1
            log.warning("redis: %s: %s; resyncing", name, exc)
            follow.synced = False
            return
        if event is None:
            return
        if isinstance(event, StreamOpened):
            old = self.store.get(name)
            if old is not None:
                wake_all(old)
        if isinstance(event, StreamRemoved):
            self._remove(name, follow)
            return
        stream = self.store.apply(event)
        self.counters.applied += 1
        if isinstance(event, StreamOpened) and stream is not None:
            stream.node = follow.node
        if isinstance(event, PartPublished) and self.on_servable is not None:
            part = event.part
            self.on_servable(name, part.track, max(0.0, self.clock.utc_s() - part.published_utc_s))


def _node_of(entry: bytes) -> str | None:
    try:
        node = json.loads(entry).get("node")
    except (ValueError, AttributeError):
        return None
    return node if isinstance(node, str) else None
