"""The origin with a hand-driven store: headers, ranges, conditionals, security, LL-HLS, chunked DASH."""

import asyncio
import gzip
import re
import time
from fractions import Fraction

import pytest
from lxml import etree

from origin.app import create_app
from origin.handlers import parse_directives
from packager.security import SecuritySettings
from packager.store import SEGMENT_HEADER
from tests.support.clock import ManualClock, until
from tests.support.live import make_live


@pytest.fixture
async def live(aiohttp_client, tmp_path):
    store, driver = make_live(tmp_path)
    driver.publish_segments(3)
    driver.publish(2)
    client = await aiohttp_client(create_app(store))
    yield client, driver
    driver.mirror.close()


# ---------------------------------------------------------------- headers


async def test_manifest_headers(live):
    client, _d = live
    r = await client.get("/live/demo/master.m3u8")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Length" in r.headers["Access-Control-Expose-Headers"]
    assert "max-age=" in r.headers["Cache-Control"]
    r = await client.get("/live/demo/360p/index.m3u8")
    assert r.headers["Cache-Control"] == "public, max-age=1"
    text = await r.text()
    assert "#EXT-X-PART-INF" in text
    r = await client.get("/live/demo/manifest.mpd")
    assert r.headers["Content-Type"] == "application/dash+xml"
    assert r.headers["Cache-Control"] == "public, max-age=1"


async def test_media_headers_and_types(live):
    client, _d = live
    r = await client.get("/live/demo/360p/init.mp4")
    assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
    assert "immutable" in r.headers["Cache-Control"] and "no-transform" in r.headers["Cache-Control"]
    r = await client.get("/live/demo/360p/1000.m4s")
    assert r.status == 200 and r.headers["Content-Type"] == "video/iso.segment"
    body = await r.read()
    assert body.startswith(SEGMENT_HEADER)
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable, no-transform"
    assert r.headers["Accept-Ranges"] == "bytes"
    r = await client.get("/live/demo/360p/1001.2.m4s")
    assert r.status == 200 and r.headers["Content-Type"] == "video/iso.segment"


async def test_etag_304_last_modified(live):
    client, _d = live
    r = await client.get("/live/demo/360p/1000.m4s")
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    r2 = await client.get("/live/demo/360p/1000.m4s", headers={"If-None-Match": etag})
    assert r2.status == 304 and await r2.read() == b""
    r3 = await client.get("/live/demo/360p/1000.m4s", headers={"If-Modified-Since": lm})
    assert r3.status == 304
    r4 = await client.get("/live/demo/master.m3u8")
    r5 = await client.get("/live/demo/master.m3u8", headers={"If-None-Match": r4.headers["ETag"]})
    assert r5.status == 304


async def test_ranges(live):
    client, _d = live
    full = await (await client.get("/live/demo/360p/1000.m4s")).read()
    r = await client.get("/live/demo/360p/1000.m4s", headers={"Range": "bytes=0-9"})
    assert r.status == 206 and await r.read() == full[:10]
    assert r.headers["Content-Range"] == f"bytes 0-9/{len(full)}"
    r = await client.get("/live/demo/360p/1000.m4s", headers={"Range": "bytes=-5"})
    assert await r.read() == full[-5:]
    r = await client.get("/live/demo/360p/1000.m4s", headers={"Range": "bytes=10-"})
    assert await r.read() == full[10:]
    r = await client.get("/live/demo/360p/1000.m4s", headers={"Range": f"bytes={len(full)}-"})
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(full)}"
    r = await client.get("/live/demo/360p/1000.m4s", headers={"Range": "bytes=0-1,4-5"})
    assert r.status == 206 and r.headers["Content-Type"].startswith("multipart/byteranges")
    r = await client.get("/live/demo/360p/1000.m4s", headers={"Range": "bytes=garbage"})
    assert r.status == 200 and await r.read() == full  # malformed Range is ignored


async def test_head_and_gzip(live):
    client, _d = live
    r = await client.head("/live/demo/360p/1000.m4s")
    assert r.status == 200 and int(r.headers["Content-Length"]) > 0 and await r.read() == b""
    r = await client.get("/live/demo/manifest.mpd", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert r.headers.get("Content-Encoding") == "gzip"
    assert b"<MPD" in gzip.decompress(await r.read())
    assert "Accept-Encoding" in r.headers["Vary"]
    r = await client.get("/live/demo/360p/1000.m4s", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert "Content-Encoding" not in r.headers  # media is never compressed


async def test_preflight(live):
    client, _d = live
    r = await client.options(
        "/live/demo/360p/1000.m4s",
        headers={
            "Origin": "http://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert r.status == 204
    assert "GET" in r.headers["Access-Control-Allow-Methods"]
    assert "Range" in r.headers["Access-Control-Allow-Headers"]
    assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_origin_configurable(aiohttp_client):
    store, d = make_live()
    d.publish_segments(1)
    security = SecuritySettings(cors_origins=("https://player.example", "https://other.example"))
    client = await aiohttp_client(create_app(store, security=security))
    r = await client.get("/live/demo/master.m3u8", headers={"Origin": "https://player.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://player.example"
    assert "Origin" in r.headers["Vary"]
    r = await client.get("/live/demo/master.m3u8", headers={"Origin": "https://evil.example"})
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers and "Origin" in r.headers["Vary"]
    r = await client.get("/live/demo/master.m3u8")  # no Origin: no grant, same Vary
    assert "Access-Control-Allow-Origin" not in r.headers
    preflight = {"Access-Control-Request-Method": "GET"}
    r = await client.options("/live/demo/master.m3u8", headers={"Origin": "https://other.example", **preflight})
    assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://other.example"
    r = await client.options("/live/demo/master.m3u8", headers={"Origin": "https://evil.example", **preflight})
    assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
    r = await client.get("/nothing", headers={"Origin": "https://other.example"})  # errors too
    assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == "https://other.example"


async def test_time_health_metrics(live):
    client, d = live
    r = await client.get("/time")
    text = await r.text()
    assert r.status == 200 and text.endswith("Z") and len(text) == 24
    assert r.headers["Cache-Control"] == "no-store"
    assert (await client.get("/healthz")).status == 200
    await client.get("/live/demo/360p/1000.m4s")
    d.publish(1)
    r = await client.get("/metrics")
    body = await r.text()
    assert 'origin_requests_total{kind="segment",status="200"}' in body
    assert "packager_publish_latency_seconds_bucket" in body
    # every published part is observed, per stream and rendition (capture -> published)
    assert re.search(r'packager_publish_latency_seconds_count\{[^}]*rendition="360p"[^}]*\} [1-9]', body)
    assert "origin_event_loop_lag_seconds" in body
    assert "origin_bytes_sent_total" in body


async def test_api_streams(live):
    client, _d = live
    data = await (await client.get("/api/streams")).json()
    s = data["streams"][0]
    assert s["name"] == "demo" and s["live"] and s["hls"] == "/live/demo/master.m3u8"
    assert {r["name"] for r in s["renditions"]} == {"360p", "180p", "audio"}


# ---------------------------------------------------------------- errors and security


async def test_unknown_things_404_with_reason(live):
    client, _d = live
    for path in (
        "/live/nope/master.m3u8",
        "/live/demo/999p/index.m3u8",
        "/live/demo/360p/5.m4s",
        "/live/demo/360p/1000.9.m4s",
        "/live/demo/360p/evil.txt",
        "/live/demo/360p/%D9%A1.m4s",  # an Arabic-Indic digit one is not segment 1
        "/live/demo/360p/0.%D9%A1.m4s",
        "/live/demo/360p/1.m4s%0A",
        "/nothing",
    ):
        r = await client.get(path)
        assert r.status == 404, path
        assert r.headers["Cache-Control"] == "no-store"
        text = await r.text()
        assert text.startswith("404: ") and text.count("\n") == 1


@pytest.mark.parametrize(
    "path",
    [
        "/live/demo/360p/../../../etc/passwd",
        "/live/demo/360p/%2e%2e/%2e%2e/etc/passwd",
        "/live/demo/%2e%2e/360p/1000.m4s",
        "/live/demo/360p/..%2f..%2fetc%2fpasswd",
        "/live/demo/360p/..%5c..%5cetc%5cpasswd",
        "/live/demo/360p/%00.m4s",
        "/live/demo/360p/1000.m4s%00",
        "/live//etc/passwd",
        "/players/../pyproject.toml",
        "/players/%2e%2e%2fpyproject.toml",
        "/players/lib/..%2f..%2fpyproject.toml",
        "/live/demo/360p/" + "a" * 5000 + ".m4s",
    ],
)
async def test_traversal_never_serves_outside(live, path):
    client, _d = live
    r = await client.get(path)
    assert r.status in (400, 404, 414)
    body = await r.read()
    assert b"[project]" not in body and b"root:" not in body


async def test_huge_headers_and_urls_rejected(live):
    client, _d = live
    r = await client.get("/live/demo/master.m3u8", headers={"X-Big": "a" * 20000})
    assert r.status in (400, 431)
    r = await client.get("/live/demo/master.m3u8?" + "x=" + "a" * 20000)
    assert r.status in (400, 414)


async def test_methods(live):
    client, _d = live
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = await client.request(method, "/live/demo/360p/1000.m4s")
        assert r.status == 405, method
        assert "GET" in r.headers.get("Allow", "")


# ---------------------------------------------------------------- LL-HLS directives


def test_parse_directives():
    from multidict import MultiDict

    assert parse_directives(MultiDict({"_HLS_msn": "5", "_HLS_part": "2"})).part == 2
    assert "requires" in parse_directives(MultiDict({"_HLS_part": "1"}))
    assert "integer" in parse_directives(MultiDict({"_HLS_msn": "-1"}))
    assert "integer" in parse_directives(MultiDict({"_HLS_msn": "1e3"}))
    assert "YES" in parse_directives(MultiDict({"_HLS_skip": "yes"}))
    assert "more than once" in parse_directives(MultiDict([("_HLS_msn", "1"), ("_HLS_msn", "2")]))


async def test_blocking_reload_waits_for_part(live):
    client, d = live
    # published: 1000..1002 complete, 1003.0 and 1003.1 -> ask for 1003.2
    req = asyncio.create_task(client.get("/live/demo/360p/index.m3u8?_HLS_msn=1003&_HLS_part=2"))
    await until(lambda: d.stream.track("360p").held_count == 1)
    assert not req.done()
    d.publish(1)
    r = await asyncio.wait_for(req, 2)
    assert r.status == 200
    text = await r.text()
    assert 'URI="1003.2.m4s"' in text and "#EXT-X-PRELOAD-HINT" in text
    assert r.headers["Cache-Control"] == "public, max-age=3"


async def test_blocking_reload_part_past_end_means_next_segment(live):
    client, d = live
    req = asyncio.create_task(client.get("/live/demo/360p/index.m3u8?_HLS_msn=1003&_HLS_part=4"))
    d.publish(2)  # 1003.2, 1003.3
    await until(lambda: d.stream.track("360p").held_count == 1)
    assert not req.done()
    d.publish(1)  # 1004.0
    r = await asyncio.wait_for(req, 2)
    assert 'URI="1004.0.m4s"' in await r.text()


async def test_blocking_reload_segment_only(live):
    client, d = live
    req = asyncio.create_task(client.get("/live/demo/360p/index.m3u8?_HLS_msn=1003"))
    d.publish(1)
    await until(lambda: d.stream.track("360p").held_count == 1)
    assert not req.done()
    d.publish(1)
    r = await asyncio.wait_for(req, 2)
    assert "1003.m4s" in await r.text()


async def test_blocking_reload_errors(live):
    client, _d = live
    r = await client.get("/live/demo/360p/index.m3u8?_HLS_part=1")
    assert r.status == 400 and "requires" in await r.text()
    r = await client.get("/live/demo/360p/index.m3u8?_HLS_msn=1006")
    assert r.status == 400 and "too far" in await r.text()
    r = await client.get("/live/demo/360p/index.m3u8?_HLS_msn=abc")
    assert r.status == 400
    assert r.headers["Cache-Control"] == "no-store"


async def test_blocking_reload_times_out_with_503_after_three_target_durations(aiohttp_client):
    clock = ManualClock()
    store, d = make_live(clock=clock)
    d.publish_segments(3)
    client = await aiohttp_client(create_app(store))
    req = asyncio.create_task(client.get("/live/demo/360p/index.m3u8?_HLS_msn=1004"))
    await until(lambda: d.stream.track("360p").held_count == 1)
    clock.advance(3 * d.stream.target_duration - 0.5)
    assert clock.sleeping == 1 and not req.done()  # the hold's deadline is not due yet
    clock.advance(0.5)
    r = await asyncio.wait_for(req, 2)
    assert r.status == 503 and "in time" in await r.text()


async def test_directives_ignored_after_end(live):
    client, d = live
    d.stream.on_end("done")
    r = await client.get("/live/demo/360p/index.m3u8?_HLS_msn=1005&_HLS_part=0")
    assert r.status == 200 and "#EXT-X-ENDLIST" in await r.text()


async def test_skip(aiohttp_client):
    store, d = make_live(window_s=Fraction(30))
    d.publish_segments(20)
    client = await aiohttp_client(create_app(store))
    full = await (await client.get("/live/demo/360p/index.m3u8")).text()
    delta = await (await client.get("/live/demo/360p/index.m3u8?_HLS_skip=YES")).text()
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta and "#EXT-X-SKIP" not in full
    assert len(delta) < len(full)
    v2 = await (await client.get("/live/demo/360p/index.m3u8?_HLS_skip=v2")).text()
    assert "#EXT-X-SKIP" in v2


async def test_preload_hint_part_is_held_then_served(live):
    client, d = live
    playlist = await (await client.get("/live/demo/360p/index.m3u8")).text()
    assert 'PRELOAD-HINT:TYPE=PART,URI="1003.2.m4s"' in playlist
    req = asyncio.create_task(client.get("/live/demo/360p/1003.2.m4s"))
    await until(lambda: d.stream.track("360p").held_count == 1)
    assert not req.done()
    d.publish(1)
    r = await asyncio.wait_for(req, 2)
    assert r.status == 200
    assert await r.read() == d.part_bytes(d.stream.track("360p").info, 1003, 2)
    # a part that is not hinted is 404 at once
    r = await client.get("/live/demo/360p/1004.3.m4s")
    assert r.status == 404


async def test_render_once_per_state(aiohttp_client):
    store, d = make_live()
    d.publish_segments(2)
    app = create_app(store)
    client = await aiohttp_client(app)
    from origin.handlers import STATE

    state = app[STATE]
    before = state.cache.renders
    await asyncio.gather(*(client.get("/live/demo/360p/index.m3u8") for _ in range(50)))
    assert state.cache.renders - before == 1


async def test_many_blocking_waiters_released_together(live):
    client, d = live
    reqs = [asyncio.create_task(client.get("/live/demo/360p/index.m3u8?_HLS_msn=1003&_HLS_part=2")) for _ in range(100)]
    await until(lambda: d.stream.track("360p").held_count == 100)  # the client opens 100 connections at most
    assert d.stream.track("360p").waiter_count == 1  # one shared wake-up for all of them
    d.publish(1)
    responses = await asyncio.wait_for(asyncio.gather(*reqs), 5)
    assert all(r.status == 200 for r in responses)


# ---------------------------------------------------------------- chunked DASH


async def test_segment_in_production_streams_chunks(live):
    client, d = live
    # 1003 has parts 0,1; ask for it: the first bytes come at once
    r = await client.get("/live/demo/360p/1003.m4s")
    assert r.status == 200
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.headers["Cache-Control"].startswith("no-store")
    info = d.stream.track("360p").info
    first = await asyncio.wait_for(r.content.readexactly(len(SEGMENT_HEADER) + 2 * len(d.part_bytes(info, 1003, 0))), 2)
    assert first.startswith(SEGMENT_HEADER)
    d.publish(2)  # 1003.2, 1003.3 completes the segment
    rest = await asyncio.wait_for(r.content.read(), 2)
    whole = first + rest
    assert whole == d.stream.segment_bytes("360p", 1003)


async def test_next_segment_request_is_held_until_it_starts(live):
    client, d = live
    d.publish(2)  # complete 1003
    req = asyncio.create_task(client.get("/live/demo/360p/1004.m4s"))
    await until(lambda: d.stream.track("360p").held_count == 1)
    assert not req.done()
    d.publish(4)
    r = await asyncio.wait_for(req, 2)
    assert await r.read() == d.stream.segment_bytes("360p", 1004)


async def test_far_future_segment_404(live):
    client, _d = live
    r = await client.get("/live/demo/360p/1010.m4s")
    assert r.status == 404


async def test_plain_live_mpd_for_non_ll_clients(live):
    client, _d = live
    ll = await (await client.get("/live/demo/manifest.mpd")).read()
    plain = await (await client.get("/live/demo/manifest.mpd?ll=0")).read()
    from tests.support.xsd import validate_mpd

    validate_mpd(ll)
    validate_mpd(plain)
    assert b"availabilityTimeOffset" in ll and b"availabilityTimeOffset" not in plain
    assert b"ServiceDescription" in ll


async def test_chunked_segment_finishes_cleanly_at_end_of_stream(live):
    client, d = live
    r = await client.get("/live/demo/360p/1003.m4s")
    assert r.headers["X-Accel-Buffering"] == "no"
    await asyncio.wait_for(r.content.readexactly(len(SEGMENT_HEADER)), 2)
    d.publish(1)
    d.stream.on_end("stopped")
    rest = await asyncio.wait_for(r.content.read(), 2)
    assert SEGMENT_HEADER + rest == d.stream.segment_bytes("360p", 1003)


async def test_slow_client_does_not_stall_others(aiohttp_client):
    import socket

    store, d = make_live(tracks=(make_big_track(),))
    d.part_bytes = lambda info, msn, index: bytes(2_000_000)  # 8 MB segments
    d.publish_segments(2)
    client = await aiohttp_client(create_app(store))
    host, port = client.server.host, client.server.port
    # a client that asks for a big segment and never reads
    slow = socket.create_connection((host, port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(4):
        slow.sendall(b"GET /live/demo/big/1000.m4s HTTP/1.1\r\nHost: x\r\n\r\n")
    slow.setblocking(False)
    await until(lambda: _has_bytes(slow))  # the server is sending to it: the slow reader is in place

    async def others() -> None:
        for _ in range(20):
            r = await client.get("/live/demo/big/index.m3u8")
            assert r.status == 200

    await asyncio.wait_for(others(), 10)  # a hang here would mean the slow reader stalls everyone
    slow.close()


def _has_bytes(sock) -> bool:  # type: ignore[no-untyped-def]
    import socket

    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def make_big_track():
    from tests.support.live import VIDEO

    return type(VIDEO)(**{**VIDEO.__dict__, "name": "big"})


async def test_manifests_wait_until_every_announced_rendition_exists(aiohttp_client):
    from packager.store import Store
    from packager.timebase import MediaClock
    from tests.support.live import AUDIO, VIDEO, VIDEO2

    store = Store()
    stream = store.open_stream(
        "demo",
        segment_s=Fraction(1),
        part_s=Fraction(1, 4),
        window_s=Fraction(10),
        target_duration=1,
        clock=MediaClock(Fraction(0), live=True),
    )
    stream.expect_tracks(frozenset({VIDEO.name, VIDEO2.name, AUDIO.name}))
    client = await aiohttp_client(create_app(store))
    stream.on_init(AUDIO, b"ftyp+moov audio")  # a restart re-lists its tracks one by one
    stream.on_init(VIDEO, b"ftyp+moov video")
    for path in ("/live/demo/master.m3u8", "/live/demo/manifest.mpd"):
        r = await client.get(path)
        assert r.status == 404 and "no media yet" in await r.text(), path  # never a short ladder
    stream.on_init(VIDEO2, b"ftyp+moov video2")
    master = await client.get("/live/demo/master.m3u8")
    assert master.status == 200 and VIDEO2.name in await master.text()
    assert (await client.get("/live/demo/manifest.mpd")).status == 200


async def test_mpd_stops_promising_the_next_segment_once_nothing_is_published(aiohttp_client):
    """Every encoder down: the segment listed early for chunked fetching may never come, so the MPD
    lists it only while something was published within the last segment duration."""
    clock = ManualClock(utc_s=time.time())  # the driver stamps parts with the real time
    store, d = make_live(clock=clock)
    d.publish_segments(3)  # segment 1003 is due next: listed, nothing of it exists yet
    client = await aiohttp_client(create_app(store))

    async def listed() -> int:
        """Segments the MPD lists, over all its timelines."""
        root = etree.fromstring(await (await client.get("/live/demo/manifest.mpd")).read())
        return sum(1 + int(s.get("r", "0")) for s in root.iter("{urn:mpeg:dash:schema:mpd:2011}S"))

    fresh = await listed()
    clock.advance(float(d.stream.segment_s) + 0.1)
    assert await listed() == fresh - len(d.stream.tracks)  # the production entry of each timeline
