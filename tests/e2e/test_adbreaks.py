"""Ad breaks in the real players: hls.js lists the EXT-X-DATERANGE tags with the splice's instant and section,
dash.js fires the SCTE-35 events (MPD EventStream and in-band emsg) within one part of their time; for a
break inserted through the operator API and for one carried in the input's SCTE-35 PID."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import av
import pytest
from threefive.encode import mk_splice_insert

from fixtures.media import make_clip
from tests.e2e.playback import Playback, open_player, sample, wait_ready
from tests.support.procs import packager, wait_segments
from tests.support.scte35ts import with_cues

pytestmark = pytest.mark.browser

PART_S = 0.5
XML_BIN = "urn:scte:scte35:2014:xml+bin"
INBAND = "urn:scte:scte35:2013:bin"


def _players(browser, base: str, contexts: list) -> list[tuple[object, Playback]]:  # type: ignore[type-arg]
    out = []
    for name, src in (("hls", "master.m3u8"), ("dash", "manifest.mpd")):
        context, page, pb = open_player(browser, f"{base}/players/{name}.html?src=/live/demo/{src}")
        contexts.append(context)
        wait_ready(page, pb, timeout_s=30)
        out.append((page, pb))
    return out


def _sample_all(players: list[tuple[object, Playback]], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for page, pb in players:
            sample(page, pb, 0.25)


def _check(players: list[tuple[object, Playback]], start_s: float, section: bytes, planned_s: float) -> None:
    (_, hls), (_, dash) = players
    ranges = [r for r in hls.last["dateRanges"].values() if r["scte35Out"] == "0x" + section.hex().upper()]
    assert len(ranges) == 1, hls.last["dateRanges"]
    (r,) = ranges
    assert abs(r["start"] - start_s) < 0.002 and r["plannedDuration"] == planned_s, r
    fired = {e["scheme"]: e for e in dash.last["adEvents"] if abs(e["at"] - start_s) < 0.002}
    assert set(fired) == {XML_BIN, INBAND}, dash.last["adEvents"]
    print("dash.js fired after the splice (s):", {k: round(e["currentTime"] - e["at"], 3) for k, e in fired.items()})
    for e in fired.values():
        # fired when playback reached the splice: within one part of its presentation time
        assert -0.05 <= e["currentTime"] - e["at"] <= PART_S, e
    assert fired[XML_BIN]["duration"] == planned_s
    for _, pb in players:
        assert not pb.last.get("fatal") and pb.media_errors == [], (pb.last.get("errors"), pb.media_errors)


def test_an_api_break_reaches_hls_js_and_dash_js(browser, live_origin) -> None:  # type: ignore[no-untyped-def]
    contexts: list = []  # type: ignore[type-arg]
    try:
        players = _players(browser, live_origin, contexts)
        body = json.dumps({"duration_s": 4, "delay_s": 4}).encode()
        request = urllib.request.Request(f"{live_origin}/api/streams/demo/splice", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 201
            splice = json.load(r)["splice"]
        _sample_all(players, 12)  # the splice is 4 s ahead, players ~2 s behind the live edge
        _check(players, splice["start_s"], base64.b64decode(splice["scte35"]), 4.0)
    finally:
        for context in contexts:
            context.close()


@pytest.fixture(scope="module")
def cue_feed(tmp_path_factory) -> Path:
    """A 40 s MPEG-TS whose SCTE-35 PID announces a 6 s break 16 s in (sent 4 s ahead, as playout does)."""
    tmp = tmp_path_factory.mktemp("cues")
    clip = make_clip(tmp / "clip.ts", seconds=40, width=320, height=180)
    with av.open(str(clip)) as c:
        v = c.streams.video[0]
        t0 = float(v.start_time * v.time_base)
    cue = bytes(mk_splice_insert(77, pts=t0 + 16.0, duration=6.0, out=True).bites)
    feed = tmp / "feed.ts"
    feed.write_bytes(with_cues(clip.read_bytes(), [(t0 + 12.0, cue)]))
    (tmp / "cue.bin").write_bytes(cue)
    return feed


def test_an_in_band_break_reaches_hls_js_and_dash_js(browser, cue_feed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cue = (cue_feed.parent / "cue.bin").read_bytes()
    out = tmp_path / "out"
    args = [str(cue_feed), "--ladder", "320x180@250k", "--preset", "ultrafast", "--window", "30"]
    started = time.time()
    contexts: list = []  # type: ignore[type-arg]
    with packager(args, out=out) as (_proc, base):
        wait_segments(f"{base}/live/demo/180p/index.m3u8", 2)
        try:
            players = _players(browser, base, contexts)
            _sample_all(players, max(0.0, started + 24 - time.time()))
            ranges = players[0][1].last["dateRanges"].values()
            (start_s,) = {r["start"] for r in ranges if r["scte35Out"]}
            assert abs(start_s - (started + 16)) < 3  # the file's 16 s mark, on the wall clock it is paced by
            _check(players, start_s, cue, 6.0)
        finally:
            for context in contexts:
                context.close()
