"""The real packager + origin, checked over HTTP the way LL-HLS and LL-DASH clients use it."""

from __future__ import annotations

import http.client
import re
import time
from urllib.parse import urlparse

import m3u8
from lxml import etree

from packager.cmaf import parse_fragments
from tests.support.procs import get
from tests.support.xsd import validate_mpd

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def _hint(base: str, rendition: str = "270p") -> tuple[int, int]:
    _, _, body = get(f"{base}/live/demo/{rendition}/index.m3u8")
    m = re.search(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"', body)
    assert m, body[-400:]
    return int(m.group(1)), int(m.group(2))


def test_prft_matches_media_and_wall_clock(live_origin):
    _, _, body = get(f"{live_origin}/live/demo/270p/index.m3u8")
    pl = m3u8.loads(body.decode())
    uri = [s.uri for s in pl.segments if s.uri][-1]
    status, _, data = get(f"{live_origin}/live/demo/270p/{uri}")
    assert status == 200
    frags = parse_fragments(data)
    assert len(frags) == 4  # 2 s segment of 0.5 s parts
    now = time.time()
    for f in frags:
        assert f.prft is not None
        assert f.prft.media_time == f.base_decode_time
        media_utc = f.base_decode_time / 90_000  # live media time is UTC
        assert abs(f.prft.ntp_utc_s - media_utc) < 0.001
        assert now - 30 < f.prft.ntp_utc_s < now
    # the segment's time is its number: msn = floor(t / 2 s)
    assert int(uri.split(".")[0]) == frags[0].base_decode_time // 180_000


def test_segment_in_production_arrives_chunk_by_chunk(live_origin):
    # ask when the segment has just started, so most of it is still to be produced
    deadline = time.monotonic() + 5
    msn, part = _hint(live_origin)
    while part > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        msn, part = _hint(live_origin)
    url = urlparse(live_origin)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
    conn.request("GET", f"/live/demo/270p/{msn}.m4s")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    arrivals = []
    data = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        arrivals.append(time.monotonic())
        data += chunk
    conn.close()
    # first bytes long before the last: the response streamed while the segment was produced
    assert arrivals[-1] - arrivals[0] > 0.5, arrivals
    _, _, complete = get(f"{live_origin}/live/demo/270p/{msn}.m4s")
    assert data == complete
    assert len(parse_fragments(complete)) >= 1


def test_blocking_reload_on_real_media(live_origin):
    msn, part = _hint(live_origin)
    status, headers, body = get(f"{live_origin}/live/demo/270p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}")
    assert status == 200
    text = body.decode()
    assert f'URI="{msn}.{part}.m4s"' in text
    assert "max-age" in headers["Cache-Control"]
    pl = m3u8.loads(text)
    assert pl.server_control.can_block_reload == "YES"
    assert pl.part_inf.part_target > 0
    reports = re.findall(r"#EXT-X-RENDITION-REPORT:URI=\"([^\"]+)\"", text)
    assert sorted(reports) == ["../180p/index.m3u8", "../audio/index.m3u8"]
    # the same SERVER-CONTROL in every media playlist
    controls = {
        re.search(r"#EXT-X-SERVER-CONTROL:.*", get(f"{live_origin}/live/demo/{r}/index.m3u8")[2].decode()).group(0)
        for r in ("270p", "180p", "audio")
    }
    assert len(controls) == 1


def test_live_mpd_updates_keep_their_anchors(live_origin):
    first = get(f"{live_origin}/live/demo/manifest.mpd")[2]
    second = _next_mpd(live_origin, first)
    a, b = validate_mpd(first), validate_mpd(second)
    assert a.get("availabilityStartTime") == b.get("availabilityStartTime") == "1970-01-01T00:00:00.000Z"
    pa, pb = a.find("d:Period", NS), b.find("d:Period", NS)
    assert (pa.get("id"), pa.get("start")) == (pb.get("id"), pb.get("start"))
    assert a.get("publishTime") < b.get("publishTime")
    assert b.find("d:UTCTiming", NS) is not None
    for rep in b.iterfind(".//d:Representation", NS):
        tmpl = rep.find("d:SegmentTemplate", NS)
        assert float(tmpl.get("availabilityTimeOffset")) > 0
        assert tmpl.get("availabilityTimeComplete") == "false"
        # the Period starts at its run's first segment boundary; each timescale says the same instant
        start = int(b.find("d:Period", NS).get("id")) * 2
        assert int(tmpl.get("presentationTimeOffset")) == start * int(tmpl.get("timescale"))
    assert etree.QName(b).localname == "MPD"


def _next_mpd(base: str, previous: bytes, timeout_s: float = 10.0) -> bytes:
    """The first MPD whose publishTime differs from ``previous``'s (new media was published)."""
    before = re.search(rb'publishTime="([^"]+)"', previous).group(1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = get(f"{base}/live/demo/manifest.mpd")[2]
        if re.search(rb'publishTime="([^"]+)"', body).group(1) != before:
            return body
        time.sleep(0.05)
    raise AssertionError(f"the MPD's publishTime stayed {before.decode()} for {timeout_s:g} s")


def test_time_endpoint_is_utc(live_origin):
    status, _headers, body = get(f"{live_origin}/time")
    assert status == 200
    from datetime import datetime

    t = datetime.fromisoformat(body.decode().replace("Z", "+00:00")).timestamp()
    assert abs(t - time.time()) < 2
