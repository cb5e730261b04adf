"""Bench support: the scale-out topology on one machine (Redis, one encoder, N origin workers).

``cluster(...)`` starts a real redis-server, ``packager run SOURCE --store ...
--no-serve`` (the encoder) and ``packager origin --store ... --workers N`` on
one port, waits until the origin serves the stream, and yields a
:class:`Cluster` with the origin's base URL and the process ids whose CPU the
benches count (the origin workers, apart from the encoder and Redis).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.procs import free_port, get, interrupt, wait_http  # noqa: E402
from tests.support.redis import RedisServer  # noqa: E402


@dataclass(frozen=True)
class Cluster:
    base: str  # the origin workers' shared http://127.0.0.1:PORT
    origin_pid: int  # the supervisor; its children are the workers
    encoder_pid: int
    redis_url: str

    def worker_pids(self) -> list[int]:
        return descendants(self.origin_pid) or [self.origin_pid]


def descendants(pid: int) -> list[int]:
    """Every live process whose parent chain reaches ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found += kids
        frontier += kids
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def metric_max(base: str, name: str, samples: int = 6) -> float:
    """The largest value of an unlabelled metric over several scrapes (each may land on another worker)."""
    best = 0.0
    for _ in range(samples):
        text = get(f"{base}/metrics")[2].decode()
        m = re.search(rf"^{name} (\S+)", text, re.M)
        if m:
            best = max(best, float(m.group(1)))
    return best


@contextlib.contextmanager
def cluster(source_args: list[str], tmp: Path, *, workers: int = 2, ready_path: str) -> Iterator[Cluster]:
    redis = RedisServer()
    redis.start()
    url = redis.url
    port = free_port()
    enc_log = open(tmp / "encoder.log", "wb")  # noqa: SIM115
    org_log = open(tmp / "origin.log", "wb")  # noqa: SIM115
    run = ["run", *source_args, "--store", url, "--no-serve", "--out", str(tmp / "enc")]
    encoder = subprocess.Popen(
        [sys.executable, "-m", "packager", *run],
        cwd=REPO,
        stdout=enc_log,
        stderr=subprocess.STDOUT,
    )
    origin = subprocess.Popen(
        [sys.executable, "-m", "packager", "origin", "--store", url, "--workers", str(workers), "--port", str(port)],
        cwd=REPO,
        stdout=org_log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + ready_path, 90, origin)
        yield Cluster(base, origin.pid, encoder.pid, url)
    finally:
        interrupt(origin)
        interrupt(encoder)
        enc_log.close()
        org_log.close()
        redis.close()
