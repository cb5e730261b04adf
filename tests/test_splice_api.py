"""``POST /api/streams/{stream}/splice`` against a live encoding pipeline: the break lands on an IDR in every
rendition at the instant the answer names, playlists and the MPD list it, and hostile requests are refused."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import threefive

from packager.cmaf import iter_boxes, parse_fragments
from packager.manifest.hls import render_media
from tests.support.clock import until
from tests.support.encoding import ADMIN, encoding

pytestmark = pytest.mark.media

LADDER = "480x270@400k,320x180@200k"


@pytest.fixture
async def live(aiohttp_client):  # type: ignore[no-untyped-def]
    async with encoding(aiohttp_client, LADDER, 480, 270) as running:
        yield running


def _auth() -> dict[str, str]:
    return ADMIN


async def _part_at(stream, track: str, start: int):  # type: ignore[no-untyped-def]
    """The published part of ``track`` whose nominal boundary is ``start`` (90 kHz), once it exists."""
    t = stream.track(track)
    msn, index = t.position_of(start)
    await until(lambda: stream.part(track, msn, index) is not None, timeout_s=20)
    return stream.part(track, msn, index)


async def test_a_break_lands_on_an_idr_in_every_rendition(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, _ = live
    r = await client.post("/api/streams/demo/splice", json={"duration_s": 2, "id": 42}, headers=_auth())
    assert r.status == 201, await r.text()
    splice = (await r.json())["splice"]
    start = round(splice["start_s"] * 90_000)
    assert start % 45_000 == 0 and splice["id"] == 42 and splice["kind"] == "out" and splice["duration_s"] == 2
    cue = threefive.Cue(base64.b64decode(splice["scte35"]))
    cue.decode()
    assert cue.command.splice_event_id == 42 and cue.command.out_of_network_indicator
    for instant in (start, start + 2 * 90_000):  # the break and its return
        for name in ("270p", "180p"):
            part = await _part_at(stream, name, instant)
            assert part.independent and part.start == instant, (name, instant)
    part = await _part_at(stream, "270p", start)
    assert [b.type for b in iter_boxes(part.data)].count("emsg") == 1
    (frag,) = parse_fragments(part.data)
    assert frag.base_decode_time == start
    for name in ("270p", "180p", "audio"):
        assert 'ID="splice-42-' in render_media(stream.view(), name)
    mpd = await (await client.get("/live/demo/manifest.mpd")).text()
    assert f'presentationTime="{start}"' in mpd and "urn:scte:scte35:2014:xml+bin" in mpd


async def test_open_ended_break_then_its_return(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, _ = live
    out = await (await client.post("/api/streams/demo/splice", json={"out": True}, headers=_auth())).json()
    back = await client.post("/api/streams/demo/splice", json={"in": True, "delay_s": 1.5}, headers=_auth())
    assert back.status == 201
    returned = (await back.json())["splice"]
    assert returned["id"] == out["splice"]["id"] and returned["kind"] == "in"  # closes the open break
    assert returned["start_s"] >= out["splice"]["start_s"] + 1.0
    await _part_at(stream, "180p", round(returned["start_s"] * 90_000))
    text = render_media(stream.view(), "180p")
    assert text.count(f'ID="splice-{returned["id"]}-') == 2 and "SCTE35-IN=0x" in text and "DURATION=" in text
    data = await (await client.get("/api/streams", headers=_auth())).json()
    (listed,) = data["streams"][0]["breaks"]
    assert listed["id"] == returned["id"] and listed["from"] == "api"
    assert listed["start"] == out["splice"]["start"] and listed["end"] == returned["start"]


MALFORMED = [
    (b"{", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    (b"[]", 400, "JSON object"),
    (b"{}", 400, '"out": true'),
    (b'{"out": true, "in": true}', 400, '"out": true'),
    (b'{"out": "yes"}', 400, "true or false"),
    (b'{"duration_s": -1}', 400, "within"),
    (b'{"duration_s": 1e400}', 400, "number"),
    (b'{"duration_s": "30"}', 400, "number"),
    (b'{"duration_s": 90000}', 400, "within"),
    (b'{"in": true, "duration_s": 5}', 400, "only a break out"),
    (b'{"out": true, "id": -3}', 400, "outside"),
    (b'{"out": true, "id": 1.5}', 400, "integer"),
    (b'{"out": true, "delay_s": 4000}', 400, "within"),
    (b'{"out": true, "script": 1}', 400, "unknown field"),
    (json.dumps({"out": True, "pad": "x" * 5000}).encode(), 413, "at most"),
]


async def test_malformed_requests_get_a_reason_and_change_nothing(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, _ = live
    for body, status, reason in MALFORMED:
        r = await client.post("/api/streams/demo/splice", data=body, headers=_auth())
        assert r.status == status and reason in await r.text(), (body[:40], r.status, await r.text())
    assert stream.splices == ()


async def test_only_the_admin_and_only_streams_encoded_here(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, pipeline = live
    assert (await client.post("/api/streams/demo/splice", json={"out": True})).status == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await client.post("/api/streams/demo/splice", json={"out": True}, headers=wrong)).status == 401
    assert (await client.post("/api/streams/other/splice", json={"out": True}, headers=_auth())).status == 404
    assert (await client.post("/api/streams/..%2f/splice", json={"out": True}, headers=_auth())).status == 404
    assert stream.splices == ()
    pipeline.stop()
    await asyncio.wait_for(pipeline.wait(), 30)
    r = await client.post("/api/streams/demo/splice", json={"out": True}, headers=_auth())
    assert r.status == 409 and "ended" in await r.text()
