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
    base: str  # the first origin's http://127.0.0.1:PORT (its workers share the port)
    origin_pids: tuple[int, ...]  # one per origin command; a supervisor's children are its workers
    encoder_pid: int
    redis_url: str
    ports: tuple[int, ...]  # one per origin command

    def worker_pids(self) -> list[int]:
        return [w for pid in self.origin_pids for w in (descendants(pid) or [pid])]


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
def cluster(
    source_args: list[str], tmp: Path, *, workers: int = 2, origins: int = 1, ready_path: str
) -> Iterator[Cluster]:
    """Redis, the encoder, and ``origins`` origin commands (each on its own port, ``workers`` processes each)."""
    redis = RedisServer()
    redis.start()
    url = redis.url
    logs = [open(tmp / name, "wb") for name in ("encoder.log", *(f"origin-{i}.log" for i in range(origins)))]  # noqa: SIM115
    run = ["run", *source_args, "--store", url, "--no-serve", "--out", str(tmp / "enc")]
    encoder = subprocess.Popen(
        [sys.executable, "-m", "packager", *run], cwd=REPO, stdout=logs[0], stderr=subprocess.STDOUT
    )
    ports = tuple(free_port() for _ in range(origins))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "packager", "origin", "--store", url, "--workers", str(workers), "--port", str(p)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for p, log in zip(ports, logs[1:], strict=True)
    ]
    try:
        for p, proc in zip(ports, procs, strict=True):
            wait_http(f"http://127.0.0.1:{p}{ready_path}", 90, proc)
        yield Cluster(f"http://127.0.0.1:{ports[0]}", tuple(p.pid for p in procs), encoder.pid, url, ports)
    finally:
        for proc in procs:
            interrupt(proc)
        interrupt(encoder)
        for log in logs:
            log.close()
        redis.close()
