"""Every latency profile plays in hls.js and dash.js; the manifests carry the profile's timing.

Latency is asserted loosely (under 3 s): the figures belong to ``bench/latency.py``.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Iterator

import pytest

from packager.latency import DEFAULT_PROFILE, PROFILES
from tests.e2e.playback import open_player, progress_ratio, sample_once, wait_ready
from tests.support.procs import SMALL_LADDER, get, packager, wait_segments

pytestmark = pytest.mark.browser

PLAY_S = 20


@pytest.fixture(scope="module", params=list(PROFILES))
def profile_origin(request, tmp_path_factory, live_origin) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(profile, origin URL): ``normal`` is the session's live origin (the default profile)."""
    if request.param == "normal":
        yield "normal", live_origin
        return
    out = tmp_path_factory.mktemp(f"latency-{request.param}") / "out"
    args = ["testsrc:480x270@30", "--ladder", SMALL_LADDER, "--latency", request.param, "--preset", "ultrafast"]
    with packager(args, out=out) as (_proc, base):
        wait_segments(f"{base}/live/demo/270p/index.m3u8", 3)
        yield request.param, base


def test_manifests_carry_the_profile(profile_origin) -> None:  # type: ignore[no-untyped-def]
    name, base = profile_origin
    p = PROFILES[name]
    playlist = get(f"{base}/live/demo/270p/index.m3u8")[2].decode()
    part_target = float(re.search(r"PART-TARGET=([0-9.]+)", playlist).group(1))  # type: ignore[union-attr]
    hold_back = float(re.search(r"PART-HOLD-BACK=([0-9.]+)", playlist).group(1))  # type: ignore[union-attr]
    assert float(p.part_s) <= part_target < float(p.part_s) + 0.05
    assert hold_back >= 3 * part_target
    assert f"#EXT-X-TARGETDURATION:{math.ceil(p.segment_s)}" in playlist
    mpd = get(f"{base}/live/demo/manifest.mpd")[2].decode()
    target_ms = int(re.search(r'<Latency [^>]*target="(\d+)"', mpd).group(1))  # type: ignore[union-attr]
    assert target_ms == round(p.targets.dash_target_parts * p.part_s * 1000)


PLAYERS = {"hls": "/live/demo/master.m3u8", "dash": "/live/demo/manifest.mpd"}


# normal, the default, plays for 30 s in each player in tests/e2e/test_players.py
@pytest.mark.parametrize("profile_origin", [p for p in PROFILES if p != DEFAULT_PROFILE], indirect=True)
def test_profile_plays_in_both_players(browser, profile_origin) -> None:  # type: ignore[no-untyped-def]
    """hls.js and dash.js play the profile's stream side by side for PLAY_S seconds."""
    name, base = profile_origin
    pages = {player: open_player(browser, f"{base}/players/{player}.html?src={src}") for player, src in PLAYERS.items()}
    mpd_requests: list[float] = []
    pages["dash"][1].on("request", lambda r: mpd_requests.append(time.monotonic()) if ".mpd" in r.url else None)
    try:
        for _context, page, pb in pages.values():
            wait_ready(page, pb, 30)
        start = time.monotonic()
        reloads0 = pages["dash"][2].last.get("mpdReloads") or 0
        while time.monotonic() < start + PLAY_S:
            for _context, page, pb in pages.values():
                sample_once(page, pb)
            time.sleep(0.5)
        for player, (_context, _page, pb) in pages.items():
            assert not pb.last.get("fatal"), (player, pb.last.get("errors"))
            assert pb.media_errors == [], (player, pb.media_errors)
            assert progress_ratio(pb, start) >= 0.8, (player, pb.console[-10:])
            g2g = [x for x in pb.last.get("glassSamples", []) if isinstance(x, int | float) and math.isfinite(x)]
            assert g2g, f"{player}: no glass-to-glass figure decoded from the picture"
            late = g2g[len(g2g) // 2 :]
            assert 0 < statistics.median(late) < 3.0, f"{name} {player}: {late[-10:]}"
        # the dash.js page reloads the MPD as each segment's successor becomes available (dash.js alone
        # reloads once a second at most), and each reload is a real request
        reloads = (pages["dash"][2].last.get("mpdReloads") or 0) - reloads0
        assert reloads >= 0.8 * PLAY_S / float(PROFILES[name].segment_s), reloads
        assert sum(1 for t in mpd_requests if t >= start) >= 0.9 * reloads
    finally:
        for context, _page, _pb in pages.values():
            context.close()
