"""SRT listener: reservations released on every failure path, passphrases, accept back-off, thread ownership.

Real libsrt sockets on 127.0.0.1 and Debian's ffmpeg as the caller; the
stream pipelines are replaced by a reader that drains each push on a thread
(what PyAV does with it is covered by the end-to-end ingest tests).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from packager.config import ConfigError, StreamConfig
from packager.ingest.bridge import SrtBridge
from packager.ingest.gate import IngestGate
from packager.ingest.manager import PublishResult
from packager.ingest.pipe import ByteQueue
from packager.ingest.srt import (
    SRTO_STREAMID,
    Backoff,
    SrtConnection,
    SrtServer,
    SrtUnavailable,
    _SockaddrIn,
    load_library,
)
from packager.settings import IngestSettings, StreamSettings, load

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "right-passphrase-42"
KEYS = {"enc": "enc-key-0001", "enc32": "enc-key-0032", "plain": "plain-key-01"}


def _have_srt() -> bool:
    try:
        load_library()
    except SrtUnavailable:
        return False
    out = subprocess.run([FFMPEG, "-hide_banner", "-protocols"], capture_output=True, text=True).stdout
    return any(line.strip() == "srt" for line in out.splitlines())


pytestmark = pytest.mark.skipif(not _have_srt(), reason="libsrt or ffmpeg's srt protocol is missing")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Drain:
    """Stands in for the stream pipelines: reads each push to its end on a thread, as PyAV would."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, int]] = []
        self.fail_next = False

    async def publish(
        self, stream: str, queue: ByteQueue, *, protocol: str, fmt: str, options: dict[str, str] | None = None
    ) -> PublishResult:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the pipeline could not start")

        def drain() -> int:
            total = 0
            while chunk := queue.read(65536):
                total += len(chunk)
            return total

        self.pushes.append((stream, await asyncio.to_thread(drain)))
        return PublishResult(True, "publisher disconnected")


@dataclass
class Listener:
    server: SrtServer
    gate: IngestGate
    drain: Drain
    port: int


def settings() -> IngestSettings:
    streams = {
        "enc": StreamSettings(StreamConfig(name="enc"), KEYS["enc"], passphrase=PASSPHRASE),
        "enc32": StreamSettings(StreamConfig(name="enc32"), KEYS["enc32"], passphrase=PASSPHRASE, pbkeylen=32),
        "plain": StreamSettings(StreamConfig(name="plain"), KEYS["plain"]),
    }
    return IngestSettings(streams=streams)


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    gate, drain, port = IngestGate(settings()), Drain(), free_udp_port()
    server = SrtServer("127.0.0.1", port, SrtBridge(gate, drain), idle_timeout_s=2.0)  # type: ignore[arg-type]
    await server.start()
    try:
        yield Listener(server, gate, drain, port)
    finally:
        await server.close()


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def push(port: int, stream: str, *, passphrase: str | None = None, pbkeylen: int | None = None) -> int:
    """A one-second ffmpeg push over SRT (320x180, ultrafast); its exit code."""
    url = f"srt://127.0.0.1:{port}?streamid={stream}?key={KEYS[stream]}"
    if passphrase is not None:
        url += f"&passphrase={passphrase}"
    if pbkeylen is not None:
        url += f"&pbkeylen={pbkeylen}"
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=15",
        "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(30):
        return await proc.wait()


def connect_and_vanish(port: int, stream: str) -> int:
    """A libsrt caller that completes the handshake and closes without sending a byte (runs off the loop)."""
    lib = load_library()
    lib.srt_connect.argtypes = [ctypes.c_int32, ctypes.c_void_p, ctypes.c_int]
    sock = lib.srt_create_socket()
    sid = f"{stream}?key={KEYS[stream]}".encode()
    lib.srt_setsockflag(sock, SRTO_STREAMID, sid, len(sid))
    addr = _SockaddrIn()
    addr.sin_family = socket.AF_INET
    addr.sin_port = socket.htons(port)
    addr.sin_addr[:] = socket.inet_aton("127.0.0.1")
    rc = lib.srt_connect(sock, ctypes.byref(addr), ctypes.sizeof(addr))
    lib.srt_close(sock)
    return rc


# --- reservations ------------------------------------------------------------------------------


async def test_wrong_or_missing_passphrase_is_refused_and_the_stream_stays_free(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert await push(listener.port, "enc", passphrase="wrong-passphrase-00") != 0
        assert await push(listener.port, "enc") != 0  # no passphrase at all
    assert not [r for r in caplog.records if "refused" in r.getMessage()]  # the key was right: libsrt refused
    assert listener.gate.live == {} and listener.drain.pushes == []
    # the stream id and key were accepted in the handshake both times: nothing may stay reserved
    assert await push(listener.port, "enc", passphrase=PASSPHRASE, pbkeylen=16) == 0
    await until(lambda: len(listener.drain.pushes) == 1)
    stream, nbytes = listener.drain.pushes[0]
    assert stream == "enc" and nbytes > 10_000
    await until(lambda: listener.gate.live == {})


async def test_encrypted_caller_on_a_plain_stream_does_not_lock_it(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    # the reported case: an encryption mismatch after the stream id and key were accepted
    with caplog.at_level(logging.WARNING):
        assert await push(listener.port, "plain", passphrase=PASSPHRASE) != 0
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    assert listener.gate.live == {}
    assert await push(listener.port, "plain") == 0
    await until(lambda: len(listener.drain.pushes) == 1)
    assert listener.drain.pushes[0][0] == "plain" and listener.drain.pushes[0][1] > 10_000


async def test_a_caller_that_connects_and_vanishes_releases_the_stream(listener: Listener) -> None:
    assert await asyncio.to_thread(connect_and_vanish, listener.port, "plain") == 0
    await until(lambda: listener.drain.pushes == [("plain", 0)])
    await until(lambda: listener.gate.live == {} and not listener.server._conns)
    assert await push(listener.port, "plain") == 0
    await until(lambda: len(listener.drain.pushes) == 2)


async def test_a_failing_publish_releases_the_stream(listener: Listener) -> None:
    listener.drain.fail_next = True
    await push(listener.port, "plain")
    await until(lambda: listener.gate.live == {} and not listener.server._conns)
    assert await push(listener.port, "plain") == 0
    await until(lambda: [s for s, _ in listener.drain.pushes] == ["plain"])


async def test_a_key_shorter_than_the_streams_pbkeylen_is_closed(listener: Listener) -> None:
    await push(listener.port, "enc32", passphrase=PASSPHRASE, pbkeylen=16)
    await until(lambda: listener.gate.live == {} and not listener.server._conns)
    assert listener.drain.pushes == []
    assert await push(listener.port, "enc32", passphrase=PASSPHRASE, pbkeylen=32) == 0
    await until(lambda: len(listener.drain.pushes) == 1)
    assert listener.drain.pushes[0][0] == "enc32" and listener.drain.pushes[0][1] > 10_000


# --- accept back-off ---------------------------------------------------------------------------


class FakeTime:
    """A clock and a sleep the accept thread drives: each pause advances the clock instead of waiting."""

    def __init__(self, horizon_s: float) -> None:
        self.now = 0.0
        self.horizon_s = horizon_s
        self.pauses: list[float] = []
        self.reached = threading.Event()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.now >= self.horizon_s:
            self.reached.set()
            self.reached.wait(0.01)  # past the horizon: stay cheap until the test closes the server
            return
        self.pauses.append(seconds)
        self.now += seconds


def test_backoff_doubles_and_is_bounded() -> None:
    b = Backoff(initial_s=0.05, max_s=5.0)
    assert [b.delay_s(n) for n in (1, 2, 3, 4)] == [0.05, 0.1, 0.2, 0.4]
    assert b.delay_s(8) == 5.0 and b.delay_s(10_000) == 5.0


async def test_failing_accepts_back_off_and_log_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime(horizon_s=120.0)
    server = SrtServer(
        "127.0.0.1", free_udp_port(), SrtBridge(IngestGate(settings()), Drain()),  # type: ignore[arg-type]
        backoff=Backoff(0.05, 5.0), sleep=fake.sleep, clock=fake.clock,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="packager.ingest.srt"):
        await server.start()
        server.lib.srt_close(server.listener)  # broken behind the server's back: every accept fails at once
        try:
            assert await asyncio.to_thread(fake.reached.wait, 10)
        finally:
            await server.close()
    # 120 simulated seconds: 7 quick doublings up to the 5 s cap, then one attempt per 5 s
    assert fake.pauses[:8] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    assert set(fake.pauses[7:]) == {5.0} and 25 <= len(fake.pauses) <= 32
    lines = [r.getMessage() for r in caplog.records if "accept failed" in r.getMessage()]
    assert 6 <= len(lines) <= 14  # about one per 10 s, not one per failure
    assert any("similar in the last" in line for line in lines)


# --- thread ownership --------------------------------------------------------------------------


class OwnerSet(set):  # type: ignore[type-arg]
    """A set that remembers which threads changed it."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[int] = set()

    def add(self, item: object) -> None:
        self.writers.add(threading.get_ident())
        super().add(item)

    def discard(self, item: object) -> None:
        self.writers.add(threading.get_ident())
        super().discard(item)


async def test_the_connection_set_is_only_changed_on_the_loop(listener: Listener) -> None:
    owners = OwnerSet()
    listener.server._conns = owners
    assert await push(listener.port, "plain") == 0
    await until(lambda: len(listener.drain.pushes) == 1 and not owners)
    assert owners.writers == {threading.get_ident()}


class CountingLib:
    """The real libsrt, counting ``srt_close`` calls."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self.closes = 0

    def srt_close(self, sock: int) -> int:
        with self._lock:
            self.closes += 1
        return self._lib.srt_close(sock)

    def __getattr__(self, name: str) -> object:
        return getattr(self._lib, name)


async def test_close_from_both_sides_closes_the_socket_once() -> None:
    lib = load_library()
    lib.srt_startup()
    loop = asyncio.get_running_loop()
    for _ in range(50):
        counting = CountingLib(lib)
        conn = SrtConnection(counting, loop, lib.srt_create_socket(), "srt:127.0.0.1", 1.0)  # type: ignore[arg-type]
        start = threading.Barrier(8)

        def close(c: SrtConnection = conn, b: threading.Barrier = start) -> None:
            b.wait()
            c.close()

        threads = [threading.Thread(target=close) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert counting.closes == 1 and conn.closed
    lib.srt_cleanup()


EXIT_SCRIPT = """
import asyncio
from packager.ingest.bridge import SrtBridge
from packager.ingest.gate import IngestGate
from packager.ingest.srt import SrtServer
from tests.test_srt import Drain, connect_and_vanish, free_udp_port, settings

async def one():
    port = free_udp_port()
    server = SrtServer("127.0.0.1", port, SrtBridge(IngestGate(settings()), Drain()))
    await server.start()
    await asyncio.to_thread(connect_and_vanish, port, "plain")
    await server.close()

for _ in range(4):
    asyncio.run(one())
"""


def test_the_process_exits_cleanly_after_listeners_closed() -> None:
    # libsrt's garbage-collector thread, left running, crashed the process in exit about half the time
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], cwd=REPO, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr[-800:]


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ('passphrase = "short"', r"\[streams.s\].passphrase must be 10-79"),
        (f'passphrase = "{"x" * 80}"', r"\[streams.s\].passphrase must be 10-79"),
        ("passphrase = 1234567890", r"\[streams.s\].passphrase must be 10-79"),
        (f'passphrase = "{PASSPHRASE}"\npbkeylen = 20', r"\[streams.s\].pbkeylen must be 16, 24 or 32"),
        (f'passphrase = "{PASSPHRASE}"\npbkeylen = true', r"\[streams.s\].pbkeylen must be 16, 24 or 32"),
        ("pbkeylen = 32", r"\[streams.s\].pbkeylen needs a passphrase"),
    ],
)
def test_bad_passphrase_settings_name_the_field(tmp_path, fields: str, needle: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'[streams.s]\nkey = "stream-key-1"\n{fields}\n')
    with pytest.raises(ConfigError, match=needle):
        load(path, StreamConfig(name="demo"), [])


def test_passphrase_settings_load_and_stay_out_of_repr(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'[streams.s]\nkey = "stream-key-1"\npassphrase = "{PASSPHRASE}"\npbkeylen = 24\n')
    stream = load(path, StreamConfig(name="demo"), []).streams["s"]
    assert (stream.passphrase, stream.pbkeylen) == (PASSPHRASE, 24)
    assert PASSPHRASE not in repr(stream)
    plain = load(None, StreamConfig(name="demo"), ["p=stream-key-1"]).streams["p"]
    assert (plain.passphrase, plain.pbkeylen) == (None, 16)
