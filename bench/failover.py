"""Failover bench: random kills of the active encoder while hls.js and dash.js play from an origin.

Two ``packager run testsrc --standby`` nodes on one real Redis, one
``packager origin --store``, headless Chromium playing the stream with hls.js
and dash.js, and a poller fetching everything the manifests name. Every
``minutes * 60 / kills`` seconds the active node is killed (-9) at a random
point of a segment and restarted as standby. Prints the failover gap (media
seconds lost, from the log; wall seconds from the kill to the lease moving),
stalls and fatal errors per player, manifest references to missing media, and
the players' live latency and glass-to-glass latency (pixel timecode) before
and after each switch.

    python bench/failover.py [--kills 20] [--minutes 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.playback import open_player, wait_ready  # noqa: E402
from tests.e2e.test_scaleout import Poller  # noqa: E402
from tests.support.failover import Pair, media_gap_s, owner_changes  # noqa: E402
from tests.support.procs import CHROMIUM, CHROMIUM_ARGS, free_port, interrupt, wait_http, wait_segments  # noqa: E402
from tests.support.redis import RedisServer  # noqa: E402

STREAM = "/live/demo"


def _stats(players: list) -> list[dict]:  # type: ignore[type-arg]
    return [page.evaluate("window.__stats ? JSON.parse(JSON.stringify(window.__stats)) : {}") for page, _ in players]


def _latency(players: list, seconds: float) -> list[tuple[float, float]]:  # type: ignore[type-arg]
    """Each player's median (live latency, glass-to-glass latency) over ``seconds``."""
    keys = ("liveLatency", "glassToGlass")
    samples: list[dict[str, list[float]]] = [{k: [] for k in keys} for _ in players]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for n, s in enumerate(_stats(players)):
            for k in keys:
                if isinstance(s.get(k), int | float):
                    samples[n][k].append(float(s[k]))
        time.sleep(0.5)
    return [tuple(statistics.median(x[k]) if x[k] else float("nan") for k in keys) for x in samples]  # type: ignore[misc]


def _median(pairs: list[tuple[float, float]], i: int) -> float:
    values = [p[i] for p in pairs if p[i] == p[i]]  # NaN (no sample) left out
    return statistics.median(values) if values else float("nan")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _kill_once(pair: Pair, players: list, rows: list) -> None:  # type: ignore[type-arg]
    before = _latency(players, 4)
    stats_before = _stats(players)
    old = pair.active()
    assert old is not None
    time.sleep(random.uniform(0, 2.0))
    pair.nodes[old].kill()
    pair.nodes[old].wait()
    killed = time.monotonic()
    new = pair.wait_active(not_node=old, timeout_s=30)
    wall = time.monotonic() - killed
    pair.start(old)  # back as standby
    after = _latency(players, 6)
    entries = pair.log()
    change_id = owner_changes(entries)[-1][0]
    gap_s = media_gap_s(entries, change_id)
    rows.append((old, new, wall, before, after, gap_s))
    deltas = [
        f"{s.get('player', n)} +{s.get('stalls', 0) - b.get('stalls', 0)} stalls "
        f"+{s.get('stallTime', 0) - b.get('stallTime', 0):.2f} s, latency {x[0]:.2f}->{y[0]:.2f}, "
        f"glass {x[1]:.2f}->{y[1]:.2f}"
        for n, (b, s, x, y) in enumerate(zip(stats_before, _stats(players), before, after, strict=True))
    ]
    print(f"kill {len(rows)}: {old}->{new} lease {wall:.2f} s, gap {gap_s:.2f} s; " + "; ".join(deltas), flush=True)


def _roles(active: str | None) -> dict[str, str]:
    return {"a": "active", "b": "standby"} if active == "a" else {"a": "standby", "b": "active"}


def run(kills: int, minutes: float) -> None:
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="failover-bench-"))
    redis_server = RedisServer(free_port())
    redis_server.start()
    port = free_port()
    cmd = [sys.executable, "-m", "packager", "origin", "--store", redis_server.url, "--port", str(port)]
    origin = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    pair = Pair(redis_server, workdir, f"http://127.0.0.1:{port}")
    rows: list[tuple] = []  # type: ignore[type-arg]
    try:
        wait_http(f"{pair.origin}/healthz", 30, origin)
        pair.start("a")
        pair.wait_active()
        pair.start("b")
        wait_segments(f"{pair.origin}{STREAM}/270p/index.m3u8", 3, timeout_s=60)
        poller = Poller(pair.origin)
        poller.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            players = []
            for name, src in (("hls", "master.m3u8"), ("dash", "manifest.mpd")):
                _, page, pb = open_player(browser, f"{pair.origin}/players/{name}.html?src={STREAM}/{src}")
                wait_ready(page, pb, timeout_s=30)
                players.append((page, pb))
            interval_s = minutes * 60 / kills
            for _ in range(kills):
                started = time.monotonic()
                pair.wait_roles(_roles(pair.active()))
                _kill_once(pair, players, rows)
                time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
            final = _stats(players)
            browser.close()
        poller.stopped.set()
        poller.join(15)
        _report(rows, final, poller)
    finally:
        for proc in pair.nodes.values():
            interrupt(proc, 15)
        interrupt(origin, 10)
        redis_server.stop()


def _report(rows: list, final: list[dict], poller: Poller) -> None:  # type: ignore[type-arg]
    print(f"failovers: {len(rows)} kills")
    print(f"{'':28}{'median':>10}{'p95':>10}{'max':>10}")
    for label, values in (("gap, media s", [r[5] for r in rows]), ("kill -> lease moved, s", [r[2] for r in rows])):
        print(f"{label:28}{statistics.median(values):>10.3f}{_pct(values, 0.95):>10.3f}{max(values):>10.3f}")
    for n, s in enumerate(final):
        before = [r[3][n] for r in rows]
        after = [r[4][n] for r in rows]
        print(
            f"{s.get('player', n)}: stalls {s.get('stalls', 0)} ({s.get('stallTime', 0):.2f} s), "
            f"fatal errors {1 if s.get('fatal') else 0}, gap jumps {s.get('gapJumps', 0)}, "
            f"nudges {s.get('nudges', 0)}, "
            f"before/after a switch: live latency {_median(before, 0):.2f} / {_median(after, 0):.2f} s, "
            f"glass to glass {_median(before, 1):.2f} / {_median(after, 1):.2f} s"
        )
        print(f"{s.get('player', n)} stalls (media time, seconds): {s.get('stallLog', [])}")
    print(f"manifest references to missing media: {len(poller.failures)} of {poller.checked} checked")
    for phase, url, status, _ in poller.failures[:10]:
        print(f"  {status} {url} ({phase})")
    for s in final:
        print(f"{s.get('player')} errors: {s.get('errors', [])[-10:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    run(args.kills, args.minutes)


if __name__ == "__main__":
    main()
