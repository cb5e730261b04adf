"""No split brain under a forced lease race: two ``run --standby`` nodes, the lease deleted again and again.

Deleting ``lp:lease:{stream}`` makes it free for both nodes at once, the active
one included (its renewal re-claims it). Whoever wins, the log must show at
most one node's media per part position and epochs that never go back, and
every entry written after an epoch change must be the new owner's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from packager.publication import PartPublished
from packager.redisstore.codec import decode
from tests.support import redis as redis_support
from tests.support.procs import REPO, SMALL_LADDER, interrupt
from tests.support.redis import RedisServer, redis_server

pytestmark = [pytest.mark.media]
__all__ = ["redis_server"]

if not redis_support.available():
    pytest.skip(f"{redis_support.REDIS_SERVER} is not installed", allow_module_level=True)


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    for node in ("a", "b"):
        args = ["testsrc:320x180@30", "--ladder", SMALL_LADDER.split(",")[-1], "--preset", "ultrafast"]
        cmd = [sys.executable, "-m", "packager", "run", *args, "--store", redis_server.url, "--standby"]
        cmd += ["--node-id", node, "--no-serve", "--out", str(tmp_path / node)]
        with open(tmp_path / f"{node}.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    yield procs
    for proc in procs:
        interrupt(proc, 15)


def _wait_both_reporting(client: redis.Redis, timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if len(client.hgetall("lp:nodes:demo")) == 2 and client.get("lp:lease:demo"):
            return
        time.sleep(0.2)
    raise AssertionError(f"nodes never both reported: {client.hgetall('lp:nodes:demo')}")


def test_deleting_the_lease_over_and_over_never_lets_two_nodes_publish_one_part(
    redis_server: RedisServer, nodes: list[subprocess.Popen[bytes]]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    _wait_both_reporting(client)
    time.sleep(3)
    holders = set()
    for _ in range(12):
        client.delete("lp:lease:demo")  # both race to claim it
        time.sleep(1.2)
        holder = client.get("lp:lease:demo")
        if holder:
            holders.add(holder.decode())
    time.sleep(2)
    entries = client.xrange("lp:log:demo")
    positions: dict[tuple[str, int, int], set[str]] = {}
    epochs = []
    owner_by_epoch: dict[int, set[str]] = {}
    for _, fields in entries:
        if b"ep" not in fields:
            continue
        epoch, node = int(fields[b"ep"]), fields[b"nd"].decode()
        epochs.append(epoch)
        owner_by_epoch.setdefault(epoch, set()).add(node)
        if fields.get(b"t") == b"p":
            part = decode(fields)
            assert isinstance(part, PartPublished)
            positions.setdefault((part.part.track, part.part.msn, part.part.index), set()).add(node)
    assert epochs == sorted(epochs), "an entry of an older epoch came after a newer one"
    assert all(len(n) == 1 for n in owner_by_epoch.values()), owner_by_epoch  # one writer per epoch
    doubles = {k: v for k, v in positions.items() if len(v) > 1}
    assert not doubles, list(doubles.items())[:5]
    assert len(owner_by_epoch) >= 3, owner_by_epoch  # the race did move the lease
    print(f"lease race: {len(owner_by_epoch)} epochs, holders {sorted(holders)}, {len(positions)} part positions")
