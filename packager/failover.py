"""One stream's redundancy on one node: standby until the lease is free, active until it is lost.

Two nodes encode the same stream; numbering comes from UTC, so both cut the
same segments. :class:`StreamFailover` runs on the loop, one per stream:

- *standby*: the node's replica mirrors what the active node publishes, the
  pipeline's output waits in the :class:`~packager.standby.StandbyStream`.
  When the lease is free (the active died, was cut off, or handed the stream
  off) it claims it; the claim bumps the stream's epoch, so nothing the old
  owner still sends is written after it. The replica then reads the log to its
  end, every segment the old owner left unfinished is closed as *cut*, an
  :class:`~packager.publication.OwnerChanged` is published and the staged
  media continues from the next whole segment, with the same numbers.
- *active*: renewing the lease is the registry's job. If it is lost (another
  node holds it, or a write was refused for a stale epoch) the node stops
  publishing at once and goes back to standby. If this node's input has been on
  the slate for ``slate_after_s`` while a standby reports live input, it hands
  the stream off at the next segment boundary.

Health (role, input state) is reported into ``lp:nodes:{stream}`` every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from packager.publication import OwnerChanged, PartPublished
from packager.ratelog import RateLimitedLog
from packager.redisstore import health
from packager.redisstore.codec import CodecError, decode
from packager.redisstore.health import NodeStatus
from packager.standby import StandbyStream
from packager.store import Store, StreamStore
from packager.timebase import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

TAIL_ENTRIES = 200  # log entries read back for the newest published part when a log cannot be continued
InputState = Callable[[], tuple[str, float]]  # ("live" | "slate" | "none", since UTC seconds)


@dataclass(frozen=True)
class FailoverSettings:
    """``lease_s``: the lease's expiry (two parts by default); ``slate_after_s``: input-health hand-off."""

    lease_s: float
    poll_s: float
    report_s: float
    slate_after_s: float = 3.0

    @property
    def stale_s(self) -> float:
        """A node's health older than this is not believed (it is down, paused or cut off)."""
        return max(4 * self.report_s, self.lease_s * 2)


class Node(Protocol):
    """What a controller needs of its node: the registry, publisher, replica and Redis keys."""

    node_id: str

    @property
    def registry(self): ...  # type: ignore[no-untyped-def]

    @property
    def publisher(self): ...  # type: ignore[no-untyped-def]

    @property
    def replica(self): ...  # type: ignore[no-untyped-def]


class StreamFailover:
    """The failover state machine of one stream on this node. Event-loop only."""

    def __init__(
        self,
        staged: StandbyStream,
        node: Node,
        store: Store,
        input_state: InputState,
        settings: FailoverSettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.staged = staged
        self.name = staged.name
        self.node = node
        self.store = store
        self.input_state = input_state
        self.settings = settings
        self.clock = clock
        self.role = "standby"  # standby -> active -> (releasing ->) standby
        self.failovers = 0
        self._last_report_s = 0.0
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._released = asyncio.Event()
        self._errors = RateLimitedLog(log)

    @property
    def client(self):  # type: ignore[no-untyped-def]
        return self.node.publisher.client

    @property
    def keys(self):  # type: ignore[no-untyped-def]
        return self.node.publisher.keys

    async def run(self) -> None:
        """Until closed or the staged stream ends: watch the lease, take over, hand off."""
        self.node.publisher.manage(self.name)
        self.node.registry.lost_listeners.append(self._lost)
        await self.node.replica.follow(self.name)
        while not self._closing:
            try:
                await self._tick()
            except (RedisError, OSError) as exc:
                self._errors.warning(
                    ("failover", self.name), "%s: failover control cannot reach redis: %s", self.name, exc
                )
            await self.clock.sleep(self.settings.poll_s)

    async def _tick(self) -> None:
        now = self.clock.utc_s()
        if now - self._last_report_s >= self.settings.report_s:
            await self._report(now)
        if self.role == "standby":
            await self._maybe_take_over()
        elif self.role == "active":
            await self._check_input(now)

    def status(self, now: float) -> NodeStatus:
        state, since = self.input_state() if self.staged.ended is None else ("none", now)
        epoch = self.node.registry.epoch(self.name) or 0
        return NodeStatus(self.node.node_id, self.role, state, since, epoch, now)

    async def _report(self, now: float) -> None:
        self._last_report_s = now
        ttl_s = self.settings.stale_s * 4
        await health.report(self.client, self.keys, self.name, self.status(now), ttl_s)

    async def _peers(self) -> list[NodeStatus]:
        now = self.clock.utc_s()
        found = await health.read(self.client, self.keys, self.name, now_utc_s=now, stale_s=self.settings.stale_s)
        return [s for s in found if s.node != self.node.node_id]

    # -- standby
    async def _maybe_take_over(self) -> None:
        if not self.staged.ready() or self.staged.ended is not None:
            return
        holder = await self.node.registry.holder(self.name)
        if holder is not None and holder != self.node.node_id:
            return
        peers = await self._peers()
        if self.input_state()[0] != "live" and any(p.input == "live" and p.role == "standby" for p in peers):
            return  # a standby with real input is the better owner
        claim = await self.node.registry.claim(self.name)
        if claim.ok:
            await self._take_over(claim.epoch, peers)

    async def _take_over(self, epoch: int, peers: list[NodeStatus]) -> None:
        last_id = await self.node.replica.take_over(self.name)
        stream = self.store.get(self.name)
        if last_id is None or stream is None or stream.ended or not self._same_timing(stream):
            await self._open_fresh()
        else:
            self._continue(stream, last_id, epoch, peers)
        self.role = "active"
        await self._report(self.clock.utc_s())

    def _same_timing(self, stream: StreamStore) -> bool:
        t = self.staged.timing
        return (stream.segment_s, stream.part_s) == (t.segment_s, t.part_s) and stream.timing.live

    async def _open_fresh(self) -> None:
        """Nothing to continue (the first owner, or the last one ended the stream): a new stream."""
        top = await self.client.xrevrange(self.keys.log(self.name), count=TAIL_ENTRIES)
        self.node.publisher.promote(self.name, top[0][0].decode() if top else "0-0")
        published = [msn for _, fields in top if (msn := _part_msn(fields)) is not None]
        t = self.staged.timing
        stream = self.store.open_stream(
            self.name,
            segment_s=t.segment_s,
            part_s=t.part_s,
            window_s=t.window_s,
            target_duration=t.target_duration,
            clock=self.staged.clock,
            hls_cue_tags=t.hls_cue_tags,
            targets=t.targets,
        )
        first = self.staged.first_whole_msn() or 0
        # a log this node could not continue (its snapshot not servable yet) still owns its positions
        self.staged.activate(stream, max(first, max(published) + 1) if published else first)
        log.info("%s: publishing from node %s", self.name, self.node.node_id)

    def _continue(self, stream: StreamStore, last_id: str, epoch: int, peers: list[NodeStatus]) -> None:
        """Continue the old owner's stream, its numbers unchanged: from the part after its last one where this
        encoder staged it (nothing lost), else from the next whole segment."""
        self.node.publisher.promote(self.name, last_id)
        fill = self.staged.fill_from(stream)
        resume, gap_s = (fill.resume_msn, fill.gap_s) if fill is not None else _whole_segment(stream, self.staged)
        previous = stream.node
        now = self.clock.utc_s()
        change = OwnerChanged(
            self.name,
            previous,
            self.node.node_id,
            epoch,
            _reason(previous, self.node.node_id, peers),
            resume,
            round(gap_s, 3),
            now,
        )
        stream.hand_over(change)
        self.staged.activate(stream, resume, fill)
        self.failovers += 1
        log.warning(
            "%s: took over from %s (%s): publishing from %s of segment %d, %.3f s of media lost",
            self.name,
            previous,
            change.reason,
            "the start" if fill is None else "the part after its last",
            resume,
            gap_s,
        )

    # -- active
    def _lost(self, stream: str, holder: str | None) -> None:
        """The registry lost our lease (another holds it, or a write was fenced): standby at once."""
        if stream != self.name or self.role == "standby":
            return
        self.node.publisher.demote(self.name)
        self.staged.deactivate()
        self.role = "standby"
        log.warning("%s: lease lost to %s; back to standby", self.name, holder or "another node")
        self._spawn(self.node.replica.follow(self.name))

    async def _check_input(self, now: float) -> None:
        state, since = self.input_state()
        if state == "live" or now - since < self.settings.slate_after_s:
            return
        if not any(p.input == "live" and p.role == "standby" for p in await self._peers()):
            return
        log.warning("%s: input on the slate for %.1f s, a standby has live input: handing off", self.name, now - since)
        await self._hand_off(now)

    async def _hand_off(self, now: float) -> None:
        """Finish the segment in production on every track, then release the lease (``_handed_off``)."""
        stream = self.store.get(self.name)
        positions = [p[0] for t in stream.tracks.values() if (p := t.last_position())] if stream else []
        self.role = "releasing"
        self._released.clear()
        await self._report(now)
        self.staged.stop_after(max(positions, default=0), self._handed_off)

    def _handed_off(self) -> None:
        self.node.publisher.hand_off(self.name)
        self._released.set()
        self._spawn(self._rejoin())

    async def _rejoin(self) -> None:
        """Say "releasing" until another node holds the lease (its OwnerChanged tells why), then standby."""
        deadline = self.clock.utc_s() + 4 * self.settings.lease_s
        while self.clock.utc_s() < deadline:
            holder = await self.node.registry.holder(self.name)
            if holder is not None and holder != self.node.node_id:
                break
            await self.clock.sleep(self.settings.poll_s)
        self.role = "standby"
        await self._report(self.clock.utc_s())
        await self.node.replica.follow(self.name)

    async def stand_down(self) -> bool:
        """Shutting down: False when this node publishes the stream and no live standby can take it
        (the caller ends it); else True, an active stream handed to the standby at a segment boundary."""
        self._closing = True  # never claims again
        if self.role == "releasing":
            await self._wait_released()
        if self.role != "active":
            return True
        with contextlib.suppress(RedisError, OSError):
            if any(p.role == "standby" and p.input == "live" for p in await self._peers()):
                await self._hand_off(self.clock.utc_s())
                await self._wait_released()
                return True
        return False

    async def _wait_released(self) -> None:
        try:
            async with asyncio.timeout(float(self.staged.timing.segment_s) + 1.0):
                await self._released.wait()
        except TimeoutError:  # the pipeline stopped mid-segment: release now
            self.staged.deactivate()
            self._handed_off()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._lost in self.node.registry.lost_listeners:
            self.node.registry.lost_listeners.remove(self._lost)
        if self.role == "standby":  # a releasing node's last word stays until it is stale: the new owner reads it
            with contextlib.suppress(RedisError, OSError):
                await health.forget(self.client, self.keys, self.name, self.node.node_id)


def _whole_segment(stream: StreamStore, staged: StandbyStream) -> tuple[int, float]:
    """Where a take-over that cannot fill the old owner's segment resumes (the next segment this encoder has
    whole, after every published one), and the media seconds lost from the old owner's end to there."""
    published = [p[0] for t in stream.tracks.values() if (p := t.last_position()) is not None]
    first = staged.first_whole_msn() or 0
    resume = max(first, max(published) + 1) if published else first
    old_end_s = max((t.end_ticks / t.info.timescale for t in stream.tracks.values() if t.end_ticks), default=0.0)
    return resume, max(0.0, float(resume * stream.segment_s) - old_end_s) if old_end_s else 0.0


def _part_msn(fields: dict[bytes, bytes]) -> int | None:
    """The segment number of a log entry that publishes a part (None for any other entry)."""
    if fields.get(b"t") != b"p":
        return None
    try:
        event = decode(fields)
    except CodecError:
        return None
    return event.part.msn if isinstance(event, PartPublished) else None


def _reason(previous: str | None, node_id: str, peers: list[NodeStatus]) -> str:
    """Why the lease moved, from what the previous owner last reported."""
    if previous == node_id:
        return "restart"  # this node published the stream before it went down
    status = next((p for p in peers if p.node == previous), None)
    if status is None or status.role != "releasing":
        return "lease expired"
    return "input" if status.input == "slate" else "released"
