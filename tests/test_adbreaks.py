"""Ad breaks in manifests: EXT-X-DATERANGE per RFC 8216bis 4.4.5.1, legacy cue tags, the DASH EventStream
and the in-band emsg, rendered from hand-built views with splices."""

from __future__ import annotations

import base64
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import m3u8
import pytest
from lxml import etree

from packager import scte35
from packager.cmaf.emsg import EventMessage, emsg
from packager.cmaf.reader import iter_boxes
from packager.manifest.adbreaks import SCTE35_INBAND_SCHEME, SCTE35_XML_BIN_SCHEME, event_id
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_media
from packager.model import StreamView
from packager.splice import SPLICE_TIMESCALE, Splice
from tests.support.views import LIVE_MSN, VOD_EPOCH, make_view
from tests.support.xsd import validate_mpd

NS = {"d": "urn:mpeg:dash:schema:mpd:2011", "scte35": "http://www.scte.org/schemas/35/2016"}
SEG = 2 * SPLICE_TIMESCALE
PART = SPLICE_TIMESCALE // 2


def _splice(kind: str, event: int, start: int, duration: int | None = None) -> Splice:
    return Splice(event, kind, start, duration, scte35.build(kind, event, start, duration))  # type: ignore[arg-type]


def live_with_breaks() -> tuple[StreamView, tuple[Splice, ...]]:
    base = (LIVE_MSN + 3) * SEG
    splices = (
        _splice("out", 42, base + PART, 30 * SPLICE_TIMESCALE),  # a break with a planned return
        _splice("out", 43, base + 3 * SEG),  # open-ended, closed by its in
        _splice("in", 43, base + 5 * SEG + 2 * PART),
    )
    return replace(make_view(count=12), splices=splices), splices


def attrs(line: str) -> dict[str, str]:
    body = line.split(":", 1)[1]
    out: dict[str, str] = {}
    for item in m3u8.parser.ATTRIBUTELISTPATTERN.split(body)[1::2]:
        key, _, value = item.partition("=")
        out[key] = value.strip('"')
    return out


def dateranges(text: str) -> list[dict[str, str]]:
    return [attrs(line) for line in text.splitlines() if line.startswith("#EXT-X-DATERANGE:")]


def _date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_dateranges_follow_rfc8216bis() -> None:
    view, splices = live_with_breaks()
    text = render_media(view, "720p")
    tags = dateranges(text)
    assert len(tags) == 3  # two outs, one return
    by_id: dict[str, list[dict[str, str]]] = {}
    for t in tags:
        by_id.setdefault(t["ID"], []).append(t)
        assert "START-DATE" in t
    assert len(by_id) == 2  # one ID per break
    for same in by_id.values():
        shared = set.intersection(*(set(t) for t in same))
        assert all(len({t[k] for t in same}) == 1 for k in shared if k not in ("SCTE35-OUT", "SCTE35-IN"))
    first = by_id[f"splice-42-{splices[0].start}"][0]
    assert _date(first["START-DATE"]) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=splices[0].start / 9e4)
    assert float(first["PLANNED-DURATION"]) == 30.0
    assert bytes.fromhex(first["SCTE35-OUT"][2:]) == splices[0].section and first["SCTE35-OUT"].startswith("0x")
    out, back = by_id[f"splice-43-{splices[1].start}"]
    assert "SCTE35-OUT" in out and "DURATION" not in out
    assert float(back["DURATION"]) == (splices[2].start - splices[1].start) / SPLICE_TIMESCALE
    assert bytes.fromhex(back["SCTE35-IN"][2:]) == splices[2].section
    assert "#EXT-X-PROGRAM-DATE-TIME" in text  # RFC: a playlist with DATERANGE has PROGRAM-DATE-TIME
    assert sum(len(s.dateranges) for s in m3u8.loads(text).segments) == 3  # and a parser reads them


def test_start_date_is_on_the_same_clock_as_program_date_time() -> None:
    view, _ = live_with_breaks()
    text = render_media(view, "720p")
    pdts = [_date(line.split(":", 1)[1]) for line in text.splitlines() if line.startswith("#EXT-X-PROGRAM-DATE-TIME")]
    segment_at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=(LIVE_MSN + 3) * 2)
    assert segment_at in pdts
    first = dateranges(text)[0]
    assert _date(first["START-DATE"]) - segment_at == timedelta(seconds=0.5)


def test_every_playlist_full_or_delta_carries_the_same_tags() -> None:
    view = replace(make_view(count=30), splices=live_with_breaks()[1])
    tags = {name: dateranges(render_media(view, name)) for name in ("720p", "480p", "360p", "audio")}
    assert len({str(t) for t in tags.values()}) == 1
    delta = render_media(view, "720p", skip=True)
    assert "#EXT-X-SKIP" in delta and dateranges(delta) == tags["720p"]
    assert "CAN-SKIP-DATERANGES" not in delta


def test_no_breaks_no_tags_and_cue_tags_only_when_asked() -> None:
    plain = render_media(make_view(count=12), "720p")
    assert "DATERANGE" not in plain and "CUE" not in plain
    view, splices = live_with_breaks()
    assert "EXT-X-CUE" not in render_media(view, "720p")
    lines = render_media(replace(view, hls_cue_tags=True), "720p").splitlines()
    outs = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-CUE-OUT")]
    ins = [i for i, line in enumerate(lines) if line == "#EXT-X-CUE-IN"]
    assert [lines[i] for i in outs] == ["#EXT-X-CUE-OUT:30.0", "#EXT-X-CUE-OUT:5.0"]
    assert len(ins) == 1  # break 42 returns after the window's end; break 43 inside it

    def segment_start_after(i: int) -> datetime:
        pdt = next(line for line in lines[i:] if line.startswith("#EXT-X-PROGRAM-DATE-TIME"))
        return _date(pdt.split(":", 1)[1])

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i, s in ((outs[0], splices[0]), (outs[1], splices[1]), (ins[0], splices[2])):
        start = segment_start_after(i)  # the tag precedes the segment the splice falls in
        assert start <= epoch + timedelta(seconds=s.start / 9e4) < start + timedelta(seconds=2)


# --------------------------------------------------------------------------- DASH


def events(mpd: bytes) -> list[etree._Element]:
    return etree.fromstring(mpd).findall(".//d:Period/d:EventStream/d:Event", NS)


def test_event_stream_is_schema_valid_and_on_the_media_timeline() -> None:
    view, splices = live_with_breaks()
    mpd = render_mpd(view)
    validate_mpd(mpd)
    root = etree.fromstring(mpd)
    (stream,) = root.findall(".//d:Period/d:EventStream", NS)
    assert stream.get("schemeIdUri") == SCTE35_XML_BIN_SCHEME and stream.get("timescale") == "90000"
    period_origin = int(root.find(".//d:Period//d:SegmentTemplate", NS).get("presentationTimeOffset"))
    assert int(stream.get("presentationTimeOffset")) == period_origin  # video ticks are splice ticks
    got = [(int(e.get("presentationTime")), e.get("duration")) for e in events(mpd)]
    assert got == [
        (splices[0].start, str(30 * SPLICE_TIMESCALE)),
        (splices[1].start, str(splices[2].start - splices[1].start)),
        (splices[2].start, None),
    ]
    ids = [int(e.get("id")) for e in events(mpd)]
    assert len(set(ids)) == 3 and ids == [event_id(s) for s in splices]
    binary = events(mpd)[0].find("scte35:Signal/scte35:Binary", NS).text
    assert base64.b64decode(binary) == splices[0].section


def test_inband_event_stream_on_video_only_and_static_mpds_keep_events() -> None:
    view, _ = live_with_breaks()
    root = etree.fromstring(render_mpd(view))
    for aset in root.iterfind(".//d:AdaptationSet", NS):
        inband = aset.findall("d:InbandEventStream", NS)
        if aset.get("contentType") == "video":
            assert [(i.get("schemeIdUri"), i.get("value")) for i in inband] == [(SCTE35_INBAND_SCHEME, "1")]
        else:
            assert inband == []
    vod = make_view(count=6, live=False)
    splice = _splice("out", 1, 4 * SEG + PART, 2 * SPLICE_TIMESCALE)
    mpd = render_mpd(replace(vod, splices=(splice,)))
    validate_mpd(mpd)
    (event,) = events(mpd)
    stream = etree.fromstring(mpd).find(".//d:EventStream", NS)
    # static: the Period starts at the first media; the event keeps its place relative to it
    assert int(event.get("presentationTime")) - int(stream.get("presentationTimeOffset")) == 4 * SEG + PART
    hls = render_media(replace(vod, splices=(splice,)), "720p")
    start = datetime.fromtimestamp(float(VOD_EPOCH), UTC) + timedelta(seconds=8.5)
    assert _date(dateranges(hls)[0]["START-DATE"]) == start


def test_each_period_lists_the_events_that_start_in_it() -> None:
    gap = LIVE_MSN + 5
    view = make_view(count=12, gaps={gap}, discontinuities={gap + 1})
    early = _splice("out", 1, (LIVE_MSN + 2) * SEG)
    late = _splice("in", 1, (gap + 3) * SEG)
    mpd = render_mpd(replace(view, splices=(early, late)))
    validate_mpd(mpd)
    periods = etree.fromstring(mpd).findall("d:Period", NS)
    assert len(periods) == 2
    per_period = [[int(e.get("presentationTime")) for e in p.findall("d:EventStream/d:Event", NS)] for p in periods]
    assert per_period == [[early.start], [late.start]]


def test_emsg_version_1_carries_the_section_at_its_absolute_time() -> None:
    section = scte35.build("out", 7, 123 * PART, None)
    box = emsg(EventMessage(SCTE35_INBAND_SCHEME, "", 90_000, 123 * PART, None, 99, section))
    (parsed,) = list(iter_boxes(box))
    assert parsed.type == "emsg" and parsed.size == len(box)
    payload = box[8:]
    version, timescale, time, duration, ident = payload[0], *struct.unpack(">IQII", payload[4:24])
    assert (version, timescale, time, duration, ident) == (1, 90_000, 123 * PART, 0xFFFFFFFF, 99)
    scheme, value, message = payload[24:].split(b"\0", 2)
    assert (scheme.decode(), value, message) == (SCTE35_INBAND_SCHEME, b"", section)


@pytest.mark.parametrize("kind", ["out", "in"])
def test_event_ids_are_a_function_of_the_splice(kind: str) -> None:
    a = _splice(kind, 1, 10 * PART)
    assert event_id(a) == event_id(_splice(kind, 999, 10 * PART))
    assert event_id(a) != event_id(_splice(kind, 1, 11 * PART))
    assert event_id(_splice("out", 1, 10 * PART)) != event_id(_splice("in", 1, 10 * PART))
    assert 0 <= event_id(a) < 1 << 32
    assert Fraction(a.start, SPLICE_TIMESCALE) == a.start_s
