"""Benchmark: live latency seen by hls.js and dash.js in headless Chromium.

Runs ``packager run`` (test source, default ladder unless ``--ladder``) and
plays it with each player page for ``--seconds`` (after a warm-up), sampling
the player's own live latency and the glass-to-glass latency decoded from the
test source's pixel timecode. Prints median and p95 of both per player.
``--store redis``: one encoder publishing into a real Redis and two
``packager origin --store`` processes behind an nginx round-robin; the players
play through nginx (``both`` runs the single process first, then this).

    .venv/bin/python bench/latency.py [--store memory|redis|both] [--seconds 60] [--players hls,dash]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cluster import cluster  # noqa: E402
from tests.e2e.playback import open_player, sample, wait_ready  # noqa: E402
from tests.support.lb import nginx_lb  # noqa: E402
from tests.support.procs import CHROMIUM, CHROMIUM_ARGS, packager, wait_segments  # noqa: E402

SOURCES = {"hls": "/live/demo/master.m3u8", "dash": "/live/demo/manifest.mpd"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def play(browser, base: str, args: argparse.Namespace) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    results = {}
    for player in args.players.split(","):
        context, page, pb = open_player(browser, f"{base}/players/{player}.html?src={SOURCES[player]}")
        wait_ready(page, pb, 30)
        sample(page, pb, args.warmup)
        start = time.monotonic()
        sample(page, pb, args.seconds)
        window = [s for s in pb.samples if s["_wall"] >= start]
        lat = [s["liveLatency"] for s in window if isinstance(s.get("liveLatency"), (int, float))]
        g2g = [s["glassToGlass"] for s in window if isinstance(s.get("glassToGlass"), (int, float))]
        last = pb.last
        results[player] = (lat, g2g, last.get("stalls"), last.get("droppedFrames"), last.get("level"))
        context.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--players", default="hls,dash")
    ap.add_argument("--ladder", default=None, help="default: the packager's default ladder")
    ap.add_argument("--source", default="testsrc")
    ap.add_argument("--store", choices=["memory", "redis", "both"], default="memory")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    run_args = [args.source]
    if args.ladder:
        run_args += ["--ladder", args.ladder]
    results: dict[str, dict[str, tuple]] = {}
    with tempfile.TemporaryDirectory() as tmp_s, sync_playwright() as pw:
        tmp = Path(tmp_s)
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        if args.store in ("memory", "both"):
            with packager(run_args, out=tmp / "out") as (_proc, base):
                wait_segments(f"{base}/live/demo/audio/index.m3u8", 2, 60)
                results["single process, direct"] = play(browser, base, args)
        if args.store in ("redis", "both"):
            (tmp / "redis").mkdir()
            with (
                cluster(run_args, tmp / "redis", workers=1, origins=2, ready_path=SOURCES["hls"]) as c,
                nginx_lb(c.ports, tmp / "redis" / "nginx", ready_path="/time") as lb,
            ):
                wait_segments(f"{lb}/live/demo/audio/index.m3u8", 2, 60)
                results["redis, nginx over 2 origins"] = play(browser, lb, args)
        browser.close()
    report(args, results)


def report(args: argparse.Namespace, results: dict[str, dict[str, tuple]]) -> None:
    print(
        f"machine: {os.cpu_count()} cores; source {args.source}; ladder {args.ladder or 'default'}; "
        f"{args.seconds:.0f} s per player after {args.warmup:.0f} s warm-up"
    )
    print(f"{'mode':30} {'player':6} {'latency med':>12} {'p95':>6} {'glass med':>10} {'p95':>6} {'stalls':>7}")
    for mode, players in results.items():
        for player, (lat, g2g, stalls, _dropped, _level) in players.items():
            print(
                f"{mode:30} {player:6} {statistics.median(lat):12.2f} {pct(lat, 0.95):6.2f} "
                f"{statistics.median(g2g):10.2f} {pct(g2g, 0.95):6.2f} {stalls!s:>7}"
            )


if __name__ == "__main__":
    main()
