"""The origin hears players' CMCD (query or headers) and serves the dashboard's per-stream series."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import pytest

from origin.app import create_app
from origin.handlers import STATE
from origin.viewers import Viewers
from packager.security import PlaybackKeys, SecuritySettings
from tests.support.clock import until
from tests.support.live import make_live

T0 = 1_700_000_000.0
HLS = 'bl=1500,br=800,mtp=12000,ot=v,sf=h,sid="hls-viewer",st=ll'
DASH = {"CMCD-Request": "bl=900,mtp=6000,su", "CMCD-Object": "br=300,ot=v", "CMCD-Session": 'sid="dash-viewer",sf=d'}


class Clock:
    now = T0 + 2.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def live(aiohttp_client):
    store, driver = make_live()
    driver.publish_segments(3)
    driver.publish(2)
    app = create_app(store)
    clock = Clock()
    app[STATE].viewers = Viewers(clock)
    client = await aiohttp_client(app)
    return client, driver, clock


def cmcd(text: str) -> str:
    return "CMCD=" + quote(text, safe="")


async def series(client) -> dict:  # type: ignore[no-untyped-def]
    r = await client.get("/api/streams/demo/series")
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    return await r.json()


async def test_cmcd_in_the_query_and_in_headers_feed_the_stream_aggregate(live):
    client, _d, clock = live
    assert (await client.get(f"/live/demo/360p/1001.1.m4s?{cmcd(HLS)}")).status == 200
    assert (await client.get(f"/live/demo/360p/index.m3u8?{cmcd(HLS + ',bs')}")).status == 200
    assert (await client.get("/live/demo/180p/1001.1.m4s", headers=DASH)).status == 200
    assert (await client.get("/live/demo/master.m3u8")).status == 200  # no CMCD: the request rate only
    viewers = (await (await client.get("/api/streams")).json())["streams"][0]["viewers"]
    assert viewers == {
        "sessions": 2,
        "formats": {"d": 1, "h": 1},
        "buffer_s": 1.5,
        "throughput_bps": 12e6,
        "stalls": 1,
        "cmcd_requests": 3,
    }
    data = await series(client)
    assert data["stream"] == "demo" and data["bucket_s"] == 5 and data["window_s"] == 300 and data["now"] == T0 + 2
    v = data["viewers"]
    assert v["t"][-1] == T0 and len(v["t"]) == 60
    assert v["sessions"][-1] == 2 and v["stalls"][-1] == 1 and v["startups"][-1] == 1
    assert v["requests_per_s"][-1] == 2.0  # 4 requests in the 2 s the bucket has run
    assert v["buffer_s"] == {"p50": [None] * 59 + [1.5], "min": [None] * 59 + [0.9]}
    assert v["bitrates"] == {"300000": [0] * 59 + [1], "800000": [0] * 59 + [2]}
    clock.now += 40  # the viewers went quiet
    assert (await (await client.get("/api/streams")).json())["streams"][0]["viewers"]["sessions"] == 0


async def test_cmcd_in_metrics_per_stream(live):
    client, _d, _clock = live
    await client.get(f"/live/demo/360p/1001.1.m4s?{cmcd(HLS + ',bs,su')}")
    await client.get("/live/demo/180p/1001.1.m4s", headers=DASH)
    await client.get(f"/live/nope/1001.1.m4s?{cmcd(HLS)}")  # no such stream: no label
    body = await (await client.get("/metrics")).text()
    assert 'cmcd_requests_total{stream="demo"} 2' in body
    assert 'cmcd_buffer_starvations_total{stream="demo"} 1' in body
    assert 'cmcd_startup_requests_total{stream="demo"} 2' in body
    assert 'cmcd_sessions{stream="demo"} 2' in body
    assert 'cmcd_buffer_length_seconds_bucket{stream="demo",le="1"} 1' in body
    assert 'cmcd_buffer_length_seconds_sum{stream="demo"} 2.4' in body
    assert 'cmcd_measured_throughput_bits_per_second_count{stream="demo"} 2' in body
    assert 'cmcd_requested_bitrate_bits_per_second_bucket{stream="demo",le="500000"} 1' in body
    assert 'stream="nope"' not in body and "sid" not in re.sub(r"#.*", "", body)


async def test_hostile_cmcd_never_changes_the_answer(live):
    client, _d, _clock = live
    plain = await (await client.get("/live/demo/360p/1001.1.m4s")).read()
    junk = [
        "x" * 5000,
        '"' * 300,
        "(" * 300,
        "bl=" + "9" * 400,
        "sid=" + quote('"' + "s" * 500 + '"'),
        "%00%ff%fe",
        ",".join(f"k{i}" for i in range(500)),
    ]
    for text in junk:
        r = await client.get(f"/live/demo/360p/1001.1.m4s?CMCD={text}")
        assert r.status == 200 and await r.read() == plain, text[:20]
        r = await client.get("/live/demo/360p/1001.1.m4s", headers={"CMCD-Request": text[:4000]})
        assert r.status == 200, text[:20]
    r = await client.get("/live/demo/360p/1001.1.m4s?CMCD=bl%3D1&CMCD=bl%3D2")  # given twice: the first counts
    assert r.status == 200
    state = client.server.app[STATE]
    assert state.viewers.streams["demo"].sessions == {}  # no sid was acceptable
    assert state.metrics.cmcd_requests.values == {(("stream", "demo"),): 1.0}  # only bl=1 read as CMCD


async def test_a_refused_request_s_cmcd_is_not_counted(aiohttp_client):
    store, d = make_live()
    d.publish_segments(2)
    app = create_app(store, security=SecuritySettings(playback=PlaybackKeys(secret="s" * 40)))
    client = await aiohttp_client(app)
    r = await client.get(f"/live/demo/360p/1000.m4s?{cmcd(HLS)}")  # no playback token: 401
    assert r.status == 401
    assert app[STATE].viewers.summary("demo")["cmcd_requests"] == 0
    assert app[STATE].viewers.series("demo", app[STATE].viewers.clock())["requests_per_s"][-1] > 0


async def test_an_error_answer_s_cmcd_is_not_counted(live):
    client, _d, _clock = live
    assert (await client.get(f"/live/demo/360p/9.m4s?{cmcd(HLS)}")).status == 404
    assert (await client.get(f"/live/demo/360p/index.m3u8?_HLS_part=1&{cmcd(HLS)}")).status == 400
    v = (await series(client))["viewers"]
    assert v["requests_per_s"][-1] == 1.0 and v["cmcd_requests"][-1] == 0 and v["sessions"][-1] == 0


async def test_preflight_allows_the_cmcd_headers(live):
    client, _d, _clock = live
    r = await client.options(
        "/live/demo/360p/1001.1.m4s",
        headers={
            "Origin": "http://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "cmcd-request,cmcd-object,cmcd-status,cmcd-session",
        },
    )
    assert r.status == 204
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session", "range"} <= allowed


async def test_publishing_series_latency_per_stage_and_bitrate(aiohttp_client):
    store, d = make_live()  # the wall clock throughout: parts are stamped with it
    d.publish_segments(3)
    client = await aiohttp_client(create_app(store))
    d.publish(1)
    track = d.stream.track("360p")
    msn, index = d.msn, d.index  # the next part: a blocking request waits for it
    pending = client.get(f"/live/demo/360p/index.m3u8?_HLS_msn={msn}&_HLS_part={index}&{cmcd(HLS)}")
    task = asyncio.ensure_future(pending)
    await until(lambda: track.held_count == 1)
    d.publish(1)
    assert (await task).status == 200
    p = (await series(client))["publishing"]
    assert set(p["capture_to_publish"]) == {"360p", "180p", "audio"}
    latest = [x for x in p["capture_to_publish"]["360p"]["p50"] if x is not None]
    assert latest and 0.05 <= latest[-1] <= 1.0  # the driver captures 0.1 s before publishing
    assert any(x is not None and x >= 0 for x in p["publish_to_release"]["p50"])
    assert all(x is None for x in p["publish_to_servable"]["p50"])  # no shared store here
    rates = [x for x in p["bitrate_bps"]["360p"] if x is not None]
    part = d.part_bytes(track.info, 1000, 0)
    assert rates and rates[-1] == pytest.approx(len(part) * 8 / float(d.part_s))


async def test_series_of_an_unknown_stream_is_404(live):
    client, _d, _clock = live
    for name in ("nope", "bad%20name", "x" * 70):
        r = await client.get(f"/api/streams/{name}/series")
        assert r.status == 404 and r.headers["Cache-Control"] == "no-store"
