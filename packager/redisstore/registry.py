"""Stream leases: which node may publish a stream, claimed atomically and renewed while held.

``lp:lease:{stream}`` holds the node id with a PX expiry; a claim (a Lua
script: take it if free or already ours) increments ``lp:epoch:{stream}``, so
every successful claim has a new epoch. A background task renews every claimed
lease each ``lease_s / 4``. A lease that expired while no one else took it
(Redis lost its data, or an outage outlasted the lease) is claimed again; one
that another node now holds is *lost*: the ``on_lost`` callback hears it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from packager.redisstore.keys import Keys
from packager.timebase import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ARGV[1], redis.call('INCR', KEYS[2])}
end
return {0, cur, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: ``ok`` when this node now holds the stream; who holds it; its epoch."""

    ok: bool
    node: str | None
    epoch: int


class Registry:
    """One node's leases on one Redis. Event-loop only."""

    def __init__(
        self,
        client: redis.Redis,
        node_id: str,
        *,
        lease_s: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        keys: Keys | None = None,
        on_lost: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.client = client
        self.node_id = node_id
        self.lease_s = lease_s
        self.clock = clock
        self.keys = keys or Keys()
        self.on_lost = on_lost
        self.claimed: dict[str, int] = {}  # stream -> epoch of our claim
        self.lost_listeners: list[Callable[[str, str | None], None]] = []  # after on_lost
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None

    @property
    def _px(self) -> int:
        return max(1, int(self.lease_s * 1000))

    def holds(self, stream: str) -> bool:
        return stream in self.claimed

    async def claim(self, stream: str) -> Claim:
        """Take the stream's lease if it is free or already ours (raises RedisError when unreachable)."""
        keys = [self.keys.lease(stream), self.keys.epoch(stream)]
        ok, node, epoch = await self._claim(keys=keys, args=[self.node_id, self._px])
        claim = Claim(bool(ok), node.decode() if isinstance(node, bytes) else None, int(epoch or 0))
        if claim.ok:
            self.claimed[stream] = claim.epoch
            self._ensure_task()
        return claim

    async def renew(self, stream: str) -> bool:
        """Extend our lease; claims it again if it expired unheld. False (and ``on_lost``) if another holds it."""
        if await self._renew(keys=[self.keys.lease(stream)], args=[self.node_id, self._px]):
            return True
        claim = await self.claim(stream)
        if not claim.ok:
            self._lost(stream, claim.node)
        return claim.ok

    async def release(self, stream: str) -> bool:
        """Give the lease up (only if we hold it)."""
        self.claimed.pop(stream, None)
        return bool(await self._release(keys=[self.keys.lease(stream)], args=[self.node_id]))

    async def holder(self, stream: str) -> str | None:
        node = await self.client.get(self.keys.lease(stream))
        return node.decode() if node is not None else None

    def _lost(self, stream: str, holder: str | None) -> None:
        if self.claimed.pop(stream, None) is None:
            return
        log.warning("redis: lease on stream %s lost to %s; this node stops publishing it", stream, holder)
        if self.on_lost is not None:
            self.on_lost(stream, holder)
        for listener in list(self.lost_listeners):
            listener(stream, holder)

    def fenced(self, stream: str) -> None:
        """A write of ours was refused: the stream's epoch moved on (another node claimed it)."""
        self._lost(stream, None)

    def epoch(self, stream: str) -> int | None:
        """The epoch of our claim on ``stream``; None when we do not hold it."""
        return self.claimed.get(stream)

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew_loop())

    @property
    def renew_interval_s(self) -> float:
        """A quarter of the lease: with a two-part lease, renewed every half part."""
        return self.lease_s / 4

    async def _renew_loop(self) -> None:
        while self.claimed:
            await self.clock.sleep(self.renew_interval_s)
            for stream in list(self.claimed):
                try:
                    await self.renew(stream)
                except (RedisError, OSError) as exc:
                    log.debug("redis: renewing %s failed: %s", stream, exc)

    async def close(self) -> None:
        """Stop renewing (the leases then expire by themselves)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Owners:
    """Which streams other nodes hold right now, read every ``interval_s``: a synchronous answer for the
    ingest gate, which decides on a push (an RTMP ``publish``, an SRT handshake) before anything awaits.

    The lease claim that follows stays the authority; this only refuses early and in the protocol's own way."""

    def __init__(self, registry: Registry, *, interval_s: float = 1.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self.clock = clock
        self._others: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def elsewhere(self, stream: str) -> str | None:
        """The node holding ``stream`` when it is not this one (as of the last read)."""
        return self._others.get(stream)

    async def refresh(self) -> None:
        client, keys = self.registry.client, self.registry.keys
        names = [n.decode() for n in await client.hkeys(keys.streams)]
        holders = await client.mget([keys.lease(n) for n in names]) if names else []
        held = {n: h.decode() for n, h in zip(names, holders, strict=True) if h is not None}
        self._others = {n: node for n, node in held.items() if node != self.registry.node_id}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lease owners")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (RedisError, OSError):
                self._others = {}  # unknown: the claim decides
            await self.clock.sleep(self.interval_s)
