"""Every latency profile plays in hls.js and dash.js; the manifests carry the profile's timing.

Latency is asserted loosely (under 3 s): the figures belong to ``bench/latency.py``.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

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
    with _profile_packager(request.param, tmp_path_factory.mktemp(f"latency-{request.param}") / "out") as base:
        yield request.param, base


@contextmanager
def _profile_packager(profile: str, out: Path) -> Iterator[str]:
    """A small-ladder ``testsrc`` packager at ``profile``, once it lists three segments; yields its URL."""
    args = ["testsrc:480x270@30", "--ladder", SMALL_LADDER, "--latency", profile, "--preset", "ultrafast"]
    with packager(args, out=out) as (_proc, base):
        wait_segments(f"{base}/live/demo/270p/index.m3u8", 3)
        yield base


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



# Strips the "loaded" mark of one middle part of the segment hls.js has just finished, once per
# segment, in the main (video) loader and in the audio rendition's loader: what a playlist refresh racing
# a part load does to hls.js 1.7 on its own, now and then. It also notes, at each segment end, whether
# the loader's buffered end falls short of hls.js's start of the next segment (``short``): only then does
# hls.js pick the finished segment again and stall, and that depends on the timeline offset hls.js chose
# when the page loaded (by up to a few tenths of a millisecond for audio).
LOSE_PART_MARK = """
window.__lost = { parts: 0, seen: new Set(), ends: new Map(), short: 0 };
function loseMark(kind, loader, levels, index) {
  const L = window.__lost, level = loader && levels && levels[index];
  const d = level && level.details, prev = loader && loader.fragPrevious;
  const b = loader && loader.mediaBuffer && loader.mediaBuffer.buffered;
  if (b && b.length) {
    const end = b.end(b.length - 1);
    for (const [key, next] of L.ends) {
      if (!key.startsWith(kind)) continue;
      if (end < next && next - end < 0.005) L.short++;
      if (end > next - 0.1) L.ends.delete(key);
    }
  }
  if (!d || !d.partList || !prev || prev.sn > d.endSN || L.seen.has(kind + prev.sn)) return;
  const parts = d.partList.filter((p) => p.fragment.sn === prev.sn);
  if (parts.length < 3 || !parts[parts.length - 1].loaded) return;
  L.seen.add(kind + prev.sn);
  parts[1].elementaryStreams = {};
  L.parts++;
  const next = prev.sn < d.endSN ? d.fragments[prev.sn + 1 - d.startSN] : d.fragmentHint;
  if (next) L.ends.set(kind + prev.sn, next.start);
}
setInterval(() => {
  const h = window.__hls;
  if (!h) return;
  const main = h.streamController, audio = h.audioStreamController;
  loseMark('v', main, h.levels, main && main.level);
  loseMark('a', audio, audio && audio.levels, audio && audio.trackId);
}, 20);
"""


def _short_edged(browser, url: str):  # type: ignore[no-untyped-def]
    """The page at ``url`` with LOSE_PART_MARK running, if its timeline falls short at a segment end
    (else None: a packager session either does at every segment end or never does)."""
    context, page, pb = open_player(browser, url)
    wait_ready(page, pb, 30)
    page.evaluate(LOSE_PART_MARK)
    deadline = time.monotonic() + 5 * float(PROFILES["ultra"].segment_s)
    while time.monotonic() < deadline and not page.evaluate("window.__lost.short"):
        time.sleep(0.2)
    if page.evaluate("window.__lost.short") > 0:
        return context, page, pb
    context.close()
    return None


@contextmanager
def _short_edged_pair(browser, tmp_path: Path, shared_base: str):  # type: ignore[no-untyped-def]
    """Two pages, repair on and off, of the first packager session (the shared ``ultra`` one, then up to
    three fresh ones) whose timeline falls short at segment ends."""
    with ExitStack() as stack:
        for attempt in range(4):
            base = shared_base
            if attempt:
                (tmp_path / f"session-{attempt}").mkdir()
                base = stack.enter_context(_profile_packager("ultra", tmp_path / f"session-{attempt}" / "out"))
            url = f"{base}/players/hls.html?src={PLAYERS['hls']}"
            fixed = _short_edged(browser, url)
            if fixed is None:
                continue
            stack.callback(fixed[0].close)
            off = _short_edged(browser, url + "&repair=0")
            if off is not None:
                stack.callback(off[0].close)
                yield {"repair": fixed, "off": off}
                return
        pytest.skip("no packager session in four fell short at segment ends: the stall cannot happen here")


def _longest_stall(pb, since: float) -> float:
    return max((s["s"] for s in pb.last.get("stallLog") or [] if s["at"] >= since), default=0.0)


@pytest.mark.parametrize("profile_origin", ["ultra"], indirect=True)
def test_hls_page_repairs_lost_part_marks(browser, profile_origin, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With hls.js losing a part's loaded mark in every segment, the page's repair keeps it playing;
    the same page with the repair off stalls at segment ends."""
    _name, base = profile_origin
    with _short_edged_pair(browser, tmp_path, base) as pages:
        since = {k: pb.last["currentTime"] for k, (_c, _p, pb) in pages.items()}
        start = time.monotonic()
        while time.monotonic() < start + PLAY_S:
            for _context, page, pb in pages.values():
                sample_once(page, pb)
            time.sleep(0.5)
        lost = {k: page.evaluate("window.__lost.parts") for k, (_c, page, _pb) in pages.items()}
        fixed, off = pages["repair"][2], pages["off"][2]
        assert min(lost.values()) >= PLAY_S / 2 / float(PROFILES["ultra"].segment_s), lost
        assert not fixed.last.get("fatal") and progress_ratio(fixed, start) >= 0.9, fixed.console[-10:]
        assert fixed.last["partRepairs"] > 0, fixed.last
        assert _longest_stall(fixed, since["repair"]) < 0.5, fixed.last.get("stallLog")
        assert "partRepairs" not in off.last and _longest_stall(off, since["off"]) >= 0.5, off.last.get("stallLog")
