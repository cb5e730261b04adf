"""HLS rendering: multivariant and (Low-Latency) media playlists from hand-built views."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import m3u8
import pytest

from packager.manifest import part_target
from packager.manifest.hls import (
    fmt_seconds,
    playlist_end_s,
    render_master,
    render_media,
    server_control,
    skip_possible,
)
from packager.model import StreamView, TrackView, part_name, segment_name
from tests.support.views import (
    AUDIO,
    LIVE_MSN,
    V360,
    V480,
    V720,
    VOD_EPOCH,
    advance,
    make_track,
    make_view,
)

# --------------------------------------------------------------------------- helpers

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attrs(line: str) -> dict[str, str]:
    """Attribute list of one tag line, quotes removed."""
    body = line.split(":", 1)[1]
    return {k: v.strip('"') for k, v in _ATTR.findall(body)}


def tag_lines(text: str, tag: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln == tag or ln.startswith(tag + ":")]


def tag_value(text: str, tag: str) -> str:
    (line,) = tag_lines(text, tag)
    return line.split(":", 1)[1]


def uris(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def segment_blocks(text: str) -> list[list[str]]:
    """Tag lines grouped with the segment URI they precede (trailing parts form a last block)."""
    body = text.split('#EXT-X-MAP:URI="init.mp4"\n', 1)[1]
    blocks: list[list[str]] = [[]]
    for ln in body.splitlines():
        blocks[-1].append(ln)
        if ln and not ln.startswith("#"):
            blocks.append([])
    return [b for b in blocks if any(x.startswith(("#EXTINF", "#EXT-X-PART:")) for x in b)]


def discontinuity_numbers(text: str) -> dict[str, int]:
    """Segment URI -> its discontinuity sequence number, as a client computes it."""
    seq = int(tag_value(text, "#EXT-X-DISCONTINUITY-SEQUENCE")) if "DISCONTINUITY-SEQUENCE" in text else 0
    out: dict[str, int] = {}
    for ln in text.splitlines():
        if ln == "#EXT-X-DISCONTINUITY":
            seq += 1
        elif ln and not ln.startswith("#"):
            out[ln] = seq
    return out


def listed_parts(text: str) -> list[dict[str, str]]:
    return [attrs(ln) for ln in tag_lines(text, "#EXT-X-PART")]


def track(view: StreamView, name: str) -> TrackView:
    tv = view.track(name)
    assert tv is not None
    return tv


LIVE = make_view(count=12)
VIEWS = {
    "live": LIVE,
    "live-segment-boundary": make_view(count=12, pending_parts=0),
    "live-short": make_view(count=2, pending_parts=3),
    "ended": make_view(count=12, live=False, ended=True),
    "vod": make_view(count=6, live=False),
    "gap": make_view(count=12, gaps={LIVE_MSN + 5}, discontinuities={LIVE_MSN + 6}),
    "discontinuity": make_view(count=12, discontinuities={LIVE_MSN + 8}, discontinuity_sequence=3),
    "pending-discontinuity": make_view(count=12, discontinuities={LIVE_MSN + 12}),
    "long-window": make_view(count=30),
}
TRACKS = ("720p", "480p", "360p", "audio")
CASES = [(v, t) for v in VIEWS for t in TRACKS]


# --------------------------------------------------------------------------- numbers


def test_fmt_seconds_trims_but_keeps_one_decimal() -> None:
    assert fmt_seconds(2) == "2.0"
    assert fmt_seconds(Fraction(1, 2)) == "0.5"
    assert fmt_seconds(Fraction(96256, 48000)) == "2.00533"
    assert fmt_seconds(Fraction(1, 3)) == "0.33333"
    assert fmt_seconds(12) == "12.0"


def test_unknown_track_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        render_media(LIVE, "1080p")


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("name", "rendition"), CASES)
def test_every_playlist_parses_and_counts_match(name: str, rendition: str) -> None:
    view = VIEWS[name]
    text = render_media(view, rendition)
    pl = m3u8.loads(text)
    complete = uris(text)
    blocks = segment_blocks(text)
    trailing_parts = 1 if blocks and blocks[-1][-1].startswith("#") else 0  # the segment in production
    assert trailing_parts == (1 if view.live and track(view, rendition).pending else 0)
    assert len(pl.segments) == len(complete) + trailing_parts
    assert [s.uri for s in pl.segments if s.uri] == complete
    assert sum(len(s.parts) for s in pl.segments) == len(tag_lines(text, "#EXT-X-PART"))
    assert pl.target_duration == view.target_duration
    assert text.startswith("#EXTM3U\n") and text.endswith("\n")


@pytest.mark.parametrize(("name", "rendition"), CASES)
def test_extinf_rounded_never_exceeds_target_duration(name: str, rendition: str) -> None:
    text = render_media(VIEWS[name], rendition)
    target = int(tag_value(text, "#EXT-X-TARGETDURATION"))
    for line in tag_lines(text, "#EXTINF"):
        duration = float(line.split(":", 1)[1].rstrip(","))
        assert math.floor(duration + 0.5) <= target


@pytest.mark.parametrize(("name", "rendition"), CASES)
def test_extinf_and_part_durations_are_the_media_durations(name: str, rendition: str) -> None:
    view = VIEWS[name]
    tv = track(view, rendition)
    text = render_media(view, rendition)
    by_uri = {segment_name(s.msn): s for s in tv.segments}
    blocks = segment_blocks(text)
    for block in blocks:
        if not block[-1].startswith("#") and "#EXT-X-GAP" not in block:
            seg = by_uri[block[-1]]
            extinf = next(x for x in block if x.startswith("#EXTINF"))
            assert extinf == f"#EXTINF:{fmt_seconds(Fraction(seg.duration, tv.info.timescale))},"
    parts = {part_name(p.msn, p.index): p for s in tv.segments for p in s.parts} | {
        part_name(p.msn, p.index): p for p in tv.pending
    }
    for a in listed_parts(text):
        p = parts[a["URI"]]
        assert a["DURATION"] == fmt_seconds(Fraction(p.duration, tv.info.timescale))


# --------------------------------------------------------------------------- header


def test_version_is_6_and_9_only_with_skip() -> None:
    view = VIEWS["long-window"]
    assert tag_value(render_media(view, "720p"), "#EXT-X-VERSION") == "6"
    assert tag_value(render_media(view, "720p", skip=True), "#EXT-X-VERSION") == "9"
    short = make_view(count=6)
    assert tag_value(render_media(short, "720p", skip=True), "#EXT-X-VERSION") == "6"  # nothing to skip
    assert tag_value(render_master(view), "#EXT-X-VERSION") == "6"


@pytest.mark.parametrize("name", list(VIEWS))
def test_media_sequence_is_the_first_listed_msn(name: str) -> None:
    view = VIEWS[name]
    for rendition in TRACKS:
        text = render_media(view, rendition)
        first = uris(text)[0]
        assert f"{tag_value(text, '#EXT-X-MEDIA-SEQUENCE')}.m4s" == first


def test_media_sequence_never_decreases_as_the_window_slides() -> None:
    view = make_view(count=30, window_s=Fraction(60))
    previous = -1
    for _ in range(12):
        view = advance(view)
        seq = int(tag_value(render_media(view, "720p"), "#EXT-X-MEDIA-SEQUENCE"))
        assert seq >= previous
        previous = seq
    assert previous > LIVE_MSN  # the window did slide


def test_map_precedes_every_segment_and_part() -> None:
    text = render_media(LIVE, "720p")
    lines = text.splitlines()
    map_at = lines.index('#EXT-X-MAP:URI="init.mp4"')
    first_media = next(i for i, ln in enumerate(lines) if ln.startswith(("#EXTINF", "#EXT-X-PART:")))
    assert map_at < first_media
    assert len(tag_lines(text, "#EXT-X-MAP")) == 1


def test_target_duration_is_the_views() -> None:
    view = make_view(count=8, segment_s=Fraction(5, 2), part_s=Fraction(1, 2))
    for rendition in TRACKS:
        text = render_media(view, rendition)
        assert tag_value(text, "#EXT-X-TARGETDURATION") == "3"


# --------------------------------------------------------------------------- program date time


def _pdts(text: str) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    current: datetime | None = None
    for ln in text.splitlines():
        if ln.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            current = datetime.fromisoformat(ln.split(":", 1)[1].replace("Z", "+00:00"))
        elif ln and not ln.startswith("#"):
            assert current is not None
            out[ln] = current
            current = None
    return out


@pytest.mark.parametrize("name", ["live", "vod", "ended", "discontinuity"])
def test_program_date_time_on_every_segment_from_the_media_clock(name: str) -> None:
    view = VIEWS[name]
    for rendition in TRACKS:
        tv = track(view, rendition)
        pdts = _pdts(render_media(view, rendition))
        assert len(pdts) == len(uris(render_media(view, rendition)))
        for seg in tv.segments:
            if segment_name(seg.msn) in pdts:
                expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
                    seconds=float(view.epoch_s + Fraction(seg.start, tv.info.timescale))
                )
                assert abs(pdts[segment_name(seg.msn)] - expected) <= timedelta(milliseconds=1)


def test_program_date_time_consistent_across_renditions() -> None:
    video = [_pdts(render_media(LIVE, r)) for r in ("720p", "480p", "360p")]
    assert video[0] == video[1] == video[2]
    audio = _pdts(render_media(LIVE, "audio"))
    assert audio.keys() == video[0].keys()
    for uri, when in audio.items():  # audio starts at the first AAC frame at or after the boundary
        assert timedelta(0) <= when - video[0][uri] < timedelta(milliseconds=22)


def test_vod_dates_start_at_the_packaging_epoch() -> None:
    pdts = _pdts(render_media(VIEWS["vod"], "720p"))
    first = min(pdts.values())
    assert first == datetime.fromtimestamp(float(VOD_EPOCH), tz=UTC)


# --------------------------------------------------------------------------- parts and hints


@pytest.mark.parametrize(("name", "rendition"), [c for c in CASES if VIEWS[c[0]].live])
def test_parts_only_within_the_last_three_target_durations(name: str, rendition: str) -> None:
    view = VIEWS[name]
    tv = track(view, rendition)
    text = render_media(view, rendition)
    end = playlist_end_s(view, rendition)
    assert end is not None
    limit = end - 3 * view.target_duration
    listed = {a["URI"] for a in listed_parts(text)}
    listed_msns = {s.msn for s in tv.segments if segment_name(s.msn) in uris(text)}
    for seg in tv.segments:
        if seg.msn not in listed_msns:
            continue
        names = {part_name(p.msn, p.index) for p in seg.parts}
        if Fraction(seg.start, tv.info.timescale) >= limit:
            assert names <= listed, seg.msn
        else:
            assert not names & listed, seg.msn
    assert {part_name(p.msn, p.index) for p in tv.pending} <= listed


def test_parts_precede_their_segment_and_pending_parts_come_last() -> None:
    text = render_media(LIVE, "720p")
    blocks = segment_blocks(text)
    for block in blocks[:-1]:
        uri = block[-1]
        msn = uri.split(".")[0]
        for a in (attrs(x) for x in block if x.startswith("#EXT-X-PART:")):
            assert a["URI"].startswith(msn + ".")
    tail = blocks[-1]
    pending = [attrs(x)["URI"] for x in tail if x.startswith("#EXT-X-PART:")]
    tv = track(LIVE, "720p")
    assert pending == [part_name(p.msn, p.index) for p in tv.pending]


@pytest.mark.parametrize("rendition", TRACKS)
def test_independent_exactly_on_parts_starting_with_a_sync_sample(rendition: str) -> None:
    tv = track(LIVE, rendition)
    refs = {part_name(p.msn, p.index): p for s in tv.segments for p in s.parts} | {
        part_name(p.msn, p.index): p for p in tv.pending
    }
    listed = listed_parts(render_media(LIVE, rendition))
    assert listed
    for a in listed:
        assert (a.get("INDEPENDENT") == "YES") == refs[a["URI"]].independent
    if tv.info.kind == "video":
        assert {a["URI"].split(".")[1] for a in listed if "INDEPENDENT" in a} == {"0"}


@pytest.mark.parametrize("name", ["live", "live-segment-boundary", "live-short", "gap"])
def test_preload_hint_is_the_next_part(name: str) -> None:
    view = VIEWS[name]
    for rendition in TRACKS:
        tv = track(view, rendition)
        text = render_media(view, rendition)
        assert tv.next_part is not None
        hint = attrs(tag_value(text, "#EXT-X-PRELOAD-HINT").join(["X:", ""]))
        assert hint == {"TYPE": "PART", "URI": part_name(*tv.next_part)}
        lines = text.splitlines()
        after = lines[lines.index(tag_lines(text, "#EXT-X-PRELOAD-HINT")[0]) + 1 :]
        assert all(ln.startswith("#EXT-X-RENDITION-REPORT:") for ln in after)


def test_part_target_bounds_every_part_of_every_track() -> None:
    for view in (LIVE, VIEWS["long-window"]):
        target = part_target(view)
        texts = [render_media(view, r) for r in TRACKS]
        assert {tag_value(t, "#EXT-X-PART-INF") for t in texts} == {f"PART-TARGET={fmt_seconds(target)}"}
        for text in texts:
            for a in listed_parts(text):
                assert float(a["DURATION"]) <= float(target)
    # video-only at 30 fps: 0.5 s parts are whole frames, so the target is exactly the part duration
    assert part_target(make_view(infos=(V720, V480))) == Fraction(1, 2)
    # 0.5 s of 48 kHz AAC is 23.4 frames: a part can hold 24 (0.512 s)
    assert part_target(LIVE) == Fraction(512, 1000)


@pytest.mark.parametrize("part_s", [Fraction(1, 2), Fraction(1, 4), Fraction(1, 3), Fraction(1, 5)])
def test_parts_fill_at_least_85_percent_of_the_part_target(part_s: Fraction) -> None:
    view = make_view(count=10, part_s=part_s)
    target = float(part_target(view))
    for rendition in TRACKS:
        tv = track(view, rendition)
        per_segment = int(view.segment_s / part_s)
        for p in [p for s in tv.segments for p in s.parts] + list(tv.pending):
            duration = p.duration / tv.info.timescale
            assert duration <= target
            if not p.independent and p.index != per_segment - 1:  # the exempt ones
                assert duration >= 0.85 * target, (rendition, p)


# --------------------------------------------------------------------------- server control, reports


def test_server_control_identical_in_every_playlist_and_within_limits() -> None:
    for view in VIEWS.values():
        if not view.live:
            continue
        lines = {tag_value(render_media(view, r), "#EXT-X-SERVER-CONTROL") for r in TRACKS}
        lines |= {tag_value(render_media(view, r, skip=True), "#EXT-X-SERVER-CONTROL") for r in TRACKS}
        assert len(lines) == 1
        sc = attrs("X:" + lines.pop())
        part_inf = attrs(tag_value(render_media(view, "720p"), "#EXT-X-PART-INF").join(["X:", ""]))
        target = view.target_duration
        assert sc["CAN-BLOCK-RELOAD"] == "YES"
        assert float(sc["PART-HOLD-BACK"]) >= 3 * float(part_inf["PART-TARGET"]) - 1e-9
        assert float(sc["HOLD-BACK"]) >= 3 * target
        assert float(sc["CAN-SKIP-UNTIL"]) >= 6 * target
    assert server_control(LIVE) == tag_lines(render_media(LIVE, "audio"), "#EXT-X-SERVER-CONTROL")[0]


@pytest.mark.parametrize("rendition", TRACKS)
def test_rendition_reports_for_every_other_track(rendition: str) -> None:
    view = VIEWS["live-segment-boundary"]
    reports = {
        attrs(ln)["URI"]: attrs(ln) for ln in tag_lines(render_media(view, rendition), "#EXT-X-RENDITION-REPORT")
    }
    others = [t for t in view.tracks if t.info.name != rendition]
    assert set(reports) == {f"../{t.info.name}/index.m3u8" for t in others}
    for t in others:
        last = t.last_part
        assert last is not None
        report = reports[f"../{t.info.name}/index.m3u8"]
        assert (int(report["LAST-MSN"]), int(report["LAST-PART"])) == last


def test_rendition_reports_parse_with_m3u8() -> None:
    pl = m3u8.loads(render_media(LIVE, "480p"))
    assert {r.uri for r in pl.rendition_reports} == {"../720p/index.m3u8", "../360p/index.m3u8", "../audio/index.m3u8"}
    assert pl.server_control.can_block_reload == "YES"
    assert pl.preload_hint.uri == part_name(*track(LIVE, "480p").next_part)  # type: ignore[misc]


# --------------------------------------------------------------------------- delta updates


def test_skip_replaces_the_segments_older_than_the_skip_boundary() -> None:
    view = VIEWS["long-window"]
    for rendition in TRACKS:
        tv = track(view, rendition)
        full = render_media(view, rendition)
        delta = render_media(view, rendition, skip=True)
        skipped = int(attrs(tag_value(delta, "#EXT-X-SKIP").join(["X:", ""]))["SKIPPED-SEGMENTS"])
        boundary = tv.segments[-1].end - 6 * view.target_duration * tv.info.timescale
        expected = sum(1 for s in tv.segments if s.end <= boundary)
        assert skipped == expected > 0
        assert uris(delta) == uris(full)[skipped:]
        assert tag_value(delta, "#EXT-X-MEDIA-SEQUENCE") == tag_value(full, "#EXT-X-MEDIA-SEQUENCE")
        # what is left covers at least CAN-SKIP-UNTIL
        kept = tv.segments[skipped:]
        assert Fraction(kept[-1].end - kept[0].start, tv.info.timescale) >= 6 * view.target_duration
        assert skip_possible(view, rendition)
        pl = m3u8.loads(delta)
        assert pl.skip.skipped_segments == skipped
        assert len([s for s in pl.segments if s.uri]) == len(tv.segments) - skipped
        # the tail of the delta is the tail of the full playlist
        assert delta.split(segment_name(kept[0].msn), 1)[1] == full.split(segment_name(kept[0].msn), 1)[1]


def test_skip_needs_a_long_enough_playlist_and_a_live_stream() -> None:
    short = make_view(count=6)
    assert not skip_possible(short, "720p")
    assert render_media(short, "720p", skip=True) == render_media(short, "720p")
    ended = make_view(count=30, live=False, ended=True)
    assert not skip_possible(ended, "720p")
    assert "#EXT-X-SKIP" not in render_media(ended, "720p", skip=True)


def test_skip_keeps_the_discontinuity_sequence_of_the_full_playlist() -> None:
    view = make_view(count=30, discontinuities={LIVE_MSN + 3, LIVE_MSN + 27}, discontinuity_sequence=2)
    full = render_media(view, "720p")
    delta = render_media(view, "720p", skip=True)
    assert "#EXT-X-SKIP" in delta
    assert tag_value(delta, "#EXT-X-DISCONTINUITY-SEQUENCE") == tag_value(full, "#EXT-X-DISCONTINUITY-SEQUENCE") == "2"
    # the skipped discontinuity (msn +3) is gone with its segment; the later one is kept
    assert len(tag_lines(full, "#EXT-X-DISCONTINUITY")) == 2
    assert len(tag_lines(delta, "#EXT-X-DISCONTINUITY")) == 1
    # merged with the segments the client already has, every segment keeps its number
    numbers_full = discontinuity_numbers(full)
    skipped = int(attrs(tag_value(delta, "#EXT-X-SKIP").join(["X:", ""]))["SKIPPED-SEGMENTS"])
    skipped_tags = numbers_full[uris(full)[skipped - 1]] - numbers_full[uris(full)[0]]
    assert skipped_tags == 1
    for uri, number in discontinuity_numbers(delta).items():
        assert number + skipped_tags == numbers_full[uri]


# --------------------------------------------------------------------------- end of stream, VOD


@pytest.mark.parametrize("name", ["ended", "vod"])
def test_finished_playlists_have_endlist_and_no_low_latency_tags(name: str) -> None:
    view = VIEWS[name]
    for rendition in TRACKS:
        text = render_media(view, rendition)
        assert text.rstrip("\n").endswith("#EXT-X-ENDLIST")
        for tag in ("SERVER-CONTROL", "PART-INF", "PART:", "PRELOAD-HINT", "RENDITION-REPORT", "SKIP"):
            assert f"#EXT-X-{tag}" not in text
        assert len(uris(text)) == len(track(view, rendition).segments)
        assert m3u8.loads(text).is_endlist


def test_only_vod_is_playlist_type_vod() -> None:
    assert tag_value(render_media(VIEWS["vod"], "720p"), "#EXT-X-PLAYLIST-TYPE") == "VOD"
    assert "#EXT-X-PLAYLIST-TYPE" not in render_media(VIEWS["ended"], "720p")  # was live: type never changes
    assert "#EXT-X-PLAYLIST-TYPE" not in render_media(LIVE, "720p")
    assert "#EXT-X-ENDLIST" not in render_media(LIVE, "720p")


# --------------------------------------------------------------------------- discontinuities


def test_discontinuity_tag_and_sequence() -> None:
    view = VIEWS["discontinuity"]
    for rendition in TRACKS:
        text = render_media(view, rendition)
        assert tag_value(text, "#EXT-X-DISCONTINUITY-SEQUENCE") == "3"
        lines = text.splitlines()
        at = lines.index("#EXT-X-DISCONTINUITY")
        assert next(ln for ln in lines[at:] if ln and not ln.startswith("#")) == segment_name(LIVE_MSN + 8)
        assert len(tag_lines(text, "#EXT-X-DISCONTINUITY")) == 1
    assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in render_media(LIVE, "720p")


def test_no_discontinuity_tag_before_the_first_listed_segment() -> None:
    # the store counted the first segment's discontinuity in discontinuity_sequence already
    view = make_view(count=8, discontinuities={LIVE_MSN}, discontinuity_sequence=1)
    text = render_media(view, "720p")
    assert "#EXT-X-DISCONTINUITY\n" not in text
    assert tag_value(text, "#EXT-X-DISCONTINUITY-SEQUENCE") == "1"


def test_discontinuity_numbers_never_change_as_the_window_slides() -> None:
    view = make_view(count=30, discontinuities={LIVE_MSN + 2, LIVE_MSN + 4}, window_s=Fraction(60))
    before = discontinuity_numbers(render_media(view, "720p"))
    previous_seq = 0
    for _ in range(40):  # 10 segments later: both discontinuities slide to the front and out
        view = advance(view)
        text = render_media(view, "720p")
        now = discontinuity_numbers(text)
        for uri in now.keys() & before.keys():
            assert now[uri] == before[uri], uri
        seq = int(tag_value(text, "#EXT-X-DISCONTINUITY-SEQUENCE")) if "SEQUENCE" in text else 0
        assert seq >= previous_seq
        previous_seq = seq
        before |= now
    assert previous_seq == 2


def test_a_time_gap_is_filled_with_gap_segments() -> None:
    """A feed that dropped and came back: msns nobody produced are listed as EXT-X-GAP segments,
    so numbering stays implicit and players step over the hole instead of losing their place."""
    view = VIEWS["gap"]
    for rendition in TRACKS:
        text = render_media(view, rendition)
        tv = track(view, rendition)
        real = {s.msn for s in tv.segments}
        numbers = [int(u.split(".")[0]) for u in uris(text)]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # consecutive
        assert tag_value(text, "#EXT-X-MEDIA-SEQUENCE") == str(numbers[0])
        blocks = [b for b in segment_blocks(text) if not b[-1].startswith("#")]
        for block in blocks:
            msn = int(block[-1].split(".")[0])
            assert ("#EXT-X-GAP" in block) == (msn not in real)
            if msn not in real:
                assert not any(x.startswith("#EXT-X-PART:") for x in block)
        # the first real segment after the hole carries the discontinuity
        after = min(m for m in real if m - 1 not in real and m != min(real))
        block = next(b for b in blocks if b[-1] == segment_name(after))
        assert "#EXT-X-DISCONTINUITY" in block
        pl = m3u8.loads(text)
        assert len(pl.segments) >= len(numbers)


def test_segment_in_production_after_a_gap_follows_gap_segments() -> None:
    msns = range(LIVE_MSN, LIVE_MSN + 6)
    base = make_view(count=6)
    tracks = tuple(
        make_track(t.info, msns, pending_parts=2, pending_msn=LIVE_MSN + 20, discontinuities={LIVE_MSN + 20})
        for t in base.tracks
    )
    view = replace(base, tracks=tracks)
    text = render_media(view, "720p")
    numbers = [int(u.split(".")[0]) for u in uris(text)]
    assert numbers == list(range(LIVE_MSN, LIVE_MSN + 20))
    assert text.count("#EXT-X-GAP") == 14
    assert tag_value(text, "#EXT-X-MEDIA-SEQUENCE") == str(LIVE_MSN)
    assert [a["URI"] for a in listed_parts(text)][-2:] == [part_name(LIVE_MSN + 20, 0), part_name(LIVE_MSN + 20, 1)]
    tail = text.split(segment_name(LIVE_MSN + 19))[1]
    assert "#EXT-X-DISCONTINUITY" in tail


def test_discontinuity_before_the_first_part_of_the_segment_in_production() -> None:
    view = VIEWS["pending-discontinuity"]
    text = render_media(view, "720p")
    lines = text.splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    first_part = next(
        i for i, ln in enumerate(lines) if ln.startswith(f'#EXT-X-PART:DURATION=0.5,URI="{LIVE_MSN + 12}.0')
    )
    assert at < first_part
    assert all(not ln or ln.startswith("#") for ln in lines[at:])  # no complete segment after it
    assert tag_value(text, "#EXT-X-DISCONTINUITY-SEQUENCE") == "0"


# --------------------------------------------------------------------------- playlist end


def test_playlist_end_counts_the_parts_in_production() -> None:
    tv = track(LIVE, "720p")
    assert playlist_end_s(LIVE, "720p") == Fraction(tv.pending[-1].start + tv.pending[-1].duration, 90_000)
    ended = VIEWS["ended"]
    assert playlist_end_s(ended, "720p") == Fraction(track(ended, "720p").segments[-1].end, 90_000)
    empty = make_view(count=0, pending_parts=0)
    assert playlist_end_s(empty, "720p") is None
    text = render_media(empty, "720p")
    assert uris(text) == [] and "#EXT-X-PRELOAD-HINT" in text
    m3u8.loads(text)


# --------------------------------------------------------------------------- multivariant


def _variants(text: str) -> list[tuple[dict[str, str], str]]:
    lines = text.splitlines()
    return [(attrs(ln), lines[i + 1]) for i, ln in enumerate(lines) if ln.startswith("#EXT-X-STREAM-INF:")]


def test_master_lists_every_video_rendition_with_the_audio_group() -> None:
    text = render_master(LIVE)
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n")
    (media,) = tag_lines(text, "#EXT-X-MEDIA")
    m = attrs(media)
    assert m["TYPE"] == "AUDIO" and m["GROUP-ID"] == "audio" and m["URI"] == "audio/index.m3u8"
    assert m["DEFAULT"] == "YES" and m["AUTOSELECT"] == "YES" and m["CHANNELS"] == "2"
    variants = _variants(text)
    assert [uri for _, uri in variants] == ["720p/index.m3u8", "480p/index.m3u8", "360p/index.m3u8"]
    for (a, _), info in zip(variants, (V720, V480, V360), strict=True):
        assert a["CODECS"] == f"{info.codec},mp4a.40.2"
        assert a["RESOLUTION"] == f"{info.width}x{info.height}"
        assert a["FRAME-RATE"] == "30.000"
        assert a["AUDIO"] == "audio"
        assert int(a["BANDWIDTH"]) >= int(a["AVERAGE-BANDWIDTH"])
    pl = m3u8.loads(text)
    assert pl.is_variant and len(pl.playlists) == 3 and len(pl.media) == 1


def test_master_bandwidth_is_the_measured_peak_plus_audio() -> None:
    text = render_master(LIVE)
    video = track(LIVE, "720p")
    audio = track(LIVE, "audio")

    def peak(tv: TrackView) -> int:
        measured = max(math.ceil(Fraction(s.size * 8 * tv.info.timescale, s.duration)) for s in tv.segments)
        return max(measured, math.ceil(tv.info.bitrate * Fraction(11, 10)))  # never below the VBV cap

    def mean(tv: TrackView) -> int:
        bits = sum(s.size * 8 for s in tv.segments)
        return math.ceil(Fraction(bits * tv.info.timescale, sum(s.duration for s in tv.segments)))

    a, _ = _variants(text)[0]
    assert int(a["BANDWIDTH"]) == peak(video) + peak(audio)
    assert int(a["AVERAGE-BANDWIDTH"]) == mean(video) + mean(audio)
    assert int(a["BANDWIDTH"]) > int(a["AVERAGE-BANDWIDTH"])  # keyframe-heavy segments vary


def test_master_bandwidth_keeps_ladder_order_when_a_picture_is_quiet() -> None:
    quiet = make_view()
    text = render_master(quiet)
    bandwidths = [int(a["BANDWIDTH"]) for a, _ in _variants(text)]
    assert bandwidths == sorted(bandwidths, reverse=True)


def test_master_falls_back_to_configured_rates_before_any_segment() -> None:
    view = make_view(count=0, pending_parts=1)
    a, _ = _variants(render_master(view))[0]
    assert int(a["BANDWIDTH"]) == V720.bitrate * 11 // 10 + AUDIO.bitrate * 11 // 10
    assert int(a["AVERAGE-BANDWIDTH"]) == V720.bitrate + AUDIO.bitrate


def test_audio_only_master_has_one_variant_per_audio_track() -> None:
    view = make_view(infos=(AUDIO,))
    text = render_master(view)
    assert "#EXT-X-MEDIA" not in text
    ((a, uri),) = _variants(text)
    assert uri == "audio/index.m3u8" and a["CODECS"] == "mp4a.40.2" and "RESOLUTION" not in a
    assert int(a["BANDWIDTH"]) >= int(a["AVERAGE-BANDWIDTH"])
    assert len(m3u8.loads(text).playlists) == 1
    # the media playlist of a single-track stream has no rendition reports
    assert "#EXT-X-RENDITION-REPORT" not in render_media(view, "audio")


def test_video_only_master_has_no_audio_group() -> None:
    text = render_master(make_view(infos=(V720, V360)))
    assert "#EXT-X-MEDIA" not in text and "AUDIO=" not in text
    assert [a["CODECS"] for a, _ in _variants(text)] == ["avc1.64001f", "avc1.64001e"]
    assert len(m3u8.loads(text).playlists) == 2


def test_empty_stream_renders_a_valid_master() -> None:
    text = render_master(make_view(infos=()))
    assert text == "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    m3u8.loads(text)
