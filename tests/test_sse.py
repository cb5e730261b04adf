"""GET /events (server-sent events) and the dashboard's /api/streams fields, with a hand-driven store."""

import asyncio
import functools
import json
from fractions import Fraction

import pytest

from origin.app import create_app
from origin.handlers import STATE
from packager.config import StreamConfig
from packager.events import EventBus, ingest_rejected
from packager.ingest.gate import IngestGate, Refusal
from packager.settings import IngestSettings, StreamSettings
from tests.support.clock import ManualClock, until
from tests.support.live import make_live


class SSE:
    """Reads an event stream: data blocks as dicts (id, event, data), comments kept aside."""

    def __init__(self, resp) -> None:
        self.resp = resp
        self.comments: list[str] = []
        self.fields: dict[str, str] = {}

    async def next(self, timeout: float = 2.0) -> dict:
        block: dict[str, str] = {}
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            line = await asyncio.wait_for(self.resp.content.readline(), remaining)
            if not line:
                raise EOFError("the server ended the stream")
            text = line.decode().rstrip("\n")
            if text == "":
                if "data" in block:
                    block["json"] = json.loads(block["data"])
                    return block
                self.fields.update(block)
                block = {}
            elif text.startswith(":"):
                self.comments.append(text)
            else:
                name, _, value = text.partition(":")
                block[name] = value[1:] if value.startswith(" ") else value

    async def until(self, kind: str, timeout: float = 2.0) -> dict:
        while (block := await self.next(timeout))["event"] != kind:
            pass
        return block


@pytest.fixture
async def live(aiohttp_client):
    store, driver = make_live()
    bus = EventBus()
    app = create_app(store, events=bus)
    client = await aiohttp_client(app)
    yield client, driver, bus, app


async def open_feed(client, path="/events", **headers):
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    return resp, SSE(resp)


async def test_a_client_sees_stream_started_when_media_begins(live):
    client, d, _bus, _app = live
    resp, feed = await open_feed(client)
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    d.publish(1)
    block = await feed.next()
    assert block["event"] == "stream.started" and block["id"] == block["json"]["id"]
    assert block["json"]["stream"] == "demo" and block["json"]["data"]["renditions"][0]["name"] == "360p"
    assert feed.fields.get("retry") == "2000"
    d.stream.on_end("source ended")
    assert (await feed.next())["event"] == "stream.stopped"
    assert (await feed.next())["json"]["type"] == "vod.ready"
    resp.close()


async def test_reconnecting_with_last_event_id_replays_the_gap_without_duplicates(live):
    client, d, bus, _app = live
    resp, feed = await open_feed(client)
    d.publish(1)
    first = await feed.next()
    resp.close()
    # while the client is away
    d.stream.on_input_switch()
    missed = [bus.publish("ingest.rejected", None, {"status": 403, "n": i}) for i in range(3)]
    d.publish(12)  # segments (not asked for): not replayed
    resp, feed = await open_feed(client, **{"Last-Event-ID": first["id"]})
    replayed = [await feed.next() for _ in range(4)]
    assert [b["event"] for b in replayed] == ["stream.discontinuity"] + ["ingest.rejected"] * 3
    assert [b["id"] for b in replayed[1:]] == [e.id for e in missed]
    live_one = bus.publish("stream.stopped", "demo", {"reason": "x"})
    nxt = await feed.next()
    assert nxt["id"] == live_one.id  # straight after the replay: nothing repeated, nothing skipped
    ids = [first["id"], *(b["id"] for b in replayed), nxt["id"]]
    assert len(set(ids)) == len(ids)
    resp.close()
    # the same gap for a client that also wants segments: those are replayed too, in order
    resp, feed = await open_feed(
        client, "/events?types=segment.published,stream.stopped", **{"Last-Event-ID": first["id"]}
    )
    got = []
    while not got or got[-1]["event"] != "stream.stopped":
        got.append(await feed.next())
    seqs = [int(b["id"].rsplit("-", 1)[1]) for b in got]
    assert seqs == sorted(seqs) and {b["event"] for b in got} == {"segment.published", "stream.stopped"}
    resp.close()


async def test_an_id_from_an_earlier_process_replays_the_whole_backlog(live):
    client, _d, bus, _app = live
    kept = [bus.publish("ingest.rejected", None, {"i": i}) for i in range(2)]
    resp, feed = await open_feed(client, **{"Last-Event-ID": "0123456789ab-99"})
    assert [(await feed.next())["id"] for _ in kept] == [e.id for e in kept]
    resp.close()


@pytest.mark.parametrize(
    ("path", "headers", "reason"),
    [
        ("/events", {"Last-Event-ID": "garbage"}, "Last-Event-ID"),
        ("/events", {"Last-Event-ID": "0123456789ab-1; drop table"}, "Last-Event-ID"),
        ("/events", {"Last-Event-ID": "x" * 4000}, "Last-Event-ID"),
        ("/events?types=stream.exploded", {}, "unknown event type"),
        ("/events?types=stream.started,,vod.ready", {}, "empty entry"),
        ("/events?types=stream.started&types=vod.ready", {}, "more than once"),
        ("/events?types=" + "a" * 600, {}, "longer than"),
        ("/events?types=%3Cscript%3E", {}, "unknown event type"),
    ],
)
async def test_hostile_input_gets_a_400(live, path, headers, reason):
    client, _d, bus, _app = live
    resp = await client.get(path, headers=headers)
    text = await resp.text()
    assert resp.status == 400 and reason in text and text[-1] == "\n" and text.count("\n") == 1
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "<script>" not in text
    assert bus.subscriber_count == 0


async def test_segments_only_when_asked_for(live):
    client, d, bus, _app = live
    plain, plain_feed = await open_feed(client)
    seg, seg_feed = await open_feed(client, "/events?types=segment.published")
    d.publish(4)
    block = await seg_feed.next()
    assert block["event"] == "segment.published" and block["json"]["data"]["msn"] == 1000
    assert (await plain_feed.next())["event"] == "stream.started"
    d.publish(4)
    assert (await seg_feed.next())["event"] == "segment.published"
    marker = bus.publish("stream.discontinuity", "demo")
    assert (await plain_feed.next())["id"] == marker.id  # no segment was sent before it
    plain.close()
    seg.close()


async def test_keepalive_comments_metrics_and_cleanup(live):
    client, _d, bus, app = live
    app[STATE].sse_keepalive_s = 0.05
    resp, feed = await open_feed(client)
    with pytest.raises(TimeoutError):
        await feed.next(timeout=0.2)
    assert ": keep-alive" in feed.comments and ": connected" in feed.comments
    assert "sse_clients 1" in await (await client.get("/metrics")).text()
    resp.close()
    await until(lambda: bus.subscriber_count == 0)  # the server notices at its next keep-alive write
    assert "sse_clients 0" in await (await client.get("/metrics")).text()
    r = await client.options("/events", headers={"Origin": "https://x.example", "Access-Control-Request-Method": "GET"})
    assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
    r = await client.head("/events")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")


async def test_server_shutdown_ends_open_feeds(aiohttp_client):
    store, _d = make_live()
    bus = EventBus()
    client = await aiohttp_client(create_app(store, events=bus))
    resp, feed = await open_feed(client)
    await client.server.app.shutdown()  # on_shutdown: every feed gets its end
    with pytest.raises(EOFError):
        await feed.next()
    resp.close()


async def test_no_event_feed_without_a_bus(aiohttp_client):
    store, _d = make_live()
    client = await aiohttp_client(create_app(store))
    assert (await client.get("/events")).status == 404


async def test_http_ingest_refusal_is_an_event_without_the_key(aiohttp_client):
    key = "the-right-key-123"
    store, _d = make_live()
    bus = EventBus()
    gate = IngestGate(IngestSettings(streams={"cam": StreamSettings(StreamConfig(name="cam"), key)}))
    gate.refusal_listeners.append(functools.partial(ingest_rejected, bus))
    client = await aiohttp_client(create_app(store, events=bus, ingest=(gate, object())))
    resp, feed = await open_feed(client)
    r = await client.put("/ingest/cam?key=not-the-key-1", data=b"x")
    assert r.status == 403
    r = await client.put(f"/ingest/{key}", data=b"x", headers={"Authorization": f"Bearer {key}"})
    assert r.status == 403
    first, second = await feed.next(), await feed.next()
    assert first["event"] == second["event"] == "ingest.rejected"
    assert first["json"]["stream"] == "cam" and second["json"]["stream"] is None
    assert first["json"]["data"]["protocol"] == "http" and first["json"]["data"]["status"] == 403
    assert key not in first["data"] + second["data"] and "not-the-key" not in first["data"]
    resp.close()


async def test_a_reader_behind_an_11000_refusal_flood_stays_connected(aiohttp_client):
    store, _d = make_live()
    bus = EventBus()
    client = await aiohttp_client(create_app(store, events=bus))
    resp, feed = await open_feed(client)
    started = bus.publish("stream.started", "cam")
    for i in range(11_000):  # 11,000 addresses: no two coalesce, every one is published
        peer = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        ingest_rejected(bus, Refusal(None, 403, "unknown stream or wrong key", "http", peer))
    stopped = bus.publish("stream.stopped", "cam", {"reason": "done"})
    got = [await feed.next()]
    while got[-1]["event"] != "stream.stopped":
        got.append(await feed.next())
    assert [b["id"] for b in got if b["event"] != "ingest.rejected"] == [started.id, stopped.id]
    assert len(got) - 2 == bus.noisy_queue_size  # the newest noisy ones; the reader was told about the rest
    assert any("noisy events dropped" in c for c in feed.comments)
    assert bus.subscriber_count == 1 and bus.dropped_subscribers == 0
    ready = bus.publish("vod.ready", "cam")
    assert (await feed.next())["id"] == ready.id  # still connected, still live
    resp.close()


# ---------------------------------------------------------------- /api/streams for the dashboard


async def test_api_streams_state_latency_and_request_rate(aiohttp_client):
    clock = ManualClock()
    store, d = make_live(segment_s=Fraction(1, 10), part_s=Fraction(1, 50), clock=clock)
    client = await aiohttp_client(create_app(store, events=EventBus()))
    d.publish(10)
    for _ in range(5):
        await client.get("/live/demo/master.m3u8")
    await client.get("/live/nope/master.m3u8")  # not a stream: not counted
    s = (await (await client.get("/api/streams")).json())["streams"][0]
    assert s["state"] == "live" and s["live"] and s["end_reason"] is None
    assert s["requests_per_s"] == 0.5  # 5 requests over the 10 s window
    assert 0.05 <= s["publish_latency_s"] <= 1.0
    r = {x["name"]: x for x in s["renditions"]}
    assert r["360p"]["bitrate"] == 800_000 and r["360p"]["measured_bitrate"] > 0 and not r["360p"]["stalled"]
    metrics = await (await client.get("/metrics")).text()
    assert 'origin_stream_requests_total{stream="demo"} 5' in metrics and 'stream="nope"' not in metrics
    clock.advance(0.1)  # > 3 part targets (60 ms) without a part
    lifecycle = client.server.app[STATE].lifecycle
    await until(lambda: len(lifecycle.stalled(d.stream.name)) == 3)
    s = (await (await client.get("/api/streams")).json())["streams"][0]
    assert s["state"] == "stalled" and all(x["stalled"] for x in s["renditions"])
    d.publish(1)
    d.stream.on_end("feed lost")
    s = (await (await client.get("/api/streams")).json())["streams"][0]
    assert s["state"] == "ended" and s["end_reason"] == "feed lost" and not s["live"]
