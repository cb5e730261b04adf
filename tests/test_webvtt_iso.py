"""The DASH form of a subtitle rendition, WebVTT in ISO BMFF (``wvtt``): samples cut at every cue boundary,
rendered from the WebVTT files HLS lists, and placed by dash.js's mapping (``Period@start -
presentationTimeOffset`` plus the sample time) exactly where the video of the same media instant plays, in the
live (dynamic) MPD, the static MPD of the same stream once it ended, and a VOD's."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from lxml import etree

from origin.app import create_app
from packager.cmaf import find, iter_boxes, parse_fragments, parse_init
from packager.cmaf.wvtt import cue_samples, from_webvtt
from packager.manifest.dash import render_mpd
from packager.store import Store, StreamStore
from packager.subtitles import Subtitles, SubtitleTrack
from packager.timebase import MediaClock
from packager.webvtt import Cue, render_segment
from tests.support.clock import ManualClock
from tests.support.live import VIDEO, Driver

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
SEGMENT_S = Fraction(1)
PART_S = Fraction(1, 4)
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?$")


def payloads(sample: bytes) -> list[str]:
    """The cue texts of one ``wvtt`` sample (``[]`` for an empty ``vtte``)."""
    boxes = list(iter_boxes(sample))
    if [b.type for b in boxes] == ["vtte"]:
        return []
    assert {b.type for b in boxes} == {"vttc"}, boxes
    out = []
    for b in boxes:
        (payl,) = find(sample[b.offset : b.offset + b.size], "vttc/payl")
        out.append(sample[b.offset + payl.offset + 8 : b.offset + payl.offset + payl.size].decode())
    return out


def wvtt_samples(data: bytes) -> list[tuple[int, int, list[str]]]:
    """(start, end, cue texts) of every sample of a ``wvtt`` media segment, in track ticks."""
    (fragment,) = parse_fragments(data)
    mdat = next(b for b in iter_boxes(data) if b.type == "mdat")
    at, offset, out = fragment.base_decode_time, mdat.offset + 8, []
    for duration, size in zip(fragment.sample_durations, fragment.sample_sizes, strict=True):
        out.append((at, at + duration, payloads(data[offset : offset + size])))
        at, offset = at + duration, offset + size
    return out


def test_samples_cover_the_segment_back_to_back_with_the_cues_shown_in_each() -> None:
    cues = [Cue(3900, 4100, "spans in"), Cue(4200, 4800, "first"), Cue(4500, 7000, "overlaps, spans out")]
    samples = cue_samples([*cues, Cue(9000, 9500, "later"), Cue(4300, 4400, "")], 4000, 6000)
    got = [(s.dts, s.duration, payloads(s.data)) for s in samples]
    assert got == [
        (4000, 100, ["spans in"]),
        (4100, 100, []),
        (4200, 300, ["first"]),
        (4500, 300, ["first", "overlaps, spans out"]),
        (4800, 1200, ["overlaps, spans out"]),
    ]
    assert all(s.keyframe and s.pts == s.dts for s in samples)
    assert [(s.dts, s.duration, payloads(s.data)) for s in cue_samples([], 0, 2000)] == [(0, 2000, [])]
    with pytest.raises(ValueError):
        cue_samples(cues, 6000, 6000)


def test_the_iso_form_of_a_vtt_file_is_one_fragment_with_its_cues_at_their_media_times() -> None:
    start = 1_750_000_004_000  # a UTC media clock, in ms
    vtt = render_segment([Cue(start + 200, start + 800, "a &amp; b\nline two")], start, start + 2000)
    data = from_webvtt(vtt, start, start + 2000, 875_000_002)
    assert [b.type for b in iter_boxes(data)] == ["styp", "moof", "mdat"]
    (fragment,) = parse_fragments(data)
    assert fragment.sequence_number == 875_000_003 and fragment.track_id == 1
    assert fragment.base_decode_time == start and fragment.sample_durations == (200, 600, 1200)
    with pytest.raises(ValueError):
        from_webvtt(b"not a WebVTT segment", start, start + 2000, 875_000_002)


# ---------------------------------------------------------------- dash.js's mapping


def _seconds(xs: str) -> Fraction:
    m = _DURATION.match(xs)
    assert m, xs
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + Fraction(s or "0")


def _stream(live: bool) -> tuple[StreamStore, Driver, Subtitles, int]:
    """Video and an English subtitle rendition, three segments with cues; returns the first media ms too."""
    epoch = Fraction(0) if live else Fraction(1_764_000_000)
    store = Store(clock=ManualClock(utc_s=1006.6 if live else float(epoch)))
    stream = store.open_stream(
        "demo",
        segment_s=SEGMENT_S,
        part_s=PART_S,
        window_s=Fraction(10) if live else Fraction(10**9),
        target_duration=1,
        clock=MediaClock(epoch, live=live),
    )
    stream.on_init(VIDEO, b"ftyp+moov 360p")
    first = 1000 if live else 0
    driver = Driver(stream, (VIDEO,), SEGMENT_S, PART_S, msn=first)
    subs = Subtitles(stream, SEGMENT_S)
    subs.add_track(SubtitleTrack("subs-en", "en", "English"))
    subs.advance(first * 1000)
    for msn in range(first, first + 3):
        subs.add_cue("subs-en", Cue(msn * 1000 + 250, msn * 1000 + 1500, f"cue {msn}"))
        driver.publish_segments(1)
        subs.advance((msn + 1) * 1000)
    return stream, driver, subs, first * 1000


def _periods(mpd: bytes, kind: str) -> list[tuple[Fraction, etree._Element]]:
    root = etree.fromstring(mpd)
    out = []
    for period in root.findall("d:Period", NS):
        template = period.find(f"d:AdaptationSet[@contentType='{kind}']/d:Representation/d:SegmentTemplate", NS)
        out.append((_seconds(period.get("start")), template))
    return out


def _offset_s(period_start: Fraction, template: etree._Element) -> Fraction:
    """dash.js's MSE timestamp offset of a Representation: Period@start - presentationTimeOffset (s)."""
    return period_start - Fraction(int(template.get("presentationTimeOffset")), int(template.get("timescale")))


def dashjs_cues(stream: StreamStore, mpd: bytes) -> dict[str, Fraction]:
    """Cue text -> where dash.js shows it on the video element: the offset plus each ``wvtt`` sample's time."""
    out: dict[str, Fraction] = {}
    for period_start, template in _periods(mpd, "text"):
        assert template.getparent().get("codecs") == "wvtt"  # dash.js adds the offset to fragmented text only
        first = int(template.get("startNumber"))
        count = sum(1 + int(s.get("r", "0")) for s in template.findall("d:SegmentTimeline/d:S", NS))
        for msn in range(first, first + count):
            seg = stream.segment("subs-en", msn)
            assert seg is not None
            data = from_webvtt(stream.segment_bytes("subs-en", msn), seg.start, seg.end, msn)
            for at, _end, texts in wvtt_samples(data):
                for text in texts:
                    out.setdefault(text, _offset_s(period_start, template) + Fraction(at, 1000))
    return out


@pytest.mark.parametrize("case", ["live", "ended", "vod"])
def test_dash_js_shows_each_cue_with_the_video_of_the_same_media_instant(case: str) -> None:
    stream, _driver, subs, first_ms = _stream(live=case != "vod")
    if case != "live":
        subs.finish()
        stream.on_end("eos")
    mpd = render_mpd(stream.view())
    assert (b'type="dynamic"' in mpd) == (case == "live")
    (video_start, video), *_ = _periods(mpd, "video")
    shown = dashjs_cues(stream, mpd)
    assert sorted(shown) == ["cue 0", "cue 1", "cue 2"] if case == "vod" else ["cue 1000", "cue 1001", "cue 1002"]
    for text, at in shown.items():
        media_s = Fraction(int(text.split()[1]) * 1000 + 250, 1000)
        assert at == _offset_s(video_start, video) + media_s  # the video's presentation time of that instant
        if case == "live":
            assert at == media_s  # on the UTC timeline, as the HLS X-TIMESTAMP-MAP says
        else:
            assert at == media_s - Fraction(first_ms, 1000)  # a static MPD starts at its first media


async def test_the_origin_serves_the_wvtt_init_and_each_segment_in_both_forms(aiohttp_client) -> None:
    stream, _driver, _subs, _ = _stream(live=True)
    client = await aiohttp_client(create_app(stream.store))
    r = await client.get("/live/demo/subs-en/init.mp4")
    assert r.status == 200 and parse_init(await r.read()).codec == "wvtt"
    seg = stream.segment("subs-en", 1001)
    assert seg is not None
    r = await client.get("/live/demo/subs-en/1001.m4s")
    assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
    assert await r.read() == from_webvtt(stream.segment_bytes("subs-en", 1001), seg.start, seg.end, 1001)
    r = await client.get("/live/demo/subs-en/1001.vtt")
    assert r.status == 200 and await r.read() == stream.segment_bytes("subs-en", 1001)
    assert r.headers["Content-Type"] == "text/vtt; charset=utf-8"
    for missing in ("1003.m4s", "1003.vtt", "1001.0.m4s"):
        assert (await client.get(f"/live/demo/subs-en/{missing}")).status == 404, missing
