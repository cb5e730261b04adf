"""Benchmark: Redis Streams (XADD / XREAD BLOCK) against pub/sub (PUBLISH / SUBSCRIBE) as the notification path.

One publisher sends ``--messages`` messages of ``--size`` bytes (a part of the
default ladder is 20-300 KB) at ``--rate`` per second through a real
redis-server; one reader receives them with redis-py's asyncio client (hiredis),
as an origin does. Prints the publish-to-received latency (median, p99, max)
for each path, and what each does when the reader reconnects: a Streams reader
resumes from the last id it saw, a pub/sub subscriber loses what was sent
while it was away.

    .venv/bin/python bench/notify.py [--messages 2000] [--rate 200] [--size 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import time
from pathlib import Path

import redis.asyncio as redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.redis import RedisServer  # noqa: E402


def stamp(size: int) -> bytes:
    return struct.pack("<d", time.time()) + b"x" * max(0, size - 8)


def latency_ms(payload: bytes) -> float:
    return (time.time() - struct.unpack("<d", payload[:8])[0]) * 1000


async def send(client: redis.Redis, count: int, rate: float, size: int, put) -> None:  # type: ignore[no-untyped-def]
    gap = 1.0 / rate
    start = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i * gap - time.monotonic()))
        await put(client, stamp(size))


async def streams(url: str, args: argparse.Namespace) -> tuple[list[float], int]:
    writer, reader = redis.from_url(url), redis.from_url(url)
    await writer.delete("bench:log")
    got: list[float] = []

    async def read() -> None:
        last = "$"
        while len(got) < args.messages:
            for _key, entries in await reader.xread({"bench:log": last}, block=1000, count=100) or ():
                for entry_id, fields in entries:
                    last = entry_id
                    got.append(latency_ms(fields[b"b"]))

    task = asyncio.create_task(read())
    await asyncio.sleep(0.2)
    await send(writer, args.messages, args.rate, args.size, lambda c, b: c.xadd("bench:log", {"b": b}))
    await asyncio.wait_for(task, 30)
    # a reader away for a moment resumes from its last id: nothing is lost
    last_id = (await writer.xrevrange("bench:log", count=1))[0][0]
    for _ in range(50):
        await writer.xadd("bench:log", {"b": stamp(10)})
    missed = len((await reader.xread({"bench:log": last_id}, count=1000))[0][1])
    await writer.aclose()
    await reader.aclose()
    return got, 50 - missed


async def pubsub(url: str, args: argparse.Namespace) -> tuple[list[float], int]:
    writer, reader = redis.from_url(url), redis.from_url(url)
    sub = reader.pubsub()
    await sub.subscribe("bench:chan")
    got: list[float] = []

    async def read() -> None:
        while len(got) < args.messages:
            msg = await sub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None:
                got.append(latency_ms(msg["data"]))

    task = asyncio.create_task(read())
    await asyncio.sleep(0.2)
    await send(writer, args.messages, args.rate, args.size, lambda c, b: c.publish("bench:chan", b))
    await asyncio.wait_for(task, 30)
    # a subscriber away for a moment misses what was published meanwhile
    await sub.unsubscribe("bench:chan")
    for _ in range(50):
        await writer.publish("bench:chan", stamp(10))
    await sub.subscribe("bench:chan")
    received = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        if await sub.get_message(ignore_subscribe_messages=True, timeout=0.1) is not None:
            received += 1
    lost = 50 - received
    await sub.aclose()
    await writer.aclose()
    await reader.aclose()
    return got, lost


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    server = RedisServer()
    server.start()
    try:
        results = {"streams": await streams(server.url, args), "pub/sub": await pubsub(server.url, args)}
    finally:
        server.close()
    print(
        f"machine: {os.cpu_count()} cores; {args.messages} messages of {args.size} B at {args.rate:.0f}/s; "
        "redis-py asyncio + hiredis, loopback"
    )
    print(f"{'path':9} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'lost on reconnect':>18}")
    for name, (lat, lost) in results.items():
        print(f"{name:9} {statistics.median(lat):10.3f} {pct(lat, 0.99):8.3f} {max(lat):8.3f} {lost:>15}/50")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--size", type=int, default=30_000)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
