"""stream.failover: from an OwnerChanged to the bus, /events, a webhook, /api/streams, and through a replica."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from origin.app import create_app, event_services
from origin.cluster import replica_app
from origin.handlers import STATE
from packager.events import EventBus, parse_types
from packager.publication import OwnerChanged
from packager.redisstore import RedisPublisher, RedisTarget
from packager.redisstore.health import NodeStatus, report
from packager.redisstore.keys import Keys
from packager.settings import WebhookSettings
from packager.store import Store
from tests.support.live import make_live
from tests.support.redis import RedisServer, redis_server
from tests.test_sse import open_feed

__all__ = ["redis_server"]

SECRET = "a-long-random-shared-secret"


def change(n: int = 1, *, reason: str = "lease expired", resume_msn: int = 3) -> OwnerChanged:
    return OwnerChanged("demo", f"enc-{n}", f"enc-{n + 1}", n + 1, reason, resume_msn, 0.25, 1_800_000_000.0 + n)


def test_stream_failover_is_a_known_event_type() -> None:
    assert parse_types(["stream.failover"], "test") == {"stream.failover"}
    assert "stream.failover" in parse_types(["*"], "test")


async def test_an_owner_change_is_an_sse_event_and_shows_in_api_streams(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    store, d = make_live()
    client = await aiohttp_client(create_app(store, events=EventBus()))
    _resp, feed = await open_feed(client)
    d.publish(d.parts_per_segment + 1)
    await feed.until("stream.started")
    d.stream.hand_over(change(resume_msn=3))
    block = await feed.until("stream.failover")
    data = block["json"]["data"]
    assert block["json"]["stream"] == "demo"
    assert data == {
        "stream": "demo",
        "from": "enc-1",
        "to": "enc-2",
        "reason": "lease expired",
        "gap_s": 0.25,
        "epoch": 2,
        "resume_msn": 3,
    }
    s = (await (await client.get("/api/streams")).json())["streams"][0]
    assert s["node"] is None and s["nodes"] == []
    assert s["failovers"]["count"] == 1
    assert s["failovers"]["last"] == [
        {"from": "enc-1", "to": "enc-2", "reason": "lease expired", "gap_s": 0.25, "at": "2027-01-15T08:00:01.000Z"}
    ]


async def test_api_streams_keeps_the_last_ten_failovers(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    store, d = make_live()
    client = await aiohttp_client(create_app(store, events=EventBus()))
    d.publish(1)
    lifecycle = client.server.app[STATE].lifecycle
    for n in range(12):
        d.stream.hand_over(change(n, reason="input"))
    f = lifecycle.failovers("demo")
    assert f.count == 12 and [e.from_node for e in f.last] == [f"enc-{n}" for n in range(2, 12)]
    s = (await (await client.get("/api/streams")).json())["streams"][0]
    assert s["failovers"]["count"] == 12 and len(s["failovers"]["last"]) == 10


async def test_a_webhook_subscribed_to_stream_failover_receives_it(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    got: list[dict] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        got.append(json.loads(await request.read()))
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    url = str((await aiohttp_server(app)).make_url("/hook"))
    store, d = make_live()
    bus = EventBus()
    settings = WebhookSettings(url, SECRET, frozenset({"stream.failover"}), allow_private=True)
    async with event_services(store, bus, webhooks=[settings], dead_letter=tmp_path / "dead.jsonl"):
        d.publish(1)
        d.stream.hand_over(change(reason="released"))
        await asyncio.wait_for(arrived.wait(), 5)
    assert [e["type"] for e in got] == ["stream.failover"]
    assert got[0]["data"]["reason"] == "released" and got[0]["data"]["to"] == "enc-2"


async def test_an_origin_replays_the_failover_and_shows_node_health(aiohttp_client, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    target = RedisTarget.parse(redis_server.url)
    store = Store()
    pub = RedisPublisher(store, target, "enc-2")
    await pub.start()
    health = target.client()
    try:
        app = replica_app(target, health_interval_s=0.05)
        client = await aiohttp_client(app)
        _resp, feed = await open_feed(client)
        _, d = make_live(store=store)
        d.publish(d.parts_per_segment + 1)
        now = time.time()
        await report(health, Keys(), "demo", NodeStatus("enc-2", "active", "live", now - 5, 2, now), ttl_s=5)
        await report(health, Keys(), "demo", NodeStatus("enc-1", "standby", "slate", now - 1, 1, now), ttl_s=5)
        d.stream.hand_over(change(reason="input", resume_msn=2))
        block = await feed.until("stream.failover", timeout=5)
        assert block["json"]["data"]["reason"] == "input" and block["json"]["data"]["epoch"] == 2

        async def shown() -> dict:
            return (await (await client.get("/api/streams")).json())["streams"][0]

        async def has_nodes() -> bool:
            return len((await shown())["nodes"]) == 2

        deadline = time.monotonic() + 5
        while not await has_nodes():
            assert time.monotonic() < deadline, await shown()
            await asyncio.sleep(0.05)
        s = await shown()
        assert [(n["node"], n["role"], n["input"], n["epoch"]) for n in s["nodes"]] == [
            ("enc-2", "active", "live", 2),
            ("enc-1", "standby", "slate", 1),
        ]
        assert all(0 <= n["age_s"] < 5 for n in s["nodes"])
        assert s["node"] == "enc-2" and s["failovers"]["count"] == 1
    finally:
        await health.aclose()
        await pub.close(timeout_s=1.0)
