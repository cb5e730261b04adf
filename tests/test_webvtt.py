"""The WebVTT writer and the subtitle segmenter: cue timing, escaping, ASS text, segments on the media grid."""

from __future__ import annotations

from fractions import Fraction

import pytest

from packager.cmaf import parse_init
from packager.model import Part, TrackInfo
from packager.subtitles import Subtitles, SubtitleTrack
from packager.webvtt import (
    Cue,
    ass_text,
    clean_text,
    parse_segment,
    parse_timestamp,
    render_segment,
    timestamp,
    timestamp_map,
)


def test_timestamps_are_hours_minutes_seconds_millis_with_as_many_hour_digits_as_needed() -> None:
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(3_723_004) == "01:02:03.004"
    assert timestamp(1_750_000_000_123) == "486111:06:40.123"  # a UTC media clock
    with pytest.raises(ValueError):
        timestamp(-1)


def test_timestamp_map_is_the_segment_start_in_90khz_modulo_2_33() -> None:
    assert timestamp_map(2000) == "X-TIMESTAMP-MAP=MPEGTS:180000,LOCAL:00:00:02.000"
    utc_ms = 1_750_000_000_000
    mpegts = int(timestamp_map(utc_ms).split("MPEGTS:")[1].split(",")[0])
    assert mpegts == (utc_ms * 90) % (1 << 33)
    assert mpegts < 1 << 33


def test_timestamps_read_back() -> None:
    for ms in (0, 3_723_004, 1_750_000_000_123):
        assert parse_timestamp(timestamp(ms)) == ms
    for bad in ("1:02:03.004", "01:02:03,004", "01:60:03.004", "01:02:03.004 ", "-1:00:00.000"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_a_segment_file_reads_back_as_its_start_and_cues() -> None:
    cues = [
        Cue(1_750_000_003_900, 1_750_000_004_100, "a &amp; b\nline two"),
        Cue(1_750_000_004_200, 1_750_000_005_000, "c"),
    ]
    data = render_segment(cues, 1_750_000_004_000, 1_750_000_006_000)
    back = parse_segment(data)
    assert back.start == 1_750_000_004_000 and back.cues == tuple(cues)
    assert parse_segment(render_segment([], 2000, 4000)).cues == ()
    for bad in (b"", b"WEBVTT\n\n", data.replace(b" --> ", b" - "), data[:-20], b"\xff" + data):
        with pytest.raises(ValueError):
            parse_segment(bad)


def test_cue_text_cannot_end_the_cue_or_fake_a_timing_line() -> None:
    text = clean_text("a --> b\n\n\nc & <i>d</i>  \r\n")
    assert "-->" not in text
    assert text == "a --&gt; b\nc &amp; &lt;i&gt;d&lt;/i&gt;"
    assert "\n\n" not in text


def test_ass_events_lose_override_tags_and_get_real_line_breaks() -> None:
    # FFmpeg >= 5 hands SubRip / mov_text / ASS cues as the fields after "Dialogue:" (ReadOrder first)
    assert ass_text(r"0,0,Default,,0,0,0,,{\i1}Hello{\i0}\Nworld, again") == "Hello\nworld, again"
    assert ass_text(r"Dialogue: 0,0,Default,,0,0,0,,{\an8}Top\hline") == "Top line"
    assert ass_text("plain text, with a comma") == "plain text, with a comma"


def test_a_segment_holds_the_cues_overlapping_it_in_order() -> None:
    cues = [Cue(5500, 7000, "second"), Cue(3900, 4100, "spans"), Cue(4200, 4800, "first"), Cue(9000, 9500, "later")]
    text = render_segment(cues, 4000, 6000).decode()
    lines = text.split("\n")
    assert lines[0] == "WEBVTT"
    assert lines[1] == "X-TIMESTAMP-MAP=MPEGTS:360000,LOCAL:00:00:04.000"
    timings = [ln for ln in lines if "-->" in ln]
    assert timings == [
        "00:00:03.900 --> 00:00:04.100",
        "00:00:04.200 --> 00:00:04.800",
        "00:00:05.500 --> 00:00:07.000",
    ]
    assert "later" not in text


def test_an_empty_segment_is_just_the_header() -> None:
    text = render_segment([], 0, 2000).decode()
    assert text == "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n\n"


class _Sink:
    def __init__(self) -> None:
        self.inits: list[tuple[TrackInfo, bytes]] = []
        self.parts: list[Part] = []

    def on_init(self, info: TrackInfo, data: bytes) -> None:
        self.inits.append((info, data))

    def on_part(self, part: Part, last_in_segment: bool, discontinuity: bool) -> None:
        assert last_in_segment and not discontinuity
        self.parts.append(part)

    def on_end(self, reason: str) -> None:
        raise AssertionError("not called")


def test_segments_close_on_the_media_grid_with_or_without_cues() -> None:
    sink = _Sink()
    subs = Subtitles(sink, Fraction(2))
    subs.add_track(SubtitleTrack("subs-en", "en", "English"))
    info, init = sink.inits[0]
    assert info.kind == "text" and (parse_init(init).handler, parse_init(init).codec) == ("text", "wvtt")
    assert parse_init(init).timescale == info.timescale == 1000
    subs.advance(10_100)  # media started inside segment 5
    assert subs.add_cue("subs-en", Cue(10_500, 12_500, "hello"))
    subs.advance(11_900)
    assert sink.parts == []
    subs.advance(12_000)
    subs.advance(16_000)
    assert [(p.msn, p.start, p.duration) for p in sink.parts] == [
        (5, 10_000, 2000),
        (6, 12_000, 2000),
        (7, 14_000, 2000),
    ]
    assert b"hello" in sink.parts[0].data and b"hello" in sink.parts[1].data  # spans the boundary
    assert b"-->" not in sink.parts[2].data
    assert not subs.add_cue("subs-en", Cue(13_000, 15_000, "too late"))  # its segments are out


def test_a_track_added_later_starts_at_the_segment_in_production_and_the_end_flushes_it() -> None:
    sink = _Sink()
    subs = Subtitles(sink, Fraction(2))
    subs.advance(20_500)
    subs.add_track(SubtitleTrack("subs-de", "de", "Deutsch"))
    subs.add_cue("subs-de", Cue(20_600, 21_000, "hallo"))
    subs.advance(21_200)
    subs.finish()
    assert [(p.msn, p.start, p.duration) for p in sink.parts] == [(10, 20_000, 1200)]
    assert b"00:00:20.600 --> 00:00:21.000\nhallo" in sink.parts[0].data
