"""The reader protocol (packager.reader), as the origin uses it, over every store that implements it.

Each test takes a :class:`Pair`: a ``StoreReader`` and the :class:`~tests.support.live.Driver` that
publishes what it reads. :data:`FACTORIES` names the stores the suite runs against; a store is added by
registering one more async context manager there (a Redis replica's ``settle`` waits until the replica
has caught up with the publisher).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest

from packager.reader import Position, Progress, StoreReader, StreamReader
from packager.redisstore import RedisPublisher, RedisReplica, RedisTarget
from packager.store import SEGMENT_HEADER, Store
from tests.support.clock import ManualClock, until
from tests.support.live import VIDEO, Driver, make_live
from tests.support.redis import RedisServer, running_redis
from tests.support.redis import available as redis_available


@dataclass(frozen=True)
class Pair:
    """A reader, the driver publishing what it reads, and the clock both run on."""

    reader: StoreReader
    driver: Driver
    clock: ManualClock
    settle: Callable[[], Awaitable[None]]  # returns once the reader shows everything published so far
    node: str | None = None  # the publishing node the reader names (None: this process)

    def stream(self) -> StreamReader:
        stream = self.reader.get("demo")
        assert stream is not None
        return stream


@contextlib.asynccontextmanager
async def memory(clock: ManualClock) -> AsyncIterator[Pair]:
    """The in-memory store reads what it publishes."""
    store, d = make_live(tracks=(VIDEO,), window_s=Fraction(4), clock=clock)

    async def settle() -> None:
        await asyncio.sleep(0)

    yield Pair(store, d, clock, settle)


@contextlib.asynccontextmanager
async def redis(clock: ManualClock, server: RedisServer) -> AsyncIterator[Pair]:
    """The origin's replica of a Redis store reads what a publisher node publishes into Redis."""
    server.flush()
    target = RedisTarget.parse(server.url)
    store = Store(clock=clock)
    publisher = RedisPublisher(store, target, "node-a")
    await publisher.start()
    replica = RedisReplica(target, clock=clock)
    await replica.start()
    _, d = make_live(tracks=(VIDEO,), window_s=Fraction(4), clock=clock, store=store)

    def caught_up() -> bool:
        mirror = replica.get("demo")
        mine = store.get("demo")
        if mirror is None or mine is None:
            return False
        return dataclasses.replace(mirror.view(), version=0) == dataclasses.replace(mine.view(), version=0)

    async def settle() -> None:
        await until(caught_up, timeout_s=5)

    try:
        await settle()  # the stream and its inits have reached the replica
        yield Pair(replica, d, clock, settle, node="node-a")
    finally:
        await replica.close()
        await publisher.close(timeout_s=1.0)


FACTORIES: dict[str, Callable[..., contextlib.AbstractAsyncContextManager[Pair]]] = {"memory": memory, "redis": redis}


@pytest.fixture(scope="module")
def redis_for_readers() -> Iterator[RedisServer | None]:
    if not redis_available():
        yield None
        return
    with running_redis() as server:
        yield server


@pytest.fixture(params=sorted(FACTORIES))
async def pair(request: pytest.FixtureRequest, redis_for_readers: RedisServer | None) -> AsyncIterator[Pair]:
    if request.param == "redis":
        if redis_for_readers is None:
            pytest.skip("redis-server is not installed")
        async with redis(ManualClock(), redis_for_readers) as made:
            yield made
        return
    async with FACTORIES[request.param](ManualClock()) as made:
        yield made


async def publish(p: Pair, parts: int) -> None:
    p.driver.publish(parts)
    await p.settle()


def part_data(p: Pair, msn: int, index: int) -> bytes:
    return p.driver.part_bytes(VIDEO, msn, index)


# ---------------------------------------------------------------- streams


async def test_get_and_iter_name_the_streams(pair: Pair) -> None:
    await pair.settle()
    assert pair.reader.available
    assert pair.stream().name == "demo" and pair.reader.get("nope") is None
    assert [s.name for s in pair.reader] == ["demo"]
    assert pair.stream().node == pair.node
    assert pair.stream().started_utc_s == pair.clock.utc_s() and pair.stream().end_reason == ""


async def test_view_follows_what_is_published(pair: Pair) -> None:
    await publish(pair, 6)
    view = pair.stream().view()
    assert view.name == "demo" and view.live and not view.ended
    assert (view.segment_s, view.part_s, view.window_s) == (Fraction(1), Fraction(1, 4), Fraction(4))
    track = view.track("360p")
    assert track is not None and track.info == VIDEO
    assert [s.msn for s in track.segments] == [1000] and track.pending_msn == 1001
    assert [p.index for p in track.pending] == [0, 1] and track.next_part == (1001, 2)
    await publish(pair, 4 * 6)  # past the window: the oldest leave
    assert [s.msn for s in pair.stream().view().track("360p").segments] == [1003, 1004, 1005, 1006]  # type: ignore[union-attr]


async def test_init_part_segment_and_segment_bytes(pair: Pair) -> None:
    await publish(pair, 6)
    s = pair.stream()
    assert s.init("360p") == b"ftyp+moov 360p" and s.init("nope") is None
    part = s.part("360p", 1001, 1)
    assert part is not None and part.data == part_data(pair, 1001, 1) and not part.independent
    assert s.part("360p", 1001, 2) is None and s.part("nope", 1000, 0) is None
    seg = s.segment("360p", 1000)
    whole = SEGMENT_HEADER + b"".join(part_data(pair, 1000, i) for i in range(4))
    assert seg is not None and seg.size == len(whole) and [p.index for p in seg.parts] == [0, 1, 2, 3]
    assert s.segment_bytes("360p", 1000) == whole
    assert s.segment("360p", 1001) is None and s.segment_bytes("360p", 1001) is None  # still in production
    assert s.file("360p", "init.mp4") is None  # nothing mirrored to disk here


async def test_progress_in_production_and_complete(pair: Pair) -> None:
    await publish(pair, 6)
    s = pair.stream()
    assert s.progress("360p", 1001) == Progress(
        (SEGMENT_HEADER, part_data(pair, 1001, 0), part_data(pair, 1001, 1)), False
    )
    assert s.progress("360p", 1000) == Progress((s.segment_bytes("360p", 1000),), True)  # type: ignore[arg-type]
    assert s.progress("360p", 1002) is None and s.progress("nope", 1000) is None


# ---------------------------------------------------------------- waiting


async def waiting(p: Pair, position: Position, timeout_s: float = 5.0) -> asyncio.Task[bool]:
    """A wait for ``position`` that is held by the reader (nobody else waits there)."""
    s = p.stream()
    before = s.waiting_positions("360p")
    task = asyncio.ensure_future(s.wait("360p", position, timeout_s))
    await until(lambda: task.done() or s.waiting_positions("360p") > before)
    return task


async def test_wait_for_a_part_times_out_on_the_clock(pair: Pair) -> None:
    await publish(pair, 1)
    task = await waiting(pair, Position(1000, 2), timeout_s=3)
    pair.clock.advance(2.9)
    await asyncio.sleep(0)
    assert not task.done()
    pair.clock.advance(0.1)
    assert await asyncio.wait_for(task, 2) is False


async def test_wait_for_a_part_returns_when_it_is_published(pair: Pair) -> None:
    await publish(pair, 1)
    assert await pair.stream().wait("360p", Position(1000, 0), 5) is True  # already there: at once
    task = await waiting(pair, Position(1000, 2))
    await publish(pair, 1)
    await asyncio.sleep(0)
    assert not task.done()  # 1000.1 is not 1000.2
    await publish(pair, 1)
    assert await asyncio.wait_for(task, 2) is True


async def test_wait_for_a_whole_segment_needs_it_complete(pair: Pair) -> None:
    task = await waiting(pair, Position(1000))
    await publish(pair, 3)
    await asyncio.sleep(0)
    assert not task.done()  # three parts of four
    await publish(pair, 1)
    assert await asyncio.wait_for(task, 2) is True
    late = await waiting(pair, Position(1001), timeout_s=1)
    pair.clock.advance(1)
    assert await asyncio.wait_for(late, 2) is False


async def test_wait_returns_true_at_the_end(pair: Pair) -> None:
    await publish(pair, 2)
    task = await waiting(pair, Position(1005, 0))
    pair.driver.stream.on_end("source ended")
    await pair.settle()
    assert await asyncio.wait_for(task, 2) is True
    s = pair.stream()
    assert await s.wait("360p", Position(2000), 5) is True  # after the end: at once, whatever the position
    assert s.end_reason == "source ended" and s.view().ended


async def test_waiting_positions_counts_distinct_positions(pair: Pair) -> None:
    await publish(pair, 1)
    s = pair.stream()
    assert s.waiting_positions("360p") == 0 and s.waiting_positions("nope") == 0
    tasks: list[asyncio.Task[Any]] = [asyncio.ensure_future(s.wait("360p", Position(1000, 2), 5)) for _ in range(3)]
    tasks.append(asyncio.ensure_future(s.wait("360p", Position(1000), 5)))
    await until(lambda: s.waiting_positions("360p") == 2)
    await publish(pair, 1)  # 1000.1: nobody released
    assert s.waiting_positions("360p") == 2
    await publish(pair, 1)  # 1000.2: the three part waiters
    await until(lambda: s.waiting_positions("360p") == 1)
    await publish(pair, 1)  # 1000.3 completes the segment
    assert await asyncio.wait_for(asyncio.gather(*tasks), 2) == [True] * 4
    assert s.waiting_positions("360p") == 0
