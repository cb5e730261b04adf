"""Restart resume from disk: a killed run's window is read back, checked, adopted; the downtime is a gap."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import pytest

from packager import scte35
from packager.cmaf import chunk
from packager.cmaf.wvtt import from_webvtt
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.mirror import DiskMirror
from packager.model import Sample, TrackInfo, part_name, segment_name
from packager.resume import SPLICES_NAME
from packager.splice import Splice
from packager.store import Store
from packager.subtitles import Subtitles, SubtitleTrack
from packager.webvtt import Cue
from tests.support.clock import ManualClock
from tests.support.live import AUDIO, VIDEO, Driver, make_live
from tests.support.xsd import validate_mpd

SEGMENT_S = Fraction(1)
PART_S = Fraction(1, 4)
WINDOW_S = Fraction(10)
TRACKS = (VIDEO, AUDIO)


@dataclass
class CmafDriver(Driver):
    """Publishes real CMAF chunks (one sample per part), so they parse back from disk."""

    def part_bytes(self, info: TrackInfo, msn: int, index: int) -> bytes:
        ts = info.timescale
        dts = int((msn * self.segment_s + index * self.part_s) * ts)
        sample = Sample(f"{info.name} {msn}.{index}".encode() * 4, dts, dts, int(self.part_s * ts), index == 0)
        return chunk(sequence_number=msn * 4 + index + 1, track_id=1, samples=[sample])


def _run(root: Path, clock: ManualClock, *, recover: bool = True, tracks: tuple[TrackInfo, ...] = TRACKS):
    """A fresh process on ``root``: a store, its mirror (recovered first), the stream opened, inits out."""
    import asyncio

    store = Store(clock=clock)
    mirror = DiskMirror(store, root).attach()
    if recover:
        asyncio.run(mirror.recover(segment_s=SEGMENT_S, window_s=WINDOW_S))
    _, d = make_live(store=store, clock=clock, segment_s=SEGMENT_S, part_s=PART_S, window_s=WINDOW_S, tracks=tracks)
    driver = CmafDriver(d.stream, tracks, SEGMENT_S, PART_S, mirror=mirror)
    return store, mirror, driver


def _killed_run(root: Path, clock: ManualClock) -> None:
    """Segments 1000..1005 closed, 1006 cut after two parts; everything on disk, then the process is gone."""
    _store, mirror, d = _run(root, clock, recover=False)
    d.publish_segments(6)
    d.publish(2)
    mirror.disk.close()  # what was queued is on disk; no final manifests (kill -9)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(utc_s=1006.6)


def test_a_restart_adopts_the_window_on_disk_and_lists_the_downtime_as_gaps(tmp_path, clock):
    _killed_run(tmp_path, clock)
    clock.advance(2.5)  # down from 1006.6 to 1009.1
    _store, mirror, d = _run(tmp_path, clock)
    track = d.stream.track("360p")
    assert [s.msn for s in track.segments] == [1000, 1001, 1002, 1003, 1004, 1005, 1006]
    assert [s.cut for s in track.segments] == [False] * 6 + [True]
    assert [p.index for p in track.segments[-1].parts] == [0, 1]
    assert d.stream.segment_bytes("360p", 1003) == (tmp_path / "demo/360p" / segment_name(1003)).read_bytes()
    before_new_media = render_media(d.stream.view(), "360p")
    assert f'URI="{part_name(1006, 1)}"\n' in before_new_media
    assert f'URI="{part_name(1006, 2)}",GAP=YES' in before_new_media  # the cut segment's lost parts
    d.msn, d.index = 1009, 0
    d.publish(2)
    playlist = render_media(d.stream.view(), "360p")
    lines = playlist.splitlines()
    uris = [ln for ln in lines if ln.endswith(".m4s") and not ln.startswith("#")]
    assert uris == [segment_name(m) for m in range(1000, 1009)]
    gaps = [lines[lines.index(segment_name(m)) - 1] for m in (1007, 1008)]
    assert gaps == ["#EXT-X-GAP"] * 2, playlist  # the downtime
    assert lines[lines.index(segment_name(1006)) - 1] == "#EXTINF:1.0,"  # nominal, not its 0.5 s of parts
    assert f'URI="{part_name(1009, 1)}"' in playlist
    assert "#EXT-X-MEDIA-SEQUENCE:1000" in lines
    for uri in uris:
        if lines[lines.index(uri) - 1] != "#EXT-X-GAP":
            assert d.stream.segment_bytes("360p", int(uri.split(".")[0])) is not None
    mpd = validate_mpd(render_mpd(d.stream.view()))
    assert mpd.get("type") == "dynamic"
    # DASH: the window from before the kill in its own Period, the new run in the next; between them a hole
    ns = {"d": mpd.nsmap[None]}
    old, new = mpd.findall("d:Period", ns)
    assert (old.get("id"), new.get("id")) == ("1000", "1009")
    for period, first, count in ((old, 1000, 7), (new, 1009, 1)):
        for template in period.iterfind(".//d:SegmentTemplate", ns):
            assert template.get("startNumber") == str(first)
            entries = template.findall("d:SegmentTimeline/d:S", ns)
            assert sum(1 + int(s.get("r", "0")) for s in entries) == count
    mirror.close()
    cut_file = tmp_path / "demo/360p" / segment_name(1006)  # named by the manifests now: on disk too
    assert cut_file.read_bytes() == d.stream.segment_bytes("360p", 1006)


def test_a_changed_encoder_init_starts_a_fresh_window(tmp_path, clock):
    _killed_run(tmp_path, clock)
    (tmp_path / "demo/360p/init.mp4").write_bytes(b"another encoder's init")
    _store, mirror, d = _run(tmp_path, clock)
    assert list(d.stream.track("360p").segments) == []
    assert [s.msn for s in d.stream.track("audio").segments][-1] == 1006  # its init still matches
    mirror.close()


def test_only_media_inside_the_new_window_is_adopted(tmp_path, clock):
    _killed_run(tmp_path, clock)
    clock.advance(8.0)  # now 1014.6: the window reaches back to 1004.6
    _store, mirror, d = _run(tmp_path, clock)
    assert [s.msn for s in d.stream.track("360p").segments] == [1004, 1005, 1006]
    clock.advance(20.0)
    mirror.close()
    _store, mirror, d = _run(tmp_path, clock)
    assert list(d.stream.track("360p").segments) == []
    mirror.close()


def test_broken_or_misplaced_media_is_left_out_and_the_rest_resumes(tmp_path, clock):
    _killed_run(tmp_path, clock)
    folder = tmp_path / "demo/360p"
    (folder / part_name(1002, 1)).write_bytes(b"\x00\x00\x00\x10moof truncated")
    (folder / part_name(1004, 3)).write_bytes((folder / part_name(1004, 2)).read_bytes())  # wrong position
    (folder / segment_name(1005)).write_bytes(b"not its parts")
    _store, mirror, d = _run(tmp_path, clock)
    assert [s.msn for s in d.stream.track("360p").segments] == [1000, 1001, 1003, 1006]
    assert "#EXT-X-GAP" in render_media(d.stream.view(), "360p")
    mirror.close()


def test_a_restart_inside_the_cut_segment_cannot_reopen_it(tmp_path, clock):
    _killed_run(tmp_path, clock)
    _store, mirror, d = _run(tmp_path, clock)
    d.msn, d.index = 1006, 2  # the restarted encoder's first part falls in the segment the old run cut
    d.publish(2)
    track = d.stream.track("360p")
    assert track.pending == [] and [s.msn for s in track.segments][-1] == 1006 and d.stream.overlaps >= 2
    d.publish(1)  # 1007.0: the next segment publishes as usual
    assert track.pending_msn == 1007
    mirror.close()


def test_adopted_media_retires_from_disk_as_the_window_moves(tmp_path, clock):
    _killed_run(tmp_path, clock)
    _store, mirror, d = _run(tmp_path, clock)
    d.msn, d.index = 1007, 0
    clock.advance(11.0)
    d.publish_segments(11)
    clock.advance(float(d.stream.grace_s))
    d.publish(1)
    mirror.disk.flush()
    assert not (tmp_path / "demo/360p" / segment_name(1000)).exists()
    assert not (tmp_path / "demo/360p" / part_name(1000, 0)).exists()
    mirror.close()


def test_recover_ignores_what_is_not_media(tmp_path, clock):
    (tmp_path / "demo/360p").mkdir(parents=True)
    (tmp_path / "demo/360p/notes.txt").write_text("x")
    (tmp_path / "demo/360p/1005.m4s").write_bytes(b"no init beside it")
    (tmp_path / "stray-file").write_text("x")
    _store, mirror, d = _run(tmp_path, clock)
    assert list(d.stream.track("360p").segments) == []
    mirror.close()


def test_a_restart_lists_the_splices_it_had_published(tmp_path, clock):
    _store, mirror, d = _run(tmp_path, clock, recover=False)
    d.publish_segments(3)
    out = Splice(5, "out", 1001 * 90_000 + 22_500, 45_000, scte35.build("out", 5, 1001 * 90_000 + 22_500, 45_000))
    old = Splice(4, "out", 990 * 90_000, 9_000, scte35.build("out", 4, 990 * 90_000, 9_000))  # ended long ago
    d.stream.on_splice(out)
    d.stream.on_splice(old)
    assert d.stream.view().splices == (out,)  # the old break is out of the window already
    d.publish(2)
    mirror.disk.close()  # kill -9
    clock.advance(2.0)
    _store, mirror, d = _run(tmp_path, clock)
    assert d.stream.view().splices == (out,)
    assert 'ID="splice-5-' in render_media(d.stream.view(), "360p")
    mirror.close()


def test_a_damaged_splices_file_resumes_without_splices(tmp_path, clock):
    _killed_run(tmp_path, clock)
    (tmp_path / "demo" / SPLICES_NAME).write_text('[{"id": "x"}]')
    _store, mirror, d = _run(tmp_path, clock)
    assert d.stream.splices == () and d.stream.track("360p").segments  # the media still resumed
    mirror.close()


def test_several_audio_languages_resume_each_with_its_presentation(tmp_path, clock):
    english = replace(AUDIO, name="audio-en", language="en", label="English", default=True)
    german = replace(AUDIO, name="audio-de", language="de", label="Deutsch", describes_video=True)
    tracks = (VIDEO, english, german)
    _store, mirror, d = _run(tmp_path, clock, recover=False, tracks=tracks)
    d.publish_segments(3)
    mirror.disk.close()
    clock.advance(1.0)
    _store, mirror, d = _run(tmp_path, clock, tracks=tracks)
    for name in ("audio-en", "audio-de"):
        assert [s.msn for s in d.stream.track(name).segments] == [1000, 1001, 1002], name
    master = render_master(d.stream.view())
    assert 'NAME="English",LANGUAGE="en",DEFAULT=YES' in master
    assert 'NAME="Deutsch",LANGUAGE="de",DEFAULT=NO,AUTOSELECT=YES,CHARACTERISTICS=' in master
    mirror.close()


def _subtitled_run(root: Path, clock: ManualClock, *, recover: bool = True):
    """:func:`_run` with an English subtitle rendition (its segments follow the media's, cues in each)."""
    store, mirror, d = _run(root, clock, recover=recover)
    subs = Subtitles(d.stream, SEGMENT_S)
    subs.add_track(SubtitleTrack("subs-en", "en", "English"))
    return store, mirror, d, subs


def _publish_subtitled(d: CmafDriver, subs: Subtitles, segments: int) -> None:
    for _ in range(segments):
        start_ms = d.msn * 1000
        subs.advance(start_ms)
        subs.add_cue("subs-en", Cue(start_ms + 100, start_ms + 600, f"cue {d.msn}"))
        d.publish_segments(1)
        subs.advance(start_ms + 1000)


def test_a_subtitle_rendition_resumes_its_window_with_the_downtime_a_gap_like_the_media(tmp_path, clock):
    _store, mirror, d, subs = _subtitled_run(tmp_path, clock, recover=False)
    _publish_subtitled(d, subs, 6)  # 1000..1005, text and media
    d.publish(2)  # media goes on into 1006 (cut there); its subtitle segment is not out yet
    subs.advance(1_006_500)
    mirror.disk.close()  # kill -9
    clock.advance(2.5)
    _store, mirror, d, subs = _subtitled_run(tmp_path, clock)
    folder = tmp_path / "demo/subs-en"
    text = d.stream.track("subs-en")
    assert [s.msn for s in text.segments] == list(range(1000, 1006))
    assert d.stream.segment_bytes("subs-en", 1003) == (folder / "1003.vtt").read_bytes()
    assert b"cue 1003" in d.stream.segment_bytes("subs-en", 1003)
    d.msn, d.index = 1009, 0
    _publish_subtitled(d, subs, 1)
    view = d.stream.view()
    lines = render_media(view, "subs-en").splitlines()
    assert [ln for ln in lines if ln.endswith(".vtt")] == [f"{m}.vtt" for m in range(1000, 1010)]
    assert [m for m in range(1000, 1010) if lines[lines.index(f"{m}.vtt") - 1] == "#EXT-X-GAP"] == [1006, 1007, 1008]
    video = render_media(view, "360p").splitlines()
    assert [m for m in range(1006, 1009) if video[video.index(segment_name(m)) - 1] == "#EXT-X-GAP"] == [1007, 1008]
    # DASH: the text rendition is in both Periods, like the media (the old window, then the new run)
    mpd = validate_mpd(render_mpd(view))
    ns = {"d": mpd.nsmap[None]}
    periods = mpd.findall("d:Period", ns)
    assert [p.get("id") for p in periods] == ["1000", "1009"]
    for period, count in zip(periods, (6, 1), strict=True):
        template = period.find("d:AdaptationSet[@contentType='text']/d:Representation/d:SegmentTemplate", ns)
        entries = template.findall("d:SegmentTimeline/d:S", ns)
        assert (template.get("startNumber"), sum(1 + int(s.get("r", "0")) for s in entries)) == (
            period.get("id"),
            count,
        )
    mirror.close()
    for m in (1003, 1009):  # every listed segment's DASH form is on disk too
        seg = d.stream.segment("subs-en", m)
        assert (folder / segment_name(m)).read_bytes() == from_webvtt(
            (folder / f"{m}.vtt").read_bytes(), seg.start, seg.end, m
        )


def test_a_damaged_or_misplaced_vtt_file_is_left_out_and_the_rest_of_the_subtitles_resume(tmp_path, clock):
    _store, mirror, d, subs = _subtitled_run(tmp_path, clock, recover=False)
    _publish_subtitled(d, subs, 6)
    mirror.disk.close()
    folder = tmp_path / "demo/subs-en"
    (folder / "1001.vtt").write_bytes(b"WEBVTT\n\ntruncated")
    (folder / "1002.vtt").write_bytes((folder / "1004.vtt").read_bytes())  # another segment's file
    clock.advance(1.0)
    _store, mirror, d, _subs = _subtitled_run(tmp_path, clock)
    assert [s.msn for s in d.stream.track("subs-en").segments] == [1000, 1003, 1004, 1005]
    assert [s.msn for s in d.stream.track("360p").segments] == list(range(1000, 1006))
    mirror.close()
    (folder / "init.mp4").write_bytes(b"another packager's init")
    _store, mirror, d, _subs = _subtitled_run(tmp_path, clock)
    assert list(d.stream.track("subs-en").segments) == []
    mirror.close()


def test_a_rendition_made_again_later_takes_back_its_window(tmp_path, clock):
    """A rendition of the live subtitle API is made again at its language's first request after a restart."""
    _store, mirror, d, subs = _subtitled_run(tmp_path, clock, recover=False)
    _publish_subtitled(d, subs, 6)
    mirror.disk.close()
    clock.advance(2.5)
    _store, mirror, d = _run(tmp_path, clock)  # no subtitle rendition at first
    subs = Subtitles(d.stream, SEGMENT_S)
    d.msn = 1009
    for _ in range(2):
        subs.advance(d.msn * 1000)
        d.publish_segments(1)
    subs.add_track(SubtitleTrack("subs-en", "en", "English"))  # the first request for "en"
    assert [s.msn for s in d.stream.track("subs-en").segments] == list(range(1000, 1006))
    subs.advance(1_012_000)
    assert [s.msn for s in d.stream.track("subs-en").segments][-1] == 1011
    mirror.close()
