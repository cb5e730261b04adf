"""DASH rendering: dynamic, low-latency and static MPDs from hand-built views, checked against the XSD."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from lxml import etree

from packager.manifest import frame_ticks
from packager.manifest.dash import (
    MEDIA_TEMPLATE,
    PROFILE_CMAF,
    PROFILE_LIVE,
    PROFILE_LOW_LATENCY,
    UTC_HTTP_ISO,
    latency_targets,
    render_mpd,
    xs_duration,
)
from packager.manifest.timeline import S, TimelineEntry, compress_timeline, still_producing, timeline_entries
from packager.model import INIT_NAME, StreamView, TrackView, segment_name
from tests.support.views import AUDIO, LIVE_MSN, V360, V720, advance, make_track, make_view
from tests.support.xsd import validate_mpd

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}

LIVE = make_view(count=12)
VIEWS = {
    "live": LIVE,
    "live-segment-boundary": make_view(count=12, pending_parts=0),
    "ended": make_view(count=12, live=False, ended=True),
    "vod": make_view(count=6, live=False),
    "audio-only": make_view(infos=(AUDIO,)),
    "video-only": make_view(infos=(V720, V360)),
    "gap": make_view(count=12, gaps={LIVE_MSN + 5}, discontinuities={LIVE_MSN + 6}),
    "starting": make_view(count=0, pending_parts=1),
    "no-tracks": make_view(infos=()),
    "long-window": make_view(count=40),
}


def parse(mpd: bytes) -> etree._Element:
    return etree.fromstring(mpd)


def representations(root: etree._Element) -> dict[str, etree._Element]:
    return {r.get("id"): r for r in root.iterfind(".//d:Representation", NS)}


def expand(template: etree._Element) -> list[tuple[int, int, int]]:
    """(number, t, d) for every segment a SegmentTemplate with a SegmentTimeline lists."""
    number = int(template.get("startNumber", "1"))
    out: list[tuple[int, int, int]] = []
    t = 0
    for s in template.iterfind("d:SegmentTimeline/d:S", NS):
        if s.get("t") is not None:
            t = int(s.get("t"))
        d = int(s.get("d"))
        for _ in range(int(s.get("r", "0")) + 1):
            out.append((number, t, d))
            number += 1
            t += d
    return out


def track(view: StreamView, name: str) -> TrackView:
    tv = view.track(name)
    assert tv is not None
    return tv


def iso(seconds: Fraction | float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=float(seconds))


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- units


def test_xs_duration() -> None:
    assert xs_duration(2) == "PT2S"
    assert xs_duration(Fraction(1, 2)) == "PT0.5S"
    assert xs_duration(Fraction(7447, 2)) == "PT1H2M3.5S"
    assert xs_duration(0) == "PT0S"
    assert xs_duration(60) == "PT1M"
    assert xs_duration(3600) == "PT1H"
    assert xs_duration(Fraction(1, 3)) == "PT0.333333S"
    assert xs_duration(Fraction(1, 3), round_up=True) == "PT0.333334S"


def test_compress_timeline_folds_repeats_and_restarts_on_gaps() -> None:
    entries = [
        TimelineEntry(1, 0, 10),
        TimelineEntry(2, 10, 10),
        TimelineEntry(3, 20, 10),
        TimelineEntry(4, 30, 9),
        TimelineEntry(5, 50, 9),
        TimelineEntry(6, 59, 9),
    ]
    assert compress_timeline(entries) == (S(0, 10, 2), S(None, 9), S(50, 9, 1))
    assert compress_timeline([]) == ()


def test_validator_rejects_an_invalid_mpd() -> None:
    root = parse(render_mpd(LIVE))
    utc = root.find("d:UTCTiming", NS)
    root.remove(utc)
    root.insert(0, utc)  # UTCTiming must come after the Periods
    with pytest.raises(AssertionError, match="not valid"):
        validate_mpd(etree.tostring(root))


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("name", list(VIEWS))
@pytest.mark.parametrize("low_latency", [True, False])
def test_every_mpd_validates_against_the_schema(name: str, low_latency: bool) -> None:
    mpd = render_mpd(VIEWS[name], low_latency=low_latency)
    assert mpd.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    validate_mpd(mpd)


def test_rendering_is_deterministic() -> None:
    assert render_mpd(LIVE) == render_mpd(LIVE)


# --------------------------------------------------------------------------- dynamic MPD


def test_live_mpd_is_dynamic_with_live_timing() -> None:
    root = parse(render_mpd(LIVE, utc_timing_url="https://origin.example/time"))
    assert root.get("type") == "dynamic"
    assert PROFILE_LIVE in root.get("profiles").split(",")
    assert root.get("availabilityStartTime") == "1970-01-01T00:00:00.000Z"
    assert root.get("timeShiftBufferDepth") == "PT1M"
    assert root.get("mediaPresentationDuration") is None
    mup = root.get("minimumUpdatePeriod")
    assert mup in ("PT0.5S", "PT2S")
    assert root.get("maxSegmentDuration") is not None and root.get("minBufferTime") is not None
    assert root.get("suggestedPresentationDelay") is not None
    (utc,) = root.findall("d:UTCTiming", NS)
    assert utc.get("schemeIdUri") == UTC_HTTP_ISO and utc.get("value") == "https://origin.example/time"
    (period,) = root.findall("d:Period", NS)
    # one run: one Period, named by its first msn and starting at that msn's boundary on the UTC timeline
    assert period.get("id") == str(LIVE_MSN) and period.get("start") == xs_duration(LIVE_MSN * LIVE.segment_s)


def test_anchors_never_change_across_updates() -> None:
    first = LIVE
    later = advance(advance(first, 3), 5)
    a, b = parse(render_mpd(first)), parse(render_mpd(later))
    assert a.get("availabilityStartTime") == b.get("availabilityStartTime")
    pa, pb = a.find("d:Period", NS), b.find("d:Period", NS)
    assert (pa.get("id"), pa.get("start")) == (pb.get("id"), pb.get("start"))
    for root in (a, b):
        for rep_id, rep in representations(root).items():
            ts = track(first, rep_id).info.timescale
            pto = rep.find("d:SegmentTemplate", NS).get("presentationTimeOffset")
            assert pto == str(LIVE_MSN * int(first.segment_s * ts))  # the Period start in each timescale
    # the same segment keeps its number and times from one update to the next
    for rep_id, rep in representations(a).items():
        before = {n: (t, d) for n, t, d in expand(rep.find("d:SegmentTemplate", NS))}
        after = {n: (t, d) for n, t, d in expand(representations(b)[rep_id].find("d:SegmentTemplate", NS))}
        complete = {s.msn for s in track(first, rep_id).segments}
        for n in complete & after.keys():
            assert before[n] == after[n]
    # an ended stream keeps the timeline anchors too
    ended = parse(render_mpd(make_view(count=12, live=False, ended=True)))
    assert ended.get("availabilityStartTime") == a.get("availabilityStartTime")
    assert (ended.find("d:Period", NS).get("id"), ended.find("d:Period", NS).get("start")) == (str(LIVE_MSN), "PT0S")


def test_publish_time_moves_with_content() -> None:
    later = advance(LIVE)
    a, b = parse(render_mpd(LIVE)), parse(render_mpd(later))
    assert parse_iso(b.get("publishTime")) > parse_iso(a.get("publishTime"))
    assert parse_iso(a.get("publishTime")) == iso(LIVE.published_utc_s).replace(
        microsecond=iso(LIVE.published_utc_s).microsecond // 1000 * 1000
    )
    unpublished = replace(LIVE, published_utc_s=0.0)
    assert parse(render_mpd(unpublished, now_utc_s=1_750_000_000.25)).get("publishTime") == "2025-06-15T15:06:40.250Z"


@pytest.mark.parametrize("low_latency", [True, False])
def test_timeline_lists_the_window_with_exact_durations(low_latency: bool) -> None:
    root = parse(render_mpd(LIVE, low_latency=low_latency))
    for rep_id, rep in representations(root).items():
        tv = track(LIVE, rep_id)
        tmpl = rep.find("d:SegmentTemplate", NS)
        assert tmpl.get("timescale") == str(tv.info.timescale)
        assert tmpl.get("startNumber") == str(tv.segments[0].msn)
        assert tmpl.get("initialization") == f"$RepresentationID$/{INIT_NAME}"
        assert tmpl.get("media") == MEDIA_TEMPLATE
        listed = expand(tmpl)
        complete = listed[: len(tv.segments)]
        assert [(n, t, d) for n, t, d in complete] == [(s.msn, s.start, s.duration) for s in tv.segments]
        assert sum(d for _, _, d in complete) == sum(s.duration for s in tv.segments)
        assert len(listed) == len(tv.segments) + (1 if low_latency else 0)
        # $Number$ resolves to the file names the packager writes
        assert MEDIA_TEMPLATE.replace("$RepresentationID$", rep_id).replace("$Number$", str(listed[0][0])) == (
            f"{rep_id}/{segment_name(listed[0][0])}"
        )


def test_audio_timeline_uses_repeats_and_exact_frame_durations() -> None:
    rep = representations(parse(render_mpd(LIVE)))["audio"]
    ss = rep.findall("d:SegmentTemplate/d:SegmentTimeline/d:S", NS)
    assert ss[0].get("t") is not None
    assert all(s.get("t") is None for s in ss[1:])  # contiguous
    assert all(int(s.get("d")) % 1024 == 0 for s in ss)  # whole AAC frames, the segment in production too
    video = representations(parse(render_mpd(LIVE)))["720p"]
    (only,) = video.findall("d:SegmentTemplate/d:SegmentTimeline/d:S", NS)
    assert only.get("d") == "180000" and int(only.get("r")) == len(track(LIVE, "720p").segments)


# --------------------------------------------------------------------------- low latency


def test_low_latency_adds_the_segment_in_production() -> None:
    for view in (LIVE, VIEWS["live-segment-boundary"]):
        root = parse(render_mpd(view))
        for rep_id, rep in representations(root).items():
            tv = track(view, rep_id)
            seg_ticks = int(view.segment_s * tv.info.timescale)
            number, t, d = expand(rep.find("d:SegmentTemplate", NS))[-1]
            msn = tv.segments[-1].msn + 1
            assert number == msn
            assert t == (tv.pending[0].start if tv.pending else tv.segments[-1].end)
            # ends where the chunker will end it: on the first sample edge at or past the next boundary
            step = frame_ticks(tv.info)
            assert step and (t + d - tv.segments[-1].end) % step == 0
            assert 0 <= t + d - (msn + 1) * seg_ticks < step
        plain = parse(render_mpd(view, low_latency=False))
        for rep_id, rep in representations(plain).items():
            assert expand(rep.find("d:SegmentTemplate", NS))[-1][0] == track(view, rep_id).segments[-1].msn


def test_availability_time_offset_only_in_low_latency_mode() -> None:
    ll = parse(render_mpd(LIVE))
    for tmpl in ll.iterfind(".//d:SegmentTemplate", NS):
        assert float(tmpl.get("availabilityTimeOffset")) == pytest.approx(float(LIVE.segment_s - LIVE.part_s))
        assert float(tmpl.get("availabilityTimeOffset")) > 0
        assert tmpl.get("availabilityTimeComplete") == "false"
    for root in (
        parse(render_mpd(LIVE, low_latency=False)),
        parse(render_mpd(VIEWS["ended"])),
        parse(render_mpd(VIEWS["vod"])),
    ):
        text = etree.tostring(root)
        assert b"availabilityTimeOffset" not in text and b"availabilityTimeComplete" not in text
        assert b"ServiceDescription" not in text and b"ProducerReferenceTime" not in text
        assert b"Resync" not in text


def test_no_chunking_when_parts_are_whole_segments() -> None:
    view = make_view(count=8, segment_s=Fraction(2), part_s=Fraction(2), pending_parts=0)
    mpd = render_mpd(view)
    validate_mpd(mpd)
    assert b"availabilityTimeOffset" not in mpd and b"ServiceDescription" not in mpd


def test_service_description_and_producer_reference_time_are_consistent() -> None:
    root = parse(render_mpd(LIVE, utc_timing_url="/time"))
    (sd,) = root.findall("d:ServiceDescription", NS)
    (latency,) = sd.findall("d:Latency", NS)
    (rate,) = sd.findall("d:PlaybackRate", NS)
    target, lo, hi = (int(latency.get(k)) for k in ("target", "min", "max"))
    assert lo <= target <= hi
    assert 1000 <= target <= 2000  # about 1.5 s with 2 s segments and 0.5 s parts
    assert target >= 3 * float(LIVE.part_s) * 1000
    assert latency_targets(LIVE).target_ms == target
    assert float(rate.get("min")) < 1 < float(rate.get("max"))
    assert root.get("suggestedPresentationDelay") == xs_duration(Fraction(target, 1000))
    mpd_utc = root.find("d:UTCTiming", NS)
    prts = root.findall(".//d:ProducerReferenceTime", NS)
    assert len(prts) == len(root.findall(".//d:AdaptationSet", NS))
    for prt in prts:
        assert prt.get("id") == latency.get("referenceId")
        assert prt.get("type") == "captured"
        utc = prt.find("d:UTCTiming", NS)
        assert (utc.get("schemeIdUri"), utc.get("value")) == (mpd_utc.get("schemeIdUri"), mpd_utc.get("value"))
        aset = prt.getparent()
        rep = aset.find("d:Representation", NS)
        tv = track(LIVE, rep.get("id"))
        presentation = int(prt.get("presentationTime"))
        assert presentation == tv.segments[0].start  # the first listed segment
        wall = LIVE.epoch_s + Fraction(presentation, tv.info.timescale)
        assert abs(parse_iso(prt.get("wallClockTime")) - iso(wall)) <= timedelta(milliseconds=1)


def test_resync_points_at_part_boundaries() -> None:
    root = parse(render_mpd(LIVE))
    for rep_id, rep in representations(root).items():
        (resync,) = rep.findall("d:Resync", NS)
        tv = track(LIVE, rep_id)
        part_ticks = int(LIVE.part_s * tv.info.timescale)
        longest = max(p.duration for s in tv.segments for p in s.parts)
        assert part_ticks <= int(resync.get("dT")) and longest <= int(resync.get("dT"))
        assert resync.get("type") == "0"


def test_minimum_update_period_lets_players_learn_each_segment_in_time() -> None:
    for low_latency in (True, False):
        root = parse(render_mpd(LIVE, low_latency=low_latency))
        mup = root.get("minimumUpdatePeriod")
        assert mup == ("PT0.5S" if low_latency else "PT2S")


# --------------------------------------------------------------------------- representations


def test_adaptation_sets_and_representation_attributes() -> None:
    root = parse(render_mpd(LIVE))
    video, audio = root.findall(".//d:AdaptationSet", NS)
    assert video.get("contentType") == "video" and video.get("mimeType") == "video/mp4"
    assert video.get("segmentAlignment") == "true" and video.get("startWithSAP") == "1"
    assert (video.get("maxWidth"), video.get("maxHeight"), video.get("maxFrameRate")) == ("1280", "720", "30")
    assert video.get("par") == "16:9"
    reps = representations(root)
    assert list(reps) == ["720p", "480p", "360p", "audio"]
    r720 = reps["720p"]
    assert (r720.get("codecs"), r720.get("bandwidth")) == ("avc1.64001f", "3000000")
    assert (r720.get("width"), r720.get("height"), r720.get("frameRate"), r720.get("sar")) == (
        "1280",
        "720",
        "30",
        "1:1",
    )
    assert audio.get("contentType") == "audio" and audio.get("mimeType") == "audio/mp4" and audio.get("lang") == "en"
    ra = reps["audio"]
    assert (ra.get("codecs"), ra.get("bandwidth"), ra.get("audioSamplingRate")) == ("mp4a.40.2", "128000", "48000")
    (acc,) = ra.findall("d:AudioChannelConfiguration", NS)
    assert acc.get("schemeIdUri") == "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
    assert acc.get("value") == "2"
    assert {a.get("id") for a in (video, audio)} == {"0", "1"}


def test_audio_only_and_video_only() -> None:
    audio_only = parse(render_mpd(VIEWS["audio-only"]))
    assert [a.get("contentType") for a in audio_only.iterfind(".//d:AdaptationSet", NS)] == ["audio"]
    video_only = parse(render_mpd(VIEWS["video-only"]))
    assert [a.get("contentType") for a in video_only.iterfind(".//d:AdaptationSet", NS)] == ["video"]
    assert list(representations(video_only)) == ["720p", "360p"]


# --------------------------------------------------------------------------- static MPD


@pytest.mark.parametrize(
    ("name", "low_latency", "expected"),
    [
        ("live", True, [PROFILE_LIVE, PROFILE_CMAF, PROFILE_LOW_LATENCY]),
        ("live", False, [PROFILE_LIVE, PROFILE_CMAF]),
        ("ended", True, [PROFILE_LIVE, PROFILE_CMAF]),
        ("vod", True, [PROFILE_LIVE, PROFILE_CMAF]),
    ],
)
def test_only_a_dynamic_low_latency_mpd_declares_the_low_latency_profile(
    name: str, low_latency: bool, expected: list[str]
) -> None:
    # DASH-IF low-latency live (IOP v5) applies to dynamic presentations only: a static MPD
    # (VOD, or a live stream that ended) must not claim it, even when low latency is asked for
    root = parse(render_mpd(VIEWS[name], low_latency=low_latency))
    assert root.get("profiles").split(",") == expected
    assert root.get("type") == ("dynamic" if name == "live" else "static")


@pytest.mark.parametrize("name", ["ended", "vod"])
def test_static_mpd_lists_everything_without_live_attributes(name: str) -> None:
    view = VIEWS[name]
    root = parse(render_mpd(view))
    assert root.get("type") == "static"
    for attr in ("minimumUpdatePeriod", "timeShiftBufferDepth", "suggestedPresentationDelay"):
        assert root.get(attr) is None
    assert root.find("d:UTCTiming", NS) is None
    end = max(Fraction(t.segments[-1].end, t.info.timescale) for t in view.tracks)
    start = min(Fraction(t.segments[0].start, t.info.timescale) for t in view.tracks)
    assert root.get("mediaPresentationDuration") == xs_duration(end - start, round_up=True)
    # presentation time zero is the first media, so a fresh player starts at the beginning
    for rep_id, rep in representations(root).items():
        ts = track(view, rep_id).info.timescale
        assert int(rep.find("d:SegmentTemplate", NS).get("presentationTimeOffset")) == int(start * ts)
    (period,) = root.findall("d:Period", NS)
    assert (period.get("id"), period.get("start")) == (str(view.tracks[0].segments[0].msn), "PT0S")
    for rep_id, rep in representations(root).items():
        tv = track(view, rep_id)
        listed = expand(rep.find("d:SegmentTemplate", NS))
        assert [(n, t, d) for n, t, d in listed] == [(s.msn, s.start, s.duration) for s in tv.segments]


def test_vod_duration_is_the_media_length() -> None:
    root = parse(render_mpd(VIEWS["vod"]))
    seconds = 6 * 2
    duration = root.get("mediaPresentationDuration")
    assert duration.startswith("PT12")  # audio ends a few samples past 12 s at most
    assert float(duration[2:-1]) == pytest.approx(seconds, abs=0.03)


# --------------------------------------------------------------------------- numbering edge cases


def periods(root: etree._Element) -> list[tuple[str, str, dict[str, list[int]]]]:
    """(id, start, {representation: listed numbers}) per Period."""
    return [
        (
            p.get("id"),
            p.get("start"),
            {
                r.get("id"): [n for n, _, _ in expand(r.find("d:SegmentTemplate", NS))]
                for r in p.iterfind(".//d:Representation", NS)
            },
        )
        for p in root.iterfind("d:Period", NS)
    ]


def test_after_a_time_gap_each_run_is_a_period_and_the_gap_a_hole() -> None:
    view = VIEWS["gap"]
    mpd = render_mpd(view)
    validate_mpd(mpd)
    (old_id, old_start, old), (new_id, new_start, new) = periods(parse(mpd))
    assert (old_id, new_id) == (str(LIVE_MSN), str(LIVE_MSN + 6))
    assert (old_start, new_start) == tuple(xs_duration(m * view.segment_s) for m in (LIVE_MSN, LIVE_MSN + 6))
    assert all(v == list(range(LIVE_MSN, LIVE_MSN + 5)) for v in old.values())
    # the segment in production (low-latency) continues the newest run
    assert all(v == list(range(LIVE_MSN + 6, LIVE_MSN + 13)) for v in new.values())
    for p in parse(mpd).iterfind("d:Period", NS):
        for rep in p.iterfind(".//d:Representation", NS):
            ts = track(view, rep.get("id")).info.timescale
            pto = int(rep.find("d:SegmentTemplate", NS).get("presentationTimeOffset"))
            assert pto == int(p.get("id")) * int(view.segment_s * ts)


def test_a_period_keeps_its_id_and_start_after_its_first_segment_left_the_window() -> None:
    base = make_view(count=8, gaps={LIVE_MSN + 3})
    run = LIVE_MSN + 4
    stamped = tuple(
        replace(t, segments=tuple(replace(s, run=run) if s.msn > run else s for s in t.segments[4:]))
        for t in base.tracks
    )
    ((pid, start, listed),) = periods(parse(render_mpd(replace(base, tracks=stamped))))
    assert (pid, start) == (str(run), xs_duration(run * base.segment_s))
    assert all(v[0] == run + 1 for v in listed.values())


def test_a_new_period_waits_until_every_rendition_has_begun_it() -> None:
    base = make_view(count=6, pending_parts=0)
    late = base.tracks[-1]
    tracks = tuple(
        t
        if t is late
        else make_track(t.info, range(LIVE_MSN, LIVE_MSN + 6), pending_parts=1, pending_msn=LIVE_MSN + 30)
        for t in base.tracks
    )
    view = replace(base, tracks=tracks)
    ((pid, _, listed),) = periods(parse(render_mpd(view)))  # no Period for LIVE_MSN + 30 yet
    assert pid == str(LIVE_MSN) and all(v[:6] == list(range(LIVE_MSN, LIVE_MSN + 6)) for v in listed.values())


def test_stream_that_just_started_lists_the_segment_in_production() -> None:
    view = VIEWS["starting"]
    root = parse(render_mpd(view))
    for rep_id, rep in representations(root).items():
        tv = track(view, rep_id)
        ((number, t, d),) = expand(rep.find("d:SegmentTemplate", NS))
        assert number == tv.pending_msn and t == tv.pending[0].start
        boundary = (number + 1) * int(view.segment_s * tv.info.timescale)
        assert d % (frame_ticks(tv.info) or 1) == 0 and 0 <= t + d - boundary < (frame_ticks(tv.info) or 1)
    plain = parse(render_mpd(view, low_latency=False))
    for rep in representations(plain).values():
        assert expand(rep.find("d:SegmentTemplate", NS)) == []
        assert rep.find("d:SegmentTemplate", NS).get("startNumber") == str(LIVE_MSN)


def test_segment_in_production_after_a_gap_starts_a_new_period() -> None:
    base = make_view(count=6)
    tracks = tuple(
        make_track(t.info, range(LIVE_MSN, LIVE_MSN + 6), pending_parts=1, pending_msn=LIVE_MSN + 30)
        for t in base.tracks
    )
    view = replace(base, tracks=tracks)
    mpd = render_mpd(view)
    validate_mpd(mpd)
    (_, _, old), (new_id, _, new) = periods(parse(mpd))
    assert all(v == list(range(LIVE_MSN, LIVE_MSN + 6)) for v in old.values())
    assert new_id == str(LIVE_MSN + 30) and all(v == [LIVE_MSN + 30] for v in new.values())
    plain = render_mpd(view, low_latency=False)
    ((_, _, listed),) = periods(parse(plain))
    assert all(v == list(range(LIVE_MSN, LIVE_MSN + 6)) for v in listed.values())


def test_timeline_entries_match_the_renderer() -> None:
    tv = track(LIVE, "audio")
    entries = timeline_entries(LIVE, tv, with_production=True)
    assert entries[-1].producing and not any(e.producing for e in entries[:-1])
    assert [e.msn for e in entries] == [s.msn for s in tv.segments] + [tv.pending_msn]
    assert math.isclose(
        sum(e.duration for e in entries[:-1]) / tv.info.timescale,
        float(LIVE.segment_s) * len(tv.segments),
        abs_tol=0.03,
    )


def test_the_segment_due_next_is_promised_only_while_media_comes() -> None:
    view = make_view()
    assert still_producing(view, view.published_utc_s + float(view.segment_s))
    assert not still_producing(view, view.published_utc_s + float(view.segment_s) + 0.01)
    NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}

    def listed(root) -> int:  # type: ignore[no-untyped-def]
        return sum(1 + int(s.get("r", "0")) for s in root.iterfind(".//d:S", NS))

    producing = validate_mpd(render_mpd(view))
    stalled = validate_mpd(render_mpd(view, producing=False))
    assert listed(stalled) == listed(producing) - len(view.tracks)
    assert validate_mpd(render_mpd(view, producing=False, low_latency=False)) is not None


@pytest.mark.parametrize("phase", [0, 333, 1023])
def test_an_entry_never_changes_from_production_to_closed(phase: int) -> None:
    """The real chunker cuts AAC frames across 1 s segments (whole frames never meet the boundary); each
    segment is listed with the same t and d from its first listing in production to its last, and the
    next one starts where it really ends."""
    from packager.chunker import TrackChunker
    from packager.model import Sample
    from tests.support.live import AUDIO as LIVE_AUDIO
    from tests.support.live import make_live

    _store, driver = make_live(segment_s=Fraction(1), part_s=Fraction(1, 5), tracks=(LIVE_AUDIO,))
    chunker = TrackChunker(LIVE_AUDIO, segment_ticks=48_000, part_ticks=9_600, sink=driver.stream.on_part)
    seen: dict[int, set[tuple[int, int]]] = {}
    t = 1000 * 48_000 + phase
    while t < 1005 * 48_000:
        chunker.push(Sample(data=b"\0" * 8, dts=t, pts=t, duration=1024, keyframe=True))
        t += 1024
        view = driver.stream.view()
        if not any(tv.segments or tv.pending for tv in view.tracks):
            continue
        rep = representations(parse(render_mpd(view)))["audio"]
        for number, start, d in expand(rep.find("d:SegmentTemplate", NS)):
            seen.setdefault(number, set()).add((start, d))
    assert len(seen) >= 4
    assert all(len(listings) == 1 for listings in seen.values()), seen
    listed = sorted((n, *next(iter(v))) for n, v in seen.items())
    for (_, t0, d0), (_, t1, _) in itertools.pairwise(listed):
        assert t0 + d0 == t1 and d0 % 1024 == 0
