"""Benchmark: our origin vs nginx serving the same segment and playlist (wrk, 100 connections).

Starts ``packager run`` with the default ladder (so the origin serves while it
transcodes in the same process) and nginx with one worker serving the same
output folder from disk, then runs wrk against both for a ~1 MB segment and a
media playlist. Prints requests/s, MB/s and p99 latency, medians of
``--rounds``, plus the origin's event-loop lag p99 during the playlist runs.

    .venv/bin/python bench/origin_http.py [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.procs import free_port, get, packager, wait_http, wait_segments  # noqa: E402

NGINX_STATIC = """
{user}
worker_processes 1;
daemon off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {dir}/tmp-body;
  proxy_temp_path {dir}/tmp-proxy;
  fastcgi_temp_path {dir}/tmp-fcgi;
  uwsgi_temp_path {dir}/tmp-uwsgi;
  scgi_temp_path {dir}/tmp-scgi;
  types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }}
  server {{
    listen 127.0.0.1:{port};
    location /live/ {{ alias {root}/; }}
  }}
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


def lag_p99(base: str) -> float:
    text = get(f"{base}/metrics")[2].decode()
    return float(re.search(r"^origin_event_loop_lag_p99_seconds (\S+)", text, re.M).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--ladder", default="1280x720@4500k,854x480@1400k,640x360@800k")
    args = ap.parse_args()
    nginx = need("nginx", "nginx-light")
    need("wrk", "wrk")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        out = tmp / "out"
        with packager(["testsrc", "--ladder", args.ladder, "--window", "120"], out=out) as (_p, base):
            wait_segments(f"{base}/live/demo/720p/index.m3u8", 4, 60)
            ndir = tmp / "nginx"
            ndir.mkdir()
            nport = free_port()
            user = "user root;" if os.geteuid() == 0 else ""
            (ndir / "nginx.conf").write_text(NGINX_STATIC.format(dir=ndir, port=nport, root=out, user=user))
            proc = subprocess.Popen([nginx, "-c", str(ndir / "nginx.conf"), "-p", str(ndir)])
            nbase = f"http://127.0.0.1:{nport}"
            try:
                wait_http(f"{nbase}/live/demo/master.m3u8", 10)
                rows: dict[str, list[dict[str, float]]] = {}
                lags = []
                seg_size = 0
                for _ in range(args.rounds):
                    folder = out / "demo" / "720p"
                    segs = sorted(folder.glob("[0-9]*.m4s"), key=lambda p: p.stat().st_mtime)
                    segs = [p for p in segs if p.name.count(".") == 1][-6:-1]
                    seg = max(segs, key=lambda p: p.stat().st_size)
                    seg_size = seg.stat().st_size
                    for name, url in (
                        ("segment origin", f"{base}/live/demo/720p/{seg.name}"),
                        ("segment nginx", f"{nbase}/live/demo/720p/{seg.name}"),
                        ("playlist origin", f"{base}/live/demo/720p/index.m3u8"),
                        ("playlist nginx", f"{nbase}/live/demo/720p/index.m3u8"),
                    ):
                        rows.setdefault(name, []).append(wrk(url, args.seconds))
                        if name == "playlist origin":
                            lags.append(lag_p99(base))
            finally:
                proc.terminate()
                proc.wait()
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in rows.items()}
    print(
        f"machine: {os.cpu_count()} cores; wrk -t2 -c100 -d{args.seconds}s; median of {args.rounds} rounds; "
        f"segment {seg_size / 1e6:.2f} MB; origin transcoding {args.ladder} meanwhile"
    )
    print(f"{'':18} {'req/s':>10} {'MB/s':>9} {'p99 ms':>8} {'non-2xx':>8}")
    for k, v in med.items():
        print(f"{k:18} {v['rps']:10.0f} {v['mbps']:9.1f} {v['p99_ms']:8.2f} {v['non2xx']:8.0f}")
    print(f"segment: origin/nginx = {med['segment origin']['rps'] / med['segment nginx']['rps']:.2f}x")
    print(f"playlist: origin/nginx = {med['playlist origin']['rps'] / med['playlist nginx']['rps']:.2f}x")
    print(f"event-loop lag p99 during playlist runs: {statistics.median(lags) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
