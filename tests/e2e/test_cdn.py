"""A real nginx cache in front of the origin: it obeys our headers and players still play."""

from __future__ import annotations

import re
import time
from datetime import datetime
from urllib.parse import quote

import m3u8
import pytest

from tests.e2e.playback import open_player, progress_ratio, sample, wait_ready
from tests.support.procs import get

pytestmark = [pytest.mark.browser, pytest.mark.cdn]


def _playlist_end(text: str) -> float:
    """UTC seconds at which the playlist's newest media ends (segments plus trailing parts)."""
    pl = m3u8.loads(text)
    seg = [s for s in pl.segments if s.uri]
    last = seg[-1]
    end = last.current_program_date_time.timestamp() + last.duration
    tail = re.findall(r"#EXT-X-PART:DURATION=([\d.]+)", text.split(last.uri)[-1])
    return end + sum(float(x) for x in tail)


def test_media_is_a_hit_on_second_fetch(cdn, live_origin):
    base, _ = cdn
    _, _, text = get(f"{base}/live/demo/270p/index.m3u8")
    pl = m3u8.loads(text.decode())
    uri = pl.segments[-2].uri
    for name in ("init.mp4", uri):
        s1, _h1, b1 = get(f"{base}/live/demo/270p/{name}")
        s2, h2, b2 = get(f"{base}/live/demo/270p/{name}")
        assert s1 == s2 == 200 and b1 == b2
        assert h2["X-Cache-Status"] == "HIT", (name, h2)
    # a part, too
    part = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', text.decode())[0]
    get(f"{base}/live/demo/270p/{part}")
    assert get(f"{base}/live/demo/270p/{part}")[1]["X-Cache-Status"] == "HIT"


def test_manifests_through_cdn_are_never_stale(cdn, live_origin):
    base, _ = cdn
    samples = []  # (lag_s, max_age, cache status of the copy measured)
    origin_ends = []
    for _ in range(12):
        get(f"{base}/live/demo/270p/index.m3u8")  # fills or refreshes the cache
        s_cdn, h_cdn, body_cdn = get(f"{base}/live/demo/270p/index.m3u8")  # the copy measured: mostly a cache hit
        s_org, _h_org, body_org = get(f"{live_origin}/live/demo/270p/index.m3u8")
        assert s_cdn == s_org == 200
        max_age = int(re.search(r"max-age=(\d+)", h_cdn["Cache-Control"]).group(1))
        origin_end = _playlist_end(body_org.decode())
        samples.append((origin_end - _playlist_end(body_cdn.decode()), max_age, h_cdn.get("X-Cache-Status")))
        origin_ends.append(origin_end)
        # MPD: publishTime through the CDN is no older than max-age + 1 s
        _, hm, mpd_cdn = get(f"{base}/live/demo/manifest.mpd")
        _, _, mpd_org = get(f"{live_origin}/live/demo/manifest.mpd")
        pt = [
            datetime.fromisoformat(re.search(rb'publishTime="([^"]+)"', x).group(1).decode().replace("Z", "+00:00"))
            for x in (mpd_cdn, mpd_org)
        ]
        mpd_age = int(re.search(r"max-age=(\d+)", hm["Cache-Control"]).group(1))
        assert (pt[1] - pt[0]).total_seconds() <= mpd_age + 1.0
        time.sleep(0.7)
    assert all(lag <= max_age + 1.0 for lag, max_age, _ in samples), samples
    # the CDN's copy is fetched first, so it can never be ahead of the origin's
    assert all(lag > -0.01 for lag, _, _ in samples), samples
    # the bound held on copies the cache served, and the stream moved meanwhile (so staleness could show)
    assert sum(status == "HIT" for _, _, status in samples) >= 4, samples
    assert origin_ends[-1] - origin_ends[0] >= 3.0, origin_ends


def test_cmcd_query_is_left_out_of_the_cache_key(cdn, live_origin):
    base, _ = cdn
    _, _, text = get(f"{base}/live/demo/270p/index.m3u8")
    pl = m3u8.loads(text.decode())
    segment = pl.segments[-2].uri
    part = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', text.decode())[0]
    one = quote('bl=1200,br=500,ot=v,sf=h,sid="viewer-one"', safe="")
    two = quote('bl=800,br=250,bs,ot=v,sf=h,sid="viewer-two",su', safe="")
    for name in (segment, part):
        url = f"{base}/live/demo/270p/{name}"
        s1, _h1, b1 = get(f"{url}?CMCD={one}")
        s2, h2, b2 = get(f"{url}?CMCD={two}")  # another viewer's data: the same copy
        s3, h3, b3 = get(url)  # and no CMCD at all
        assert s1 == s2 == s3 == 200 and b1 == b2 == b3
        assert h2["X-Cache-Status"] == h3["X-Cache-Status"] == "HIT", (name, h2, h3)
    # other arguments still count: the CMCD one goes wherever it stands
    msn, last = pl.media_sequence + len(pl.segments) - 1, None
    for query in (f"_HLS_msn={msn}&CMCD={one}", f"CMCD={two}&_HLS_msn={msn}", f"_HLS_msn={msn}"):
        status, headers, body = get(f"{base}/live/demo/270p/index.m3u8?{query}")
        assert status == 200 and (last is None or headers["X-Cache-Status"] == "HIT"), (query, headers)
        last = body if last is None else last
        assert body == last
    # the origin heard the CMCD of the requests that reached it (the misses)
    metrics = get(f"{live_origin}/metrics")[2].decode()
    assert re.search(r'^cmcd_requests_total\{stream="demo"\} [1-9]', metrics, re.M), metrics[-2000:]


def test_404_for_unpublished_media_is_not_cached(cdn):
    base, _ = cdn
    s, h, _ = get(f"{base}/live/demo/270p/1.m4s")
    assert s == 404
    s, h, _ = get(f"{base}/live/demo/270p/1.m4s")
    assert s == 404 and h.get("X-Cache-Status") != "HIT"


@pytest.mark.parametrize("player,src", [("hls", "/live/demo/master.m3u8"), ("dash", "/live/demo/manifest.mpd")])
def test_players_through_cdn(browser, cdn, player, src):
    base, _ = cdn
    context, page, pb = open_player(browser, f"{base}/players/{player}.html?src={src}")
    try:
        wait_ready(page, pb)
        start = pb.last["_wall"]
        sample(page, pb, 20)
        assert not pb.last.get("fatal"), pb.last.get("errors")
        assert pb.media_errors == []
        assert progress_ratio(pb, start) >= 0.8
        assert pb.last["lowLatency"] is True
        lat = [x for x in pb.last["latencySamples"] if x is not None]
        # loose: dash.js catches up at its own pace from where it joined (figures belong to bench/latency.py)
        limit = 3.0 if player == "hls" else 4.5
        assert lat and sorted(lat[len(lat) // 2 :])[len(lat[len(lat) // 2 :]) // 2] < limit, lat[-10:]
    finally:
        context.close()
