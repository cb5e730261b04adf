"""``POST /api/streams/{stream}/subtitles`` against a live encoding pipeline: cues land in a new subtitle
rendition at the instant asked for (or now), the manifests list it, and hostile requests are refused."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from packager.manifest.hls import render_master
from tests.support.clock import until
from tests.support.encoding import ADMIN, encoding
from tests.test_subtitles_media import parse_vtt

pytestmark = pytest.mark.media

URL = "/api/streams/demo/subtitles"


@pytest.fixture
async def live(aiohttp_client):  # type: ignore[no-untyped-def]
    async with encoding(aiohttp_client, "320x180@200k", 320, 180) as running:
        yield running


def _auth() -> dict[str, str]:
    return ADMIN


async def _cues_of(client, track: str, upto_msn: int) -> list[tuple[int, int, str]]:  # type: ignore[no-untyped-def]
    out: dict[tuple[int, int, str], None] = {}
    playlist = await (await client.get(f"/live/demo/{track}/index.m3u8")).text()
    for uri in [ln for ln in playlist.splitlines() if ln.endswith(".vtt") and int(ln[:-4]) <= upto_msn]:
        r = await client.get(f"/live/demo/{track}/{uri}")
        assert r.status == 200 and r.headers["Content-Type"] == "text/vtt; charset=utf-8"
        assert "immutable" in r.headers["Cache-Control"]
        out.update(dict.fromkeys(parse_vtt(await r.text())))
    return list(out)


async def test_cues_make_a_rendition_and_land_at_their_times(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, _ = live
    ahead = round(time.time()) + 3
    body = {
        "language": "eng",
        "cues": [{"text": "now <b>", "duration_s": 1.5}, {"text": "later", "start_s": ahead, "duration_s": 2}],
    }
    posted = time.time()
    r = await client.post(URL, json=body, headers=_auth())
    assert r.status == 201, await r.text()
    answer = await r.json()
    assert answer == {"track": "subs-en", "language": "en", "accepted": 2, "late": 0}
    last = (ahead + 2) * 1000 // 2000
    await until(
        lambda: (
            (t := stream.track("subs-en")) is not None
            and t.last_completed_msn is not None
            and t.last_completed_msn >= last
        ),
        timeout_s=15,
    )
    cues = await _cues_of(client, "subs-en", last)
    assert [c[2] for c in cues] == ["now &lt;b&gt;", "later"]
    (now_start, now_end, _), (later_start, later_end, _) = cues
    assert abs(now_start - posted * 1000) < 500 and now_end - now_start == 1500
    assert (later_start, later_end) == (ahead * 1000, ahead * 1000 + 2000)
    master = await (await client.get("/live/demo/master.m3u8")).text()
    # the renditions are the fresh render's (a segment published meanwhile may move a BANDWIDTH figure)
    media = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA")]
    assert media == [line for line in render_master(stream.view()).splitlines() if line.startswith("#EXT-X-MEDIA")]
    assert 'TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en"' in master
    mpd = await (await client.get("/live/demo/manifest.mpd")).text()
    assert 'contentType="text"' in mpd and 'lang="en"' in mpd


async def test_a_cue_for_a_published_segment_is_counted_late(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, _ = live
    assert (
        await client.post(URL, json={"language": "de", "cues": [{"text": "a", "duration_s": 1}]}, headers=_auth())
    ).status == 201
    await until(lambda: stream.track("subs-de").last_completed_msn is not None, timeout_s=10)
    old = stream.track("subs-de").segments[0].start / 1000 - 5
    r = await client.post(
        URL, json={"language": "de", "cues": [{"text": "b", "start_s": old, "duration_s": 1}]}, headers=_auth()
    )
    assert r.status == 201 and (await r.json())["late"] == 1


NOW = time.time()
MALFORMED = [
    (b"not json", 400, "not JSON"),
    (b"[]", 400, "JSON object"),
    (b'{"cues": []}', 400, "language"),
    (b'{"language": "xx-yy-zz", "cues": []}', 400, "language"),
    (b'{"language": "und", "cues": [{"text": "a", "duration_s": 1}]}', 400, "not 'und'"),
    (b'{"language": 7, "cues": [{"text": "a", "duration_s": 1}]}', 400, "language"),
    (b'{"language": "en", "cues": []}', 400, "1-50 cues"),
    (b'{"language": "en", "cues": {"text": "a"}}', 400, "1-50 cues"),
    (json.dumps({"language": "en", "cues": [{"text": "a", "duration_s": 1}] * 51}).encode(), 400, "1-50 cues"),
    (b'{"language": "en", "cues": ["a"]}', 400, "must be an object"),
    (b'{"language": "en", "cues": [{"text": "a"}]}', 400, "duration_s must be a finite number"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": 1e400}]}', 400, "finite number"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": "2"}]}', 400, "finite number"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": true}]}', 400, "finite number"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": 0}]}', 400, "within"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": 31}]}', 400, "within"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": 1, "start_s": 0}]}', 400, "before and"),
    (
        json.dumps({"language": "en", "cues": [{"text": "a", "duration_s": 1, "start_s": NOW + 3600}]}).encode(),
        400,
        "after now",
    ),
    (b'{"language": "en", "cues": [{"text": "", "duration_s": 1}]}', 400, "empty"),
    (b'{"language": "en", "cues": [{"text": " \\n ", "duration_s": 1}]}', 400, "empty"),
    (b'{"language": "en", "cues": [{"text": 5, "duration_s": 1}]}', 400, "must be a string"),
    (b'{"language": "en", "cues": [{"text": "a\\u0000b", "duration_s": 1}]}', 400, "control characters"),
    (json.dumps({"language": "en", "cues": [{"text": "x" * 501, "duration_s": 1}]}).encode(), 400, "at most 500"),
    (b'{"language": "en", "cues": [{"text": "1\\n2\\n3\\n4\\n5", "duration_s": 1}]}', 400, "lines"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": 1, "style": "x"}]}', 400, "unknown field"),
    (b'{"language": "en", "cues": [{"text": "a", "duration_s": 1}], "x": 1}', 400, "unknown field"),
    (b"[" * 100_000, 413, "at most"),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, "not JSON"),
]


async def test_malformed_requests_get_a_reason_and_change_nothing(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, _ = live
    for body, status, reason in MALFORMED:
        r = await client.post(URL, data=body, headers=_auth())
        assert r.status == status and reason in await r.text(), (body[:60], r.status, await r.text())
    assert stream.view().text == ()


async def test_only_the_admin_and_only_live_streams_encoded_here(live) -> None:  # type: ignore[no-untyped-def]
    client, stream, pipeline = live
    ok = {"language": "en", "cues": [{"text": "a", "duration_s": 1}]}
    assert (await client.post(URL, json=ok)).status == 401
    assert (await client.post(URL, json=ok, headers={"Authorization": "Bearer nope"})).status == 401
    assert (await client.post("/api/streams/other/subtitles", json=ok, headers=_auth())).status == 404
    assert stream.view().text == ()
    pipeline.stop()
    await asyncio.wait_for(pipeline.wait(), 30)
    r = await client.post(URL, json=ok, headers=_auth())
    assert r.status == 409 and "ended" in await r.text()
