"""Benchmark: several broadcaster pushes at once for minutes: CPU, memory, publish latency.

Starts ``packager run`` with ``--streams`` stream keys (small ladder), pushes a
generated clip to each with ffmpeg (``-re -stream_loop -1``, RTMP), and for
``--seconds`` samples the packager's CPU and RSS every few seconds. Prints CPU
use, RSS after warm-up and at the end (flat means no leak), and per stream the
publish latency p50/p99 (capture -> part published) from ``/metrics``.

    .venv/bin/python bench/ingest.py [--streams 4] [--seconds 300]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fixtures.media import make_clip  # noqa: E402
from tests.support.procs import free_port, get, packager  # noqa: E402

LADDER = "480x270@500k,320x180@250k"


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds and RSS MiB of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def quantiles(text: str, stream: str) -> tuple[float, float, int]:
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith("packager_publish_latency_seconds_bucket{") or f'stream="{stream}"' not in line:
            continue
        m = re.search(r'le="([^"]+)"\} (\S+)$', line)
        if m is None:
            continue
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets[le] = buckets.get(le, 0.0) + float(m.group(2))
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0

    def q(p: float) -> float:
        for le, n in ordered:
            if n >= p * total:
                return le
        return float("nan")

    return q(0.5), q(0.99), int(total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--warmup", type=float, default=90, help="the 60 s window fills first (default: %(default)s)")
    args = ap.parse_args()
    ffmpeg = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
    names = [f"ch{i}" for i in range(1, args.streams + 1)]
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        clip = make_clip(tmp / "clip.mp4", seconds=10, width=480, height=270)
        rtmp = free_port()
        run_args = ["--rtmp-port", str(rtmp), "--srt-port", "0", "--ladder", LADDER, "--preset", "ultrafast"]
        for n in names:
            run_args += ["--stream-key", f"{n}={n}-bench-key"]
        with packager(run_args, out=tmp / "out", ready_path="/healthz") as (proc, base):
            pushers = [
                subprocess.Popen(
                    [
                        ffmpeg,
                        "-hide_banner",
                        "-loglevel",
                        "error",
                        "-re",
                        "-stream_loop",
                        "-1",
                        "-i",
                        str(clip),
                        "-c",
                        "copy",
                        "-f",
                        "flv",
                        f"rtmp://127.0.0.1:{rtmp}/live/{n}?key={n}-bench-key",
                    ],
                    stdin=subprocess.DEVNULL,
                )
                for n in names
            ]
            try:
                samples = []
                t0 = time.monotonic()
                cpu0, _ = proc_stats(proc.pid)
                while time.monotonic() - t0 < args.seconds:
                    time.sleep(5)
                    cpu, rss = proc_stats(proc.pid)
                    samples.append((time.monotonic() - t0, cpu, rss))
                metrics = get(f"{base}/metrics")[2].decode()
            finally:
                for p in pushers:
                    p.terminate()
                for p in pushers:
                    p.wait(10)
    warm = [s for s in samples if s[0] >= args.warmup]
    elapsed = samples[-1][0]
    cpu_total = samples[-1][1] - cpu0
    print(
        f"machine: {os.cpu_count()} cores; {args.streams} RTMP pushes (-re, looped 480x270 clip), ladder {LADDER}, "
        f"ultrafast; {elapsed:.0f} s"
    )
    print(f"packager CPU: {cpu_total:.1f} s over {elapsed:.0f} s = {100 * cpu_total / elapsed:.0f}% of one core")
    print(
        f"RSS MiB: after warm-up {warm[0][2]:.0f}, max {max(s[2] for s in warm):.0f}, end {warm[-1][2]:.0f} "
        f"(growth after warm-up {warm[-1][2] - warm[0][2]:+.0f})"
    )
    per_minute = [f"{s[0]:.0f}s={s[2]:.0f}" for s in samples if int(s[0]) % 60 < 5]
    print("RSS MiB by minute: " + ", ".join(per_minute))
    print(f"{'stream':8} {'publish p50 s':>14} {'p99 s':>7} {'parts':>7}")
    for n in names:
        p50, p99, count = quantiles(metrics, n)
        print(f"{n:8} {p50:14.3f} {p99:7.3f} {count:7d}")


if __name__ == "__main__":
    main()
