"""Benchmark: live latency seen by hls.js and dash.js in headless Chromium, per latency profile.

Runs ``packager run`` (test source, default ladder unless ``--ladder``) at each
``--latency`` profile and plays it with each player page for ``--minutes``
(after a warm-up), direct from the origin and/or (``--via``) through a real
nginx CDN in front of it. Per player it prints glass-to-glass latency (decoded
from the test source's pixel timecode) median / p95, the player's own live
latency and target, stalls (count, longest, total), drift (median latency of
the last minute minus the first), requests per second per viewer, and where
the time goes:

* encode: capture -> part published of a part's last frame (from the
  origin's ``packager_publish_latency_seconds``, which times a part's first
  frame, less the part's span);
* fill: half a part: between two parts the newest frame a player can have
  ages by a whole part, so by half a part on average;
* release: part published -> blocking playlist reload answered
  (``origin_blocking_release_seconds``);
* buffered: media the player holds ahead of the playhead (its buffer);
* rest: glass to glass minus the above: fetch, decode, display, clock error.

``--viewers N`` plays N pages of each player (``hls#1``, ``hls#2``...): with
``--together`` they ask the CDN for the same objects at once, which is where
its cache lock (``--lock-timeout``, see ``bench/cdn_lock.py``) shows.

``--store redis``: one encoder publishing into a real Redis and two
``packager origin --store`` processes behind an nginx round-robin.

    .venv/bin/python bench/latency.py [--latency normal,low,ultra] [--minutes 1] [--via direct,cdn] [--together]
                                      [--players hls,dash] [--viewers 1] [--lock-timeout 10s]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cluster import cluster  # noqa: E402
from packager.latency import PROFILES  # noqa: E402
from tests.e2e.playback import open_player, sample_once, wait_ready  # noqa: E402
from tests.support.lb import nginx_lb  # noqa: E402
from tests.support.procs import CHROMIUM, CHROMIUM_ARGS, nginx_cdn, packager, wait_segments  # noqa: E402

FRAME_S = 1 / 30  # the test source's frame duration
SOURCES = {"hls": "/live/demo/master.m3u8", "dash": "/live/demo/manifest.mpd"}
_SAMPLE = re.compile(r"^(\w+)_(sum|count)(?:\{([^}]*)\})? ([0-9.e+-]+)$", re.M)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def histograms(base: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each histogram in the origin's /metrics, summed over its labels (video only where
    a series is per rendition: the test source's frames are 1/30 s, its audio frames 1024/48000 s)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, list[float]] = {}
    for name, kind, labels, value in _SAMPLE.findall(text):
        if 'rendition="audio' in labels:
            continue
        acc = out.setdefault(name, [0.0, 0.0])
        acc[0 if kind == "sum" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def mean_between(before: dict, after: dict, name: str) -> float:
    s0, c0 = before.get(name, (0.0, 0.0))
    s1, c1 = after.get(name, (0.0, 0.0))
    return (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")


@dataclass(frozen=True)
class Result:
    g2g: list[float]
    latency: list[float]
    buffer: list[float]
    target: float | None
    stalls: int
    stall_log: list[dict]
    requests_per_s: float
    encode_s: float
    release_s: float
    drift_s: float
    fatal: bool
    helpers: str  # what the page's own workarounds did: part marks repaired (hls.js), nudges, gap jumps


class Viewer:
    """One player page: plays from ``bases[0]``; the stream's metrics come from the origin at ``bases[1]``."""

    def __init__(self, browser, bases: tuple[str, str], player: str) -> None:  # type: ignore[no-untyped-def]
        self.play_base, self.base = bases
        self.context, self.page, self.pb = open_player(
            browser, f"{self.play_base}/players/{player}.html?src={SOURCES[player]}"
        )
        self.requests: list[float] = []
        self.page.on("request", lambda _r: self.requests.append(time.monotonic()))

    def ready(self) -> None:
        wait_ready(self.page, self.pb, 30)

    def poll(self) -> None:
        sample_once(self.page, self.pb)

    def start(self) -> None:
        self.before, self.started, self.stalls0 = (
            histograms(self.base),
            time.monotonic(),
            self.pb.last.get("stalls") or 0,
        )

    def result(self, part_s: float) -> Result:
        after, start, end = histograms(self.base), self.started, time.monotonic()
        window = [s for s in self.pb.samples if s["_wall"] >= start]

        def series(key: str, since: float = start, until: float = end) -> list[float]:
            return [s[key] for s in window if since <= s["_wall"] <= until and isinstance(s.get(key), int | float)]

        minute = min(60.0, (end - start) / 3)
        played_from = window[0]["currentTime"] if window else 0
        last = self.pb.last
        self.context.close()
        return Result(
            g2g=series("glassToGlass"),
            latency=series("liveLatency"),
            buffer=series("buffer"),
            target=last.get("targetLatency"),
            stalls=(last.get("stalls") or 0) - self.stalls0,
            stall_log=[s for s in last.get("stallLog") or [] if s.get("at", 0) >= played_from],
            requests_per_s=sum(1 for t in self.requests if start <= t <= end) / (end - start),
            # the histogram times a part's first frame, captured a part less one frame before the last
            encode_s=mean_between(self.before, after, "packager_publish_latency_seconds") - (part_s - FRAME_S),
            release_s=mean_between(self.before, after, "origin_blocking_release_seconds"),
            drift_s=med(series("glassToGlass", end - minute, end)) - med(series("glassToGlass", start, start + minute)),
            fatal=bool(last.get("fatal")),
            helpers=" ".join(f"{k}={last[k]}" for k in ("partRepairs", "nudges", "gapJumps") if k in last),
        )


def watch(viewers: list[Viewer], seconds: float) -> None:
    """Sample every viewer's stats about twice a second for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick = time.monotonic()
        for v in viewers:
            v.poll()
        time.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))


def play(browser, pairs: list[tuple[str, tuple[str, str]]], args: argparse.Namespace, part_s: float):  # type: ignore[no-untyped-def]
    """(mode, page label, Result) for every mode and player page: one after the other, or all at once
    (``--together``)."""
    jobs = [
        (mode, player, player + (f"#{i + 1}" if args.viewers > 1 else ""), bases)
        for mode, bases in pairs
        for player in args.players.split(",")
        for i in range(args.viewers)
    ]
    groups = [jobs] if args.together else [[job] for job in jobs]
    for group in groups:
        viewers = [Viewer(browser, bases, player) for _mode, player, _label, bases in group]
        for v in viewers:
            v.ready()
        watch(viewers, args.warmup)
        for v in viewers:
            v.start()
        watch(viewers, args.minutes * 60)
        for (mode, _player, label, _bases), v in zip(group, viewers, strict=True):
            yield mode, label, v.result(part_s)


@contextmanager
def origin(args: argparse.Namespace, profile: str, tmp: Path) -> Iterator[list[tuple[str, tuple[str, str]]]]:
    """The stream at ``profile``: yields (mode, (URL to play from, origin URL)) pairs."""
    run_args = [args.source, "--latency", profile]
    if args.ladder:
        run_args += ["--ladder", args.ladder]
    if args.store == "redis":
        with (
            cluster(run_args, tmp / "redis", workers=1, origins=2, ready_path=SOURCES["hls"]) as c,
            nginx_lb(c.ports, tmp / "redis" / "nginx", ready_path="/time") as lb,
        ):
            wait_segments(f"{lb}/live/demo/audio/index.m3u8", 2, 60)
            yield [("redis+nginx", (lb, f"http://127.0.0.1:{c.ports[0]}"))]
        return
    with packager(run_args, out=tmp / "out") as (_proc, base):
        wait_segments(f"{base}/live/demo/audio/index.m3u8", 2, 60)
        via = args.via.split(",")
        if "cdn" not in via:
            yield [("direct", (base, base))]
            return
        with nginx_cdn(int(base.rsplit(":", 1)[1]), tmp / "cdn", lock_timeout=args.lock_timeout) as cdn:
            yield [("direct", (base, base))] * ("direct" in via) + [("nginx CDN", (cdn, base))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", default="normal", help="profiles to measure, comma separated (normal,low,ultra)")
    ap.add_argument("--minutes", type=float, default=1.0, help="playback measured per player (default: 1)")
    ap.add_argument("--warmup", type=float, default=10, help="seconds played before measuring (default: 10)")
    ap.add_argument("--players", default="hls,dash")
    ap.add_argument("--ladder", default=None, help="default: the packager's default ladder")
    ap.add_argument("--source", default="testsrc")
    ap.add_argument(
        "--via", default="direct", help="direct (from the origin), cdn (through an nginx CDN) or both: direct,cdn"
    )
    ap.add_argument("--together", action="store_true", help="every player (and mode) at once, not one by one")
    ap.add_argument("--viewers", type=int, default=1, help="pages per player (with --together: all at once)")
    ap.add_argument("--lock-timeout", default="10s", help="the nginx CDN's proxy_cache_lock_timeout (default: 10s)")
    ap.add_argument("--store", choices=["memory", "redis"], default="memory")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    rows: list[tuple[str, str, str, Result]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for profile in args.latency.split(","):
            part_s = float(PROFILES[profile].part_s)
            with tempfile.TemporaryDirectory() as tmp_s, origin(args, profile, Path(tmp_s)) as bases:
                for mode, player, result in play(browser, bases, args, part_s):
                    rows.append((profile, mode, player, result))
                    report(args, rows[-1:], header=len(rows) == 1)
        browser.close()
    print()
    report(args, rows, header=True)


def report(args: argparse.Namespace, rows: list[tuple[str, str, str, Result]], *, header: bool) -> None:
    if header:
        print(
            f"machine: {os.cpu_count()} cores; source {args.source}; ladder {args.ladder or 'default'}; "
            f"{args.minutes:g} min per player after {args.warmup:.0f} s warm-up"
        )
        print(
            f"{'profile':7} {'mode':12} {'player':6} {'g2g med':>7} {'p95':>5} {'lat med':>7} {'target':>6} "
            f"{'stalls':>6} {'longest':>7} {'drift':>6} {'req/s':>6} | {'encode':>6} {'fill':>5} {'release':>7} "
            f"{'buffer':>6} {'rest':>5}"
        )
    for profile, mode, player, r in rows:
        part_s = float(PROFILES[profile].part_s)
        g2g, buffered = med(r.g2g), med(r.buffer)
        fill = part_s / 2
        rest = g2g - r.encode_s - fill - r.release_s - buffered
        longest = max((s.get("s", 0) for s in r.stall_log), default=0.0)
        target = f"{r.target:6.2f}" if isinstance(r.target, int | float) else f"{'-':>6}"
        print(
            f"{profile:7} {mode:12} {player:6} {g2g:7.2f} {pct(r.g2g, 0.95):5.2f} {med(r.latency):7.2f} {target} "
            f"{r.stalls:6d} {longest:7.2f} {r.drift_s:+6.2f} {r.requests_per_s:6.1f} | {r.encode_s:6.3f} "
            f"{fill:5.2f} {r.release_s:7.3f} {buffered:6.2f} {rest:5.2f}" + ("  FATAL" if r.fatal else "")
        )
    for profile, mode, player, r in rows:
        print(f"{profile:7} {mode:12} {player:6} page: {r.helpers or '-'}")


if __name__ == "__main__":
    main()
