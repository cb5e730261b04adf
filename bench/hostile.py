"""Benchmark: replay every hostile-client attack class against a live `packager run` and see who gets hurt.

Starts ``packager run`` with a small ladder and a TOML config (stream keys,
an SRT passphrase, limits), pushes one real stream (``real``, ffmpeg over
RTMP, looped clip) and watches it the whole time: every part it publishes,
how late it became servable, and whether any part is missing. Then, one at a
time and bounded in count and time (loopback only), it replays each attack
and, while the attack is still under way, starts a fresh RTMP publisher
(``probeN``) and times how long it takes until its first part is listed.

Prints one row per attack: how many attempts, 5xx answers seen, whether the
packager crashed, RSS before / peak / after, log lines written, whether the
real stream kept publishing every part on time (no missing part, none later
than ``--late-s`` after its end), and the new publisher's start time.

    .venv/bin/python bench/hostile.py [--only NAME,...] [--late-s 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fixtures.media import make_clip  # noqa: E402
from tests.support.procs import free_port, packager  # noqa: E402

LADDER = "480x270@500k,320x180@250k"
KEY = "bench-key-0123456789"
SRT_PASSPHRASE = "bench-passphrase-0123"
PROBES = 20
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


# --------------------------------------------------------------------------- the packager under attack


def config_text(srt: bool) -> str:
    streams = ["real", "victim", "big", *(f"stall{i}" for i in range(16)), *(f"probe{i}" for i in range(PROBES))]
    lines = [
        "[server]",
        "reconnect_window = 2",
        "keep = 5",
        "max_publishers = 40",
        "max_ingest_kbps = 40000",
        "",
    ]
    for name in streams:
        lines += [f"[streams.{name}]", f'key = "{KEY}"']
        if name == "victim" and srt:
            lines.append(f'passphrase = "{SRT_PASSPHRASE}"')
        if name == "big":
            lines.append("max_kbps = 4000")
        if name == "real":  # its ~1.1 Mb/s clip needs more than the default share (40000 / 40 kb/s)
            lines.append("max_kbps = 3000")
        lines.append("")
    return "\n".join(lines)


def rss_mib(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fetch(url: str, timeout: float = 5.0, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


# --------------------------------------------------------------------------- watching the real stream

PART_RE = re.compile(r'#EXT-X-PART:DURATION=([0-9.]+),URI="(\d+)\.(\d+)\.m4s"')


def parse_parts(text: str) -> list[tuple[int, int, float]]:
    """(msn, part, end as UTC seconds) for every part a media playlist lists."""
    out: list[tuple[int, int, float]] = []
    pdt = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        m = PART_RE.match(line)
        if m and pdt is not None:
            pdt += float(m.group(1))
            out.append((int(m.group(2)), int(m.group(3)), pdt))
    return out


@dataclass
class Watch:
    """What the monitor saw of the real stream and the process, between two marks."""

    rss: list[float] = field(default_factory=list)
    parts: dict[tuple[int, int], float] = field(default_factory=dict)  # -> lateness s
    gaps: int = 0


class Monitor(threading.Thread):
    """Polls the real stream's playlist (every 0.2 s, faster than a part leaves it) and the process RSS."""

    def __init__(self, base: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}/live/real/180p/index.m3u8"
        self.pid = pid
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.watch = Watch()
        self.seen: set[tuple[int, int]] = set()

    def per_segment(self) -> int:
        """Parts per segment, from the highest part index seen."""
        with self.lock:
            return 1 + max((i for _, i in self.seen), default=0)

    def mark(self) -> Watch:
        with self.lock:
            done, self.watch = self.watch, Watch()
        return done

    def run(self) -> None:
        while not self.stop.wait(0.2):
            status, body = fetch(self.url, timeout=2)
            now = time.time()
            with self.lock:
                self.watch.rss.append(rss_mib(self.pid))
                if status != 200:
                    continue
                text = body.decode(errors="replace")
                self.watch.gaps += text.count("#EXT-X-GAP")
                for msn, idx, end in parse_parts(text):
                    if (msn, idx) not in self.seen:
                        self.seen.add((msn, idx))
                        self.watch.parts[(msn, idx)] = now - end


def missing_parts(parts: dict[tuple[int, int], float], per_segment: int) -> int:
    """Part positions between the first and last seen in a window that never appeared."""
    if not parts:
        return -1
    flat = sorted(m * per_segment + i for m, i in parts)
    return (flat[-1] - flat[0] + 1) - len(flat)


# --------------------------------------------------------------------------- publishers


def rtmp_push(clip: Path, port: int, stream: str) -> subprocess.Popen:
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{stream}?key={KEY}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_proc(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def first_part_s(base: str, stream: str, started: float, timeout_s: float = 15.0) -> float | None:
    url = f"{base}/live/{stream}/180p/index.m3u8"
    while time.monotonic() - started < timeout_s:
        status, body = fetch(url, timeout=2)
        if status == 200 and b"#EXT-X-PART:" in body:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


class Probes:
    """Starts a fresh publisher per attack and times its first part."""

    def __init__(self, base: str, clip: Path, rtmp_port: int) -> None:
        self.base, self.clip, self.rtmp_port = base, clip, rtmp_port
        self.next = 0

    def start_one(self) -> float | None:
        name = f"probe{self.next % PROBES}"
        self.next += 1
        started = time.monotonic()
        proc = rtmp_push(self.clip, self.rtmp_port, name)
        try:
            return first_part_s(self.base, name, started)
        finally:
            stop_proc(proc)


# --------------------------------------------------------------------------- attacks


@dataclass
class Target:
    base: str
    host: str
    http_port: int
    rtmp_port: int
    srt_port: int
    tmp: Path
    clip: Path
    big_clip: Path
    huge_clip: Path
    log_path: Path


@dataclass
class Tally:
    count: int = 0
    status_5xx: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def saw(self, status: int) -> None:
        self.count += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500:
            self.status_5xx += 1

    def summary(self) -> str:
        answers = " ".join(f"{k or 'none'}x{v}" for k, v in sorted(self.statuses.items()))
        return "; ".join([*([answers] if answers else []), *self.notes])


ATTACKER = ("127.0.0.2", 0)  # floods come from their own address: the refusal throttle is per address


async def http_raw(
    host: str, port: int, payload: bytes, *, hold_s: float = 0.0, read_s: float = 5.0, local_addr=None
) -> int:
    """Send raw bytes (from ``local_addr``), optionally hold the connection, return the HTTP status (0: none)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local_addr), 5)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(payload)
        await writer.drain()
        if hold_s:
            await asyncio.sleep(hold_s)
        line = await asyncio.wait_for(reader.readline(), read_s)
        m = re.match(rb"HTTP/1\.[01] (\d{3})", line)
        return int(m.group(1)) if m else 0
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return 0
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def put_head(stream: str, *, key: str = KEY, chunked: bool = True) -> bytes:
    te = "Transfer-Encoding: chunked\r\n" if chunked else ""
    return f"PUT /ingest/{stream}?key={key} HTTP/1.1\r\nHost: x\r\n{te}\r\n".encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


DEMUXER_BODIES = [
    b"ffconcat version 1.0\nfile /etc/passwd\nfile secret.mp4\n",
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\n",
    b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:///etc/passwd\n",
    b"concat:/etc/passwd|/etc/hosts",
    b"GIF89a" + bytes(200),
]


async def attack_push_demuxer(t: Target, tally: Tally) -> None:
    for i in range(30):
        body = DEMUXER_BODIES[i % len(DEMUXER_BODIES)]
        tally.saw(await http_raw(t.host, t.http_port, put_head("victim") + chunk(body) + b"0\r\n\r\n"))


async def attack_push_stall(t: Target, tally: Tally, during: Callable[[], Awaitable[None]]) -> None:
    """16 keyed pushes that send only headers, held while a new publisher starts."""
    holds = [asyncio.create_task(http_raw(t.host, t.http_port, put_head(f"stall{i}"), read_s=30)) for i in range(16)]
    await asyncio.sleep(0.5)
    await during()
    for status in await asyncio.gather(*holds):
        tally.saw(status)


async def attack_push_malformed(t: Target, tally: Tally) -> None:
    bad = [
        b"zz\r\nabc\r\n",
        b"ffffffffffffffffffff\r\n",
        b"5\r\nabc\r\n0\r\n\r\n",
        b"3;" + b"x" * 9000 + b"\r\nabc\r\n",
    ]
    for i in range(20):
        tally.saw(await http_raw(t.host, t.http_port, put_head("victim") + bytes([0x47]) * 188 + bad[i % len(bad)]))


async def attack_push_huge(t: Target, tally: Tally) -> None:
    data = t.huge_clip.read_bytes()
    for _ in range(3):
        tally.saw(await http_raw(t.host, t.http_port, put_head("victim", chunked=False).replace(
            b"\r\n\r\n", f"\r\nContent-Length: {len(data)}\r\n\r\n".encode()) + data, read_s=20))  # fmt: skip


async def attack_srt_handshake(t: Target, tally: Tally) -> None:
    """Callers with a wrong or no passphrase, then an HTTP push to the same stream must not get 409."""
    if not t.srt_port:
        tally.notes.append("SRT off")
        return
    streamid = urllib.parse.quote(f"#!::r=victim,s={KEY},m=publish", safe="")  # ffmpeg drops a raw '#'

    for i in range(6):
        opt = "&passphrase=wrong-passphrase-0000" if i % 2 == 0 else ""
        url = f"srt://127.0.0.1:{t.srt_port}?streamid={streamid}{opt}&connect_timeout=2000"
        proc = await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "quiet", "-re", "-t", "2", "-i", str(t.clip), "-c", "copy",
            "-f", "mpegts", url, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        tally.count += 1
    status = await http_raw(t.host, t.http_port, put_head("victim") + chunk(t.clip.read_bytes()[:1000]), read_s=15)
    tally.notes.append(f"HTTP push after: {status}")
    if status == 409:
        tally.notes.append("stream still reserved")


RTMP_C1 = bytes(1536)


async def rtmp_handshake(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.write(b"\x03" + RTMP_C1)
        s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 1536 * 2), 5)
        writer.write(s0s1s2[1:1537])
        await writer.drain()
        return reader, writer
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return None


async def rtmp_big_message(host: str, port: int, hold_s: float) -> bool:
    """Handshake, set a 64 KiB chunk size, announce an 8 MiB command message and send 7 MiB of it."""
    conn = await rtmp_handshake(host, port)
    if conn is None:
        return False
    _, writer = conn
    chunk_size = 64 * 1024
    try:
        writer.write(bytes([0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0]) + chunk_size.to_bytes(4, "big"))
        size = 8 * 1024 * 1024
        writer.write(bytes([0x03, 0, 0, 0]) + size.to_bytes(3, "big") + bytes([0x14, 0, 0, 0, 0]))
        for i in range(7 * 16):
            writer.write((b"\xc3" if i else b"") + bytes(chunk_size))  # type-3 header before each later chunk
            await asyncio.wait_for(writer.drain(), 2)
        await asyncio.sleep(hold_s)
        return True
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def attack_rtmp_memory(t: Target, tally: Tally) -> None:
    results = await asyncio.gather(*(rtmp_big_message(t.host, t.rtmp_port, 2.0) for _ in range(64)))
    tally.count += len(results)
    tally.notes.append(f"{sum(not r for r in results)} cut off early")


async def attack_rtmp_slots(t: Target, tally: Tally, during: Callable[[], Awaitable[None]]) -> None:
    conns = []
    for _ in range(64):
        with contextlib.suppress(OSError, TimeoutError):
            conns.append(await asyncio.wait_for(asyncio.open_connection(t.host, t.rtmp_port), 2))
    tally.count += 64
    await during()
    await asyncio.sleep(1)
    closed = sum(1 for r, _ in conns if r.at_eof() or r.exception() is not None)
    for _, w in conns:
        w.close()
    tally.notes.append(f"{len(conns)} opened, {closed} closed by server")


async def attack_wrong_key_flood(t: Target, tally: Tally) -> None:
    """11,000 wrong-key PUTs, 50 at a time, at most 40 s."""
    deadline = time.monotonic() + 40

    async def one(i: int) -> None:
        head = put_head("victim", key=f"wrong-{i:08d}", chunked=False)
        empty = head.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")
        tally.saw(await http_raw(t.host, t.http_port, empty, local_addr=ATTACKER))

    sem = asyncio.Semaphore(50)

    async def bounded(i: int) -> None:
        if time.monotonic() > deadline:
            return
        async with sem:
            await one(i)

    await asyncio.gather(*(bounded(i) for i in range(11_000)))
    right = put_head("victim", chunked=False).replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")
    status = await http_raw(t.host, t.http_port, right, local_addr=ATTACKER)
    tally.notes.append(f"the right key from the flooding address then: {status}")


async def attack_ingest_over_limit(t: Target, tally: Tally) -> None:
    """A push far over its stream's limit (4 Mb/s configured): it alone is cut; the real stream goes on."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(t.big_clip),
        "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{t.rtmp_port}/live/big?key={KEY}", stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), 15)
        tally.notes.append(f"over-limit push ended by the server (rc {proc.returncode})")
    except TimeoutError:
        tally.notes.append("over-limit push still running after 15 s")
        proc.kill()
        await proc.wait()
    tally.count += 1


async def attack_range(t: Target, tally: Tally) -> None:
    url_path = "/live/real/180p/init.mp4"
    size = len(fetch(t.base + url_path)[1])
    heads = ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "1" * 5000, "bytes=" + ",".join(["0-"] * 8),
             "bytes=" + ",".join(f"{i}-{size}" for i in range(8)), "bytes=-" + "9" * 30, "bytes=5-1,x-y"]  # fmt: skip
    worst = 0.0
    for i in range(120):
        status, body = await asyncio.to_thread(fetch, t.base + url_path, 5.0, Range=heads[i % len(heads)])
        tally.saw(status)
        worst = max(worst, len(body) / max(size, 1))
    tally.notes.append(f"largest answer {worst:.2f}x the file")


async def attack_bad_names(t: Target, tally: Tally) -> None:
    for i in range(40):
        name = "leaked-key-SECRET1234" if i % 2 == 0 else "victim%0A"
        tally.saw(await http_raw(t.host, t.http_port, put_head(name) + b"0\r\n\r\n", local_addr=ATTACKER))
    leaked = "leaked-key-SECRET1234" in t.log_path.read_text(errors="replace")
    tally.notes.append("key in log!" if leaked else "key never logged")


async def attack_players_files(t: Target, tally: Tally) -> None:
    served = []
    for name in ("package.json", "package-lock.json", "libs.json", "README.md", "node_modules/.package-lock.json"):
        status, _ = await asyncio.to_thread(fetch, f"{t.base}/players/{name}")
        tally.saw(status)
        if status == 200:
            served.append(name)
    tally.notes.append(f"served: {', '.join(served)}" if served else "none served")


async def attack_malformed_http(t: Target, tally: Tally) -> None:
    bad = [b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"\x16\x03\x01\x02\x00\x01" + bytes(60),
           b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
           b"G\x00T / HTTP/1.1\r\n\r\n"]  # fmt: skip
    for i in range(300):
        tally.saw(await http_raw(t.host, t.http_port, bad[i % len(bad)], read_s=2))


async def attack_folder_mode(t: Target, tally: Tally) -> None:
    """A separate ``packager origin --root`` on a folder with a symlink loop and a link out of the root."""
    root = t.tmp / "folder-root"
    (root / "s1").mkdir(parents=True, exist_ok=True)
    for name, target in (("loop", root / "loop"), ("s1/loop", root / "s1/loop"), ("out", Path("/etc"))):
        with contextlib.suppress(FileExistsError):
            (root / name).symlink_to(target)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "packager", "origin", "--root", str(root), "--port", str(port)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(50):
            if (await asyncio.to_thread(fetch, base + "/healthz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        for path in ("/live/loop/master.m3u8", "/live/s1/loop/x.m4s", "/live/out/passwd", "/api/streams"):
            status, body = await asyncio.to_thread(fetch, base + path)
            tally.saw(status)
            if path == "/api/streams" and (b"passwd" in body or b'"out"' in body):
                tally.notes.append("lists outside the root!")
        if proc.poll() is not None:
            tally.notes.append("folder origin crashed")
    finally:
        stop_proc(proc)


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Row:
    name: str
    count: int
    status_5xx: int
    crashed: bool
    rss: tuple[float, float, float]
    log_lines: int
    missing: int
    worst_late_s: float
    start_s: float | None
    notes: str


ATTACKS: dict[str, Callable[..., Awaitable[None]]] = {
    "push-demuxer": attack_push_demuxer,
    "push-stall": attack_push_stall,
    "push-malformed": attack_push_malformed,
    "push-huge-input": attack_push_huge,
    "srt-handshake": attack_srt_handshake,
    "rtmp-memory": attack_rtmp_memory,
    "rtmp-slots": attack_rtmp_slots,
    "wrong-key-flood": attack_wrong_key_flood,
    "ingest-over-limit": attack_ingest_over_limit,
    "range": attack_range,
    "bad-names": attack_bad_names,
    "players-files": attack_players_files,
    "malformed-http": attack_malformed_http,
    "folder-mode": attack_folder_mode,
}
HOLDS_CONNECTIONS = {"push-stall", "rtmp-slots"}  # the new publisher starts while these hold their connections


def log_lines(path: Path) -> int:
    with contextlib.suppress(OSError), path.open("rb") as f:
        return sum(1 for _ in f)
    return 0


def run_attack(name: str, t: Target, monitor: Monitor, probes: Probes, proc: subprocess.Popen) -> Row:
    tally = Tally()
    before_lines = log_lines(t.log_path)
    monitor.mark()
    start: list[float | None] = []

    async def during() -> None:
        start.append(await asyncio.to_thread(probes.start_one))

    fn = ATTACKS[name]
    asyncio.run(fn(t, tally, during) if name in HOLDS_CONNECTIONS else fn(t, tally))
    if not start:
        start.append(probes.start_one())
    time.sleep(1.0)  # let the real stream show any part the attack delayed
    watch = monitor.mark()
    rss = watch.rss or [0.0]
    late = max(watch.parts.values(), default=float("nan"))
    missing = missing_parts(watch.parts, monitor.per_segment()) + watch.gaps
    return Row(
        name, tally.count, tally.status_5xx, proc.poll() is not None, (rss[0], max(rss), rss[-1]),
        log_lines(t.log_path) - before_lines, missing, late, start[0], tally.summary(),
    )  # fmt: skip


def print_table(rows: list[Row], late_s: float) -> None:
    head = (f"{'attack':18} {'count':>6} {'5xx':>4} {'crash':>5} {'RSS MiB before/peak/after':>26} {'log':>5} "
            f"{'real stream on time':>22} {'new pub s':>9}  notes")  # fmt: skip
    print(head)
    for r in rows:
        ok = r.missing == 0 and r.worst_late_s <= late_s
        on_time = f"{'yes' if ok else 'NO'} (miss {r.missing}, late {r.worst_late_s:.2f})"
        start = f"{r.start_s:.2f}" if r.start_s is not None else "never"
        rss = f"{r.rss[0]:.0f}/{r.rss[1]:.0f}/{r.rss[2]:.0f}"
        print(f"{r.name:18} {r.count:6d} {r.status_5xx:4d} {'yes' if r.crashed else 'no':>5} {rss:>26} "
              f"{r.log_lines:5d} {on_time:>22} {start:>9}  {r.notes}")  # fmt: skip


def make_media(tmp: Path) -> tuple[Path, Path, Path]:
    clip = make_clip(tmp / "clip.mp4", seconds=6, width=480, height=270)
    big = tmp / "big.mp4"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "nullsrc=s=640x360:r=30,geq=random(1)*255:128:128", "-t", "6", "-c:v", "libx264", "-preset",
                    "ultrafast", "-qp", "0", "-g", "30", str(big)], check=True)  # fmt: skip
    huge = tmp / "huge.ts"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "color=s=7680x4320:r=30",
                    "-frames:v", "3", "-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts", str(huge)],
                   check=True)  # fmt: skip
    return clip, big, huge


def srt_available() -> bool:
    try:
        from packager.ingest.srt import load_library

        load_library()
    except Exception:
        return False
    return b"srt" in subprocess.run([FFMPEG, "-hide_banner", "-protocols"], capture_output=True).stdout


@contextlib.contextmanager
def target(tmp: Path) -> Iterator[tuple[Target, subprocess.Popen]]:
    clip, big, huge = make_media(tmp)
    srt = srt_available()
    cfg = tmp / "hostile.toml"
    cfg.write_text(config_text(srt))
    rtmp, srt_port = free_port(), (free_port() if srt else 0)
    args = ["--config", str(cfg), "--rtmp-port", str(rtmp), "--srt-port", str(srt_port), "--ladder", LADDER,
            "--preset", "ultrafast"]  # fmt: skip
    port = free_port()
    with packager(args, port=port, out=tmp / "out", ready_path="/healthz") as (proc, base):
        t = Target(base, "127.0.0.1", port, rtmp, srt_port, tmp, clip, big, huge, tmp / f"packager-{port}.log")
        yield t, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated attack names (default: all)")
    ap.add_argument("--late-s", type=float, default=1.5, help="a part later than this after its end is late")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ATTACKS)
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp_s, target(Path(tmp_s)) as (t, proc):
        real = rtmp_push(t.clip, t.rtmp_port, "real")
        try:
            if first_part_s(t.base, "real", time.monotonic(), 30) is None:
                raise SystemExit("the real stream never published")
            monitor = Monitor(t.base, proc.pid)
            monitor.start()
            time.sleep(3)
            probes = Probes(t.base, t.clip, t.rtmp_port)
            rows = [run_attack(n, t, monitor, probes, proc) for n in names]
            monitor.stop.set()
        finally:
            stop_proc(real)
    print(f"machine: {os.cpu_count()} cores; packager run, ladder {LADDER}, ultrafast; one real RTMP stream")
    print_table(rows, args.late_s)


if __name__ == "__main__":
    main()
