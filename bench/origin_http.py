"""Benchmark: our origin vs nginx serving the same segment and playlist (wrk, 100 connections).

Single process (``--store memory``): ``packager run`` with the default ladder
(so the origin serves while it transcodes in the same process) and nginx with
one worker serving the same output folder from disk. Scale-out (``--store
redis``): a real redis-server, one encoder process on the same ladder and
``packager origin --store ... --workers 2`` on one port. wrk runs against each
for a ~1 MB segment and a media playlist. Prints requests/s, MB/s, p99 latency
and requests per origin CPU-second (medians of ``--rounds``), plus each
origin's event-loop lag p99 during the playlist runs.

``--tls`` (memory mode only): after the plain run, a second ``packager run``
on the same ladder serves HTTPS (``--tls-cert``/``--tls-key``, a throw-away
CA's certificate) and its nginx serves that output folder over both plain HTTP
and ``listen ... ssl`` (TLSv1.2/1.3, keepalive); wrk measures the HTTPS origin
and nginx terminating TLS, and the report gives HTTPS vs plain HTTP (same
bench run) and HTTPS origin vs nginx TLS.

    .venv/bin/python bench/origin_http.py [--store both|memory|redis] [--tls] [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

QUIET_S = 65.0  # of no HTTP load before the quiet loop-lag reading (its window is the last minute)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cluster import cluster, cpu_seconds, descendants, metric_max  # noqa: E402
from tests.support.certs import Issued, make_ca  # noqa: E402
from tests.support.procs import free_port, get, nginx_conf, packager, run_nginx, wait_segments  # noqa: E402

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

NGINX_TLS = """
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location /live/ {{ alias {root}/; }}
  }}
"""
LAG = "origin_event_loop_lag_p99_seconds"


@dataclass(frozen=True)
class Tls:
    issued: Issued  # the server certificate chain and key, for the packager and nginx
    context: ssl.SSLContext  # a client context trusting the throw-away CA


def make_tls(folder: Path) -> Tls:
    ca = make_ca(folder)
    return Tls(ca.issue(folder), ca.client_context())


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


def lag_p99(base: str, samples: int = 1, context: ssl.SSLContext | None = None) -> float:
    if context is None:
        return metric_max(base, LAG, samples)
    m = re.search(rf"^{LAG} (\S+)", get(f"{base}/metrics", context=context)[2].decode(), re.M)
    return float(m.group(1)) if m else 0.0


def newest_segment(folder: Path) -> Path:
    segs = sorted(folder.glob("[0-9]*.m4s"), key=lambda p: p.stat().st_mtime)
    segs = [p for p in segs if p.name.count(".") == 1][-6:-1]
    return max(segs, key=lambda p: p.stat().st_size)


def measure(
    label: str,
    base: str,
    folder: Path,
    seconds: int,
    pids: list[int],
    rows: dict,
    lags: dict,
    context: ssl.SSLContext | None = None,
) -> int:
    """One round of wrk on ``base``'s segment and playlist (``context``: an https origin's); returns the size."""
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
        if what == "playlist" and not label.startswith("nginx"):
            samples = 6 if label.startswith("redis") else 1
            lags.setdefault(label, []).append(lag_p99(base, samples, context))
    return seg.stat().st_size


def quiet_lag(base: str, label: str, samples: int, lags: dict) -> None:
    """The origin's loop-lag p99 over a minute-long window with no HTTP load, the encoder transcoding."""
    time.sleep(QUIET_S)
    lags[f"{label}, no HTTP load"] = [lag_p99(base, samples)]


@contextlib.contextmanager
def static_nginx(tmp: Path, root: Path, tls: Tls | None = None) -> Iterator[tuple[str, list[int]]]:
    """nginx serving ``root``; with ``tls`` over both HTTP and HTTPS, yielding the https base URL."""
    ndir = tmp / ("nginx-tls" if tls else "nginx")
    nport, sport = free_port(), free_port()
    http = NGINX_STATIC.format(port=nport, root=root)
    if tls:
        http += NGINX_TLS.format(port=sport, root=root, cert=tls.issued.cert, key=tls.issued.key)
    conf = nginx_conf(ndir, http, connections=4096)
    with run_nginx(ndir, conf, nport, "/live/demo/master.m3u8") as nbase:
        master = int((ndir / "nginx.pid").read_text())
        yield f"https://127.0.0.1:{sport}" if tls else nbase, [master, *descendants(master)]


def run_single(args: argparse.Namespace, tmp: Path, rows: dict, lags: dict, tls: Tls | None = None) -> int:
    """One packager (HTTPS with ``tls``) and nginx on its files, measured in turn each round."""
    out = tmp / ("out-tls" if tls else "out")
    suffix, ctx = (" tls", tls.context) if tls else ("", None)
    certs = ["--tls-cert", str(tls.issued.cert), "--tls-key", str(tls.issued.key)] if tls else []
    size = 0
    source = ["testsrc", "--ladder", args.ladder, "--window", "120", *certs]
    with packager(source, out=out, context=ctx) as (proc, base):
        wait_segments(f"{base}/live/demo/720p/index.m3u8", 4, 60, context=ctx)
        if not tls:
            quiet_lag(base, "single", 1, lags)
        with static_nginx(tmp, out, tls) as (nbase, npids):
            for _ in range(args.rounds):
                folder = out / "demo" / "720p"
                size = measure(f"single{suffix}", base, folder, args.seconds, [proc.pid], rows, lags, ctx)
                measure(f"nginx{suffix}", nbase, folder, args.seconds, npids, rows, lags)
    return size


def run_memory(args: argparse.Namespace, tmp: Path, rows: dict, lags: dict) -> int:
    """The plain run, then (``--tls``) the HTTPS one on the same ladder."""
    size = run_single(args, tmp, rows, lags)
    return run_single(args, tmp, rows, lags, make_tls(tmp / "certs")) if args.tls else size


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
    ap.add_argument(
        "--tls",
        action="store_true",
        help="memory mode only: also an HTTPS packager and nginx terminating TLS (after the plain run, same ladder)",
    )
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
                run = run_memory if mode == "memory" else run_redis
                seg_size = run(args, tmp / mode, rows, lags)
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
    for k, v in med.items():
        for ref in (r for r in references(k) if r in med):
            ratio, p99 = v["rps"] / med[ref]["rps"], med[ref]["p99_ms"]
            print(f"{k}: /{ref.split(' ', 1)[1]} = {ratio:.2f}x (p99 {v['p99_ms']:.1f} vs {p99:.1f} ms)")
    for label, values in lags.items():
        when = label if "no HTTP load" in label else f"{label}, during the playlist runs"
        print(f"event-loop lag p99 ({when}): {statistics.median(values) * 1000:.1f} ms")


def references(key: str) -> list[str]:
    """The rows ``key`` is compared with: nginx on the same transport, and (TLS) the same server over plain HTTP."""
    what, label = key.split(" ", 1)
    tls = label.endswith(" tls")
    refs = [] if label.startswith("nginx") else [f"{what} nginx tls" if tls else f"{what} nginx"]
    return refs + ([f"{what} {label.removesuffix(' tls')}"] if tls else [])


if __name__ == "__main__":
    main()
