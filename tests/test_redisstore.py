"""The Redis store against a real redis-server: codec, leases, publisher -> replica, outages."""

from __future__ import annotations

import asyncio
import dataclasses
from fractions import Fraction

import pytest

from packager import scte35
from packager.config import ConfigError
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.model import Part, PartRef, Segment, StreamView
from packager.publication import (
    InitPublished,
    InputSwitched,
    MediaRetired,
    PartPublished,
    SegmentClosed,
    SpliceScheduled,
    StreamEnded,
    StreamOpened,
    StreamRemoved,
    StreamTiming,
    TracksExpected,
)
from packager.reader import Position
from packager.redisstore import RedisPublisher, RedisReplica, RedisTarget, Registry
from packager.redisstore.codec import decode, encode
from packager.redisstore.keys import Keys
from packager.splice import Splice
from packager.store import Store, StreamStore
from packager.timebase import MediaClock
from tests.support.clock import until
from tests.support.live import AUDIO, VIDEO, VIDEO2, Driver
from tests.support.redis import RedisServer, redis_server

__all__ = ["redis_server"]

SEGMENT_S = Fraction(1)
PART_S = Fraction(1, 4)
TRACKS = (VIDEO, VIDEO2, AUDIO)


# --------------------------------------------------------------------------- helpers


def open_live(store: Store, name: str = "demo") -> Driver:
    stream = store.open_stream(
        name,
        segment_s=SEGMENT_S,
        part_s=PART_S,
        window_s=Fraction(6),
        target_duration=1,
        clock=MediaClock(Fraction(0), live=True),
    )
    stream.expect_tracks(frozenset(t.name for t in TRACKS))
    for info in TRACKS:
        stream.on_init(info, b"ftyp+moov " + info.name.encode())
    return Driver(stream, TRACKS, SEGMENT_S, PART_S)


def same_view(view: StreamView) -> StreamView:
    """A view without its version (each store counts its own changes)."""
    return dataclasses.replace(view, version=0)


def renders(stream: StreamStore) -> list[bytes]:
    view = stream.view()
    out = [render_master(view).encode(), render_mpd(view), render_mpd(view, low_latency=False)]
    out += [render_media(view, t.info.name).encode() for t in view.tracks]
    return out


def matches(replica: RedisReplica, publisher_stream: StreamStore) -> bool:
    mirror = replica.get(publisher_stream.name)
    return mirror is not None and same_view(mirror.view()) == same_view(publisher_stream.view())


def assert_complete(mirror: StreamStore) -> None:
    """Everything the replica's view names has its bytes."""
    for tv in mirror.view().tracks:
        name = tv.info.name
        assert mirror.init(name) is not None
        for seg in tv.segments:
            assert mirror.segment_bytes(name, seg.msn) is not None, (name, seg.msn)
        for ref in tv.pending:
            assert mirror.part(name, ref.msn, ref.index) is not None, (name, ref.msn, ref.index)


@pytest.fixture
async def target(redis_server: RedisServer) -> RedisTarget:
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return RedisTarget.parse(redis_server.url)


@pytest.fixture
async def publisher(target: RedisTarget):  # type: ignore[no-untyped-def]
    store = Store()
    pub = RedisPublisher(store, target, "node-a")
    await pub.start()
    yield pub
    await pub.close(timeout_s=1.0)


async def replica_of(target: RedisTarget, **kwargs) -> RedisReplica:  # type: ignore[no-untyped-def]
    replica = RedisReplica(target, **kwargs)
    await replica.start()
    return replica


# --------------------------------------------------------------------------- target and codec


def test_target_parses_urls() -> None:
    assert RedisTarget.parse("redis://10.0.0.5:6380/2") == RedisTarget("10.0.0.5", 6380, 2)
    assert RedisTarget.parse("redis://cache") == RedisTarget("cache", 6379, 0)
    assert RedisTarget.parse("redis://127.0.0.1:7000/0").url == "redis://127.0.0.1:7000/0"
    for bad in ("http://x", "redis://", "redis://h:99999", "redis://h/x", "redis://h/99", "nonsense"):
        with pytest.raises(ConfigError, match="--store"):
            RedisTarget.parse(bad)


def test_codec_round_trips_every_event() -> None:
    timing = StreamTiming(Fraction(2), Fraction(1, 3), Fraction(60), 2, Fraction(1_700_000_000_1, 10), True)
    part = Part("360p", 7, 2, 1_260_000, 30_000, True, b"\x00moof\xffmdat", 1700.000001, 1700.1 + 1e-9)
    ref = PartRef(7, 0, 1_260_000, 30_000, True, 1234)
    seg = Segment("360p", 7, 1_260_000, 180_000, (ref, ref), 9999, True, 0.1 + 0.2, gap=True)
    events = [
        StreamOpened("s", timing, 1_700_000_000.123456789),
        TracksExpected("s", frozenset({"360p", "audio"})),
        InitPublished("s", VIDEO, b"ftyp\x00\x01moov"),
        InitPublished("s", AUDIO, b""),
        PartPublished("s", part, discontinuity=True),
        PartPublished("s", dataclasses.replace(part, data=b"", independent=False)),
        SegmentClosed("s", seg),
        SegmentClosed("s", dataclasses.replace(seg, gap=False, cut=True, run=3)),
        MediaRetired("s", "360p", 7, ((7, 0), (7, 1))),
        InputSwitched("s"),
        SpliceScheduled("s", Splice(42, "out", 1_260_000, 2_700_000, scte35.build("out", 42, 1_260_000, 2_700_000))),
        SpliceScheduled("s", Splice(7, "in", 9, None, b"\xfc\x30", "input")),
        StreamOpened("s", dataclasses.replace(timing, hls_cue_tags=True), 1.5),
        StreamEnded("s", "feed ended ✓", 1_700_000_100.5),
        StreamRemoved("s"),
    ]
    for event in events:
        fields = encode(event)
        assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in fields.items())
        assert decode(fields) == event
        assert encode(event) == fields
    assert decode({b"t": b"y", b"s": b"s"}) is None


# --------------------------------------------------------------------------- leases


async def test_a_held_lease_cannot_be_claimed_until_released_or_expired(target: RedisTarget) -> None:
    a_client, b_client = target.client(), target.client()
    lost: list[tuple[str, str | None]] = []
    a = Registry(a_client, "node-a", lease_s=0.3, on_lost=lambda s, h: lost.append((s, h)))
    b = Registry(b_client, "node-b", lease_s=0.3)
    try:
        first = await a.claim("demo")
        assert first.ok and first.node == "node-a"
        refused = await b.claim("demo")
        assert not refused.ok and refused.node == "node-a" and refused.epoch == first.epoch
        await asyncio.sleep(0.5)  # a renews every lease_s / 3
        assert await b.holder("demo") == "node-a" and not (await b.claim("demo")).ok
        assert await a.release("demo")
        taken = await b.claim("demo")
        assert taken.ok and taken.epoch == first.epoch + 1
        assert not await a.renew("demo") and lost == []  # released: nothing to lose
        await b.close()  # b stops renewing: its lease expires
        await asyncio.sleep(0.4)
        assert await a.holder("demo") is None and (await a.claim("demo")).ok
        await a.close()  # now a stops renewing; b takes the stream after expiry
        await asyncio.sleep(0.4)
        assert (await b.claim("demo")).ok
        assert not await a.renew("demo") and lost == [("demo", "node-b")]
    finally:
        await a.close()
        await b.close()
        await a_client.aclose()
        await b_client.aclose()


async def test_a_publisher_does_not_publish_a_stream_another_node_holds(target: RedisTarget) -> None:
    other = Registry(target.client(), "node-b")
    assert (await other.claim("demo")).ok
    store = Store()
    pub = RedisPublisher(store, target, "node-a")
    await pub.start()
    try:
        open_live(store).publish_segments(2)
        await until(lambda: pub._streams["demo"].status == "lost")
        client = target.client()
        assert await client.xlen(Keys().log("demo")) == 0
        await client.aclose()
    finally:
        await pub.close(timeout_s=0.5)
        await other.close()
        await other.client.aclose()


# --------------------------------------------------------------------------- publisher -> replica


async def test_replica_matches_the_publisher_byte_for_byte(target: RedisTarget, publisher: RedisPublisher) -> None:
    servable: list[tuple[str, str, float]] = []
    replica = await replica_of(target, on_servable=lambda s, t, d: servable.append((s, t, d)))
    try:
        driver = open_live(publisher.store)
        driver.publish_segments(3)
        driver.publish(2)
        source = publisher.store.get("demo")
        assert source is not None
        await until(lambda: matches(replica, source))
        mirror = replica.get("demo")
        assert mirror is not None and mirror.node == "node-a"
        assert renders(mirror) == renders(source)
        assert_complete(mirror)
        assert {(s, t) for s, t, _ in servable} == {("demo", t.name) for t in TRACKS}
        assert all(0 <= d < 5 for _s, _t, d in servable)
        source.on_end("feed ended")
        await until(lambda: matches(replica, source))
        assert mirror.ended and mirror.end_reason == "feed ended" and renders(mirror) == renders(source)
        publisher.store.remove("demo")
        await until(lambda: replica.get("demo") is None)
    finally:
        await replica.close()


async def test_splices_reach_live_and_late_replicas(target: RedisTarget, publisher: RedisPublisher) -> None:
    live = await replica_of(target)
    try:
        driver = open_live(publisher.store)
        driver.publish_segments(2)
        source = publisher.store.get("demo")
        assert source is not None
        start = (driver.msn * 2 + 1) * 90_000 // 2  # a part boundary ahead of the media
        source.on_splice(Splice(9, "out", start, 90_000, scte35.build("out", 9, start, 90_000)))
        driver.publish(3)
        await until(lambda: matches(live, source))
        assert "SCTE35-OUT=0x" in render_media(source.view(), "360p")
        await until(lambda: publisher._idle.is_set() and not publisher._queue)
        late = await replica_of(target)  # from the snapshot
        try:
            mirrors = [live.get("demo"), late.get("demo")]
            await until(lambda: matches(late, source))
            for mirror in mirrors:
                assert mirror is not None and mirror.splices == source.splices
                assert renders(mirror) == renders(source)
        finally:
            await late.close()
    finally:
        await live.close()


async def test_late_replicas_catch_up_from_the_snapshot_and_agree(
    target: RedisTarget, publisher: RedisPublisher
) -> None:
    driver = open_live(publisher.store)
    driver.publish_segments(9)  # past the 6 s window: segments have slid out
    driver.publish(1)
    source = publisher.store.get("demo")
    assert source is not None
    await until(lambda: publisher._idle.is_set() and not publisher._queue)
    first = await replica_of(target)
    try:
        assert first.available and first.get("demo") is not None  # restored from the snapshot
        await until(lambda: matches(first, source))  # then the log's entries after it
        driver.publish(7)
        second = await replica_of(target)
        try:
            await until(lambda: matches(first, source) and matches(second, source))
            a, b = first.get("demo"), second.get("demo")
            assert a is not None and b is not None
            assert renders(a) == renders(b) == renders(source)
            assert_complete(a)
            assert a.part("360p", *driver.published[-1]) == source.part("360p", *driver.published[-1])
        finally:
            await second.close()
    finally:
        await first.close()


async def test_a_held_request_on_the_replica_wakes_when_the_publisher_publishes(
    target: RedisTarget, publisher: RedisPublisher
) -> None:
    driver = open_live(publisher.store)
    driver.publish(1)
    replica = await replica_of(target)
    try:
        await until(lambda: replica.get("demo") is not None and replica.get("demo").part("360p", 1000, 0) is not None)
        mirror = replica.get("demo")
        assert mirror is not None
        held = asyncio.ensure_future(mirror.wait("360p", Position(1000, 1), 5.0))
        await asyncio.sleep(0.05)
        assert not held.done() and mirror.waiting_positions("360p") == 1
        driver.publish(1)
        assert await asyncio.wait_for(held, 2.0)
        assert mirror.part("360p", 1000, 1) is not None
    finally:
        await replica.close()


async def test_redis_restart_without_data_heals_and_the_replica_resyncs(
    target: RedisTarget, redis_server: RedisServer, publisher: RedisPublisher
) -> None:
    driver = open_live(publisher.store)
    driver.publish_segments(2)
    source = publisher.store.get("demo")
    assert source is not None
    replica = await replica_of(target)
    try:
        await until(lambda: matches(replica, source))
        mirror = replica.get("demo")
        redis_server.stop()
        await until(lambda: not replica.available, 3.0)
        for _ in range(8):  # 2 s of parts while Redis is away
            driver.publish(1)
            await asyncio.sleep(0.25)
        redis_server.start()
        driver.publish(3)
        await until(lambda: replica.available and matches(replica, source), 10.0)
        assert replica.get("demo") is mirror  # rebuilt in place
        assert renders(mirror) == renders(source)
        assert_complete(mirror)
        assert publisher.counters.heals >= 1 and publisher.counters.reconnects >= 1
        assert replica.counters.resyncs >= 2  # the parts lost with Redis broke the previous-id chain
        driver.publish_segments(2)
        await until(lambda: matches(replica, source), 5.0)
        assert_complete(mirror)
    finally:
        await replica.close()


async def test_an_overflowing_buffer_drops_media_then_heals(target: RedisTarget, redis_server: RedisServer) -> None:
    store = Store()
    pub = RedisPublisher(store, target, "node-a", buffer_bytes=4_000)
    await pub.start()
    replica = await replica_of(target)
    try:
        driver = open_live(store)
        driver.publish(1)
        source = store.get("demo")
        assert source is not None
        await until(lambda: matches(replica, source))
        redis_server.stop()
        await until(lambda: not replica.available, 3.0)
        driver.publish_segments(3)
        await until(lambda: not pub.connected, 3.0)
        # what stays queued: the budget, one re-publication of what the store holds, snapshots
        held = sum(len(d) for t in source.tracks.values() for d in t.segment_data.values())
        held += sum(p.size for t in source.tracks.values() for p in t.parts.values())
        assert pub.counters.dropped > 0 and pub.metrics()["queued_bytes"] <= 4_000 + 2 * held
        redis_server.start()  # same port, empty
        await until(lambda: replica.available and matches(replica, source), 10.0)
        assert_complete(replica.get("demo"))
    finally:
        await replica.close()
        await pub.close(timeout_s=1.0)


async def test_the_ingest_gate_refuses_a_stream_another_node_holds_before_any_await(target: RedisTarget) -> None:
    from packager.config import StreamConfig
    from packager.ingest.gate import IngestGate
    from packager.redisstore.registry import Owners
    from packager.settings import IngestSettings, StreamSettings

    keys = Keys()
    a_client, b_client = target.client(), target.client()
    a, b = Registry(a_client, "node-a"), Registry(b_client, "node-b")
    stream = StreamSettings(StreamConfig(name="demo"), "key-for-demo-123")
    gate = IngestGate(IngestSettings(streams={"demo": stream}))
    owners = Owners(b)
    gate.owner_elsewhere = owners.elsewhere
    try:
        assert gate.check("demo", "key-for-demo-123").ok  # nobody holds it
        assert (await a.claim("demo")).ok
        await a_client.hset(keys.streams, "demo", '{"node": "node-a"}')  # what a's publisher registers
        await owners.refresh()
        verdict = gate.check("demo", "key-for-demo-123")
        assert verdict.status == 409 and "node-a" in verdict.reason
        assert owners.elsewhere("demo") == "node-a"
        await a.release("demo")
        await owners.refresh()
        assert gate.check("demo", "key-for-demo-123").ok  # free again
        assert (await b.claim("demo")).ok
        await owners.refresh()
        assert owners.elsewhere("demo") is None  # held by this node: not "elsewhere"
    finally:
        await a.close()
        await b.close()
        await a_client.aclose()
        await b_client.aclose()
