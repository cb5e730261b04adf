"""A standby encoder's staging: nothing published while standby, whole segments only once active."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from packager import scte35
from packager.model import Part
from packager.publication import OwnerChanged, PartPublished, Publication
from packager.splice import Splice
from packager.standby import KEEP_SEGMENTS, StandbyStore, StandbyStream
from packager.store import Store
from packager.timebase import MediaClock
from tests.support.live import AUDIO, VIDEO, Driver, make_live

SEG = Fraction(1)
PART = Fraction(1, 4)
TRACKS = (VIDEO, AUDIO)


class Heard:
    def __init__(self) -> None:
        self.events: list[Publication] = []

    def on_publication(self, event: Publication) -> None:
        self.events.append(event)

    def parts(self) -> list[tuple[str, int, int]]:
        return [(e.part.track, e.part.msn, e.part.index) for e in self.events if isinstance(e, PartPublished)]


def staged_stream() -> tuple[StandbyStream, Driver]:
    opened: list[StandbyStream] = []
    staging = StandbyStore(opened.append)
    staged = staging.open_stream(
        "demo", segment_s=SEG, part_s=PART, window_s=Fraction(10), target_duration=1, clock=MediaClock(Fraction(0))
    )
    assert opened == [staged]
    staged.expect_tracks(frozenset(t.name for t in TRACKS))
    for info in TRACKS:
        staged.on_init(info, b"ftyp+moov " + info.name.encode())
    return staged, Driver(staged, TRACKS, SEG, PART)  # type: ignore[arg-type]


def test_a_standby_stream_publishes_nothing_and_keeps_only_its_newest_segments() -> None:
    staged, driver = staged_stream()
    assert not staged.ready()  # no part yet
    driver.publish(2)  # 1000.0, 1000.1
    assert staged.ready() and staged.first_whole_msn() == 1000
    driver.publish_segments(KEEP_SEGMENTS + 2)
    assert staged.first_whole_msn() == driver.msn - KEEP_SEGMENTS + 1
    assert staged.target is None


def test_a_stream_joined_mid_segment_is_ready_from_the_next_segment_on() -> None:
    staged, driver = staged_stream()
    driver.index = 2  # the pipeline started in the middle of segment 1000
    driver.publish(2)
    assert not staged.ready()
    driver.publish(1)
    assert staged.first_whole_msn() == 1001


def test_activation_continues_the_old_owners_stream_from_the_resume_segment_only() -> None:
    heard = Heard()
    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS, listeners=(heard,))
    staged, new = staged_stream()
    old.publish(6)  # the old owner: all of 1000, half of 1001, then it died
    new.publish(6)  # the standby encoded the same positions
    stream = store.get("demo")
    assert stream is not None
    heard.events.clear()
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", 1002, 0.5, 0.0))
    staged.activate(stream, 1002)
    assert heard.parts() == []  # nothing staged is at or after 1002 yet
    cut = stream.segment(VIDEO.name, 1001)
    assert cut is not None and cut.cut and len(cut.parts) == 2
    new.publish(2)  # 1001.2, 1001.3: the rest of a segment begun before the switch is not published
    assert heard.parts() == []
    new.publish(1)  # 1002.0
    assert heard.parts() == [(VIDEO.name, 1002, 0), (AUDIO.name, 1002, 0)]
    assert not any(isinstance(e, PartPublished) and e.discontinuity for e in heard.events)


def test_activation_replays_what_was_staged_from_the_resume_segment() -> None:
    heard = Heard()
    store = Store()
    store.subscribe(heard)
    staged, driver = staged_stream()
    driver.publish(6)  # 1000.0-3, 1001.0-1
    stream = store.open_stream(
        "demo", segment_s=SEG, part_s=PART, window_s=Fraction(10), target_duration=1, clock=staged.clock
    )
    staged.activate(stream, 1001)
    assert heard.parts() == [(t, 1001, i) for t in (VIDEO.name, AUDIO.name) for i in (0, 1)]
    assert stream.init(VIDEO.name) == b"ftyp+moov " + VIDEO.name.encode()
    driver.publish(1)
    assert heard.parts()[-2:] == [(VIDEO.name, 1001, 2), (AUDIO.name, 1001, 2)]


def test_a_different_init_on_the_new_owner_starts_a_discontinuity() -> None:
    heard = Heard()
    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS, listeners=(heard,))
    old.publish(4)
    staged, new = staged_stream()
    staged.on_init(VIDEO, b"ftyp+moov other encoder settings")
    new.publish(8)
    stream = store.get("demo")
    assert stream is not None
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", 1001, 0.0, 0.0))
    staged.activate(stream, 1001)
    flagged = {e.part.track for e in heard.events if isinstance(e, PartPublished) and e.discontinuity}
    assert flagged == {VIDEO.name}
    assert stream.init(VIDEO.name) == b"ftyp+moov other encoder settings"


def test_a_hand_off_finishes_the_segment_on_every_track_then_stops_once() -> None:
    heard = Heard()
    store = Store()
    store.subscribe(heard)
    staged, driver = staged_stream()
    stream = store.open_stream(
        "demo", segment_s=SEG, part_s=PART, window_s=Fraction(10), target_duration=1, clock=staged.clock
    )
    staged.activate(stream, 1000)
    driver.publish(2)
    stopped: list[int] = []
    staged.stop_after(1000, lambda: stopped.append(1))
    driver.publish(2)  # 1000.2, 1000.3: still ours
    assert stopped == []
    driver.publish(3)  # 1001.x: staged, not published
    assert stopped == [1] and staged.target is None
    assert {(m, i) for _, m, i in heard.parts()} == {(1000, i) for i in range(4)}
    assert staged.first_whole_msn() == 1001  # ready to take over again


@pytest.mark.parametrize(
    ("published", "first"),
    [(4, (1001, 0)), (2, (1000, 2))],
    ids=["next segment", "filled segment"],
)
def test_the_new_owners_first_audio_part_may_begin_a_frame_before_the_old_owners_media_ended(
    published: int, first: tuple[int, int]
) -> None:
    """Two encoders' audio frames may fall on different grids (separate pushes): the new owner's first part,
    first in the next segment or filling the old owner's, may overlap the old owner's last one by a frame."""
    store, old = make_live(segment_s=SEG, part_s=PART, tracks=(AUDIO,))
    old.publish(published)
    stream = store.get("demo")
    assert stream is not None
    track = stream.tracks[AUDIO.name]
    msn, index = first
    start = int((msn * SEG + index * PART) * AUDIO.timescale) - 480  # another encoder's frame grid
    early = Part(AUDIO.name, msn, index, start, AUDIO.timescale // 4, True, b"another encoder's frames")
    assert not track.publish_part(early, False, False)  # the same owner may never overlap
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", msn, 0.0, 0.0))
    assert track.publish_part(early, False, False)
    late = Part(AUDIO.name, msn, index + 1, early.start + early.duration - 480, AUDIO.timescale // 4, True, b"x")
    assert not track.publish_part(late, False, False)  # only the first part after the switch


def test_hls_lists_a_cut_segment_at_its_nominal_duration_with_gap_parts_for_what_never_existed() -> None:
    from packager.manifest.hls import render_media

    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS)
    old.publish(6)  # 1000 whole, 1001.0-1, then the owner died
    stream = store.get("demo")
    assert stream is not None
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", 1002, 0.5, 0.0))
    text = render_media(stream.view(), VIDEO.name)
    block = text[text.index('URI="1001.0.m4s"') : text.index("1001.m4s")]
    assert 'URI="1001.1.m4s"' in block and "GAP" not in block.split("\n")[1]
    gaps = [line for line in block.split("\n") if "GAP=YES" in line]
    assert [re.search(r'URI="([^"]+)"', g).group(1) for g in gaps] == ["1001.2.m4s", "1001.3.m4s"]  # type: ignore[union-attr]
    assert all("DURATION=0.25," in g for g in gaps)
    # nominal duration (PDT and EXTINF agree), not EXT-X-GAP: the segment holds its first parts' media, so a
    # player loading whole segments plays them and steps over the rest as a buffer hole
    assert "#EXTINF:1.0,\n1001.m4s\n" in text
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="1002.0.m4s"' in text  # the new owner's first part
    for uri in re.findall(r'#EXT-X-PART:(?![^\n]*GAP=YES)[^\n]*URI="(\d+)\.(\d+)\.m4s"', text):
        assert stream.part(VIDEO.name, int(uri[0]), int(uri[1])) is not None  # every part it names exists


def test_dash_lists_a_cut_segment_up_to_the_next_one_so_the_timeline_has_no_hole() -> None:
    from packager.manifest.dash import render_mpd
    from packager.manifest.timeline import timeline_entries

    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS)
    old.publish(6)  # 1000 whole, 1001.0-1, then the owner died
    stream = store.get("demo")
    assert stream is not None
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", 1002, 0.5, 0.0))
    new = Driver(stream, TRACKS, SEG, PART, msn=1002)
    new.publish(4)  # the new owner's segment 1002, whole
    view = stream.view()
    for track in view.tracks:
        entries = timeline_entries(view, track, with_production=True)
        by_msn = {e.msn: e for e in entries}
        cut = stream.segment(track.info.name, 1001)
        assert cut is not None and cut.cut and cut.duration < by_msn[1002].start - cut.start  # media ends early
        assert by_msn[1001].start + by_msn[1001].duration == by_msn[1002].start  # listed back to back
    mpd = render_mpd(view).decode()
    assert mpd.count("<Period") == 1 and mpd.count(' t="') == len(view.tracks)  # one t each: the first S


def test_splices_are_staged_on_standby_and_published_once_active() -> None:
    heard = Heard()
    store = Store()
    store.subscribe(heard)
    staged, driver = staged_stream()
    driver.publish(4)
    early = Splice(1, "out", 1001 * 90_000, None, scte35.build("out", 1, 1001 * 90_000, None))
    assert staged.on_splice(early) and not staged.on_splice(early)  # a repeated cue is one splice
    assert heard.events == []  # standby: nothing published
    stream = store.open_stream(
        "demo", segment_s=SEG, part_s=PART, window_s=Fraction(10), target_duration=1, clock=staged.clock
    )
    staged.activate(stream, 1001)
    assert stream.splices == (early,)
    late = Splice(1, "in", 1002 * 90_000, None, scte35.build("in", 1, 1002 * 90_000, None))
    staged.on_splice(late)
    assert stream.splices == (early, late)
    assert [type(e).__name__ for e in heard.events].count("SpliceScheduled") == 2


def standby_encoded(count: int) -> tuple[StandbyStream, Driver]:
    """A standby that staged ``count`` part positions from segment 1000 on, an IDR at every part."""
    staged, new = staged_stream()
    new.every_part_independent = True
    new.publish(count)
    return staged, new


def test_a_take_over_fills_the_old_owners_segment_from_the_part_after_its_last_and_loses_nothing() -> None:
    heard = Heard()
    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS, listeners=(heard,))
    old.publish(6)  # the old owner: all of 1000, 1001.0-1, then it died
    staged, new = standby_encoded(7)  # the standby encoded up to 1001.2
    stream = store.get("demo")
    assert stream is not None
    fill = staged.fill_from(stream)
    assert fill is not None and fill.at == {VIDEO.name: (1001, 2), AUDIO.name: (1001, 2)}
    assert fill.resume_msn == 1001 and fill.gap_s == 0
    heard.events.clear()
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", fill.resume_msn, fill.gap_s, 0.0))
    staged.activate(stream, fill.resume_msn, fill)
    assert heard.parts() == [(VIDEO.name, 1001, 2), (AUDIO.name, 1001, 2)]
    new.publish(1)  # 1001.3 completes the segment the old owner began
    seg = stream.segment(VIDEO.name, 1001)
    assert seg is not None and not seg.cut and [p.index for p in seg.parts] == [0, 1, 2, 3]
    assert seg.duration == VIDEO.timescale * SEG
    assert [p.independent for p in seg.parts] == [True, False, True, True]  # the new owner's first is an IDR
    assert not any(isinstance(e, PartPublished) and e.discontinuity for e in heard.events)


def test_a_fill_follows_each_track_from_its_own_last_part() -> None:
    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS)
    old.publish(5)  # every track through 1001.0
    stream = store.get("demo")
    assert stream is not None
    old.tracks = (VIDEO,)
    old.publish(2)  # the video got to 1001.2 before the old owner died; the audio did not
    staged, _ = standby_encoded(8)
    fill = staged.fill_from(stream)
    assert fill is not None and fill.at == {VIDEO.name: (1001, 3), AUDIO.name: (1001, 1)}
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", fill.resume_msn, fill.gap_s, 0.0))
    staged.activate(stream, fill.resume_msn, fill)
    for track in TRACKS:
        seg = stream.segment(track.name, 1001)
        assert seg is not None and not seg.cut and len(seg.parts) == 4


def test_no_fill_without_an_idr_at_the_part_after_the_old_owners_last_or_with_another_init() -> None:
    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS)
    old.publish(6)
    stream = store.get("demo")
    assert stream is not None
    staged, new = staged_stream()
    new.publish(8)  # encoded with the stream's own GOP: 1001.2 needs what came before it
    assert staged.fill_from(stream) is None
    staged, _ = standby_encoded(8)
    staged.on_init(VIDEO, b"ftyp+moov other encoder settings")
    assert staged.fill_from(stream) is None  # a switch of settings needs a discontinuity: a whole segment
    staged, _ = standby_encoded(2)  # started after the old owner's last part: 1001.2 was never staged
    assert staged.fill_from(stream) is None


def test_a_standby_asks_its_encoders_for_an_idr_at_every_part_only_while_it_holds_its_media_back() -> None:
    from packager.splice import KeyframeSchedule

    part_ticks = int(PART * 90_000)
    keyframes = KeyframeSchedule(part_ticks)
    staged, driver = staged_stream()

    def every_part() -> bool:
        return keyframes.due(part_ticks - 3000, part_ticks)  # the first frame of a part, no splice placed

    staged.steer(keyframes)
    assert every_part()
    driver.publish(4)
    store = Store()
    stream = store.open_stream(
        "demo", segment_s=SEG, part_s=PART, window_s=Fraction(10), target_duration=1, clock=staged.clock
    )
    staged.activate(stream, 1001)
    assert not every_part()  # publishing: the stream's own GOP
    staged.deactivate()
    assert every_part()
    staged.activate(stream, 1001)
    staged.stop_after(1001, lambda: None)
    driver.publish(5)  # 1001 finished, 1002.0 staged: handed off
    assert staged.target is None and every_part()


def test_hls_and_dash_list_a_filled_segment_as_one_whole_segment() -> None:
    from packager.manifest.dash import render_mpd
    from packager.manifest.hls import render_media

    store, old = make_live(segment_s=SEG, part_s=PART, tracks=TRACKS)
    old.publish(6)
    staged, new = standby_encoded(7)
    stream = store.get("demo")
    assert stream is not None
    fill = staged.fill_from(stream)
    assert fill is not None
    stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", fill.resume_msn, fill.gap_s, 0.0))
    staged.activate(stream, fill.resume_msn, fill)
    new.publish(5)
    text = render_media(stream.view(), VIDEO.name)
    assert "GAP" not in text and "DISCONTINUITY" not in text
    assert '#EXT-X-PART:DURATION=0.25,URI="1001.2.m4s",INDEPENDENT=YES' in text
    assert "#EXTINF:1.0,\n1001.m4s\n" in text
    mpd = render_mpd(stream.view()).decode()
    assert mpd.count("<Period") == 1 and mpd.count(' t="') == len(TRACKS)  # one unbroken timeline each


def test_a_subtitle_rendition_never_keeps_a_take_over_from_filling_and_continues_with_its_next_segment() -> None:
    from packager.model import TrackInfo

    text = TrackInfo("subs-en", "text", "wvtt", 1000, 0, language="en")
    store, old = make_live(segment_s=SEG, part_s=PART, tracks=(*TRACKS, text))
    old.publish(6)
    stream = store.get("demo")
    assert stream is not None
    staged, new = staged_stream()
    staged.expect_tracks(frozenset({VIDEO.name, AUDIO.name, text.name}))
    staged.on_init(text, b"ftyp+moov " + text.name.encode())
    new.every_part_independent = True
    new.publish(7)  # media only: the standby's cue segment for 1001 is not complete yet
    fill = staged.fill_from(stream)
    assert fill is not None and fill.at[text.name] == (1001, 2) and fill.at[VIDEO.name] == (1001, 2)
    stream.tracks.pop(text.name)  # a subtitle rendition the old owner never published (made by the cue API)
    fill = staged.fill_from(stream)
    assert fill is not None and text.name not in fill.at and fill.resume_msn == 1001
