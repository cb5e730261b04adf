"""Two audio languages in the real players: hls.js and dash.js list both, start English, switch to German.

The source is an MKV with an English (440 Hz) and a German (880 Hz) audio
stream, looped live. After the switch the player must report the German
track as selected, fetch that track's media and keep playing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.playback import open_player, progress_ratio, sample, wait_ready
from tests.support.languages import two_language_clip
from tests.support.procs import packager, wait_segments

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def two_language_origin(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("languages")
    clip = two_language_clip(tmp / "two.mkv", seconds=8)
    args = [str(clip), "--loop", "--ladder", "320x180@250k", "--preset", "ultrafast", "--window", "20"]
    with packager(args, out=tmp / "out") as (_proc, base):
        wait_segments(f"{base}/live/demo/audio-de/index.m3u8", 2)
        yield base


def _switch_to_german(browser, url: str) -> None:
    context, page, pb = open_player(browser, url)
    german_requests: list[float] = []

    def on_request(request) -> None:
        if "/audio-de/" in request.url and ".m4s" in request.url:
            german_requests.append(time.monotonic())

    page.on("request", on_request)
    try:
        wait_ready(page, pb)
        deadline = time.monotonic() + 8
        while len(pb.last.get("audioTracks", [])) < 2 and time.monotonic() < deadline:
            sample(page, pb, 0.5)
        tracks = pb.last["audioTracks"]
        assert sorted(t["lang"] for t in tracks) == ["de", "en"], tracks
        assert {t["lang"]: t["name"] for t in tracks} == {"en": "English", "de": "German"}
        english = next(t["index"] for t in tracks if t["lang"] == "en")
        german = next(t["index"] for t in tracks if t["lang"] == "de")
        assert pb.last["audioTrack"] == english, pb.last
        switched_at = time.monotonic()
        assert page.evaluate(f"window.__setAudioTrack({german})") is True
        deadline = time.monotonic() + 6
        while pb.last.get("audioTrack") != german and time.monotonic() < deadline:
            sample(page, pb, 0.5)
        assert pb.last["audioTrack"] == german, pb.last
        start = time.monotonic()
        sample(page, pb, 4)
        assert any(t >= switched_at for t in german_requests), "no German media fetched after the switch"
        assert not pb.last.get("fatal"), pb.last.get("errors")
        assert progress_ratio(pb, start) >= 0.5, pb.samples[-3:]
        assert pb.media_errors == [], pb.media_errors
    finally:
        context.close()


def test_hls_js_lists_both_languages_and_switches(browser, two_language_origin):
    _switch_to_german(browser, f"{two_language_origin}/players/hls.html?src=/live/demo/master.m3u8")


def test_dash_js_lists_both_languages_and_switches(browser, two_language_origin):
    _switch_to_german(browser, f"{two_language_origin}/players/dash.html?src=/live/demo/manifest.mpd")
