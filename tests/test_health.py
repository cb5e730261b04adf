"""Node health in Redis against a real redis-server: report, read (fresh, active first), expiry, forget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from packager.redisstore.health import NodeStatus, forget, read, report
from packager.redisstore.keys import Keys
from tests.support.redis import RedisServer, redis_server

__all__ = ["redis_server"]

KEYS = Keys()
NOW = 1_800_000_000.0


def status(node: str, role: str = "standby", input: str = "live", *, at: float = NOW, epoch: int = 3) -> NodeStatus:
    return NodeStatus(node, role, input, input_since_utc_s=at - 10, epoch=epoch, updated_utc_s=at)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    c = redis.Redis.from_url(redis_server.url)
    yield c
    await c.aclose()


def test_a_status_round_trips_through_json() -> None:
    s = status("enc-a", "active", "slate")
    assert NodeStatus.from_json(s.to_json()) == s
    assert NodeStatus.from_json(s.to_json().encode()) == s


@pytest.mark.parametrize("text", ["{", "[]", '{"node": "a"}', '"x"', b"\xff\xfe"])
def test_a_malformed_value_is_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        NodeStatus.from_json(text)


def test_unknown_roles_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="role"):
        status("a", role="leader")
    with pytest.raises(ValueError, match="input"):
        status("a", input="maybe")


async def test_read_returns_fresh_entries_active_first(client: redis.Redis) -> None:
    await report(client, KEYS, "demo", status("enc-b"), ttl_s=5)
    await report(client, KEYS, "demo", status("enc-c", at=NOW - 1.5), ttl_s=5)
    await report(client, KEYS, "demo", status("enc-z", "active"), ttl_s=5)
    await report(client, KEYS, "other", status("enc-q"), ttl_s=5)
    got = await read(client, KEYS, "demo", now_utc_s=NOW + 0.5, stale_s=1.0)
    assert [s.node for s in got] == ["enc-z", "enc-b"]  # enc-c is 2 s old: stale
    assert got[0] == status("enc-z", "active")
    assert await client.exists(KEYS.nodes("demo")) == 1 and KEYS.nodes("demo") == "lp:nodes:demo"


async def test_a_report_replaces_the_nodes_entry_and_renews_the_ttl(client: redis.Redis) -> None:
    await report(client, KEYS, "demo", status("enc-a", "standby", "slate"), ttl_s=0.3)
    await report(client, KEYS, "demo", status("enc-a", "active", "live", at=NOW + 1, epoch=4), ttl_s=5)
    got = await read(client, KEYS, "demo", now_utc_s=NOW + 1, stale_s=1.0)
    assert got == (status("enc-a", "active", "live", at=NOW + 1, epoch=4),)
    assert 4000 < await client.pttl(KEYS.nodes("demo")) <= 5000


async def test_the_hash_expires_when_nobody_reports(client: redis.Redis) -> None:
    await report(client, KEYS, "demo", status("enc-a"), ttl_s=0.2)
    await asyncio.sleep(0.35)
    assert await read(client, KEYS, "demo", now_utc_s=NOW, stale_s=60) == ()


async def test_forget_removes_one_node(client: redis.Redis) -> None:
    await report(client, KEYS, "demo", status("enc-a"), ttl_s=5)
    await report(client, KEYS, "demo", status("enc-b"), ttl_s=5)
    await forget(client, KEYS, "demo", "enc-a")
    assert [s.node for s in await read(client, KEYS, "demo", now_utc_s=NOW, stale_s=1)] == ["enc-b"]


async def test_malformed_entries_are_skipped_and_logged_once(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await report(client, KEYS, "demo", status("enc-a"), ttl_s=5)
    await client.hset(KEYS.nodes("demo"), "enc-bad", "not json")
    await client.hset(KEYS.nodes("demo"), "enc-worse", '{"node": "w", "role": "boss"}')
    with caplog.at_level(logging.WARNING, logger="packager.redisstore.health"):
        for _ in range(3):
            got = await read(client, KEYS, "demo", now_utc_s=NOW, stale_s=1)
            assert [s.node for s in got] == ["enc-a"]
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 2


async def test_a_bad_ttl_is_refused(client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        await report(client, KEYS, "demo", status("enc-a"), ttl_s=0)
