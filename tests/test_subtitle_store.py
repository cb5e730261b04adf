"""Subtitle renditions through the publication paths: the Redis codec carries them to a replica store that
renders the same manifests and serves the same WebVTT bytes, and the disk mirror writes them as .vtt files (HLS)
and in their ISO BMFF form (DASH)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

from origin.folder import FILE
from origin.policy import Kind, cache_control, content_type_for_name
from packager.cmaf import parse_fragments
from packager.cmaf.wvtt import from_webvtt
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.mirror import DiskMirror
from packager.publication import Publication
from packager.redisstore.codec import decode, encode
from packager.store import Store, StreamStore
from packager.subtitles import TEXT_INIT, Subtitles, SubtitleTrack
from packager.timebase import MediaClock
from packager.webvtt import Cue
from tests.support.clock import ManualClock

START_MS = 1_750_000_000_000  # a UTC media clock


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Publication] = []

    def on_publication(self, event: Publication) -> None:
        self.events.append(event)


def _live(store: Store) -> StreamStore:
    return store.open_stream(
        "demo",
        segment_s=Fraction(2),
        part_s=Fraction(1, 2),
        window_s=Fraction(20),
        target_duration=2,
        clock=MediaClock(Fraction(0), live=True),
    )


def _publish(stream: StreamStore) -> Subtitles:
    subs = Subtitles(stream, Fraction(2))
    subs.advance(START_MS)
    subs.add_track(SubtitleTrack("subs-en", "en", "English", default=True))
    subs.add_cue("subs-en", Cue(START_MS + 500, START_MS + 2500, "one"))
    subs.add_cue("subs-en", Cue(START_MS + 4100, START_MS + 4900, "two"))
    subs.advance(START_MS + 6000)
    return subs


def test_the_codec_carries_subtitle_renditions_to_a_replica() -> None:
    clock = ManualClock(utc_s=START_MS / 1000 + 6.1)
    source, replica = Store(clock=clock), Store(clock=clock)
    recorder = _Recorder()
    source.subscribe(recorder)
    stream = _live(source)
    _publish(stream)
    assert [s.msn for s in stream.track("subs-en").segments] == [875_000_000, 875_000_001, 875_000_002]
    for event in recorder.events:
        replica.apply(decode(encode(event)))
    mirrored = replica.get("demo")
    assert mirrored is not None
    assert dataclasses.replace(mirrored.view(), version=0) == dataclasses.replace(stream.view(), version=0)
    for seg in stream.track("subs-en").segments:
        data = mirrored.segment_bytes("subs-en", seg.msn)
        assert data == stream.segment_bytes("subs-en", seg.msn) and data.startswith(b"WEBVTT\n")
    view = mirrored.view()
    assert render_media(view, "subs-en") == render_media(stream.view(), "subs-en")
    assert render_master(view) == render_master(stream.view()) and render_mpd(view) == render_mpd(stream.view())


def test_the_disk_mirror_writes_whole_segments_as_vtt_and_as_wvtt_with_its_init_and_no_parts(tmp_path: Path) -> None:
    store = Store(clock=ManualClock(utc_s=START_MS / 1000 + 6.1))
    mirror = DiskMirror(store, tmp_path).attach()
    stream = _live(store)
    _publish(stream)
    mirror.disk.close()
    folder = tmp_path / "demo" / "subs-en"
    msns = (875_000_000, 875_000_001, 875_000_002)
    names = sorted([*(f"{m}.vtt" for m in msns), *(f"{m}.m4s" for m in msns), "index.m3u8", "init.mp4"])
    assert sorted(p.name for p in folder.iterdir()) == names
    assert (folder / "index.m3u8").read_text() == render_media(stream.view(), "subs-en")
    assert (folder / "init.mp4").read_bytes() == stream.init("subs-en") == TEXT_INIT
    assert (folder / "875000000.vtt").read_bytes() == stream.segment_bytes("subs-en", 875_000_000)
    seg = stream.segment("subs-en", 875_000_001)
    assert seg is not None
    iso = (folder / "875000001.m4s").read_bytes()
    assert iso == from_webvtt(stream.segment_bytes("subs-en", seg.msn), seg.start, seg.end, seg.msn)
    assert (
        parse_fragments(iso)[0].base_decode_time == seg.start and sum(parse_fragments(iso)[0].sample_durations) == 2000
    )
    assert b"00:00:00" not in (folder / "875000002.vtt").read_bytes()  # cue times are on the UTC media clock
    assert b"two" in (folder / "875000002.vtt").read_bytes()


def test_the_origin_serves_a_packaged_folders_vtt_as_immutable_text_vtt() -> None:
    kind, ctype = content_type_for_name("875000000.vtt")
    assert (kind, ctype) == (Kind.SUBTITLE, "text/vtt; charset=utf-8")
    assert FILE.match("875000000.vtt") and not FILE.match("875000000.vtt.bak")
    assert "immutable" in cache_control(kind) and cache_control(kind, 404) == "no-store"
