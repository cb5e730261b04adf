"""Benchmark: live latency seen by hls.js and dash.js in headless Chromium.

Runs ``packager run`` (test source, default ladder unless ``--ladder``) and
plays it with each player page for ``--seconds`` (after a warm-up), sampling
the player's own live latency and the glass-to-glass latency decoded from the
test source's pixel timecode. Prints median and p95 of both per player.

    .venv/bin/python bench/latency.py [--seconds 60] [--players hls,dash] [--ladder ...]
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

from tests.e2e.playback import open_player, sample, wait_ready  # noqa: E402
from tests.support.procs import CHROMIUM, CHROMIUM_ARGS, packager, wait_segments  # noqa: E402

SOURCES = {"hls": "/live/demo/master.m3u8", "dash": "/live/demo/manifest.mpd"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--players", default="hls,dash")
    ap.add_argument("--ladder", default=None, help="default: the packager's default ladder")
    ap.add_argument("--source", default="testsrc")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    run_args = [args.source]
    if args.ladder:
        run_args += ["--ladder", args.ladder]
    results = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        packager(run_args, out=Path(tmp) / "out") as (_proc, base),
        sync_playwright() as pw,
    ):
        wait_segments(f"{base}/live/demo/audio/index.m3u8", 2, 60)
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
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
        browser.close()
    print(
        f"machine: {os.cpu_count()} cores; source {args.source}; ladder {args.ladder or 'default'}; "
        f"{args.seconds:.0f} s per player after {args.warmup:.0f} s warm-up"
    )
    print(f"{'player':6} {'latency med':>12} {'p95':>6} {'glass med':>10} {'p95':>6} {'stalls':>7} {'dropped':>8}")
    for player, (lat, g2g, stalls, dropped, _level) in results.items():
        print(
            f"{player:6} {statistics.median(lat):12.2f} {pct(lat, 0.95):6.2f} "
            f"{statistics.median(g2g):10.2f} {pct(g2g, 0.95):6.2f} {stalls!s:>7} {dropped!s:>8}"
        )


if __name__ == "__main__":
    main()
