"""RTMPS ingest: RTMP over TLS on its own port, in front of the same gate as RTMP (real ffmpeg, real TLS)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import av
import pytest

from fixtures.media import make_clip
from packager.config import ConfigError, StreamConfig
from packager.ingest.bridge import start_rtmp
from packager.ingest.gate import THROTTLED, IngestGate, Refusal
from packager.ingest.manager import PublishResult
from packager.ingest.pipe import ByteQueue
from packager.ingest.rtmp import RtmpServer
from packager.ports import ListenError, listen
from packager.security import SecuritySettings
from packager.settings import IngestSettings, RtmpLimits, StreamSettings, load
from packager.tls import ServerTls, TlsFiles
from tests.support import certs
from tests.support.certs import Issued, make_ca
from tests.support.pushes import FFMPEG, push
from tests.support.rtmpclient import Client

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg command (Debian package ffmpeg)")
KEYS = {"demo": "key-for-demo-123", "other": "key-for-other-456"}
START, UNAUTHORIZED = "NetStream.Publish.Start", "NetStream.Publish.Unauthorized"


# ---------------------------------------------------------------- parts: certificates, gate, a stand-in manager


@pytest.fixture
def ca(tmp_path: Path) -> certs.CertAuthority:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def issued(ca: certs.CertAuthority, tmp_path: Path) -> Issued:
    return ca.issue(tmp_path)


@pytest.fixture
def tls(issued: Issued) -> ServerTls:
    return ServerTls(TlsFiles(issued.cert, issued.key))


def settings(**options: object) -> IngestSettings:
    streams = {name: StreamSettings(StreamConfig(name=name), key) for name, key in KEYS.items()}
    return IngestSettings(streams=streams, **options)  # type: ignore[arg-type]


def drain(queue: ByteQueue) -> bytes:
    out = bytearray()
    while chunk := queue.read(65536, timeout=30):
        out += chunk
    return bytes(out)


class Manager:
    """Stands in for the IngestManager: reads each publisher's FLV to its end, as a pipeline would."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []  # (stream, protocol)
        self.data: dict[str, bytes] = {}

    async def publish(self, stream: str, queue: ByteQueue, *, protocol: str, fmt: str, **_: object) -> PublishResult:
        assert fmt == "flv"
        self.published.append((stream, protocol))
        self.data[stream] = await asyncio.to_thread(drain, queue)
        return PublishResult(True, "publisher disconnected")


class Servers:
    """RTMP and RTMPS listeners in front of one gate and one manager (what ``packager run`` starts)."""

    def __init__(self, gate: IngestGate, manager: Manager, tls: ServerTls) -> None:
        self.gate, self.manager, self.tls = gate, manager, tls
        self.refusals: list[Refusal] = []
        gate.refusal_listeners.append(self.refusals.append)
        self.started: list[RtmpServer] = []

    async def start(self, *, secure: bool = True) -> RtmpServer:
        context = self.tls.context if secure else None
        server = await start_rtmp("127.0.0.1", 0, self.gate, self.manager, context)  # type: ignore[arg-type]
        self.started.append(server)
        return server


@pytest.fixture
async def servers(tls: ServerTls) -> AsyncIterator[Callable[..., Servers]]:
    made: list[Servers] = []

    def make(**options: object) -> Servers:
        made.append(Servers(IngestGate(settings(**options)), Manager(), tls))
        return made[-1]

    yield make
    for group in made:
        for server in group.started:
            await server.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------- a hand-driven publisher, over TLS or not


def client_tls(ca: certs.CertAuthority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.path))


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> float:
    """Seconds until the server hung up (EOF or reset); fails after ``timeout``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except ConnectionError:
        pass
    return time.monotonic() - started


# ---------------------------------------------------------------- real publishers: Debian's ffmpeg


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rtmps-clips")
    return {
        "3s": make_clip(folder / "a.mp4", seconds=3),
        "2s": make_clip(folder / "b.mp4", seconds=2, width=256, height=144),
    }


def decode(path: Path) -> tuple[list[str], int, set[tuple[int, int]]]:
    """Codecs, video frame count and frame sizes of an FLV file."""
    frames, sizes = 0, set()
    with av.open(str(path)) as container:
        codecs = sorted(s.codec_context.name for s in container.streams)
        for frame in container.decode(video=0):
            frames += 1
            sizes.add((frame.width, frame.height))
    return codecs, frames, sizes


@pytest.mark.media
@needs_ffmpeg
async def test_ffmpeg_publishes_over_rtmps(servers, clips, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    group = servers()
    server = await group.start()
    assert server.ssl is group.tls.context
    assert f"rtmps://127.0.0.1:{server.port}/live/{{stream}}?key=KEY" in caplog.text
    base = f"rtmps://127.0.0.1:{server.port}/live"
    (rc_a, err_a), (rc_b, err_b) = await asyncio.gather(
        push(f"{base}/demo?key={KEYS['demo']}", clips["3s"]),  # key as a query
        push(f"{base}/other/{KEYS['other']}", clips["2s"]),  # key as the last path segment
    )
    assert (rc_a, rc_b) == (0, 0), err_a + err_b
    assert sorted(group.manager.published) == [("demo", "rtmps"), ("other", "rtmps")]
    expected = {"demo": (90, (320, 180)), "other": (60, (256, 144))}
    for stream, (frames, size) in expected.items():
        path = tmp_path / f"{stream}.flv"
        path.write_bytes(group.manager.data[stream])
        assert await asyncio.to_thread(decode, path) == (["aac", "h264"], frames, {size})
    await until(lambda: not group.gate.live and server.connections == 0)
    assert group.refusals == []
    assert KEYS["demo"] not in caplog.text and KEYS["other"] not in caplog.text


@pytest.mark.media
@needs_ffmpeg
async def test_ffmpeg_wrong_key_over_rtmps_is_refused_like_rtmp(servers, clips, caplog) -> None:
    caplog.set_level(logging.INFO)
    group = servers()
    secure, plain = await group.start(), await group.start(secure=False)
    results = await asyncio.gather(
        push(f"rtmps://127.0.0.1:{secure.port}/live/demo?key=WRONG-KEY-123", clips["2s"], timeout=10),
        push(f"rtmp://127.0.0.1:{plain.port}/live/demo?key=WRONG-KEY-456", clips["2s"], timeout=10),
    )
    assert all(rc != 0 for rc, _ in results), results
    await until(lambda: secure.connections == plain.connections == 0)
    assert group.manager.published == [] and group.gate.live == {}
    reasons = sorted((r.protocol, r.stream, r.status, r.reason) for r in group.refusals)
    assert reasons == [(p, "demo", 403, "unknown stream or wrong key") for p in ("rtmp", "rtmps")]
    assert re.search(r"rtmps 127\.0\.0\.1:\d+: publish to demo refused: unknown stream or wrong key", caplog.text)
    assert "WRONG-KEY" not in caplog.text


@pytest.mark.media
@needs_ffmpeg
async def test_plain_tcp_garbage_and_silence_do_not_disturb_a_publish(servers, clips, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="packager.ingest.rtmp")
    group = servers(rtmp_limits=RtmpLimits(publish_timeout_s=1.0))
    server = await group.start()
    good = asyncio.create_task(push(f"rtmps://127.0.0.1:{server.port}/live/demo?key={KEYS['demo']}", clips["2s"]))
    await until(lambda: len(server.sessions) == 1, 10)
    garbage = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
    garbage[1].write(b"\x03" + bytes(1536))  # a plain RTMP handshake is not a ClientHello
    silent = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.3", 0))
    flood = [await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.4", 0)) for _ in range(40)]
    assert await closed_within(garbage[0], 1.0) < 0.9  # at once, long before the deadline
    assert server.slots.from_peer("127.0.0.4") <= 16  # each one over the cap pushed out an older one
    assert 0.5 < await closed_within(silent[0], 3.0) < 1.9  # the publish deadline covers the TLS handshake
    await until(lambda: server.connections == 1 and server.slots.total == 1)  # only the publisher is left
    rc, err = await good
    assert rc == 0, err
    assert group.manager.published == [("demo", "rtmps")]
    path = tmp_path / "demo.flv"
    path.write_bytes(group.manager.data["demo"])
    assert await asyncio.to_thread(decode, path) == (["aac", "h264"], 60, {(256, 144)})
    assert "TLS handshake failed" in caplog.text and "TLS handshake timeout after 1 s" in caplog.text
    assert "internal error" not in caplog.text
    for _, writer in [garbage, silent, *flood]:
        writer.close()


# ---------------------------------------------------------------- one gate, one certificate


async def test_reload_serves_the_new_certificate_while_a_session_goes_on(servers, ca, issued, tmp_path) -> None:
    group = servers()
    server = await group.start()
    first = await Client.open(server.port, client_tls(ca))
    assert first.serial() == issued.serial
    assert (await first.publish("live", f"demo?key={KEYS['demo']}"))[3]["code"] == START
    first.media(b"\x17before", 0)
    (tmp_path / "renewed").mkdir()
    renewed = ca.issue(tmp_path / "renewed")
    shutil.copyfile(renewed.cert, issued.cert)
    shutil.copyfile(renewed.key, issued.key)
    assert group.tls.reload()
    second = await Client.open(server.port, client_tls(ca))
    assert second.serial() == renewed.serial != issued.serial
    assert (await second.publish("live", f"other?key={KEYS['other']}"))[3]["code"] == START
    first.media(b"\x17after", 40)  # the open session keeps its TLS session and goes on
    first.command("FCUnpublish", 4, None, "demo")
    await until(lambda: "demo" in group.manager.data)
    assert first.serial() == issued.serial
    data = group.manager.data["demo"]
    assert data.startswith(b"FLV") and b"\x17before" in data and b"\x17after" in data
    second.writer.close()
    first.writer.close()


async def test_rtmp_and_rtmps_share_the_refusal_throttle(servers, ca) -> None:
    group = servers(refusal_limit=2)
    secure, plain = await group.start(), await group.start(secure=False)
    for _ in range(2):
        c = await Client.open(plain.port, None)
        assert (await c.publish("live", "demo?key=guess"))[3]["code"] == UNAUTHORIZED
        c.writer.close()
    c = await Client.open(secure.port, client_tls(ca))  # the right key, but the address is throttled on both ports
    info = (await c.publish("live", f"demo?key={KEYS['demo']}"))[3]
    assert (info["code"], info["description"]) == (UNAUTHORIZED, THROTTLED)
    c.writer.close()
    assert [(r.protocol, r.status) for r in group.refusals] == [("rtmp", 403), ("rtmp", 403), ("rtmps", 429)]
    assert group.manager.published == []


# ---------------------------------------------------------------- settings and ports


def test_rtmps_port_needs_tls_files(tmp_path: Path, issued: Issued) -> None:
    path = tmp_path / "packager.toml"
    path.write_text("[server]\nrtmps_port = 1936\n")
    with pytest.raises(ConfigError, match=re.escape("rtmps_port: RTMPS needs tls_cert and tls_key")):
        load(path, StreamConfig(name="demo"), [])
    with pytest.raises(ConfigError, match="rtmps_port: RTMPS needs"):
        load(None, StreamConfig(name="demo"), [], rtmps_port=1937)
    path.write_text(f'[server]\nrtmps_port = 1936\ntls_cert = "{issued.cert}"\ntls_key = "{issued.key}"\n')
    loaded = load(path, StreamConfig(name="demo"), [])
    assert (loaded.rtmps_port, loaded.security.tls) == (1936, TlsFiles(issued.cert, issued.key))
    assert load(path, StreamConfig(name="demo"), [], rtmps_port=1937).rtmps_port == 1937
    assert load(None, StreamConfig(name="demo"), []).rtmps_port == 0


def run_args() -> argparse.Namespace:
    return argparse.Namespace(host="127.0.0.1", port=0, origin_workers=0, no_serve=True)


def ingest_on(port: int, issued: Issued) -> IngestSettings:
    tls = SecuritySettings(tls=TlsFiles(issued.cert, issued.key))
    return settings(rtmp_port=0, srt_port=0, rtmps_port=port, security=tls)


async def test_listen_starts_rtmps_and_reports_a_busy_port(tls: ServerTls, issued: Issued) -> None:
    gate, manager = IngestGate(settings()), Manager()
    ports = await listen(run_args(), ingest_on(0, issued), gate, manager, tls=tls)
    assert ports.servers == []  # 0: off
    with pytest.raises(ListenError, match="RTMPS needs a TLS certificate and key"):
        await listen(run_args(), ingest_on(1936, issued), gate, manager)
    busy = await start_rtmp("127.0.0.1", 0, gate, manager)  # type: ignore[arg-type]
    try:
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{busy.port}: address already in use"):
            await listen(run_args(), ingest_on(busy.port, issued), gate, manager, tls=tls)
    finally:
        await busy.close()
    ports = await listen(run_args(), ingest_on(busy.port, issued), gate, manager, tls=tls)
    try:
        [server] = ports.servers
        assert isinstance(server, RtmpServer) and server.ssl is tls.context and server.port == busy.port
    finally:
        await ports.close()
