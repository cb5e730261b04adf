"""RTMP ingest: AMF0, the chunk parser, FLV output, the byte pipe, hostile peers and real ffmpeg publishers."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import random
import re
import struct
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import pytest

from fixtures.media import make_clip
from packager.config import ConfigError, StreamConfig
from packager.ingest import amf
from packager.ingest.bridge import authorizer, start_rtmp
from packager.ingest.gate import IngestGate
from packager.ingest.pipe import ByteQueue, ByteQueueClosed
from packager.ingest.rtmp import (
    PUBLISH_BADNAME,
    ChunkError,
    ChunkParser,
    Decision,
    FlvWriter,
    PublishSession,
    PublishTarget,
    RtmpMessage,
    RtmpServer,
    encode_message,
    flv_tag,
    parse_publish_target,
)
from packager.ingest.slots import ConnectionSlots, MemoryBudget, SlotLimits
from packager.ratelog import RateLimitedLog
from packager.settings import IngestSettings, RtmpLimits, StreamSettings, load
from tests.support.pushes import FFMPEG, push
from tests.support.rtmpclient import Client

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg command (Debian package ffmpeg)")
LOGGER = "packager.ingest.rtmp"

# ---------------------------------------------------------------- AMF0


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -1.5,
        1e300,
        math.inf,
        True,
        False,
        "",
        "démo ✓",
        None,
        amf.UNDEFINED,
        {"app": "live", "n": 3.0, "flag": True, "nested": {"a": [1.0, "x", None]}},
        amf.EcmaArray({"duration": 0.0, "width": 320.0, "encoder": "Lavf"}),
        amf.EcmaArray(),
        [],
        [1.0, [2.0, [3.0, {"k": amf.UNDEFINED}]]],
        amf.AmfDate(1_700_000_000_000.0, 0),
    ],
)
def test_amf_round_trip(value: amf.AmfValue) -> None:
    data = amf.encode(value)
    decoded = amf.decode(data)
    assert decoded == [value]
    assert type(decoded[0]) is type(value)
    assert amf.decode_one(data + b"\x05") == (value, len(data))


def test_amf_wire_format_and_long_strings() -> None:
    assert amf.encode(1) == b"\x00" + struct.pack(">d", 1.0)
    assert amf.encode("ab") == b"\x02\x00\x02ab"
    assert amf.encode({"a": None}) == b"\x03\x00\x01a\x05\x00\x00\x09"
    assert amf.encode(amf.EcmaArray(a=True)) == b"\x08\x00\x00\x00\x01\x00\x01a\x01\x01\x00\x00\x09"
    assert amf.encode([None, amf.UNDEFINED]) == b"\x0a\x00\x00\x00\x02\x05\x06"
    long = "x" * 70_000
    data = amf.encode(long)
    assert data[0] == amf.LONG_STRING and int.from_bytes(data[1:5], "big") == 70_000
    assert amf.decode(data) == [long]
    assert amf.decode(amf.encode("connect", 1, {"app": "live"}, None)) == ["connect", 1.0, {"app": "live"}, None]
    # ECMA array counts are hints: a wrong count still parses up to the end marker
    assert amf.decode(b"\x08\x00\x00\x00\x09\x00\x01a\x05\x00\x00\x09") == [amf.EcmaArray(a=None)]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x00\x01\x02", "truncated number"),
        (b"\x02\x00\x05ab", "truncated string"),
        (b"\x02\x00", "truncated string length"),
        (b"\x0c\xff\xff\xff\xff", "truncated long string"),
        (b"\x03\x00\x01a\x05", "truncated property name length"),
        (b"\x03\x00\x00\x05", "empty property name not followed by object end"),
        (b"\x09", "object-end marker outside an object"),
        (b"\x0a\x00\x00\x00\x01\x09", "object-end marker outside an object"),
        (b"\x0a\xff\xff\xff\xff\x05", "claims 4294967295 values"),
        (b"\x07\x00\x01", "unsupported AMF0 type 0x07 (reference)"),
        (b"\x11\x00", "AVM+"),
        (b"\xff", "unsupported AMF0 type 0xff"),
        (b"\x02\x00\x02\xc3\x28", "invalid UTF-8"),
        (b"\x01", "truncated boolean"),
        (b"\x0b\x00\x00", "truncated date"),
    ],
)
def test_amf_malformed(data: bytes, fragment: str) -> None:
    with pytest.raises(amf.AmfError, match=re.escape(fragment)):
        amf.decode(data)


def test_amf_limits() -> None:
    deep = b"\x0a\x00\x00\x00\x01" * 40 + b"\x05"
    with pytest.raises(amf.AmfError, match="nesting deeper than 32"):
        amf.decode(deep)
    assert amf.decode(deep, max_depth=50) is not None
    many = b"\x0a\x00\x01\x00\x00" + b"\x05" * 65536
    with pytest.raises(amf.AmfError, match="more values than allowed"):
        amf.decode(many, max_items=1000)
    assert isinstance(amf.AmfError("x"), ValueError)
    nested: list[amf.AmfValue] = []
    for _ in range(40):
        nested = [nested]
    with pytest.raises(amf.AmfError, match="nesting"):
        amf.encode(nested)
    with pytest.raises(amf.AmfError, match="cannot encode"):
        amf.encode(object())  # type: ignore[arg-type]
    with pytest.raises(amf.AmfError, match="must not be empty"):
        amf.encode({"": 1.0})


# ---------------------------------------------------------------- publish names


@pytest.mark.parametrize(
    ("app", "name", "expected"),
    [
        ("live", "demo?key=K1", PublishTarget("live", "demo", "K1")),  # ffmpeg .../live/demo?key=K1, OBS key field
        ("live/demo", "K1", PublishTarget("live", "demo", "K1")),  # .../live/demo/K1, OBS server .../live/demo
        ("live", "demo/K1", PublishTarget("live", "demo", "K1")),  # OBS key field "demo/K1"
        ("live?key=K1", "demo", PublishTarget("live", "demo", "K1")),  # OBS server .../live?key=K1
        ("live/", "demo", PublishTarget("live", "demo", None)),
        ("live", "demo?key=", PublishTarget("live", "demo", None)),
        ("live", "demo?x=1&key=a%2Fb+c", PublishTarget("live", "demo", "a/b+c")),
        ("live/demo", "?key=K1", PublishTarget("live", "demo", "K1")),
    ],
)
def test_publish_target_forms(app: str, name: str, expected: PublishTarget) -> None:
    assert parse_publish_target(app, name) == expected


@pytest.mark.parametrize(
    ("app", "name"),
    [
        ("", "demo"),
        ("live", ""),
        ("live", "a/b/c"),
        ("live/demo", "x/y"),
        ("live/demo", "K?key=K"),
        ("live", "x" * 2000),
    ],
)
def test_publish_target_refused(app: str, name: str) -> None:
    with pytest.raises(ValueError):
        parse_publish_target(app, name)


# ---------------------------------------------------------------- chunk parser (hand-made bytes)


def basic(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def fmt0(csid: int, ts: int, length: int, type_id: int, sid: int = 1) -> bytes:
    field = min(ts, 0xFFFFFF)
    head = basic(0, csid) + field.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id])
    return head + sid.to_bytes(4, "little") + (ts.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def fmt1(csid: int, delta: int, length: int, type_id: int) -> bytes:
    field = min(delta, 0xFFFFFF)
    head = basic(1, csid) + field.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id])
    return head + (delta.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def fmt2(csid: int, delta: int) -> bytes:
    field = min(delta, 0xFFFFFF)
    return basic(2, csid) + field.to_bytes(3, "big") + (delta.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def fmt3(csid: int, ext: int | None = None) -> bytes:
    return basic(3, csid) + (ext.to_bytes(4, "big") if ext is not None else b"")


def set_chunk_size(size: int) -> bytes:
    return fmt0(2, 0, 4, 1, sid=0) + size.to_bytes(4, "big")


def summary(msgs: list[RtmpMessage]) -> list[tuple[int, int, int, bytes]]:
    return [(m.csid, m.type_id, m.timestamp, m.payload) for m in msgs]


def test_fmt0_to_fmt3_timestamps_and_lengths() -> None:
    data = (
        fmt0(4, 1000, 5, 9)
        + b"AAAAA"
        + fmt1(4, 40, 3, 8)
        + b"BBB"
        + fmt2(4, 20)
        + b"CCC"
        + fmt3(4)  # a new message: same length, type and delta (20)
        + b"DDD"
    )
    p = ChunkParser()
    assert summary(p.feed(data)) == [
        (4, 9, 1000, b"AAAAA"),
        (4, 8, 1040, b"BBB"),
        (4, 8, 1060, b"CCC"),
        (4, 8, 1080, b"DDD"),
    ]
    assert p.buffered == 0
    # A fmt 3 right after a fmt 0 reuses the fmt 0 timestamp as its delta (RTMP 5.3.1.2.4).
    p = ChunkParser()
    msgs = p.feed(fmt0(5, 33, 1, 8) + b"a" + fmt3(5) + b"b" + fmt3(5) + b"c")
    assert [m.timestamp for m in msgs] == [33, 66, 99]
    assert all(m.stream_id == 1 for m in msgs)


def test_multi_chunk_messages_any_split() -> None:
    payload = bytes(range(256)) + bytes(44)
    data = fmt0(6, 7, 300, 9) + payload[:128] + fmt3(6) + payload[128:256] + fmt3(6) + payload[256:]
    whole = ChunkParser().feed(data)
    assert summary(whole) == [(6, 9, 7, payload)]
    p = ChunkParser()
    byte_by_byte = [m for i in range(len(data)) for m in p.feed(data[i : i + 1])]
    assert byte_by_byte == whole
    # the encoder agrees with the hand-made chunks
    assert encode_message(6, 9, 1, 7, payload) == data


def test_extended_timestamps() -> None:
    big = 0x12345678
    payload = bytes(range(200))
    # fmt 0 with an extended timestamp, repeated in the fmt 3 continuation (ffmpeg, librtmp)
    data = fmt0(4, big, 200, 9) + payload[:128] + fmt3(4, big) + payload[128:]
    assert summary(ChunkParser().feed(data)) == [(4, 9, big, payload)]
    assert encode_message(4, 9, 1, big, payload) == data
    # ... or omitted from the continuation (some encoders): still the same message
    data = fmt0(4, big, 200, 9) + payload[:128] + fmt3(4) + payload[128:]
    assert summary(ChunkParser().feed(data)) == [(4, 9, big, payload)]
    # fmt 3 starting a new message carries the extended delta; fmt 1 extended deltas wrap at 2**32
    p = ChunkParser()
    msgs = p.feed(fmt0(4, big, 1, 8) + b"a" + fmt3(4, big) + b"b" + fmt1(4, 0xF0000000, 1, 8) + b"c")
    assert [m.timestamp for m in msgs] == [big, 2 * big, (2 * big + 0xF0000000) & 0xFFFFFFFF]
    # a 3-byte delta after extended ones turns extension off again
    msgs = p.feed(fmt2(4, 10) + b"d" + fmt3(4) + b"e")
    assert [m.payload for m in msgs] == [b"d", b"e"]
    assert msgs[1].timestamp == msgs[0].timestamp + 10
    # timestamps wrap like RTMP's 32-bit clock
    p = ChunkParser()
    msgs = p.feed(fmt0(4, 0xFFFFFFF0, 1, 8) + b"a" + fmt2(4, 0x20) + b"b")
    assert [m.timestamp for m in msgs] == [0xFFFFFFF0, 0x10]


def test_chunk_size_changes_take_effect_at_once() -> None:
    payload = bytes(3000)
    p = ChunkParser()
    msgs = p.feed(set_chunk_size(4096) + fmt0(4, 0, 3000, 9) + payload + set_chunk_size(1000) + fmt0(4, 0, 2500, 9))
    assert p.chunk_size == 1000
    assert summary(msgs) == [(4, 9, 0, payload)]
    msgs = p.feed(b"x" * 1000 + fmt3(4) + b"y" * 1000 + fmt3(4) + b"z" * 500)
    assert [m.payload for m in msgs] == [b"x" * 1000 + b"y" * 1000 + b"z" * 500]
    p = ChunkParser()
    assert p.feed(set_chunk_size(1) + fmt0(3, 0, 3, 20) + b"a" + fmt3(3) + b"b" + fmt3(3) + b"c")[0].payload == b"abc"


def test_interleaved_chunk_streams_and_long_ids() -> None:
    video, audio = bytes([1]) * 200, bytes([2]) * 150
    data = (
        fmt0(6, 40, 200, 9)
        + video[:128]
        + fmt0(4, 45, 150, 8)
        + audio[:128]
        + fmt3(6)
        + video[128:]
        + fmt3(4)
        + audio[128:]
    )
    assert summary(ChunkParser().feed(data)) == [(6, 9, 40, video), (4, 8, 45, audio)]
    for csid in (63, 64, 319, 320, 65599):
        msgs = ChunkParser().feed(encode_message(csid, 8, 1, 5, b"hello" * 60))
        assert summary(msgs) == [(csid, 8, 5, b"hello" * 60)]
    with pytest.raises(ValueError):
        encode_message(65600, 8, 1, 0, b"")


def test_abort_and_zero_length_messages() -> None:
    p = ChunkParser()
    abort = fmt0(2, 0, 4, 2, sid=0) + (4).to_bytes(4, "big")
    msgs = p.feed(fmt0(4, 0, 200, 9) + bytes(128) + abort + fmt0(4, 10, 2, 9) + b"ok" + fmt0(5, 0, 0, 18))
    assert summary(msgs) == [(4, 9, 10, b"ok"), (5, 18, 0, b"")]
    assert p.buffered == 0


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (set_chunk_size(0), "chunk size 0 out of range"),
        (set_chunk_size(65537), "chunk size 65537 out of range"),
        (set_chunk_size(0x80000000), "out of range"),
        (fmt0(4, 0, 0xFFFFFF, 9), "message length 16777215 exceeds the limit"),
        (fmt1(4, 0, 10, 9), "starts with a fmt 1 header"),
        (fmt3(4), "starts with a fmt 3 header"),
        (fmt0(4, 0, 300, 9) + bytes(128) + fmt1(4, 0, 5, 9), "before the previous message completed"),
        (b"".join(fmt0(c, 0, 1, 8) + b"x" for c in range(3, 70)), "more than 64 chunk streams"),
    ],
)
def test_chunk_parser_refuses(data: bytes, fragment: str) -> None:
    with pytest.raises(ChunkError, match=fragment):
        ChunkParser().feed(data)


def test_chunk_parser_bounds_unfinished_messages() -> None:
    p = ChunkParser(max_message_size=1000)  # at most 2 x 1000 bytes in messages not yet complete
    data = b"".join(fmt0(c, 0, 1000, 9) + bytes(128) for c in range(3, 19))
    with pytest.raises(ChunkError, match="more than 2000 bytes in unfinished messages"):
        p.feed(data)


def test_random_and_mutated_bytes_fail_only_with_clear_errors() -> None:
    rng = random.Random(6)
    valid = (
        set_chunk_size(100)
        + encode_message(3, 20, 0, 0, amf.encode("connect", 1, {"app": "live", "list": [1, "a", None]}), 100)
        + encode_message(6, 9, 1, 0x1234567, bytes(300), 100)
        + encode_message(4, 18, 1, 0, META, 100)
    )
    for i in range(400):
        if i % 2:
            data = rng.randbytes(rng.randrange(1, 600))
        else:
            data = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        with contextlib.suppress(amf.AmfError):
            amf.decode(data)
        parser = ChunkParser(max_message_size=64 * 1024)
        try:
            for start in range(0, len(data), 17):
                for msg in parser.feed(data[start : start + 17]):
                    with contextlib.suppress(amf.AmfError):
                        amf.decode(msg.payload)
        except ChunkError:
            pass
        assert parser.buffered <= 2 * 64 * 1024 + len(data)


# ---------------------------------------------------------------- FLV


def parse_flv(data: bytes) -> tuple[int, list[tuple[int, int, bytes]]]:
    assert data[:4] == b"FLV\x01" and data[5:9] == b"\x00\x00\x00\x09" and data[9:13] == bytes(4)
    pos, tags = 13, []
    while pos < len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        assert data[pos + 8 : pos + 11] == b"\x00\x00\x00"
        payload = data[pos + 11 : pos + 11 + size]
        assert int.from_bytes(data[pos + 11 + size : pos + 15 + size], "big") == 11 + size
        tags.append((kind, ts, payload))
        pos += 15 + size
    assert pos == len(data)
    return data[4], tags


META = amf.encode("onMetaData", amf.EcmaArray(videocodecid=7.0, audiocodecid=10.0, width=320.0))


def test_flv_writer_uses_announced_streams() -> None:
    w = FlvWriter()
    out = w.metadata(0, META) + w.media(9, 0, b"\x17v0") + w.media(8, 23, b"\xafa0") + w.media(9, 0x01020304, b"v1")
    flags, tags = parse_flv(out + w.finish())
    assert flags == 0x05
    assert tags == [(18, 0, META), (9, 0, b"\x17v0"), (8, 23, b"\xafa0"), (9, 0x01020304, b"v1")]
    assert flv_tag(9, 0x01020304, b"")[4:8] == b"\x02\x03\x04\x01"  # lower 24 bits, then the extension byte


def test_flv_writer_infers_streams_from_media() -> None:
    w = FlvWriter()
    assert w.media(8, 0, b"a") == b""  # held: video may follow
    out = w.media(9, 10, b"v")
    assert parse_flv(out) == (0x05, [(8, 0, b"a"), (9, 10, b"v")])
    w = FlvWriter()  # audio only: the hold ends after a second of media
    held = b"".join(w.media(8, ts, b"a") for ts in range(0, 1000, 100))
    assert held == b""
    flags, tags = parse_flv(w.media(8, 1000, b"a"))
    assert flags == 0x04 and len(tags) == 11
    w = FlvWriter()  # video only and the publish ends early: finish() flushes
    w.media(9, 0, b"v")
    assert parse_flv(w.finish()) == (0x01, [(9, 0, b"v")])
    assert FlvWriter().finish() == b""


# ---------------------------------------------------------------- session buffer and the byte pipe


async def test_session_reads_and_drops_slow_consumer() -> None:
    kicked: list[str] = []
    s = PublishSession(stream="demo", app="live", peer="p", max_buffer_bytes=4000, on_close=kicked.append)
    s._metadata(0, META)
    s._media(9, 0, b"v" * 100)
    head = await s.read(5)
    assert head == b"FLV\x01\x05"
    rest = await s.read()
    assert parse_flv(head + rest)[1][1] == (9, 0, b"v" * 100)
    reader = asyncio.create_task(s.read(10))
    await asyncio.sleep(0)
    assert not reader.done()
    s._media(9, 40, b"w" * 50)
    assert len(await reader) == 10
    for i in range(100):  # nobody reads: the bound ends the session instead of growing memory
        s._media(9, 80 + i, b"x" * 100)
    assert s.closed.done() and "consumer too slow" in s.closed.result()
    assert kicked == [s.close_reason]
    assert s.buffered == 0 and await s.read() == b""


async def test_session_finish_keeps_buffer_for_reader() -> None:
    s = PublishSession(stream="demo", app="live", peer="p")
    s._media(9, 0, b"v")  # held until the end: no metadata, only video so far
    s._finish("publisher disconnected")
    assert await s.closed == "publisher disconnected"
    assert parse_flv(await s.read()) == (0x01, [(9, 0, b"v")])
    assert await s.read() == b""
    s.close("late kick")
    assert s.close_reason == "publisher disconnected"


async def test_byte_queue_thread_reader() -> None:
    q = ByteQueue(max_bytes=10)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.extend(iter(lambda: q.read(4), b"")))
    t.start()
    await q.put(b"abcdef")
    await q.put(b"ghij")
    q.close()
    await asyncio.to_thread(t.join, 5)
    assert b"".join(got) == b"abcdefghij" and all(len(g) <= 4 for g in got)
    with pytest.raises(ByteQueueClosed):
        await q.put(b"x")
    with pytest.raises(TimeoutError):
        ByteQueue().read(1, timeout=0.01)


async def test_byte_queue_put_waits_for_reader_and_abort_stops_writer() -> None:
    q = ByteQueue(max_bytes=4)
    await q.put(b"1234")
    put = asyncio.create_task(q.put(b"5678"))
    await asyncio.sleep(0)  # one loop turn: the put has run up to its wait (or finished, wrongly)
    assert not put.done()
    assert await asyncio.to_thread(q.read, 2) == b"12"
    # the read woke the writer before it returned, so the put has re-checked by now
    await asyncio.sleep(0)
    assert not put.done()  # 2 + 4 > 4: still no room
    assert await asyncio.to_thread(q.read) == b"34"
    await asyncio.wait_for(put, 2)
    blocked = asyncio.create_task(q.put(b"abcd"))
    await asyncio.sleep(0)
    assert not blocked.done()  # waiting for room when the reader aborts
    await asyncio.to_thread(q.abort)
    with pytest.raises(ByteQueueClosed):
        await asyncio.wait_for(blocked, 2)
    assert q.read(10) == b""


# ---------------------------------------------------------------- a raw client against the real server


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling the loop) until ``condition()`` holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def allow_key(key: str) -> Callable[[str, str, str | None, str], Decision]:
    def authorize(app: str, stream_name: str, given: str | None, peer: str) -> Decision:
        ok = app == "live" and given is not None and hmac.compare_digest(given.encode(), key.encode())
        return Decision(ok, stream_name, "" if ok else "wrong or missing key")

    return authorize


class Collect:
    """on_publish: keeps each session and its whole FLV stream."""

    def __init__(self) -> None:
        self.sessions: list[PublishSession] = []
        self.started = asyncio.Event()
        self.finished: asyncio.Queue[tuple[PublishSession, bytes]] = asyncio.Queue()

    async def __call__(self, session: PublishSession) -> None:
        self.sessions.append(session)
        self.started.set()
        data = bytearray()
        while chunk := await session.read(65536):
            data += chunk
        await self.finished.put((session, bytes(data)))


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[tuple[RtmpServer, Collect]]]]:
    servers: list[RtmpServer] = []

    async def start(**options: Any) -> tuple[RtmpServer, Collect]:
        collect = Collect()
        authorize = options.pop("authorize", allow_key("K"))
        options.setdefault("log_interval_s", 0)  # every line, unless a test checks the rate limit
        server = RtmpServer("127.0.0.1", 0, authorize, collect, **options)
        await server.start()
        servers.append(server)
        return server, collect

    yield start
    for server in servers:
        await server.close()


async def test_raw_publish_becomes_flv(serve) -> None:
    server, collect = await serve()
    c = await Client.open(server.port)
    status = await c.publish("live", "demo?key=K")
    assert status[3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    await asyncio.wait_for(collect.started.wait(), 2)
    [session] = collect.sessions
    assert (session.stream, session.app) == ("demo", "live") and server.sessions == (session,)
    c.send(4, 18, amf.encode("@setDataFrame") + META, stream_id=1)
    c.send(2, 1, (64).to_bytes(4, "big"))  # the publisher's Set Chunk Size
    video = bytes(range(200))
    c.writer.write(
        encode_message(6, 9, 1, 0, b"\x17" + video, 64)
        + encode_message(7, 8, 1, 0x01000005, b"\xaf\x01", 64)  # an extended timestamp
        + fmt1(6, 33, 3, 9)
        + b"\x27v1"
        + fmt3(6)
        + b"\x27v2"
    )
    c.send(2, 4, b"\x00\x06" + b"\x00\x00\x00\x2a")  # ping request
    c.command("FCUnpublish", 6, None, "demo?key=K")
    finished, data = await asyncio.wait_for(collect.finished.get(), 3)
    assert finished is session and session.close_reason == "unpublished (FCUnpublish)"
    flags, tags = parse_flv(data)
    assert flags == 0x05
    assert tags == [
        (18, 0, META),
        (9, 0, b"\x17" + video),
        (8, 0x01000005, b"\xaf\x01"),
        (9, 33, b"\x27v1"),
        (9, 66, b"\x27v2"),
    ]
    pong = await c.message(lambda m: m.type_id == 4 and m.payload[:2] == b"\x00\x07")
    assert pong.payload == b"\x00\x07\x00\x00\x00\x2a"
    c.writer.close()


async def test_refused_publish_gets_status_and_close(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, collect = await serve()
    c = await Client.open(server.port)
    status = await c.publish("live", "demo?key=NOT-THE-KEY")
    assert status[3]["level"] == "error"  # type: ignore[index]
    assert status[3]["code"] == "NetStream.Publish.Unauthorized"  # type: ignore[index]
    assert await c.closed_by_server()
    c = await Client.open(server.port)
    assert (await c.publish("live", "a/b/c"))[3]["code"] == PUBLISH_BADNAME  # type: ignore[index]
    assert await c.closed_by_server()
    await until(lambda: server.connections == 0)  # handlers start before a connection ends: none did
    assert collect.sessions == []
    refused = [r.getMessage() for r in caplog.records if "publish refused" in r.getMessage()]
    assert len(refused) == 2
    assert "key=***" in refused[0] and "wrong or missing key" in refused[0]
    assert "NOT-THE-KEY" not in caplog.text


async def connect_works(port: int) -> bool:
    c = await Client.open(port)
    c.command("connect", 1, {"app": "live"})
    ok = (await c.reply("_result"))[3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]
    c.writer.close()
    return ok


async def test_garbage_instead_of_handshake(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, _ = await serve()
    c = await Client.open(server.port, handshake=False)
    c.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await c.closed_by_server(2)
    assert "bad handshake: version byte 0x47" in caplog.text
    assert await connect_works(server.port)


async def test_huge_message_and_bad_chunk_size(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, collect = await serve(max_message_size=1024 * 1024)
    c = await Client.open(server.port)
    await c.publish("live", "demo?key=K")  # authorised: media-sized messages up to the configured limit
    c.send(6, 9, b"\x17" + bytes(200_000), stream_id=1)
    c.writer.write(fmt0(6, 0, 2 * 1024 * 1024, 9))
    assert await c.closed_by_server(2)
    assert "message length 2097152 exceeds the limit of 1048576 bytes" in caplog.text
    session, _ = await asyncio.wait_for(collect.finished.get(), 2)
    assert "message length 2097152" in (session.close_reason or "")
    c = await Client.open(server.port)
    c.writer.write(set_chunk_size(0))
    assert await c.closed_by_server(2)
    assert "chunk size 0 out of range" in caplog.text
    c = await Client.open(server.port)
    c.send(3, 20, b"\x02\x00\x07connect\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x03\x00\x03app\x09")
    assert await c.closed_by_server(2)
    assert "protocol error" in caplog.text
    assert await connect_works(server.port)


async def test_slowloris_and_idle_timeouts(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, _ = await serve(handshake_timeout_s=0.3, idle_timeout_s=5)
    slow = await Client.open(server.port, handshake=False)
    started = time.monotonic()
    slow.writer.write(b"\x03" + bytes(100))  # then nothing more
    assert await slow.closed_by_server(3)
    assert time.monotonic() - started < 2
    assert "handshake timeout after 0.3 s" in caplog.text
    lazy = await Client.open(server.port)  # handshakes but never publishes
    assert await lazy.closed_by_server(3)
    assert "no publish within 0.3 s" in caplog.text
    assert await connect_works(server.port)


async def test_garbage_after_handshake_never_breaks_the_server(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, collect = await serve(handshake_timeout_s=0.5, max_connections_per_peer=64, max_unauthenticated=64)
    rng = random.Random(7)

    async def hostile() -> None:
        c = await Client.open(server.port)
        c.writer.write(rng.randbytes(rng.randrange(1, 3000)))
        assert await c.closed_by_server(3)

    await asyncio.gather(*(hostile() for _ in range(30)))
    assert "internal error" not in caplog.text
    assert collect.sessions == []
    assert await connect_works(server.port)


async def test_max_sessions_refuses_extra_connections(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, _ = await serve(max_sessions=2, max_unauthenticated=2)
    held = [await Client.open(server.port) for _ in range(2)]
    for c, stream in zip(held, ("a", "b"), strict=True):  # authorised publishers are never pushed out
        assert (await c.publish("live", f"{stream}?key=K"))[3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    extra = await Client.open(server.port, handshake=False)
    assert await extra.closed_by_server(2)
    assert "too many connections from 127.0.0.1 (max_per_peer=2)" in caplog.text
    other = await Client.open(server.port, handshake=False, source="127.0.0.2")
    assert await other.closed_by_server(2)
    assert "too many connections (max_sessions=2)" in caplog.text
    for c in held:
        c.writer.close()
    await until(lambda: server.connections == 0)
    assert await connect_works(server.port)


# ---------------------------------------------------------------- before the key is checked: memory, slots, logs


def half_sent_command(body: int = 60 * 1024, chunk: int = 4096) -> bytes:
    """A 64 KiB command message cut off after ``body`` bytes, then a ping request the server answers."""
    data = bytearray(set_chunk_size(chunk) + fmt0(6, 0, 64 * 1024, 20, sid=0))
    for i, start in enumerate(range(0, body, chunk)):
        data += (fmt3(6) if i else b"") + bytes(min(chunk, body - start))
    return bytes(data + fmt0(2, 0, 6, 4, sid=0) + b"\x00\x06\x00\x00\x00\x07")


async def pong_or_closed(c: Client) -> str:
    """ "pong" once the server has parsed everything sent before the ping, "closed" if it hung up instead."""
    try:
        await c.message(lambda m: m.type_id == 4 and m.payload[:2] == b"\x00\x07")
        return "pong"
    except (AssertionError, ConnectionError):
        return "closed"


class Conn:
    """A holder for the pure slot and budget bookkeeping."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted: list[str] = []

    def evict(self, reason: str) -> None:
        self.evicted.append(reason)

    def __repr__(self) -> str:
        return self.name


def test_memory_budget_never_passes_its_limit_and_evicts_the_biggest() -> None:
    budget = MemoryBudget(1000)
    a, b, c, d = (Conn(n) for n in "abcd")
    assert budget.charge(a, 600) and budget.charge(b, 300)
    assert not budget.charge(c, 1001)  # larger than the whole budget
    assert budget.charge(c, 200)  # does not fit: a, the biggest, goes
    assert a.evicted and "more than 1000 bytes together" in a.evicted[0]
    assert (budget.used, budget.holding(a)) == (500, 0)
    assert budget.charge(b, 700)  # grows into the room
    assert not budget.charge(d, 700) and not b.evicted  # the newcomer would be the biggest: it is refused
    assert budget.charge(b, 10) and budget.used == 210  # shrinking always fits
    budget.release(b)
    budget.release(b)
    assert budget.used == 200 and budget.peak == 900
    with pytest.raises(ValueError):
        MemoryBudget(0)


def test_connection_slots_cap_per_peer_and_unauthenticated() -> None:
    slots = ConnectionSlots(SlotLimits(max_connections=6, max_per_peer=3, max_unauthenticated=4))
    crowd = [Conn(f"x{i}") for i in range(5)]
    assert [slots.admit(c, "10.0.0.1") for c in crowd[:3]] == [None, None, None]
    assert slots.admit(crowd[3], "10.0.0.1") is None  # over the address's cap: its oldest waiting one goes
    assert crowd[0].evicted == ["evicted: too many connections from 10.0.0.1 (max_per_peer=3)"]
    assert slots.from_peer("10.0.0.1") == 3 and slots.total == 3
    lone = Conn("lone")
    assert slots.admit(lone, "10.0.0.2") is None and slots.unauthenticated == 4
    late = Conn("late")
    assert slots.admit(late, "10.0.0.3") is None  # all waiting slots taken: the crowd's oldest made room
    assert crowd[1].evicted == ["evicted: too many unauthenticated connections (3 from 10.0.0.1)"]
    assert not lone.evicted and slots.unauthenticated == 4 and slots.total == 4
    slots.leave(crowd[1])  # its socket task ends later: nothing changes
    for c in (crowd[2], crowd[3], lone, late):
        slots.authenticated(c)  # authorised publishers leave the unauthenticated count, not their slot
    assert slots.unauthenticated == 0 and slots.total == 4 and slots.from_peer("10.0.0.1") == 2
    assert slots.admit(crowd[4], "10.0.0.1") is None
    slots.authenticated(crowd[4])
    assert slots.admit(Conn("x5"), "10.0.0.1") == "too many connections from 10.0.0.1 (max_per_peer=3)"
    assert slots.admit(Conn("s0"), "10.0.1.1") is None
    assert slots.admit(Conn("s1"), "10.0.1.2") == "too many connections (max_sessions=6)"
    for c in (crowd[2], crowd[3], crowd[4], lone, late):
        slots.leave(c)
    assert slots.total == 1 and slots.from_peer("10.0.0.1") == 0
    one_each = ConnectionSlots(SlotLimits(max_connections=4, max_per_peer=4, max_unauthenticated=2))
    assert one_each.admit(Conn("p"), "10.0.0.1") is None and one_each.admit(Conn("q"), "10.0.0.2") is None
    # every waiting connection has its own address: nobody to prefer, the newcomer is refused
    assert one_each.admit(Conn("r"), "10.0.0.3") == "too many unauthenticated connections (max_unauthenticated=2)"
    with pytest.raises(ValueError, match=re.escape("max_unauthenticated must be in 1..4")):
        SlotLimits(max_connections=4, max_per_peer=2, max_unauthenticated=5)


async def test_big_message_before_publish_is_refused_at_its_header(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, _ = await serve()  # media messages may be 8 MiB, but only once the publish is authorised
    c = await Client.open(server.port)
    c.writer.write(fmt0(3, 0, 8 * 1024 * 1024, 20, sid=0) + bytes(1000))  # an "8 MiB command", barely begun
    assert await c.closed_by_server(2)  # at once, not at the 10 s publish deadline
    assert "message length 8388608 exceeds the limit of 65536 bytes (before the publish was authorised)" in caplog.text
    c = await Client.open(server.port)
    c.writer.write(set_chunk_size(1 << 24))
    assert await c.closed_by_server(2)
    assert "chunk size 16777216 out of range 1..65536" in caplog.text
    await until(lambda: server.connections == 0)
    assert server.budget.used == 0 and server.budget.peak < 64 * 1024


async def test_unauthenticated_connections_share_one_memory_budget(serve) -> None:
    limit = 512 * 1024
    server, _ = await serve(unauthenticated_memory_bytes=limit, max_connections_per_peer=64, max_unauthenticated=64)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        clients = []
        for _ in range(24):  # 24 x 60 KiB half-sent: three times what the budget allows
            c = await Client.open(server.port)
            c.writer.write(half_sent_command())
            clients.append((c, await pong_or_closed(c)))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    answered = [c for c, outcome in clients if outcome == "pong"]
    assert 1 <= len(answered) <= limit // (60 * 1024)
    assert server.budget.peak <= limit and server.budget.used <= limit
    assert held < limit + 512 * 1024  # everything else (24 client and server connections) is small
    # an honest publisher's few KiB still fit: the biggest holder makes room
    real = await Client.open(server.port)
    assert (await real.publish("live", "demo?key=K"))[3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    assert server.budget.used <= limit
    for c, _ in clients:
        c.writer.close()
    real.writer.close()


async def test_idle_flood_cannot_lock_out_a_publisher_and_logs_one_line(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, _ = await serve(handshake_timeout_s=1.0, log_interval_s=60)  # 64 slots, 16 per address
    now = [1000.0]
    server.rate_log.clock = lambda: now[0]

    def gone(r: asyncio.StreamReader) -> bool:
        return r.at_eof() or r.exception() is not None

    flood = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(64)]  # never say a word
    await until(lambda: sum(gone(r) for r, _ in flood) == 48)  # each one over the cap pushed out an older one
    assert server.slots.from_peer("127.0.0.1") == 16
    # publishers with a key, one behind the flood's own address, one elsewhere: both get in at once
    same = await Client.open(server.port)
    elsewhere = await Client.open(server.port, source="127.0.0.2")
    for c, stream in ((same, "a"), (elsewhere, "b")):
        assert (await c.publish("live", f"{stream}?key=K"))[3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    await until(lambda: all(gone(r) for r, _ in flood))  # the last 15 idle ones hit the deadline
    assert server.slots.total == 2 and len(server.sessions) == 2
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "evicted: too many connections from 127.0.0.1 (max_per_peer=16)" in lines[0]
    now[0] += 61  # the next line carries the count of those swallowed: 48 + 1 evicted, 15 timed out
    bad = await Client.open(server.port, handshake=False)
    bad.writer.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await bad.closed_by_server(2)
    await until(lambda: "bad handshake" in caplog.text)
    assert "(+63 similar in the last 61 s)" in caplog.text
    for _, w in flood:
        w.close()
    same.writer.close()
    elsewhere.writer.close()


async def test_unauthenticated_cap_evicts_the_crowded_address_first(serve, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, _ = await serve(max_sessions=8, max_connections_per_peer=4, max_unauthenticated=6)
    crowd = [await Client.open(server.port, source="127.0.0.3") for _ in range(4)]
    others = [await Client.open(server.port, source=f"127.0.1.{i}") for i in (1, 2)]
    assert server.slots.unauthenticated == 6
    real = await Client.open(server.port, source="127.0.0.2")  # the cap is full: the crowd's oldest goes
    assert (await real.publish("live", "demo?key=K"))[3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    assert await crowd[0].closed_by_server(2)
    assert "evicted: too many unauthenticated connections (4 from 127.0.0.3)" in caplog.text
    for c in [*crowd[1:], *others]:
        assert await connect_works_on(c)
    for c in [*crowd, *others, real]:
        c.writer.close()


async def connect_works_on(c: Client) -> bool:
    c.command("connect", 1, {"app": "live"})
    return (await c.reply("_result"))[3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]


async def test_kick_and_shutdown_end_sessions(serve) -> None:
    server, collect = await serve()
    c = await Client.open(server.port)
    await c.publish("live", "demo?key=K")
    await asyncio.wait_for(collect.started.wait(), 2)
    collect.sessions[0].close("kicked by operator")
    assert await c.closed_by_server(2)
    assert (await collect.finished.get())[0].close_reason == "kicked by operator"
    c = await Client.open(server.port)
    await c.publish("live", "demo?key=K")
    await until(lambda: len(collect.sessions) == 2)
    await server.close()
    assert collect.sessions[1].close_reason == "server shutting down"
    assert await c.closed_by_server(2)


# ---------------------------------------------------------------- real publishers: Debian's ffmpeg


class Gate:
    """An Authorizer with per-stream keys that refuses a second publisher to a live stream."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.live: set[str] = set()
        self.calls: list[tuple[str, str, bool]] = []

    def __call__(self, app: str, stream_name: str, key: str | None, peer: str) -> Decision:
        self.calls.append((app, stream_name, key is not None))
        expected = self.keys.get(stream_name)
        if app != "live" or expected is None:
            return Decision(False, stream_name, "unknown stream", PUBLISH_BADNAME)
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            return Decision(False, stream_name, "wrong or missing key")
        if stream_name in self.live:
            return Decision(False, stream_name, "stream already live", PUBLISH_BADNAME)
        self.live.add(stream_name)
        return Decision(True, stream_name)

    def track(self, session: PublishSession) -> None:
        session.closed.add_done_callback(lambda _: self.live.discard(session.stream))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rtmp-clips")
    return {
        "4s": make_clip(d / "a.mp4", seconds=4),
        "3s": make_clip(d / "b.mp4", seconds=3, width=256, height=144),
    }


@pytest.fixture
async def ffmpeg_server(serve) -> tuple[RtmpServer, Collect, Gate]:
    gate = Gate({"demo": "k-demo", "other": "k-other"})
    server, collect = await serve(authorize=gate)
    original = collect.__call__

    async def on_publish(session: PublishSession) -> None:
        gate.track(session)
        await original(session)

    server.on_publish = on_publish
    return server, collect, gate


def decode_all(source: Any, **open_args: Any) -> dict[str, Any]:
    """Decode every frame PyAV finds; sizes, counts and audio seconds."""
    facts: dict[str, Any] = {"video": 0, "audio_s": 0.0, "sizes": set(), "first_video_at": None}
    with av.open(source, **open_args) as container:
        facts["codecs"] = sorted(s.codec_context.name for s in container.streams)
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                facts["video"] += 1
                facts["sizes"].add((frame.width, frame.height))
                if facts["first_video_at"] is None:
                    facts["first_video_at"] = time.monotonic()
            elif isinstance(frame, av.AudioFrame):
                facts["audio_s"] += frame.samples / frame.sample_rate
    return facts


@pytest.mark.media
@needs_ffmpeg
async def test_ffmpeg_two_publishers_one_port(ffmpeg_server, clips, tmp_path) -> None:
    server, collect, gate = ffmpeg_server
    base = f"rtmp://127.0.0.1:{server.port}/live"
    (rc_a, err_a), (rc_b, err_b) = await asyncio.gather(
        push(f"{base}/demo?key=k-demo", clips["4s"]),  # key as a query
        push(f"{base}/other/k-other", clips["3s"]),  # key as the last path segment
    )
    assert (rc_a, rc_b) == (0, 0), err_a + err_b
    got = dict([await asyncio.wait_for(collect.finished.get(), 5) for _ in range(2)])
    by_stream = {s.stream: (s, data) for s, data in got.items()}
    assert sorted(by_stream) == ["demo", "other"]
    assert ("live", "other", True) in gate.calls
    expected = {"demo": (120, (320, 180), 4.0), "other": (90, (256, 144), 3.0)}
    for stream, (session, data) in by_stream.items():
        assert session.close_reason == "unpublished (FCUnpublish)"
        path = tmp_path / f"{stream}.flv"
        path.write_bytes(data)
        facts = await asyncio.to_thread(decode_all, str(path))
        frames, size, seconds = expected[stream]
        assert facts["codecs"] == ["aac", "h264"]
        assert facts["video"] == frames, stream
        assert facts["sizes"] == {size}
        assert facts["audio_s"] >= seconds - 0.1
    assert gate.live == set()


@pytest.mark.media
@needs_ffmpeg
async def test_ffmpeg_wrong_or_missing_key_publishes_nothing(ffmpeg_server, clips, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server, collect, _gate = ffmpeg_server
    base = f"rtmp://127.0.0.1:{server.port}/live"
    results = await asyncio.gather(
        push(f"{base}/demo?key=WRONG-KEY-123", clips["3s"], timeout=10),
        push(f"{base}/demo", clips["3s"], timeout=10),
        push(f"{base}/other/WRONG-KEY-456", clips["3s"], timeout=10),
        push(f"{base}/nosuch?key=k-demo", clips["3s"], timeout=10),
    )
    assert all(rc != 0 for rc, _ in results), results
    await until(lambda: server.connections == 0)
    assert collect.sessions == [] and server.sessions == ()
    assert caplog.text.count("publish refused") == 4
    assert "WRONG-KEY" not in caplog.text and "k-demo" not in caplog.text
    assert "key=***" in caplog.text and "key=none" in caplog.text


@pytest.mark.media
@needs_ffmpeg
async def test_ffmpeg_second_publisher_to_live_stream_refused(ffmpeg_server, clips) -> None:
    server, collect, gate = ffmpeg_server
    url = f"rtmp://127.0.0.1:{server.port}/live/demo?key=k-demo"
    first = asyncio.create_task(push(url, clips["3s"]))
    await asyncio.wait_for(collect.started.wait(), 10)
    rc, _ = await push(url, clips["3s"], timeout=10)
    assert rc != 0
    assert (await first)[0] == 0
    session, data = await asyncio.wait_for(collect.finished.get(), 5)
    assert collect.sessions == [session] and data.startswith(b"FLV")
    assert session.close_reason == "unpublished (FCUnpublish)"
    assert gate.live == set()


async def copy_into(session: PublishSession, queue: ByteQueue) -> None:
    """What the ingest bridge does: the session's FLV into the queue, waiting for room, then close it."""
    try:
        while data := await session.read(65536):
            await queue.put(data)
    except ByteQueueClosed:
        pass
    finally:
        queue.close()


@pytest.mark.media
@needs_ffmpeg
async def test_ffmpeg_live_decode_through_byte_queue(serve, clips) -> None:
    """PyAV reads the FLV while ffmpeg is still pushing: frames come out before the push ends."""
    results: list[dict[str, Any]] = []

    async def on_publish(session: PublishSession) -> None:
        queue = ByteQueue(max_bytes=1024 * 1024)
        pumping = asyncio.create_task(copy_into(session, queue))

        def decode() -> dict[str, Any]:
            try:
                return decode_all(queue, format="flv")
            finally:
                queue.abort()

        results.append(await asyncio.to_thread(decode))
        await pumping

    server, _ = await serve(authorize=Gate({"demo": "k-demo"}))
    server.on_publish = on_publish
    rc, err = await push(f"rtmp://127.0.0.1:{server.port}/live/demo?key=k-demo", clips["4s"])
    pushed_until = time.monotonic()
    assert rc == 0, err
    await until(lambda: bool(results))
    [facts] = results
    assert facts["video"] == 120 and facts["audio_s"] >= 3.9
    assert facts["first_video_at"] < pushed_until - 2.0  # decoding started while the push had seconds to go


# ---------------------------------------------------------------- the ingest bridge and its settings


def test_rtmp_limits_from_the_config_file(tmp_path) -> None:
    path = tmp_path / "packager.toml"
    path.write_text("[server]\nrtmp_publish_timeout = 4\nrtmp_max_per_peer = 3\nrtmp_max_unauthenticated = 12\n")
    limits = load(path, StreamConfig(name="demo"), []).rtmp_limits
    assert limits == RtmpLimits(publish_timeout_s=4.0, max_per_peer=3, max_unauthenticated=12)
    assert load(None, StreamConfig(name="demo"), []).rtmp_limits == RtmpLimits()
    for text, fragment in [
        ("rtmp_publish_timeout = 0", "rtmp_publish_timeout: 0.0 must be in 1..120 seconds"),
        ("rtmp_max_per_peer = 65", "rtmp_max_per_peer: 65 must be in 1..64"),
        ('rtmp_max_unauthenticated = "8"', "rtmp_max_unauthenticated must be an integer"),
    ]:
        path.write_text(f"[server]\n{text}\n")
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            load(path, StreamConfig(name="demo"), [])


async def test_bridge_applies_limits_and_rate_limits_refusals(caplog) -> None:
    caplog.set_level(logging.INFO, logger="packager.ingest.bridge")
    settings = IngestSettings(
        streams={"demo": StreamSettings(StreamConfig(name="demo"), "key-for-demo-123")},
        rtmp_limits=RtmpLimits(publish_timeout_s=3.0, max_per_peer=2, max_unauthenticated=5),
    )
    gate = IngestGate(settings)
    server = await start_rtmp("127.0.0.1", 0, gate, None)  # type: ignore[arg-type]  # no publish reaches it
    try:
        assert server.handshake_timeout_s == 3.0
        assert server.slots.limits == SlotLimits(max_connections=64, max_per_peer=2, max_unauthenticated=5)
    finally:
        await server.close()
    now = [0.0]
    authorize = authorizer(gate, {}, RateLimitedLog(logging.getLogger("packager.ingest.bridge"), clock=lambda: now[0]))
    for i in range(50):  # a key-guessing client
        assert not authorize("live", "demo", f"guess-{i:04d}", f"127.0.0.1:{40000 + i}").ok
    now[0] += 11
    assert not authorize("live", "demo", "guess-last", "127.0.0.1:50000").ok
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2 and "+49 similar in the last 11 s" in lines[1], lines
    assert "guess-" not in caplog.text
