"""Stream events: the bus (ids, backlog, replay, bounded subscribers), the emitters and the stall watchdog."""

import asyncio
import functools
import json
import re
import threading
from fractions import Fraction

import pytest

from packager.config import StreamConfig
from packager.disk import DiskWriter
from packager.events import (
    DEFAULT_TYPES,
    EVENT_TYPES,
    EventBus,
    event_class,
    ingest_rejected,
    parse_event_id,
    parse_types,
)
from packager.ingest.gate import IngestGate, Refusal
from packager.lifecycle import StreamEvents
from packager.model import Part
from packager.settings import IngestSettings, StreamSettings
from packager.timebase import MediaClock
from tests.support.clock import ManualClock, until
from tests.support.live import VIDEO, make_live

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def next_event(sub, timeout: float = 2.0):
    return await asyncio.wait_for(sub.get(), timeout)


def drain(sub) -> list:
    out = []
    while True:
        try:
            out.append(sub.get_nowait())
        except asyncio.QueueEmpty:
            return out
        if out[-1] is None:
            return out


# ---------------------------------------------------------------- the bus


async def test_event_shape_ids_and_time():
    bus = EventBus()
    a = bus.publish("stream.started", "demo", {"x": 1})
    b = bus.publish("stream.stopped", "demo", {"reason": "done"})
    assert a.id != b.id and a.seq + 1 == b.seq
    assert parse_event_id(a.id) == (bus.boot, a.seq)
    assert ISO_MS.match(a.time)
    assert json.loads(a.json) == {
        "id": a.id,
        "type": "stream.started",
        "stream": "demo",
        "time": a.time,
        "data": {"x": 1},
    }
    assert "\n" not in b.json
    assert EventBus().boot != bus.boot  # ids stay unique across restarts
    with pytest.raises(ValueError):
        bus.publish("stream.exploded", "demo")


async def test_backlog_is_bounded_and_replays_after_an_id():
    bus = EventBus(backlog=5, noisy_backlog=4, frequent_backlog=3)
    events = [bus.publish("stream.discontinuity", "demo") for _ in range(8)]
    for _ in range(10):  # frequent and noisy events have their own rings: they never push the others out
        bus.publish("segment.published", "demo", {"msn": 1})
        bus.publish("rendition.stalled", "demo", {"rendition": "360p"})
    breaks = frozenset({"stream.discontinuity"})
    assert [e.seq for e in bus.replay(events[4].id, breaks)] == [events[5].seq, events[6].seq, events[7].seq]
    assert bus.replay(bus.replay(events[0].id, EVENT_TYPES)[-1].id, EVENT_TYPES) == []
    assert [e.seq for e in bus.replay(events[0].id, breaks)] == [e.seq for e in events[3:]]  # older ones are gone
    assert [e.type for e in bus.replay(events[7].id)] == ["rendition.stalled"] * 4  # the newest noisy ones
    assert len(bus.replay(events[0].id, frozenset(EVENT_TYPES))) == 5 + 4 + 3
    assert len(bus.replay(f"{'0' * 12}-5")) == 5 + 4  # an id from another process: everything kept
    for bad in ("", "42", "zz-1", f"{bus.boot}-x", f"{bus.boot}-1\n", "a" * 5000):
        with pytest.raises(ValueError):
            bus.replay(bad)


async def test_subscribe_replays_then_streams_without_gap_or_repeat():
    bus = EventBus()
    first = bus.publish("stream.started", "a")
    second = bus.publish("stream.stopped", "a")
    sub, backlog = bus.subscribe(last_id=first.id)
    assert [e.id for e in backlog] == [second.id]
    third = bus.publish("vod.ready", "a")
    assert (await next_event(sub)).id == third.id
    assert drain(sub) == []
    _fresh, backlog = bus.subscribe()
    assert backlog == []  # no Last-Event-ID: only what happens from now on


async def test_type_filter_and_opt_in_segments():
    bus = EventBus()
    default, _ = bus.subscribe()
    segments, _ = bus.subscribe(frozenset({"segment.published"}))
    bus.publish("segment.published", "a", {"msn": 1})
    bus.publish("stream.started", "a")
    assert [e.type for e in drain(default)] == ["stream.started"]
    assert [e.type for e in drain(segments)] == ["segment.published"]
    assert "segment.published" not in DEFAULT_TYPES
    assert parse_types(["*"], "x") == DEFAULT_TYPES
    for bad in (["nope"], [], ["stream.started", "x" * 100]):
        with pytest.raises(ValueError):
            parse_types(bad, "types")


async def test_slow_subscriber_is_dropped_not_waited_for():
    bus = EventBus(queue_size=3)
    slow, _ = bus.subscribe()
    fast, _ = bus.subscribe()
    for i in range(5):
        bus.publish("stream.discontinuity", "a", {"i": i})
        assert (await next_event(fast)).data == {"i": i}
    assert slow.overflowed and bus.subscriber_count == 1 and bus.dropped_subscribers == 1
    got = drain(slow)
    assert [e.data["i"] for e in got[:-1]] == [0, 1, 2] and got[-1] is None  # what it had, then the end


async def test_sinks_get_every_event_and_a_failing_sink_is_contained():
    bus = EventBus()
    seen = []

    def broken(event):
        raise RuntimeError("boom")

    bus.add_sink(broken)
    bus.add_sink(seen.append)
    bus.publish("stream.started", "a")
    bus.remove_sink(seen.append)
    bus.publish("stream.stopped", "a")
    assert [e.type for e in seen] == ["stream.started"]


async def test_publish_threadsafe_from_a_worker_thread():
    bus = EventBus()
    sub, _ = bus.subscribe()
    t = threading.Thread(target=bus.publish_threadsafe, args=("vod.ready", "a", {"folder": None}))
    t.start()
    t.join()
    event = await next_event(sub)
    assert event.type == "vod.ready" and event.data == {"folder": None}


def test_publish_threadsafe_needs_a_loop():
    with pytest.raises(RuntimeError):
        EventBus().publish_threadsafe("vod.ready", "a")


# ---------------------------------------------------------------- emitters


async def attached(store, **kw):
    bus = EventBus()
    sub, _ = bus.subscribe(frozenset(EVENT_TYPES))
    events = StreamEvents(bus, store, **kw)
    events.attach()
    return bus, sub, events


async def test_started_segments_discontinuity_stopped_vod_ready_in_memory():
    store, d = make_live()
    _bus, sub, events = await attached(store)
    assert drain(sub) == []  # inits alone start nothing
    d.publish(1)
    started = await next_event(sub)
    assert started.type == "stream.started" and started.stream == "demo"
    assert [r["name"] for r in started.data["renditions"]] == ["360p", "180p", "audio"]
    assert started.data["hls"] == "/live/demo/master.m3u8"
    d.publish(3)  # closes segment 1000 in every track
    segs = drain(sub)
    assert [(e.type, e.data["rendition"], e.data["msn"]) for e in segs] == [
        ("segment.published", name, 1000) for name in ("360p", "180p", "audio")
    ]
    assert segs[0].data["uri"] == "/live/demo/360p/1000.m4s" and segs[0].data["duration_s"] == 1.0
    d.publish(4)  # closes 1001 in every track
    d.stream.on_input_switch()  # one discontinuity event (not one per track)
    d.stream.on_part(_part_like(d), False, True)  # a flagged part right after: the same break
    types = [e.type for e in drain(sub)]
    assert types.count("stream.discontinuity") == 1 and types.count("segment.published") == 3
    d.stream.on_end("source ended")  # closes the flagged part's segment first
    closed, stopped, ready = drain(sub)
    assert closed.type == "segment.published" and closed.data["discontinuity"] and closed.data["rendition"] == "360p"
    assert stopped.type == "stream.stopped" and stopped.data["reason"] == "source ended"
    assert ready.type == "vod.ready" and ready.data["folder"] is None
    d.stream.on_end("again")
    assert drain(sub) == []
    events.close()
    other = _open_other(store)  # the emitter no longer listens: a new stream's media starts nothing
    other.on_part(Part(VIDEO.name, 0, 0, 0, 90_000, True, b"x"), True, False)
    assert other.view().track("360p").segments and drain(sub) == []


def _open_other(store):
    other = store.open_stream(
        "other",
        segment_s=Fraction(1),
        part_s=Fraction(1),
        window_s=Fraction(10),
        target_duration=1,
        clock=MediaClock(Fraction(0)),
    )
    other.on_init(VIDEO, b"ftyp+moov other")
    return other


def _part_like(d):
    info = d.tracks[0]
    start = int((d.msn * d.segment_s + d.index * d.part_s) * info.timescale) + 10 * 90_000
    return Part(info.name, start // 90_000, 0, start, int(d.part_s * 90_000), True, b"x")


async def test_vod_ready_comes_after_the_final_manifests_are_on_disk(tmp_path):
    store, d = make_live(tmp_path)
    _bus, sub, _events = await attached(store, files=d.mirror)
    d.publish_segments(2)
    d.stream.on_end("done")
    while (event := await next_event(sub)).type != "vod.ready":
        pass
    assert event.data["folder"] == str(tmp_path / "demo")
    for name in ("360p", "180p", "audio"):
        assert "#EXT-X-ENDLIST" in (tmp_path / "demo" / name / "index.m3u8").read_text()
    assert 'type="static"' in (tmp_path / "demo" / "manifest.mpd").read_text()
    d.mirror.close()


async def test_vod_ready_still_arrives_when_the_disk_closes_at_shutdown(tmp_path):
    store, d = make_live(tmp_path)
    _bus, sub, _events = await attached(store, files=d.mirror)
    d.publish(2)
    d.stream.on_end("stopped")  # the mirror queues the final manifests at once ...
    await asyncio.to_thread(d.mirror.close)  # ... and `packager run` closes it before the loop got to the notice
    types = []
    while "vod.ready" not in types:
        types.append((await next_event(sub)).type)
    assert "#EXT-X-ENDLIST" in (tmp_path / "demo" / "360p" / "index.m3u8").read_text()


def test_disk_writer_notify_runs_after_earlier_writes_and_after_close(tmp_path):
    disk = DiskWriter()
    order = []
    disk.write(tmp_path / "a", b"1")
    disk.notify(lambda: order.append((tmp_path / "a").exists()))
    disk.flush()
    disk.close()
    disk.notify(lambda: order.append("late"))  # the writer is gone: called at once
    assert order == [True, "late"]


async def test_watchdog_reports_stall_and_recovery_per_rendition():
    clock = ManualClock()
    part = Fraction(1, 50)  # threshold 3 x 20 ms
    store, d = make_live(segment_s=Fraction(1, 10), part_s=part, clock=clock)
    _bus, sub, events = await attached(store)
    assert events.threshold_s(d.stream) == pytest.approx(0.06)
    d.publish(2)
    assert (await next_event(sub)).type == "stream.started"
    clock.advance(0.05)
    await settle()
    assert drain(sub) == []  # silent for less than the threshold
    clock.advance(0.01)
    stalled = [await next_event(sub) for _ in range(3)]  # nothing published: every rendition stalls once
    assert {e.type for e in stalled} == {"rendition.stalled"}
    assert {e.data["rendition"] for e in stalled} == {"360p", "180p", "audio"}
    assert all(e.data["silent_s"] == 0.06 and e.data["threshold_s"] == 0.06 for e in stalled)
    assert stalled[0].data["last_part"] == "1000.1"
    assert events.stalled(d.stream.name) == ["180p", "360p", "audio"]
    assert clock.sleeping == 0  # a stall is reported once: no timer checks again until a part comes
    clock.advance(0.1)
    d.publish(1)
    recovered = drain(sub)
    assert [e.type for e in recovered] == ["rendition.recovered"] * 3
    assert all(e.data["silent_s"] == 0.16 for e in recovered)
    assert events.stalled(d.stream.name) == []
    d.stream.on_end("done")
    await until(lambda: clock.sleeping == 0)
    clock.advance(1)
    await settle()
    assert [e.type for e in drain(sub) if e.type != "segment.published"] == ["stream.stopped", "vod.ready"]


async def settle() -> None:
    """Let every task that is ready run (woken sleepers, queued callbacks)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_watchdog_stays_quiet_while_parts_keep_coming():
    clock = ManualClock()
    store, d = make_live(segment_s=Fraction(1, 10), part_s=Fraction(1, 50), clock=clock)
    _bus, sub, events = await attached(store)
    for _ in range(12):  # a part every 20 ms for 240 ms: four thresholds' worth, never silent for one
        d.publish(1)
        clock.advance(0.02)
        await settle()
    assert not [e for e in drain(sub) if e.type.startswith("rendition.")]
    assert clock.sleeping == 3  # one timer per rendition, not one per part
    events.close()  # cancels the timers
    clock.advance(1)
    await settle()
    assert not [e for e in drain(sub) if e.type.startswith("rendition.")]
    assert clock.sleeping == 0


async def test_ingest_rejections_never_carry_the_key():
    key = "secret-key-for-a"
    settings = IngestSettings(streams={"a": StreamSettings(StreamConfig(name="a"), key)}, max_publishers=1)
    gate = IngestGate(settings)
    bus = EventBus()
    sub, _ = bus.subscribe()
    gate.refusal_listeners.append(functools.partial(ingest_rejected, bus))
    gate.check("a", "wrong-key-1234", protocol="http", peer="10.0.0.9")
    gate.check(key, None, protocol="rtmp", peer="10.0.0.8")  # a broadcaster who pasted the key as the name
    gate.check(key, key, protocol="srt", peer="10.0.0.7")
    gate.begin("a", "http", "10.0.0.1")
    gate.check("a", key, protocol="http", peer="10.0.0.2")
    assert gate.check("a", key, protocol="http", peer="x").status == 409
    got = drain(sub)
    assert [(e.stream, e.data["status"], e.data["protocol"]) for e in got] == [
        ("a", 403, "http"),
        (None, 401, "rtmp"),
        (None, 403, "srt"),
        ("a", 409, "http"),
        ("a", 409, "http"),
    ]
    assert got[0].data["peer"] == "10.0.0.9"
    assert all(key not in e.json and "wrong-key" not in e.json for e in got)


async def test_ingest_limit_cut_off_is_reported_once_per_verdict():
    settings = IngestSettings(streams={"a": StreamSettings(StreamConfig(name="a"), "key-for-a-123", max_kbps=100)})
    gate = IngestGate(settings)
    bus = EventBus()
    sub, _ = bus.subscribe()
    gate.refusal_listeners.append(functools.partial(ingest_rejected, bus))
    ticket = gate.begin("a", "rtmp", "peer")
    assert gate.account(ticket, 10_000_000, now=ticket.started + 6).status == 429
    event = await next_event(sub)
    assert event.type == "ingest.rejected" and event.data["status"] == 429 and event.stream == "a"
    gate.begin("a", "rtmp", "other")  # the first publisher is kicked by a takeover: not a rejection
    assert gate.account(ticket, 1).status == 409
    assert drain(sub) == []


# ---------------------------------------------------------------- floods: noise never costs a lifecycle event

WRONG_KEY = "unknown stream or wrong key"


def refusal(peer: str, reason: str = WRONG_KEY, count: int = 1) -> Refusal:
    return Refusal(None, 403, reason, "http", peer, count)


def many_peers(n: int):
    return (f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:{40000 + i % 20000}" for i in range(n))


async def test_a_refusal_flood_from_one_peer_is_one_event_then_one_summary_per_interval():
    clock = ManualClock()
    bus = EventBus(clock=clock, rejection_interval_s=10)
    sub, _ = bus.subscribe()
    for i in range(11_000):  # a new source port on every attempt: still one peer
        ingest_rejected(bus, refusal(f"192.0.2.7:{1024 + i % 60000}"))
    ingest_rejected(bus, refusal("192.0.2.7:5000", reason="a stream key is required"))  # another reason
    first, other = drain(sub)
    assert first.data == {"status": 403, "reason": WRONG_KEY, "protocol": "http", "peer": "192.0.2.7", "count": 1}
    assert other.data["reason"] == "a stream key is required" and other.data["count"] == 1
    assert bus.rejections.pending == 10_999
    clock.advance(9.9)
    await settle()
    assert drain(sub) == []
    clock.advance(0.1)
    (summary,) = [await next_event(sub)]
    assert summary.type == "ingest.rejected" and summary.data["count"] == 10_999
    assert summary.data["peer"] == "192.0.2.7" and summary.data["reason"] == WRONG_KEY
    ingest_rejected(bus, refusal("192.0.2.7", count=40))  # a report the gate already coalesced counts as 40
    clock.advance(10)
    assert (await next_event(sub)).data["count"] == 40
    clock.advance(10)  # an interval with nothing new: the peer is forgotten ...
    await until(lambda: bus.rejections.watched == 0)
    assert drain(sub) == []
    assert ingest_rejected(bus, refusal("192.0.2.7")) is not None  # ... and its next refusal goes out at once
    assert drain(sub)[0].data["count"] == 1
    bus.close()


async def test_rejection_interval_must_be_positive():
    with pytest.raises(ValueError):
        EventBus(rejection_interval_s=0)


def test_event_classes():
    assert {event_class(t) for t in ("stream.started", "stream.stopped", "stream.discontinuity", "vod.ready")} == {
        "lifecycle"
    }
    assert {event_class(t) for t in ("ingest.rejected", "rendition.stalled", "rendition.recovered")} == {"noisy"}
    assert event_class("segment.published") == "frequent"


async def test_a_flood_of_11000_refusals_keeps_lifecycle_events_in_the_replay():
    bus = EventBus(backlog=100, noisy_backlog=50)
    before = bus.publish("stream.discontinuity", "cam")
    started = bus.publish("stream.started", "cam")
    for peer in many_peers(11_000):  # 11,000 addresses: every one is a first refusal, published at once
        ingest_rejected(bus, refusal(peer))
    stopped = bus.publish("stream.stopped", "cam", {"reason": "done"})
    ready = bus.publish("vod.ready", "cam")
    replay = bus.replay(before.id)
    assert [e.id for e in replay if e.type != "ingest.rejected"] == [started.id, stopped.id, ready.id]
    noisy = [e for e in replay if e.type == "ingest.rejected"]
    assert len(noisy) == 50 and noisy[-1].data["peer"] == "10.0.42.247"  # the newest ones
    seqs = [e.seq for e in replay]
    assert seqs == sorted(seqs)  # the rings merged in id order
    bus.close()


async def test_a_reader_behind_a_refusal_flood_stays_connected_and_gets_every_lifecycle_event():
    bus = EventBus(queue_size=16, noisy_queue_size=8)
    slow, _ = bus.subscribe()  # takes nothing until the flood is over
    started = bus.publish("stream.started", "cam")
    for peer in many_peers(11_000):
        ingest_rejected(bus, refusal(peer))
    stopped = bus.publish("stream.stopped", "cam", {"reason": "done"})
    assert bus.subscriber_count == 1 and not slow.closed and bus.dropped_subscribers == 0
    got = drain(slow)
    assert [e.id for e in got if e.type != "ingest.rejected"] == [started.id, stopped.id]
    assert len([e for e in got if e.type == "ingest.rejected"]) == 8 and slow.dropped == 11_000 - 8
    assert [e.seq for e in got] == sorted(e.seq for e in got)
    bus.close()
