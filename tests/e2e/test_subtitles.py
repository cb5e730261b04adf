"""WebVTT subtitles in the real players: an MKV with English and German SubRip tracks, packaged live; hls.js
and dash.js list both subtitle tracks with their languages, and the cues of the selected one appear at the
times the origin's WebVTT segments give them (mapped onto each player's timeline), also after a switch. The
same holds for dash.js once the live stream ended (its static MPD starts its timeline at the first media)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from lxml import etree

from tests.e2e.playback import open_player, sample, wait_ready
from tests.support.procs import REPO, free_port, interrupt, packager, wait_http, wait_segments
from tests.support.subtitles import two_subtitle_clip
from tests.test_subtitles_media import parse_vtt

pytestmark = pytest.mark.browser

SECONDS = 30
ENDED_SECONDS = 14
EN = tuple((t, t + 1.5, f"English {i}") for i, t in enumerate(range(2, SECONDS - 1, 2)))
DE = tuple((t + 1.0, t + 2.0, f"Deutsch {i}") for i, t in enumerate(range(2, SECONDS - 1, 2)))
TOLERANCE_S = 0.3
SEGMENT_S = 2  # the packager's default
NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}

Spans = dict[str, list[tuple[float, float]]]


def origin_cues(base: str, track: str) -> Spans:
    """Cue text -> the UTC (start, end) times (s) the origin's WebVTT segments of ``track`` give it."""
    playlist = urllib.request.urlopen(f"{base}/live/demo/{track}/index.m3u8", timeout=5).read().decode()
    out: Spans = {}
    for uri in [ln for ln in playlist.splitlines() if ln.endswith(".vtt")]:
        text = urllib.request.urlopen(f"{base}/live/demo/{track}/{uri}", timeout=5).read().decode()
        for start, end, cue in parse_vtt(text):
            if (start / 1000, end / 1000) not in out.setdefault(cue, []):
                out[cue].append((start / 1000, end / 1000))
    return out


def subtitle_tracks(pb) -> list[dict]:  # type: ignore[no-untyped-def]
    return [t for t in pb.last.get("textTracks", []) if t["kind"] == "subtitles"]


def wait_cues(page, pb, language: str, offset_js: str, timeout_s: float = 30):  # type: ignore[no-untyped-def]
    """Sample until the ``language`` track holds at least two cues; returns them and the player's
    media-to-UTC offset (seconds to add to a video time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sample(page, pb, 1)
        track = next((t for t in subtitle_tracks(pb) if t["language"] == language), None)
        if track is not None and len(track["cues"]) >= 2:
            return track["cues"], page.evaluate(offset_js)
    raise AssertionError(f"no {language} cues: {subtitle_tracks(pb)} console={pb.console[-10:]}")


def placed(utc: float, spans: list[tuple[float, float]], *, split: bool) -> bool:
    """A cue shown from ``utc`` is one of ``spans``: it starts with it or (``split``: DASH, where a cue is a
    sample in each segment it spans) at a segment boundary inside it, when the player has not loaded the
    segments before (it joined after the cue began)."""
    boundary = abs(utc - SEGMENT_S * round(utc / SEGMENT_S)) < TOLERANCE_S
    return any(abs(utc - a) < TOLERANCE_S or (split and boundary and a < utc < b) for a, b in spans)


def check_cues(cues: list[dict], offset_s: float, expected: Spans, *, split: bool) -> None:
    for cue in cues:
        text = cue["text"].strip()
        assert text in expected, (text, sorted(expected))
        utc = cue["start"] + offset_s
        assert placed(utc, expected[text], split=split), (text, utc, expected[text])


def select(page, js: str, language: str) -> None:
    page.evaluate(js, language)


HLS = {
    "url": "/players/hls.html?subtitles=en&src=/live/demo/master.m3u8",
    "offset": "window.__hls.playingDate.getTime() / 1000 - document.getElementById('video').currentTime",
    "select": "(lang) => { const h = window.__hls;"
    " h.subtitleTrack = h.subtitleTracks.findIndex((t) => t.lang === lang); }",
}
DASH = {
    "url": "/players/dash.html?src=/live/demo/manifest.mpd",
    "offset": "window.__dash.timeAsUTC() - document.getElementById('video').currentTime",
    # setTextTrack counts the text tracks dash.js made on the video, in MPD order
    "select": "(lang) => { const v = document.getElementById('video');"
    " const i = Array.from(v.textTracks).findIndex((t) => t.language === lang);"
    " window.__dash.enableText(true); window.__dash.setTextTrack(i); }",
}


def play(browser, base: str, player: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    context, page, pb = open_player(browser, base + player["url"])
    try:
        wait_ready(page, pb, timeout_s=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(subtitle_tracks(pb)) < 2:
            sample(page, pb, 1)
        tracks = subtitle_tracks(pb)
        assert sorted(t["language"] for t in tracks) == ["de", "en"], pb.last.get("textTracks")
        select(page, player["select"], "en")
        cues, offset = wait_cues(page, pb, "en", player["offset"])
        split = player["url"].startswith("/players/dash")
        check_cues(cues, offset, origin_cues(base, "subs-en"), split=split)
        select(page, player["select"], "de")
        cues, offset = wait_cues(page, pb, "de", player["offset"])
        check_cues(cues, offset, origin_cues(base, "subs-de"), split=split)
        assert not pb.last.get("fatal"), pb.last.get("errors")
    finally:
        context.close()


def test_both_players_list_the_subtitle_tracks_and_show_their_cues_on_time(browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clip = two_subtitle_clip(tmp_path / "subs.mkv", SECONDS, EN, DE)
    args = [str(clip), "--loop", "--ladder", "320x180@300k", "--preset", "ultrafast"]
    with packager(args, out=tmp_path / "out") as (_proc, base):
        wait_segments(f"{base}/live/demo/subs-en/index.m3u8", 2)
        play(browser, base, HLS)
        play(browser, base, DASH)


def static_offset(base: str) -> str:
    """A static MPD's media-to-UTC offset as a JS expression: the video's presentationTimeOffset at its first
    Period's start (dash.js plays media time ``t`` at ``Period@start + t - presentationTimeOffset``)."""
    root = etree.fromstring(urllib.request.urlopen(f"{base}/live/demo/manifest.mpd", timeout=5).read())
    assert root.get("type") == "static"
    period = root.find("d:Period", NS)
    start = period.get("start")
    assert start == "PT0S", start  # presentation time zero: the first media
    template = period.find("d:AdaptationSet[@contentType='video']/d:Representation/d:SegmentTemplate", NS)
    pto = Fraction(int(template.get("presentationTimeOffset")), int(template.get("timescale")))
    assert pto > 1_700_000_000, pto  # far out on the UTC media timeline: the cue times are not video times
    return repr(float(pto))


@contextlib.contextmanager
def folder_origin(root: Path) -> Iterator[str]:
    """``packager origin --root ROOT``: the ended stream served from its output folder."""
    port = free_port()
    cmd = [sys.executable, "-m", "packager", "origin", "--root", str(root), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/live/demo/manifest.mpd", 30, proc)
        yield base
    finally:
        interrupt(proc)


def test_dash_js_shows_an_ended_live_streams_cues_on_time(browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clip = two_subtitle_clip(tmp_path / "subs.mkv", ENDED_SECONDS, EN[:6], DE[:6])
    args = [str(clip), "--ladder", "320x180@300k", "--preset", "ultrafast"]
    with packager(args, out=tmp_path / "out") as (proc, _base):
        assert proc.wait(timeout=ENDED_SECONDS + 30) == 0  # the clip played out live: the stream ended
    with folder_origin(tmp_path / "out") as base:
        play(browser, base, {**DASH, "offset": static_offset(base)})
