"""Every latency profile plays in hls.js and dash.js; the manifests carry the profile's timing.

Latency is asserted loosely (under 3 s): the figures belong to ``bench/latency.py``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterator

import pytest

from packager.latency import PROFILES
from tests.e2e.playback import open_player, progress_ratio, sample, wait_ready
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


@pytest.mark.parametrize(("player", "src"), [("hls", "/live/demo/master.m3u8"), ("dash", "/live/demo/manifest.mpd")])
def test_profile_plays(browser, profile_origin, player: str, src: str) -> None:  # type: ignore[no-untyped-def]
    name, base = profile_origin
    context, page, pb = open_player(browser, f"{base}/players/{player}.html?src={src}")
    try:
        wait_ready(page, pb, 30)
        start = pb.last["_wall"]
        sample(page, pb, PLAY_S)
        assert not pb.last.get("fatal"), pb.last.get("errors")
        assert pb.media_errors == [], pb.media_errors
        assert progress_ratio(pb, start) >= 0.8, pb.console[-10:]
        g2g = [x for x in pb.last.get("glassSamples", []) if isinstance(x, int | float) and math.isfinite(x)]
        assert g2g, "no glass-to-glass figure decoded from the picture"
        late = g2g[len(g2g) // 2 :]
        assert 0 < statistics.median(late) < 3.0, f"{name} {player}: {late[-10:]}"
    finally:
        context.close()
