"""The publication boundary: the order of the store's events, servable-before-announced, replicas, the disk mirror."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from packager.disk import DiskWriter
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.model import MASTER_NAME, MEDIA_PLAYLIST_NAME, Part, Segment, TrackInfo, part_name, segment_name
from packager.publication import (
    InitPublished,
    MediaRetired,
    PartPublished,
    Publication,
    SegmentClosed,
    StreamEnded,
    StreamOpened,
    TracksExpected,
)
from packager.reader import Position
from packager.store import Store, StreamStore
from packager.timebase import MediaClock
from tests.support.clock import ManualClock
from tests.support.live import VIDEO, Driver, make_live


class Recorder:
    """A listener that keeps every event it hears."""

    def __init__(self) -> None:
        self.events: list[Publication] = []

    def on_publication(self, event: Publication) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def summary(event: Publication) -> tuple[object, ...]:
    match event:
        case PartPublished(part=p):
            return ("part", p.msn, p.index)
        case SegmentClosed(segment=s):
            return ("segment", s.msn)
        case InitPublished(info=info):
            return ("init", info.name)
        case _:
            return (type(event).__name__,)


def part_at(d: Driver, info: TrackInfo, msn: int, index: int) -> Part:
    start = int((msn * d.segment_s + index * d.part_s) * info.timescale)
    return Part(info.name, msn, index, start, int(d.part_s * info.timescale), index == 0, b"moof+mdat late")


# ---------------------------------------------------------------- the order of events


def test_a_tracks_events_come_in_the_order_a_player_sees() -> None:
    rec = Recorder()
    store, d = make_live(tracks=(VIDEO,), listeners=(rec,), expect_tracks=True)
    d.publish(4)  # segment 1000, closed by its last part
    d.publish(2)  # 1001.0, 1001.1 ... then the feed skips ahead to 1002
    d.stream.on_part(part_at(d, VIDEO, 1002, 0), False, False)
    d.stream.on_end("source ended")
    store.remove("demo")
    assert [summary(e) for e in rec.events] == [
        ("StreamOpened",),
        ("TracksExpected",),
        ("init", "360p"),
        *(("part", 1000, i) for i in range(4)),
        ("segment", 1000),
        ("part", 1001, 0),
        ("part", 1001, 1),
        ("segment", 1001),  # closed by a part of the next msn: before that part
        ("part", 1002, 0),
        ("segment", 1002),  # the end closes the segment in production ...
        ("StreamEnded",),  # ... and only then says so
        ("StreamRemoved",),
    ]
    opened, expected = rec.events[0], rec.events[1]
    assert isinstance(opened, StreamOpened) and opened.timing.segment_s == 1 and opened.timing.live
    assert isinstance(expected, TracksExpected) and expected.tracks == frozenset({"360p"})
    closed = rec.of(SegmentClosed)[1].segment
    assert [(p.msn, p.index) for p in closed.parts] == [(1001, 0), (1001, 1)] and closed.duration == 2 * 22_500
    ended = rec.of(StreamEnded)[0]
    assert ended.reason == "source ended" and ended.ended_utc_s == d.stream.published_utc_s


def test_every_track_keeps_its_own_order() -> None:
    rec = Recorder()
    _store, d = make_live(listeners=(rec,))
    d.publish_segments(2)
    for info in d.tracks:
        mine = [summary(e) for e in rec.events if _track_of(e) == info.name]
        assert mine == [
            ("init", info.name),
            *(("part", 1000, i) for i in range(4)),
            ("segment", 1000),
            *(("part", 1001, i) for i in range(4)),
            ("segment", 1001),
        ]


def _track_of(event: Publication) -> str | None:
    match event:
        case PartPublished(part=p):
            return p.track
        case SegmentClosed(segment=s):
            return s.track
        case InitPublished(info=info):
            return info.name
        case _:
            return None


def test_a_dropped_overlapping_part_is_not_announced() -> None:
    rec = Recorder()
    _store, d = make_live(tracks=(VIDEO,), listeners=(rec,))
    d.publish(2)
    before = len(rec.events)
    d.stream.on_part(part_at(d, VIDEO, 1000, 1), False, False)  # overlaps what players have
    assert len(rec.events) == before and d.stream.overlaps == 1


# ---------------------------------------------------------------- listeners


class Broken:
    def __init__(self) -> None:
        self.calls = 0

    def on_publication(self, event: Publication) -> None:
        self.calls += 1
        raise RuntimeError("listener bug")


def test_a_listener_that_raises_stops_neither_publication_nor_the_others(caplog: pytest.LogCaptureFixture) -> None:
    broken, rec = Broken(), Recorder()
    with caplog.at_level(logging.ERROR, logger="packager.store"):
        _store, d = make_live(listeners=(broken, rec))
        d.publish_segments(2)
    assert len(rec.of(PartPublished)) == 8 * 3 and len(rec.of(SegmentClosed)) == 2 * 3
    assert broken.calls == len(rec.events)  # still called for every event after its first failure
    assert d.stream.segment_bytes("360p", 1001) is not None and d.stream.view().track("360p").last_part == (1001, 3)
    assert "listener" in caplog.text and "listener bug" in caplog.text


def test_subscribing_twice_hears_once_and_unsubscribed_hears_nothing() -> None:
    rec = Recorder()
    store, d = make_live(tracks=(VIDEO,), listeners=(rec, rec))
    d.publish(1)
    assert [summary(e) for e in rec.events[-1:]] == [("part", 1000, 0)] and len(rec.of(PartPublished)) == 1
    store.unsubscribe(rec)
    d.publish(3)
    assert len(rec.of(PartPublished)) == 1


def at_once(coro: Coroutine[Any, Any, bool]) -> bool | str:
    """What ``coro`` returns if it finishes without suspending; ``"suspended"`` if it had to wait."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    return "suspended"


class Servable:
    """Checks, while handling each event, that the store already serves what the event announces."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.results: list[tuple[str, object, object]] = []

    def on_publication(self, event: Publication) -> None:
        s = self.store.get(event.stream)
        if s is None:
            return
        match event:
            case PartPublished(part=p):
                self._part(s, p)
            case SegmentClosed(segment=seg):
                self._segment(s, seg)

    def _part(self, s: StreamStore, p: Part) -> None:
        at = (p.msn, p.index)
        progress = s.progress(p.track, p.msn)
        self.results.append(("part", at, s.part(p.track, p.msn, p.index) == p))
        self.results.append(("view", at, s.view().track(p.track).last_part == at))  # type: ignore[union-attr]
        self.results.append(("progress", at, progress is not None and progress.chunks[-1] == p.data))
        self.results.append(("wait", at, at_once(s.wait(p.track, Position(p.msn, p.index), 5))))

    def _segment(self, s: StreamStore, seg: Segment) -> None:
        data = s.segment_bytes(seg.track, seg.msn)
        progress = s.progress(seg.track, seg.msn)
        self.results.append(("segment", seg.msn, s.segment(seg.track, seg.msn) == seg))
        self.results.append(("bytes", seg.msn, data is not None and len(data) == seg.size))
        self.results.append(("listed", seg.msn, s.view().track(seg.track).segments[-1] == seg))  # type: ignore[union-attr]
        self.results.append(("complete", seg.msn, progress is not None and progress.complete))
        self.results.append(("wait", seg.msn, at_once(s.wait(seg.track, Position(seg.msn), 5))))

    def failures(self) -> list[tuple[str, object, object]]:
        return [r for r in self.results if r[2] is not True]


async def test_what_an_event_announces_is_already_served_while_listeners_handle_it() -> None:
    store = Store()
    checker = Servable(store)
    store.subscribe(checker)
    stream = store.open_stream(
        "demo",
        segment_s=Fraction(1),
        part_s=Fraction(1, 4),
        window_s=Fraction(10),
        target_duration=1,
        clock=MediaClock(Fraction(0)),
    )
    stream.on_init(VIDEO, b"ftyp+moov")
    d = Driver(stream, (VIDEO,), Fraction(1), Fraction(1, 4))
    d.publish(6)
    stream.on_part(part_at(d, VIDEO, 1003, 0), False, False)  # closes 1001 implicitly
    assert len(checker.results) == 7 * 4 + 2 * 5
    assert checker.failures() == []


# ---------------------------------------------------------------- retirement


def test_media_is_retired_the_grace_after_it_left_the_manifests() -> None:
    clock, rec = ManualClock(), Recorder()
    store, d = make_live(tracks=(VIDEO,), window_s=Fraction(3), clock=clock, listeners=(rec,))
    d.publish_segments(6)  # 1000-1002 leave the manifests now
    assert [s.msn for s in d.stream.view().track("360p").segments] == [1003, 1004, 1005]
    assert rec.of(MediaRetired) == [] and d.stream.segment_bytes("360p", 1000) is not None
    assert d.stream.grace_s >= 3 * d.stream.target_duration
    clock.advance(d.stream.grace_s - 0.01)
    d.publish(1)
    assert rec.of(MediaRetired) == []
    clock.advance(0.01)
    d.publish(1)
    retired = rec.of(MediaRetired)
    assert [(r.stream, r.track, r.msn) for r in retired] == [("demo", "360p", m) for m in (1000, 1001, 1002)]
    assert retired[0].parts == tuple((1000, i) for i in range(4))
    assert all(d.stream.segment_bytes("360p", m) is None for m in (1000, 1001, 1002))
    assert d.stream.segment_bytes("360p", 1003) is not None
    assert store.get("demo") is d.stream


# ---------------------------------------------------------------- a replica fed the events


class Feed:
    """Feeds every event of a publisher into a replica store, as the Redis mirror does."""

    def __init__(self, replica: Store) -> None:
        self.replica = replica

    def on_publication(self, event: Publication) -> None:
        self.replica.apply(event)


def assert_same(publisher: Store, replica: Store, name: str = "demo") -> None:
    a, b = publisher.get(name), replica.get(name)
    assert a is not None and b is not None
    va, vb = a.view(), b.view()
    assert va == vb
    assert (a.started_utc_s, a.end_reason) == (b.started_utc_s, b.end_reason)
    assert render_master(va) == render_master(vb)
    for track in va.tracks:
        name_ = track.info.name
        assert render_media(va, name_) == render_media(vb, name_)
        assert render_media(va, name_, skip=True) == render_media(vb, name_, skip=True)
    for low_latency in (True, False):
        assert render_mpd(va, low_latency=low_latency) == render_mpd(vb, low_latency=low_latency)


def test_a_replica_fed_every_event_renders_the_same_bytes_at_every_step() -> None:
    clock = ManualClock()
    replica = Store(clock=clock)
    publisher, d = make_live(window_s=Fraction(3), clock=clock, listeners=(Feed(replica),), expect_tracks=True)
    assert_same(publisher, replica)
    assert replica.get("demo").expected_tracks == frozenset({"360p", "180p", "audio"})  # type: ignore[union-attr]
    for _ in range(24):  # six segments: the window (three) slides, media retires on the shared clock
        d.publish(1)
        clock.advance(0.25)
        assert_same(publisher, replica)
    d.msn += 2  # the feed comes back two segments later, not continuing
    d.index = 0
    d.publish(1, discontinuity=True)
    assert_same(publisher, replica)
    assert publisher.get("demo").view().track("360p").pending_discontinuity  # type: ignore[union-attr]
    d.stream.on_input_switch()
    for _ in range(20):  # the discontinuity slides out: the discontinuity sequence moves on
        d.publish(1)
        clock.advance(0.25)
        assert_same(publisher, replica)
    assert d.stream.view().track("360p").discontinuity_sequence == 1
    d.publish(2)
    d.stream.on_end("source ended")
    assert_same(publisher, replica)
    assert replica.get("demo").view().ended  # type: ignore[union-attr]
    publisher.remove("demo")
    assert replica.get("demo") is None


def test_a_replica_ignores_events_of_streams_it_never_saw_opened() -> None:
    replica, rec = Store(), Recorder()
    _publisher, d = make_live(listeners=(rec,))
    d.publish(5)
    for event in rec.events[1:]:  # everything but the opening
        assert replica.apply(event) is None
    assert replica.get("demo") is None


# ---------------------------------------------------------------- the disk mirror


def named_media(playlist: str) -> list[str]:
    """Files a media playlist names (the init, parts, segments); not the preload hint, not other playlists."""
    names = []
    for line in playlist.splitlines():
        if line.startswith(("#EXT-X-MAP:", "#EXT-X-PART:")):
            names.append(line.split('URI="', 1)[1].split('"', 1)[0])
        elif line and not line.startswith("#"):
            names.append(line)
    return names


class CheckingWriter(DiskWriter):
    """A disk writer that checks, on its thread, the moment each playlist lands, that what it names is on disk."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0
        self.missing: list[str] = []

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        if path.name == MEDIA_PLAYLIST_NAME:
            names = named_media(data.decode())
        elif path.name == MASTER_NAME:
            names = [line for line in data.decode().splitlines() if line and not line.startswith("#")]
        else:
            return
        self.notify(lambda: self._check(path.parent, names))

    def _check(self, folder: Path, names: list[str]) -> None:
        self.checked += 1
        self.missing += [f"{folder}/{n}" for n in names if not (folder / n).is_file()]


def checked(d: Driver) -> CheckingWriter:
    assert d.mirror is not None
    d.mirror.disk.close()  # the inits are on disk
    writer = d.mirror.disk = CheckingWriter()
    return writer


def test_the_mirror_writes_media_before_the_manifests_that_name_it(tmp_path: Path) -> None:
    clock = ManualClock()
    _store, d = make_live(tmp_path, window_s=Fraction(3), clock=clock)
    writer = checked(d)
    for _ in range(40):  # no loop running: manifests are written after every event
        d.publish(1)
        clock.advance(0.5)  # retirement deletes files on the way
    d.stream.on_end("done")
    assert writer.flush()
    assert writer.checked > 40 and writer.missing == []
    assert "#EXT-X-ENDLIST" in (tmp_path / "demo" / "360p" / MEDIA_PLAYLIST_NAME).read_text()
    d.mirror.close()  # type: ignore[union-attr]


async def test_the_mirror_coalesces_manifests_per_loop_turn_and_keeps_the_order(tmp_path: Path) -> None:
    _store, d = make_live(tmp_path)
    writer = checked(d)
    for _ in range(8):
        d.publish(3)  # nine events, one set of manifests
        await asyncio.sleep(0)
    assert await asyncio.to_thread(writer.flush)
    # three media playlists a turn, and the master on the turns that closed a segment (parts alone leave
    # the multivariant playlist and the MPD, which list whole segments, as they are)
    assert 8 * 3 < writer.checked < 8 * (3 + 1) and writer.missing == []
    text = (tmp_path / "demo" / "360p" / MEDIA_PLAYLIST_NAME).read_text()
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="1006.0.m4s"' in text and "1005.m4s" in text
    await asyncio.to_thread(d.mirror.close)  # type: ignore[union-attr]


@pytest.mark.parametrize("live", [True, False], ids=["live", "vod"])
def test_retired_media_leaves_the_disk_of_live_streams_only(tmp_path: Path, live: bool) -> None:
    clock = ManualClock()
    _store, d = make_live(tmp_path, tracks=(VIDEO,), window_s=Fraction(3), clock=clock, live=live)
    d.publish_segments(8)
    clock.advance(d.stream.grace_s)
    d.publish(1)
    assert d.mirror is not None and d.mirror.disk.flush()
    folder = tmp_path / "demo" / "360p"
    assert (folder / segment_name(1000)).is_file() is not live
    assert (folder / part_name(1000, 0)).is_file() is not live
    assert (folder / segment_name(1007)).is_file() and (folder / part_name(1007, 3)).is_file()
    d.mirror.close()


def test_final_manifests_are_on_disk_when_when_final_listeners_hear(tmp_path: Path) -> None:
    _store, d = make_live(tmp_path)
    assert d.mirror is not None
    heard: list[tuple[str, Path, bool, bool]] = []
    done = threading.Event()

    def final(stream: str, folder: Path) -> None:
        playlist = (folder / "360p" / MEDIA_PLAYLIST_NAME).read_text()
        mpd = (folder / "manifest.mpd").read_text()
        heard.append((stream, folder, "#EXT-X-ENDLIST" in playlist, 'type="static"' in mpd))
        done.set()

    d.mirror.when_final(final)
    d.publish(6)
    assert d.mirror.disk.flush() and heard == []  # not before the end
    d.stream.on_end("done")
    assert done.wait(5)
    assert heard == [("demo", tmp_path / "demo", True, True)]
    d.mirror.close()


async def test_the_final_manifests_are_queued_at_the_end_not_a_loop_turn_later(tmp_path: Path) -> None:
    _store, d = make_live(tmp_path)
    assert d.mirror is not None
    d.publish(6)
    d.stream.on_end("done")
    assert d.mirror.disk.flush()  # on purpose without yielding to the loop
    assert "#EXT-X-ENDLIST" in (tmp_path / "demo" / "180p" / MEDIA_PLAYLIST_NAME).read_text()
    assert d.stream.file("360p", segment_name(1001)) == tmp_path / "demo" / "360p" / segment_name(1001)
    d.mirror.close()


def test_a_removed_streams_folder_goes_and_late_writes_are_dropped(tmp_path: Path) -> None:
    store, d = make_live(tmp_path)
    assert d.mirror is not None
    d.publish_segments(10)
    d.stream.on_end("done")
    store.remove("demo")
    assert d.mirror.folder("demo") is None and d.stream.file("360p", segment_name(1000)) is None
    d.stream.on_init(VIDEO, b"ftyp+moov late")  # the old stream object publishes on: nothing is written
    d.publish(2)
    assert d.mirror.disk.flush() and d.mirror.disk.errors == 0
    assert not (tmp_path / "demo").exists()
    again = store.open_stream(
        "demo",
        segment_s=Fraction(1),
        part_s=Fraction(1, 4),
        window_s=Fraction(10),
        target_duration=1,
        clock=d.stream.clock,
    )
    again.on_init(VIDEO, b"ftyp+moov again")  # a new stream of the same name is mirrored again
    assert d.mirror.disk.flush()
    assert (tmp_path / "demo" / "360p" / "init.mp4").read_bytes() == b"ftyp+moov again"
    d.mirror.close()
