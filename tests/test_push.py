"""HTTP push ingest against hostile clients: only real containers, no stalls, no thread starvation, no leaked keys.

Real parts throughout: the origin app on a real socket (``aiohttp_client``),
the ingest gate and manager, real pipelines encoding 320x180 with x264
ultrafast, and raw socket clients for the bodies no HTTP library would send.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from fixtures.media import make_clip
from origin.app import create_app
from origin.handlers import NAME
from packager.admission import SNIFF_BYTES, InputLimits, UnsupportedPush, demuxer_options, sniff
from packager.config import ConfigError, Encoding, Ladder, StreamConfig, Timing
from packager.ingest.gate import IngestGate
from packager.ingest.manager import IngestManager
from packager.ingest.pipe import ByteQueue
from packager.publication import PartPublished, Publication
from packager.settings import IngestSettings, StreamSettings, load
from packager.store import Store

KEY = "push-key-0001"
FFCONCAT = b"ffconcat version 1.0\nfile secret.mp4\n"
SDP = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\n"
M3U8 = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttp://127.0.0.1:1/a.ts\n#EXT-X-ENDLIST\n"


# ---------------------------------------------------------------- pure rules


def test_sniff_knows_the_four_push_containers() -> None:
    ts = (b"\x47" + bytes(187)) * 3
    assert sniff(ts) == "mpegts"
    assert sniff(b"FLV\x01\x05" + bytes(20)) == "flv"
    assert sniff(b"\x1a\x45\xdf\xa3" + bytes(20)) == "matroska"
    for box in (b"ftyp", b"styp", b"moof"):
        assert sniff(b"\x00\x00\x00\x18" + box + bytes(20)) == "mov"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (FFCONCAT, "text, not media"),
        (SDP, "text, not media"),
        (M3U8, "text, not media"),
        (bytes(range(256)) * 4, "unrecognised push format"),
        (b"\x47" + bytes(100), "too short"),
        (b"\x47" + bytes(400), "unrecognised"),  # one sync byte is not MPEG-TS
        (b"", "empty push"),
    ],
)
def test_sniff_refuses_everything_else_with_a_reason(body: bytes, words: str) -> None:
    with pytest.raises(UnsupportedPush, match=words):
        sniff(body)


def test_demuxer_options_pin_the_demuxer_and_forbid_nested_opens() -> None:
    for fmt in ("mpegts", "flv", "matroska", "mov"):
        opts = demuxer_options(fmt)
        assert opts["format_whitelist"] == fmt and opts["protocol_whitelist"] == "none"
    assert demuxer_options("mov")["enable_drefs"] == "0"
    for fmt in ("concat", "hls", "sdp", "image2", None):
        with pytest.raises(ValueError):
            demuxer_options(fmt)  # type: ignore[arg-type]


@pytest.mark.media
def test_media_source_never_probes_a_pushed_stream() -> None:
    from packager.sources.media import MediaSource

    for fmt in (None, "concat", "sdp"):
        with pytest.raises(ValueError, match="push format"):
            MediaSource("http://x", reader=io.BytesIO(FFCONCAT), format=fmt)
    source = MediaSource("http://x", reader=io.BytesIO(b""), format="mov", options={"enable_drefs": "1"})
    assert source.options["enable_drefs"] == "0"  # the safety options win over the caller's


def test_stream_names_with_control_characters_are_not_names() -> None:
    assert NAME.match("demo") and NAME.match("cam-2_b")
    for bad in ("demo\n", "demo\r", "de\nmo", "demo\x00", "\ndemo", ""):
        assert NAME.match(bad) is None, bad


def test_input_limits_say_which_limit() -> None:
    limits = InputLimits(max_width=640, max_height=480, max_pixels=200_000, max_fps=Fraction(60))
    assert limits.problem(640, 300, Fraction(60)) is None
    assert "641x100" in (limits.problem(641, 100, None) or "")
    assert "pixels" in (limits.problem(600, 400, None) or "")
    assert "120 fps" in (limits.problem(320, 180, Fraction(120)) or "")
    default = InputLimits()
    assert default.problem(3840, 2160, Fraction(60)) is None and default.problem(2160, 3840, None) is None
    assert default.problem(16384, 16384, None) is not None


def test_settings_read_push_fields(tmp_path: Path) -> None:
    conf = tmp_path / "p.toml"
    conf.write_text(
        "[server]\npush_idle_timeout = 2.5\nmax_input_width = 1920\nmax_input_height = 1080\n"
        "max_input_pixels = 2073600\nmax_input_fps = 60\n"
    )
    s = load(conf, StreamConfig(), [])
    assert s.push_idle_timeout_s == 2.5
    assert s.input_limits == InputLimits(1920, 1080, 2073600, Fraction(60))
    assert load(None, StreamConfig(), []).input_limits == InputLimits()
    for bad in ("push_idle_timeout = 0", "max_input_width = 0", "max_input_fps = 1.5", "max_input_pixels = true"):
        conf.write_text(f"[server]\n{bad}\n")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load(conf, StreamConfig(), [])


def test_byte_queue_read_timeout() -> None:
    with pytest.raises(TimeoutError, match=r"no data for 0\.01 s"):
        ByteQueue(read_timeout_s=0.01).read(1)
    with pytest.raises(TimeoutError):
        ByteQueue().read(1, timeout=0.01)


# ---------------------------------------------------------------- the origin with real pipelines


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("push") / "c.ts", seconds=2, width=320, height=180).read_bytes()


class Origin:
    """One origin app with ingest: its test client, manager, store and published-part counts."""

    def __init__(self, client, manager: IngestManager, store: Store) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.manager = manager
        self.store = store
        self.parts: Counter[str] = Counter()
        self._changed = asyncio.Event()
        store.subscribe(self)

    def on_publication(self, event: Publication) -> None:
        if isinstance(event, PartPublished):
            self.parts[event.stream] += 1
            self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
        """Wait until ``condition()`` holds after a part was published (or fail after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def slate_frames(self, stream: str) -> int:
        feed = self.manager.feeds.get(stream)
        return feed.source.slate_frames if feed is not None else 0

    async def raw_push(self, stream: str, chunks: list[bytes] = (), key: str = KEY):  # type: ignore[no-untyped-def,assignment]
        """A chunked PUT sent by hand: the headers and ``chunks``; the body is left open."""
        reader, writer = await asyncio.open_connection(self.client.server.host, self.client.server.port)
        writer.write(
            f"PUT /ingest/{stream}?key={key} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        for chunk in chunks:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        return reader, writer


async def response_of(reader: asyncio.StreamReader, timeout_s: float = 20.0) -> tuple[int, str]:
    async with asyncio.timeout(timeout_s):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(
            next(line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith("content-length"))
        )
        body = (await reader.readexactly(length)).decode()
    return int(head.split()[1]), body


@pytest.fixture
async def make_origin(aiohttp_client) -> Callable[..., Awaitable[Origin]]:  # type: ignore[no-untyped-def]
    managers: list[IngestManager] = []

    async def make(streams: tuple[str, ...] = ("demo",), **fields: object) -> Origin:
        config = StreamConfig(
            ladder=Ladder.parse("320x180@200k", "64k"),
            timing=Timing(Fraction(1), Fraction(1, 2), Fraction(6)),
            encoding=Encoding(preset="ultrafast"),
        )
        settings = IngestSettings(
            streams={
                n: StreamSettings(StreamConfig(n, config.ladder, config.timing, config.encoding), KEY) for n in streams
            },
            rtmp_port=0,
            srt_port=0,
            max_publishers=64,
            **fields,  # type: ignore[arg-type]
        )
        store = Store()
        manager = IngestManager(settings, store)
        managers.append(manager)
        server = TestServer(create_app(store, ingest=(IngestGate(settings), manager)))
        await server.start_server(access_log=None)  # as ``packager run`` serves: no access log
        client = await aiohttp_client(server)
        return Origin(client, manager, store)

    yield make
    for manager in managers:
        await manager.shutdown()


async def put(origin: Origin, stream: str, body: bytes, key: str = KEY) -> tuple[int, str]:
    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 16384):
            yield body[i : i + 16384]

    async with origin.client.put(f"/ingest/{stream}?key={key}", data=chunks()) as r:
        return r.status, await r.text()


@pytest.mark.media
@pytest.mark.parametrize(
    "body", [FFCONCAT, SDP, M3U8, bytes(range(256)) * 64], ids=["ffconcat", "sdp", "m3u8", "random"]
)
async def test_push_of_anything_but_a_container_is_415_and_publishes_nothing(make_origin, body: bytes) -> None:
    origin = await make_origin()
    status, text = await put(origin, "demo", body)
    assert status == 415 and ("text, not media" in text or "unrecognised push format" in text), text
    assert origin.store.get("demo") is None and not origin.manager.feeds and not origin.parts


@pytest.mark.media
async def test_real_ts_push_publishes(make_origin, ts_clip: bytes) -> None:
    origin = await make_origin()
    status, text = await put(origin, "demo", ts_clip)
    assert status == 200, text
    await origin.until(lambda: origin.parts["demo"] >= 4)
    assert origin.store.get("demo") is not None


@pytest.mark.media
@pytest.mark.parametrize(
    ("fields", "words"), [({"max_input_width": 160}, "320x180"), ({"max_input_fps": 24}, "30 fps")]
)
async def test_push_over_the_input_limits_is_422_before_anything_is_built(
    make_origin, ts_clip: bytes, fields: dict[str, int], words: str
) -> None:
    base = InputLimits()
    limits = InputLimits(
        fields.get("max_input_width", base.max_width),
        base.max_height,
        base.max_pixels,
        Fraction(fields.get("max_input_fps", int(base.max_fps))),
    )
    origin = await make_origin(input_limits=limits)
    status, text = await put(origin, "demo", ts_clip)
    assert status == 422 and words in text and "over the limit" in text, text
    assert origin.store.get("demo") is None and not origin.manager.feeds


@pytest.mark.media
async def test_headers_only_push_ends_after_the_idle_timeout(make_origin) -> None:
    origin = await make_origin(push_idle_timeout_s=0.5)
    reader, writer = await origin.raw_push("demo")
    status, text = await response_of(reader)
    writer.close()
    assert status == 408 and "no data for 0.5 s" in text, text
    assert origin.store.get("demo") is None


@pytest.mark.media
async def test_stalled_push_ends_with_408_and_the_slate_takes_over(make_origin, ts_clip: bytes) -> None:
    origin = await make_origin(push_idle_timeout_s=1.0)
    reader, writer = await origin.raw_push("demo", [ts_clip[i : i + 8192] for i in range(0, len(ts_clip), 8192)])
    status, text = await response_of(reader)  # the client is still there, sending nothing
    assert status == 408 and "no data for 1 s" in text, text
    parts, slate = origin.parts["demo"], origin.slate_frames("demo")
    await origin.until(lambda: origin.parts["demo"] >= parts + 3 and origin.slate_frames("demo") > slate)
    writer.close()


@pytest.mark.media
async def test_malformed_chunk_ends_push_with_400_and_the_stream_goes_on(make_origin, ts_clip: bytes) -> None:
    origin = await make_origin(push_idle_timeout_s=60.0)  # a 408 here would mean the bad chunk went unseen
    reader, writer = await origin.raw_push("demo", [ts_clip[: len(ts_clip) // 2]])
    await origin.until(lambda: origin.parts["demo"] >= 1)
    writer.write(b"zz\r\n")  # not a chunk size
    await writer.drain()
    status, text = await response_of(reader)
    assert status == 400 and "malformed" in text, text
    parts = origin.parts["demo"]
    await origin.until(lambda: origin.parts["demo"] >= parts + 3 and origin.slate_frames("demo") > 0)
    writer.close()


@pytest.mark.media
async def test_stalled_pushes_leave_threads_for_other_streams_and_files(make_origin, ts_clip: bytes) -> None:
    """12 stalled pushes (more than the default executor's threads): a 13th stream starts, pages still load."""
    stalled = tuple(f"s{i}" for i in range(12))
    origin = await make_origin(("demo", *stalled), push_idle_timeout_s=60.0)
    held = []
    for i, name in enumerate(stalled):  # half send only headers, half the first bytes of a real stream
        held.append(await origin.raw_push(name, [ts_clip[: SNIFF_BYTES * 2]] if i % 2 else []))
    await asyncio.sleep(0.2)  # let every stalled push reach its wait
    async with asyncio.timeout(10):
        async with origin.client.get("/players/hls.html") as r:
            assert r.status == 200 and "hls" in (await r.text()).lower()
    pushing = asyncio.create_task(put(origin, "demo", ts_clip))
    await origin.until(lambda: origin.parts["demo"] >= 2, timeout_s=15)
    assert (await asyncio.wait_for(pushing, 20))[0] == 200
    for _, writer in held:
        writer.close()


@pytest.mark.media
async def test_refused_names_and_keys_never_reach_the_log(make_origin, caplog: pytest.LogCaptureFixture) -> None:
    origin = await make_origin()
    caplog.set_level(logging.DEBUG)
    pasted = "sk-live-0123456789abcdef"  # a key pasted where the stream name goes
    status, _ = await put(origin, pasted, b"x", key="anything-at-all")
    assert status == 403
    status, _ = await put(origin, "demo", b"x", key="wrong-key-abcdef")
    assert status == 403
    async with origin.client.put(f"/ingest/demo%0A?key={KEY}", data=b"x") as r:
        assert r.status == 404
    async with origin.client.put(f"/ingest/{pasted}%0A?key={KEY}", data=b"x") as r:
        assert r.status == 404
    for record in caplog.records:
        text = record.getMessage()
        assert pasted not in text and "wrong-key-abcdef" not in text and KEY not in text, text
    assert any("***" in r.getMessage() for r in caplog.records)
    assert origin.store.get("demo") is None


@pytest.mark.media
async def test_a_feed_stopped_before_its_first_input_ran_still_ends_that_input() -> None:
    """A publish waits on its input's future: a feed that never ran that input must still settle it."""
    from packager.sources.feed import FeedSource
    from packager.sources.media import MediaSource

    feed = FeedSource(MediaSource("http://x", reader=ByteQueue(), format="mpegts"), window_s=1)
    waiting = feed.first.finished()
    stop = threading.Event()
    stop.set()
    assert feed.run(None, stop) == "stopped"  # type: ignore[arg-type]
    assert await asyncio.wait_for(waiting, 5) == "the feed ended before this input started"
    assert feed.first.finished().done()  # asked after the end: settled at once
