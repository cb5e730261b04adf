"""Benchmark: our origin vs nginx serving the same segment and playlist (wrk, 100 connections).

Single process (``--store memory``): ``packager run`` with the default ladder
(so the origin serves while it transcodes in the same process) and nginx with
one worker serving the same output folder from disk. Scale-out (``--store
redis``): a real redis-server, one encoder process on the same ladder and
``packager origin --store ... --workers 2`` on one port. wrk runs against each
for a ~1 MB segment and a media playlist. Prints requests/s, MB/s, p99 latency
and requests per origin CPU-second (medians of ``--rounds``), plus each
origin's event-loop lag p99 during the playlist runs.

    .venv/bin/python bench/origin_http.py [--store both|memory|redis] [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

QUIET_S = 65.0  # of no HTTP load before the quiet loop-lag reading (its window is the last minute)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cluster import cluster, cpu_seconds, descendants, metric_max  # noqa: E402
from tests.support.procs import free_port, nginx_conf, packager, run_nginx, wait_segments  # noqa: E402

NGINX_STATIC = """
  access_log off;
  sendfile on;
  tcp_nopush on;
  types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }}
  server {{
    listen 127.0.0.1:{port};
    location /live/ {{ alias {root}/; }}
  }}
"""


def need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path:
        return path
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package], check=True)
    return shutil.which(tool) or f"/usr/sbin/{tool}"


def wrk(url: str, seconds: int, connections: int = 100) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mb = float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[transfer.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1, "s": 1000}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "mbps": mb, "p99_ms": p99_ms, "non2xx": float(errors.group(1)) if errors else 0.0}


def lag_p99(base: str, samples: int = 1) -> float:
    return metric_max(base, "origin_event_loop_lag_p99_seconds", samples)


def newest_segment(folder: Path) -> Path:
    segs = sorted(folder.glob("[0-9]*.m4s"), key=lambda p: p.stat().st_mtime)
    segs = [p for p in segs if p.name.count(".") == 1][-6:-1]
    return max(segs, key=lambda p: p.stat().st_size)


def measure(label: str, base: str, folder: Path, seconds: int, pids: list[int], rows: dict, lags: dict) -> int:
    """One round of wrk on ``base``'s segment and playlist; returns the segment's size."""
    seg = newest_segment(folder)
    for what, url in (
        ("segment", f"{base}/live/demo/720p/{seg.name}"),
        ("playlist", f"{base}/live/demo/720p/index.m3u8"),
    ):
        cpu0 = cpu_seconds(pids)
        row = wrk(url, seconds)
        cpu = cpu_seconds(pids) - cpu0
        row["per_cpu_s"] = row["rps"] * seconds / cpu if cpu > 0 else 0.0
        rows.setdefault(f"{what} {label}", []).append(row)
        if what == "playlist" and label != "nginx":
            lags.setdefault(label, []).append(lag_p99(base, samples=6 if label != "single" else 1))
    return seg.stat().st_size


def quiet_lag(base: str, label: str, samples: int, lags: dict) -> None:
    """The origin's loop-lag p99 over a minute-long window with no HTTP load, the encoder transcoding."""
    time.sleep(QUIET_S)
    lags[f"{label}, no HTTP load"] = [lag_p99(base, samples)]


@contextlib.contextmanager
def static_nginx(tmp: Path, root: Path) -> Iterator[tuple[str, list[int]]]:
    ndir = tmp / "nginx"
    nport = free_port()
    conf = nginx_conf(ndir, NGINX_STATIC.format(port=nport, root=root), connections=4096)
    with run_nginx(ndir, conf, nport, "/live/demo/master.m3u8") as nbase:
        master = int((ndir / "nginx.pid").read_text())
        yield nbase, [master, *descendants(master)]


def run_single(args: argparse.Namespace, tmp: Path, rows: dict, lags: dict) -> int:
    out = tmp / "out"
    size = 0
    with packager(["testsrc", "--ladder", args.ladder, "--window", "120"], out=out) as (proc, base):
        wait_segments(f"{base}/live/demo/720p/index.m3u8", 4, 60)
        quiet_lag(base, "single", 1, lags)
        with static_nginx(tmp, out) as (nbase, npids):
            for _ in range(args.rounds):
                size = measure("single", base, out / "demo" / "720p", args.seconds, [proc.pid], rows, lags)
                measure("nginx", nbase, out / "demo" / "720p", args.seconds, npids, rows, lags)
    return size


def run_redis(args: argparse.Namespace, tmp: Path, rows: dict, lags: dict) -> int:
    source = ["testsrc", "--ladder", args.ladder, "--window", "120"]
    size = 0
    with cluster(source, tmp, workers=args.workers, ready_path="/live/demo/720p/index.m3u8") as c:
        wait_segments(f"{c.base}/live/demo/720p/index.m3u8", 4, 60)
        label = f"redis x{args.workers}"
        quiet_lag(c.base, label, 6, lags)
        for _ in range(args.rounds):
            size = measure(label, c.base, tmp / "enc" / "demo" / "720p", args.seconds, c.worker_pids(), rows, lags)
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--ladder", default="1280x720@4500k,854x480@1400k,640x360@800k")
    ap.add_argument(
        "--store",
        choices=["memory", "redis", "both"],
        default="both",
        help="memory: one process (plus nginx for comparison); redis: one encoder + --workers origin processes "
        "over Redis; both: one after the other in the same run (default)",
    )
    ap.add_argument("--workers", type=int, default=2, help="origin worker processes in the redis mode")
    args = ap.parse_args()
    need("nginx", "nginx-light")
    need("wrk", "wrk")
    rows: dict[str, list[dict[str, float]]] = {}
    lags: dict[str, list[float]] = {}
    seg_size = 0
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for mode in ("memory", "redis"):
            if args.store in (mode, "both"):
                (tmp / mode).mkdir()
                run = run_single(args, tmp / mode, rows, lags) if mode == "memory" else None
                seg_size = run if run is not None else run_redis(args, tmp / mode, rows, lags)
    report(args, rows, lags, seg_size)


def report(args: argparse.Namespace, rows: dict, lags: dict, seg_size: int) -> None:
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in rows.items()}
    print(
        f"machine: {os.cpu_count()} cores; wrk -t2 -c100 -d{args.seconds}s; median of {args.rounds} rounds; "
        f"segment {seg_size / 1e6:.2f} MB; encoder transcoding {args.ladder} meanwhile"
    )
    print(f"{'':20} {'req/s':>10} {'MB/s':>9} {'p99 ms':>8} {'non-2xx':>8} {'req/CPU-s':>10}")
    for k, v in med.items():
        print(f"{k:20} {v['rps']:10.0f} {v['mbps']:9.1f} {v['p99_ms']:8.2f} {v['non2xx']:8.0f} {v['per_cpu_s']:10.0f}")
    for what in ("segment", "playlist"):
        nginx = med.get(f"{what} nginx")
        for k, v in med.items():
            if k.startswith(what) and nginx and k != f"{what} nginx":
                print(f"{k}: /nginx = {v['rps'] / nginx['rps']:.2f}x")
    for label, values in lags.items():
        when = label if "no HTTP load" in label else f"{label}, during the playlist runs"
        print(f"event-loop lag p99 ({when}): {statistics.median(values) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
