"""Subtitle renditions in the manifests: HLS SUBTITLES group rules (RFC 8216bis 4.4.6.1 / 4.4.6.2), the
subtitle media playlist (plain WebVTT), and the DASH text AdaptationSet (schema-valid, WebVTT in ISO BMFF)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from lxml import etree

from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.model import PartRef, Segment, StreamView, TrackView
from packager.subtitles import SubtitleTrack
from packager.webvtt import render_segment
from tests.support.views import AUDIO, V360, V720, make_view
from tests.support.xsd import validate_mpd
from tests.test_manifest_hls import attrs, tag_lines

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
EN = SubtitleTrack("subs-en", "en", "English", default=True).info()
DE = SubtitleTrack("subs-de", "de", "Deutsch").info()


def _text_track(info, video: TrackView) -> TrackView:
    """A subtitle track covering the same segment numbers as ``video`` (whole segments, one part each)."""
    segments = []
    for seg in video.segments:
        start = seg.msn * 2000
        size = len(render_segment([], start, start + 2000))
        ref = PartRef(seg.msn, 0, start, 2000, True, size)
        segments.append(Segment(info.name, seg.msn, start, 2000, (ref,), size, discontinuity=seg.discontinuity))
    last = segments[-1].msn if segments else 0
    return TrackView(info, tuple(segments), (), None, (last + 1, 0))


def with_subtitles(view: StreamView, *infos) -> StreamView:
    video = view.video[0]
    return replace(view, tracks=(*view.tracks, *(_text_track(i, video) for i in infos)))


VIEWS = {
    "live": with_subtitles(make_view(infos=(V720, V360, AUDIO)), EN, DE),
    "ended": with_subtitles(make_view(infos=(V720, V360, AUDIO), count=4, live=False, ended=True), EN, DE),
    "vod": with_subtitles(make_view(infos=(V720, V360, AUDIO), count=4, live=False), EN, DE),
}


def subtitle_media(view: StreamView) -> list[dict[str, str]]:
    return [a for line in tag_lines(render_master(view), "#EXT-X-MEDIA") if (a := attrs(line))["TYPE"] == "SUBTITLES"]


@pytest.mark.parametrize("kind", VIEWS)
def test_hls_subtitle_renditions_form_one_group_with_unique_names_and_one_default(kind: str) -> None:
    media = subtitle_media(VIEWS[kind])
    assert [m["LANGUAGE"] for m in media] == ["en", "de"]
    assert {m["GROUP-ID"] for m in media} == {"subs"}
    assert len({m["NAME"] for m in media}) == len(media)
    assert [m["DEFAULT"] for m in media] == ["YES", "NO"]
    assert all(m["AUTOSELECT"] == "YES" for m in media if m["DEFAULT"] == "YES")  # 4.4.6.1: DEFAULT=YES needs it
    assert all("INSTREAM-ID" not in m for m in media)  # only CLOSED-CAPTIONS may carry it
    assert [m["URI"] for m in media] == ["subs-en/index.m3u8", "subs-de/index.m3u8"]
    variants = [attrs(line) for line in tag_lines(render_master(VIEWS[kind]), "#EXT-X-STREAM-INF")]
    assert variants and all(v["SUBTITLES"] == "subs" for v in variants)


def test_hls_without_subtitles_has_no_group_and_variants_name_none() -> None:
    view = make_view(infos=(V720, AUDIO))
    assert subtitle_media(view) == []
    assert "SUBTITLES=" not in render_master(view)


def test_no_track_marked_default_means_no_default_subtitles() -> None:
    view = with_subtitles(make_view(infos=(V720, AUDIO)), replace(EN, default=False), DE)
    assert [m["DEFAULT"] for m in subtitle_media(view)] == ["NO", "NO"]


@pytest.mark.parametrize("kind", VIEWS)
def test_the_subtitle_media_playlist_lists_whole_vtt_segments_on_the_media_clock(kind: str) -> None:
    view = VIEWS[kind]
    text = render_media(view, "subs-en")
    video = render_media(view, "720p")
    lines = text.splitlines()
    assert not tag_lines(text, "#EXT-X-PART") and not tag_lines(text, "#EXT-X-PRELOAD-HINT")
    assert not tag_lines(text, "#EXT-X-MAP") and not tag_lines(text, "#EXT-X-PART-INF")
    uris = [ln for ln in lines if ln and not ln.startswith("#")]
    msns = [s.msn for s in view.track("subs-en").segments]
    assert uris == [f"{m}.vtt" for m in msns]
    assert tag_lines(text, "#EXT-X-MEDIA-SEQUENCE") == [f"#EXT-X-MEDIA-SEQUENCE:{msns[0]}"]
    assert all(line == "#EXTINF:2.0," for line in tag_lines(text, "#EXTINF"))
    # the same wall-clock dates as the video's segments of the same numbers
    video_pdt = tag_lines(video, "#EXT-X-PROGRAM-DATE-TIME")[: len(msns)]
    assert tag_lines(text, "#EXT-X-PROGRAM-DATE-TIME") == video_pdt
    assert tag_lines(text, "#EXT-X-TARGETDURATION") == tag_lines(video, "#EXT-X-TARGETDURATION")
    assert tag_lines(text, "#EXT-X-SERVER-CONTROL") == tag_lines(video, "#EXT-X-SERVER-CONTROL")
    assert (lines[-1] == "#EXT-X-ENDLIST") == (kind != "live")
    assert not any("subs-" in ln for ln in tag_lines(video, "#EXT-X-RENDITION-REPORT"))


def test_subtitle_tracks_do_not_change_the_part_target() -> None:
    plain = make_view(infos=(V720, AUDIO))
    subbed = with_subtitles(plain, EN)
    assert tag_lines(render_media(subbed, "720p"), "#EXT-X-PART-INF") == tag_lines(
        render_media(plain, "720p"), "#EXT-X-PART-INF"
    )


@pytest.mark.parametrize("kind", VIEWS)
def test_dash_lists_each_subtitle_track_as_a_schema_valid_text_adaptation_set(kind: str) -> None:
    view = VIEWS[kind]
    root = validate_mpd(render_mpd(view))
    sets = root.findall(".//d:AdaptationSet[@contentType='text']", NS)
    assert [s.get("lang") for s in sets] == ["en", "de"]
    assert all(s.get("mimeType") == "application/mp4" for s in sets)  # WebVTT in ISO BMFF (wvtt)
    assert [s.find("d:Label", NS).text for s in sets] == ["English", "Deutsch"]
    for s in sets:
        role = s.find("d:Role", NS)
        assert (role.get("schemeIdUri"), role.get("value")) == ("urn:mpeg:dash:role:2011", "subtitle")
        assert s.find("d:Representation", NS).get("codecs") == "wvtt"
        template = s.find("d:Representation/d:SegmentTemplate", NS)
        assert template.get("media") == "$RepresentationID$/$Number$.m4s"
        assert template.get("initialization") == "$RepresentationID$/init.mp4"
        assert template.get("availabilityTimeOffset") is None  # a text segment exists only once whole
        video = root.find(".//d:AdaptationSet[@contentType='video']/d:Representation/d:SegmentTemplate", NS)
        assert template.get("startNumber") == video.get("startNumber")
        assert template.get("presentationTimeOffset") == str(
            int(video.get("presentationTimeOffset")) * 1000 // int(video.get("timescale"))
        )
        entries = template.findall("d:SegmentTimeline/d:S", NS)
        listed = sum(1 + int(e.get("r", "0")) for e in entries)
        assert listed == len(view.track("subs-en").segments)


def test_dash_ids_stay_unique_with_audio_and_text() -> None:
    root = etree.fromstring(render_mpd(VIEWS["live"]))
    ids = [a.get("id") for a in root.findall(".//d:AdaptationSet", NS)]
    assert len(ids) == len(set(ids)) == 4  # video, audio, two text


def test_a_subtitle_rendition_begun_mid_stream_joins_the_running_period() -> None:
    """The live cue API starts a rendition mid-stream: its first segment starts a run of its own, which must
    neither start a Period nor drop the one the media is in (dash.js would reset on the Period id change)."""
    view = make_view(infos=(V720, V360, AUDIO))
    before = validate_mpd(render_mpd(view)).findall("d:Period", NS)
    late = _text_track(EN, view.video[0])
    late = replace(
        late, segments=tuple(replace(s, run=s.msn) if i == 0 else s for i, s in enumerate(late.segments[6:]))
    )
    root = validate_mpd(render_mpd(replace(view, tracks=(*view.tracks, late))))
    periods = root.findall("d:Period", NS)
    assert [p.get("id") for p in periods] == [p.get("id") for p in before]
    assert [p.get("start") for p in periods] == [p.get("start") for p in before]
    template = periods[0].find("d:AdaptationSet[@contentType='text']/d:Representation/d:SegmentTemplate", NS)
    assert template.get("startNumber") == str(late.segments[0].msn)
    assert sum(1 + int(e.get("r", "0")) for e in template.findall("d:SegmentTimeline/d:S", NS)) == len(late.segments)
