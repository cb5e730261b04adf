"""Packaging progress: the media-time meter, its readouts (bar, lines, quiet) and /api/streams."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.media import make_clip
from origin.app import create_app
from packager.progress import MediaProgress, Progress
from packager.readout import clock_text, progress_line, readout, show_lines
from tests.support.clock import ManualClock
from tests.support.live import make_live
from tests.support.procs import REPO


def test_the_slowest_rendition_sets_the_pace_and_speed_and_time_left_follow():
    clock = ManualClock()
    meter = MediaProgress(total_s=60.0, clock=clock.monotonic_s)
    meter.expect(["720p", "audio"])
    assert meter.now().done_s == 0.0 and meter.now().eta_s is None
    meter.advance("720p", 90_000 * 100, 90_000 * 10, 90_000)  # 10 s of video from pts 100 s
    assert meter.now().done_s == 0.0  # audio has produced nothing yet
    meter.advance("audio", 0, 48_000 * 6, 48_000)
    clock.advance(3.0)
    p = meter.now()
    assert p.done_s == 6.0 and p.speed == 2.0 and p.fraction == 0.1 and p.eta_s == 27.0
    assert p.as_json()["renditions"] == ["720p", "audio"]
    assert Progress(5.0, None, 5.0, ()).eta_s is None and Progress(5.0, None, 5.0, ()).fraction is None


def test_progress_line_text():
    p = Progress(3723.0, 7200.0, 372.3, ("720p", "audio"))
    assert (
        progress_line("demo", p) == "packager: demo: 1:02:03 / 2:00:00 (52%), 10.0x realtime, 0:05:48 left; 720p, audio"
    )
    assert clock_text(None) == "--:--"
    assert "left" not in progress_line("demo", Progress(1.0, None, 1.0, ("a",)))


async def test_lines_readout_prints_periodically_and_once_at_the_end():
    out = io.StringIO()
    meter = MediaProgress(total_s=10.0)
    meter.expect(["a"])
    task = asyncio.create_task(show_lines("demo", meter.now, out, interval_s=0.05))
    for i in range(6):
        meter.advance("a", i * 1000, 1000, 1000)
        await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and lines[-1].startswith("packager: demo: 0:00:06 / 0:00:10 (60%)"), lines
    quiet = io.StringIO()
    async with readout("demo", meter.now, quiet=True, out=quiet):
        await asyncio.sleep(0.1)
    assert quiet.getvalue() == ""


async def test_api_streams_carries_the_progress_of_a_stream_this_process_encodes(aiohttp_client):
    store, d = make_live()
    d.publish_segments(1)

    class Encoding:
        progress = MediaProgress(total_s=8.0)

    Encoding.progress.advance("360p", 0, 2, 1)
    client = await aiohttp_client(create_app(store, pipelines={"demo": Encoding()}))
    data = await (await client.get("/api/streams")).json()
    assert data["streams"][0]["progress"]["done_s"] == 2.0 and data["streams"][0]["progress"]["total_s"] == 8.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("progress") / "clip.mp4", seconds=4, width=320, height=180)


def _package(clip: Path, out: Path, *extra: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    cmd = [sys.executable, "-m", "packager", "package", str(clip), "--out", str(out), "--fast"]
    cmd += ["--ladder", "320x180@250k", "--preset", "ultrafast", *extra]
    return subprocess.run(cmd, cwd=REPO, timeout=120, **kwargs)


@pytest.mark.media
def test_package_prints_progress_lines_when_not_on_a_terminal_and_nothing_when_quiet(clip, tmp_path):
    done = _package(clip, tmp_path / "a", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    last = [line for line in done.stderr.splitlines() if re.match(r"packager: demo: \d+:\d\d:\d\d / ", line)][-1]
    assert last.startswith("packager: demo: 0:00:04 / 0:00:04 (100%)") and "x realtime" in last, last
    assert "180p" in last and "audio" in last
    quiet = _package(clip, tmp_path / "b", "--quiet", capture_output=True, text=True)
    assert quiet.returncode == 0 and " / 0:00:04" not in quiet.stderr


@pytest.mark.media
def test_package_draws_a_bar_on_a_terminal(clip, tmp_path):
    main, side = os.openpty()
    try:
        done = _package(clip, tmp_path / "c", stderr=side, stdout=subprocess.DEVNULL)
        os.close(side)
        side = -1
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main)
        if side >= 0:
            os.close(side)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert done.returncode == 0
    assert "0:00:04 / 0:00:04" in text and "x" in text and "━" in text, text[-500:]
