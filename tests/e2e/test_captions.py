"""CEA-608 captions in the real player: hls.js turns the CC1 data passed through in the video's SEI into
text-track cues with the expected text, at the expected distance from each other.

hls.js 1.7 resets its 608 parser whenever it loads a part (its check that fragments are contiguous
counts each part of one segment as a jump), so it renders captions from whole segments only: the page
plays with ``?ll=0`` (the media itself carries the captions in every part: tests/test_captions.py)."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from tests.e2e.playback import open_player, sample, wait_ready
from tests.support.cea608 import make_captioned_clip
from tests.support.procs import packager, wait_segments

pytestmark = pytest.mark.browser

CAPTIONS = [(6.0, "CAPTION ONE"), (10.0, "CAPTION TWO"), (14.0, "CAPTION THREE"), (18.0, "CAPTION FOUR")]


def test_hls_js_shows_the_inputs_608_captions(browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clip = make_captioned_clip(tmp_path / "cc.ts", CAPTIONS, seconds=24)
    args = [str(clip), "--ladder", "320x180@300k", "--preset", "ultrafast", "--cc-language", "en"]
    with packager(args, out=tmp_path / "out") as (_proc, base):
        wait_segments(f"{base}/live/demo/180p/index.m3u8", 2)
        url = f"{base}/players/hls.html?ll=0&src=/live/demo/master.m3u8"
        context, page, pb = open_player(browser, url)
        try:
            wait_ready(page, pb, timeout_s=30)
            cues: dict[str, float] = {}
            # hls.js keeps the cues it decoded in a cache that it moves into the text track on a video append
            # event, which it may hold back to the end of the stream: wait for them, up to the stream's end
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and len(cues) < 3:  # the first may come before the player joined
                sample(page, pb, 1)
                tracks = [t for t in pb.last["textTracks"] if t["kind"] == "captions"]
                cues = {c["text"].strip(): c["start"] for t in tracks for c in t["cues"]}
            assert not pb.last.get("fatal") and pb.media_errors == [], pb.last.get("errors")
            assert len(cues) >= 3 and set(cues) <= {text for _, text in CAPTIONS}, (cues, pb.last["textTracks"])
            assert tracks[0]["language"] == "en"
            for (a_s, a), (b_s, b) in pairwise(CAPTIONS):
                if a in cues and b in cues:
                    assert abs((cues[b] - cues[a]) - (b_s - a_s)) < 0.2, cues
        finally:
            context.close()
