"""hls.js and dash.js report CMCD to the origin, and the dashboard charts what they and the packager report."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.playback import open_player, sample, wait_ready
from tests.support.procs import get

pytestmark = pytest.mark.browser

PLAY_S = 10


def _series(base: str) -> dict:
    status, _headers, body = get(f"{base}/api/streams/demo/series")
    assert status == 200
    return json.loads(body)


def _play(browser, base: str, page_url: str) -> tuple[list, float]:
    """Play ``page_url`` for PLAY_S seconds; the media requests it made and when it started (UTC s)."""
    started = time.time()
    context, page, pb = open_player(browser, f"{base}{page_url}")
    requests: list = []
    page.on("request", lambda r: requests.append(r) if "/live/demo/" in r.url else None)
    try:
        wait_ready(page, pb)
        sample(page, pb, PLAY_S)
        assert not pb.last.get("fatal"), pb.last.get("errors")
        assert pb.media_errors == []
    finally:
        context.close()
    return requests, started


def _heard_since(base: str, started: float) -> dict:
    """The viewer columns of the buckets since ``started``."""
    v = _series(base)["viewers"]
    keep = [i for i, t in enumerate(v["t"]) if t + 5 > started]
    return {key: [v[key][i] for i in keep] for key in ("sessions", "cmcd_requests")} | {
        "buffer_p50": [v["buffer_s"]["p50"][i] for i in keep],
        "throughput_p50": [v["throughput_bps"]["p50"][i] for i in keep],
    }


def test_players_report_cmcd_and_the_dashboard_charts_it(browser, live_origin):
    base = live_origin
    # hls.js: CMCD as the query argument (the default)
    requests, started = _play(browser, base, "/players/hls.html?src=/live/demo/master.m3u8")
    media = [r for r in requests if ".m4s" in r.url]
    assert media and all("CMCD=" in r.url for r in media), [r.url for r in media[:3]]
    heard = _heard_since(base, started)
    assert max(heard["sessions"]) >= 1 and sum(heard["cmcd_requests"]) >= len(media) // 2, heard
    assert max(x or 0 for x in heard["buffer_p50"]) > 0 and max(x or 0 for x in heard["throughput_p50"]) > 0
    # dash.js: CMCD as headers (?cmcd=headers), none in the URLs
    requests, started = _play(browser, base, "/players/dash.html?src=/live/demo/manifest.mpd&cmcd=headers")
    media = [r for r in requests if ".m4s" in r.url]
    assert media and not any("CMCD=" in r.url for r in media)
    assert all("cmcd-session" in r.headers for r in media), media[0].headers
    heard = _heard_since(base, started)
    assert max(heard["sessions"]) >= 1 and max(x or 0 for x in heard["buffer_p50"]) > 0, heard
    viewers = json.loads(get(f"{base}/api/streams")[2])["streams"][0]["viewers"]
    assert viewers["formats"].get("h", 0) >= 1 and viewers["formats"].get("d", 0) >= 1, viewers
    metrics = get(f"{base}/metrics")[2].decode()
    assert 'cmcd_buffer_length_seconds_count{stream="demo"}' in metrics

    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{base}/")
        card = "section[data-stream='demo']"
        page.wait_for_selector(f"{card} figure.chart[data-chart='buffer'] svg", timeout=15_000)
        points = page.eval_on_selector_all(
            f"{card} figure.chart",
            "figs => Object.fromEntries(figs.map(f => [f.dataset.chart, +f.querySelector('svg').dataset.points]))",
        )
        assert set(points) == {"latency", "bitrate", "requests", "viewers", "buffer", "throughput"}, points
        assert all(n > 0 for n in points.values()), points
        assert page.locator(f"{card} figure.chart[data-chart='bitrate'] polyline").count() >= 2  # one per rendition
    finally:
        context.close()
