"""Real players in headless Chromium: hls.js and dash.js play the live demo, directly and through nginx."""

from __future__ import annotations

import math
import statistics

import pytest

from tests.e2e.playback import force_each_level, open_player, progress_ratio, sample, wait_ready

pytestmark = pytest.mark.browser


def _check_playback(pb, since, *, min_ratio=0.8):
    assert not pb.last.get("fatal"), pb.last.get("errors")
    assert pb.media_errors == [], pb.media_errors
    ratio = progress_ratio(pb, since)
    assert ratio >= min_ratio, f"media advanced {ratio:.2f}x wall time; console={pb.console[-10:]}"
    g2g = [x for x in pb.last.get("glassSamples", []) if isinstance(x, (int, float)) and math.isfinite(x)]
    assert g2g, "no glass-to-glass figure decoded from the picture"
    assert 0 < statistics.median(g2g) < 15, g2g[-10:]


def _switch_report(pb, ratios) -> str:
    return f"ratios={ratios} stalls={pb.last.get('stallLog')} console={pb.console[-15:]}"


def _play(browser, url, seconds):
    context, page, pb = open_player(browser, url)
    wait_ready(page, pb)
    start = pb.last["_wall"]
    sample(page, pb, seconds)
    return context, page, pb, start


def test_hls_js_plays_low_latency_and_switches(browser, live_origin):
    context, page, pb, start = _play(browser, f"{live_origin}/players/hls.html?src=/live/demo/master.m3u8", 30)
    try:
        _check_playback(pb, start)
        assert pb.last["player"] == "hls"
        assert pb.last["lowLatency"] is True and pb.last["partTarget"] > 0
        lat = [x for x in pb.last["latencySamples"] if x is not None]
        assert lat and statistics.median(lat[len(lat) // 2 :]) < 3.0, lat[-10:]
        ratios = force_each_level(page, pb)
        assert len(ratios) == 2 and all(r >= 0.5 for r in ratios.values()), _switch_report(pb, ratios)
        assert pb.media_errors == []
    finally:
        context.close()


def test_dash_js_plays_low_latency_and_switches(browser, live_origin):
    context, page, pb, start = _play(browser, f"{live_origin}/players/dash.html?src=/live/demo/manifest.mpd", 30)
    try:
        _check_playback(pb, start)
        assert pb.last["player"] == "dash"
        assert pb.last["lowLatency"] is True
        lat = [x for x in pb.last["latencySamples"] if x is not None]
        assert lat and statistics.median(lat[len(lat) // 2 :]) < 3.5, lat[-10:]
        ratios = force_each_level(page, pb)
        assert len(ratios) == 2 and all(r >= 0.5 for r in ratios.values()), _switch_report(pb, ratios)
        assert pb.media_errors == []
    finally:
        context.close()


def test_index_page_lists_the_stream(browser, live_origin):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{live_origin}/")
        page.wait_for_selector("a[href*='hls.html']", timeout=10_000)
        links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        assert any("hls.html?src=" in h and "demo" in h for h in links)
        assert any("dash.html?src=" in h and "demo" in h for h in links)
    finally:
        context.close()


def test_timecode_decoder_page(browser, live_origin):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{live_origin}/players/timecode-test.html")
        page.wait_for_function("window.__timecodeOk !== undefined", timeout=10_000)
        assert page.evaluate("window.__timecodeOk") is True
    finally:
        context.close()
