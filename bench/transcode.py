"""Benchmark: package a 60 s 1280x720 30 fps file with --fast through the default ladder.

Runs ``packager package --fast`` and, in the same run, Debian's ffmpeg doing the
same ladder with the same x264 settings in one process (decode once, split,
scale, 3 encodes, fMP4 HLS output). Prints realtime factor (media seconds per
wall second), CPU seconds and peak RSS for each, median of ``--runs`` runs.

    .venv/bin/python bench/transcode.py [--runs 3] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LADDER = [(1280, 720, 3000), (854, 480, 1400), (640, 360, 800)]
X264 = "keyint=60:min-keyint=60:scenecut=0:open-gop=0:bframes=0"


def ensure_ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path:
        return path
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "ffmpeg"], check=True)
    return shutil.which("ffmpeg") or "ffmpeg"


def make_source(path: Path, seconds: int) -> None:
    from fixtures.media import make_clip

    make_clip(path, seconds=seconds, width=1280, height=720, fps=30)


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user+sys of the child), peak RSS MiB of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # a fresh fork per run so ru_maxrss is this run's peak
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource,subprocess,sys;"
            "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL).returncode;"
            "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
            "print(u.ru_utime+u.ru_stime,u.ru_maxrss,r)",
            *cmd,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, rss_kb, rc = proc.stdout.split()
    if rc != "0":
        raise RuntimeError(f"{cmd[0]} failed with {rc}")
    del before
    return wall, float(cpu), int(rss_kb) / 1024


def ffmpeg_cmd(ffmpeg: str, src: Path, out: Path) -> list[str]:
    split = f"[0:v]split={len(LADDER)}" + "".join(f"[s{i}]" for i in range(len(LADDER)))
    scales = ";".join(f"[s{i}]scale={w}:{h}:flags=bilinear[o{i}]" for i, (w, h, _) in enumerate(LADDER))
    cmd = [ffmpeg, "-hide_banner", "-y", "-i", str(src), "-filter_complex", f"{split};{scales}"]
    for i in range(len(LADDER)):
        cmd += ["-map", f"[o{i}]"]
    cmd += [
        "-map",
        "0:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-x264-params",
        X264,
        "-forced-idr",
        "1",
        "-pix_fmt",
        "yuv420p",
    ]
    for i, (_, _, kbps) in enumerate(LADDER):
        cmd += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps * 11 // 10}k", f"-bufsize:v:{i}", f"{kbps * 2}k"]
    cmd += [
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_segment_type",
        "fmp4",
        "-hls_playlist_type",
        "vod",
        "-master_pl_name",
        "master.m3u8",
        "-var_stream_map",
        " ".join(f"v:{i},agroup:aud" for i in range(len(LADDER))) + " a:0,agroup:aud",
        str(out / "stream_%v" / "index.m3u8"),
    ]
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()
    ffmpeg = ensure_ffmpeg()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "src.mp4"
        make_source(src, args.seconds)
        results: dict[str, list[tuple[float, float, float]]] = {"packager": [], "ffmpeg": []}
        for run in range(args.runs):
            out = tmp / f"p{run}"
            results["packager"].append(
                measure(
                    [
                        str(REPO / ".venv" / "bin" / "packager"),
                        "package",
                        str(src),
                        "--out",
                        str(out),
                        "--fast",
                        "--log-level",
                        "warning",
                    ]
                )
            )
            out = tmp / f"f{run}"
            out.mkdir()
            results["ffmpeg"].append(measure(ffmpeg_cmd(ffmpeg, src, out)))
        print(
            f"machine: {os.cpu_count()} cores; source {args.seconds} s 1280x720@30; ladder "
            + ",".join(f"{w}x{h}@{k}k" for w, h, k in LADDER)
            + f"; median of {args.runs} runs"
        )
        print(f"{'tool':10} {'realtime x':>10} {'wall s':>8} {'cpu s':>8} {'peak RSS MiB':>13}")
        med = {}
        for name, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            rss = statistics.median(r[2] for r in rows)
            med[name] = args.seconds / wall
            print(f"{name:10} {args.seconds / wall:10.2f} {wall:8.2f} {cpu:8.2f} {rss:13.0f}")
        print(f"packager / ffmpeg realtime factor: {med['packager'] / med['ffmpeg']:.2f}x")


if __name__ == "__main__":
    main()
