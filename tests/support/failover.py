"""Two redundant ``run --standby`` encoder nodes on one Redis, and what tests and benches ask of them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from packager.publication import OwnerChanged
from packager.redisstore.codec import decode
from tests.support.procs import REPO, SMALL_LADDER
from tests.support.redis import RedisServer


@dataclass
class Pair:
    redis: RedisServer
    workdir: Path
    origin: str
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, node: str) -> None:
        args = ["testsrc:480x270@30", "--ladder", SMALL_LADDER, "--preset", "ultrafast", "--window", "30"]
        cmd = [sys.executable, "-m", "packager", "run", *args, "--store", self.redis.url, "--standby"]
        cmd += ["--node-id", node, "--no-serve", "--out", str(self.workdir / node)]
        with open(self.workdir / f"{node}.log", "ab") as log:
            self.nodes[node] = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def active(self) -> str | None:
        holder = self.client().get("lp:lease:demo")
        return holder.decode() if holder else None

    def roles(self) -> dict[str, str]:
        return {k.decode(): json.loads(v)["role"] for k, v in self.client().hgetall("lp:nodes:demo").items()}

    def wait_roles(self, want: dict[str, str], timeout_s: float = 30) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.roles() == want:
                return
            time.sleep(0.2)
        raise AssertionError(f"roles {self.roles()} != {want}; " + self.tail())

    def wait_active(self, not_node: str | None = None, timeout_s: float = 15) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            node = self.active()
            if node is not None and node != not_node:
                return node
            time.sleep(0.05)
        raise AssertionError("no node took the stream over; " + self.tail())

    def log(self) -> list[tuple[str, dict[bytes, bytes]]]:
        return [(i.decode(), f) for i, f in self.client().xrange("lp:log:demo")]

    def tail(self) -> str:
        return " | ".join(f"{n}: " + (self.workdir / f"{n}.log").read_text(errors="replace")[-600:] for n in self.nodes)


def owner_changes(entries: list[tuple[str, dict[bytes, bytes]]]) -> list[tuple[str, OwnerChanged]]:
    return [(i, e) for i, f in entries if f.get(b"t") == b"f" and isinstance(e := decode(f), OwnerChanged)]


def media_gap_s(entries: list[tuple[str, dict[bytes, bytes]]], change_id: str) -> float:
    """Media seconds between the end of the old node's last video part and the start of the new node's first."""
    at = [i for i, _ in entries].index(change_id)
    parts = [(n, decode(f)) for n, (_, f) in enumerate(entries) if f.get(b"t") == b"p" and f.get(b"tr") == b"270p"]
    before = [e.part for n, e in parts if n < at]
    after = [e.part for n, e in parts if n > at]
    assert before and after
    return (after[0].start - before[-1].end) / 90_000
