"""The per-stream figures behind the dashboard's charts: timeline buckets, viewers (CMCD), publishing."""

from __future__ import annotations

from fractions import Fraction

import pytest

from origin.cmcd import CmcdReport
from origin.publishing import MAX_TRACKS, Publishing
from origin.timeline import Samples, Timeline, quantile
from origin.viewers import ACTIVE_S, MAX_BITRATES, MAX_SESSIONS, Viewers
from packager.model import Part
from packager.publication import InitPublished, PartPublished, StreamRemoved
from tests.support.live import AUDIO, VIDEO

T0 = 1_700_000_000.0  # a multiple of 5: bucket starts are round


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- timeline


def test_samples_keep_a_bounded_set_and_the_exact_extremes():
    s = Samples(cap=4)
    assert s.quantile(0.5) is None and s.minimum is None
    for v in (5, 1, 9, 3, 7, 2):
        s.add(v)
    assert len(s.values) == 4 and s.count == 6
    assert (s.minimum, s.maximum) == (1, 9)  # 1 was overwritten in the kept set, the extremes stay exact
    assert s.values == [7, 2, 9, 3]
    assert quantile([1, 2, 3, 4], 0.5) == 2 and quantile([4, 1, 3], 0.5) == 3 and quantile([1, 2], 1.0) == 2


def test_timeline_buckets_slide_with_time():
    tl: Timeline[list[int]] = Timeline(list, bucket_s=5, window_s=20)
    tl.at(T0).append(1)
    tl.at(T0 + 4.9).append(2)  # same bucket
    tl.at(T0 + 5).append(3)
    window = tl.window(T0 + 6)
    assert [start for start, _ in window] == [T0 - 10, T0 - 5, T0, T0 + 5]
    assert [b for _, b in window] == [None, None, [1, 2], [3]]
    assert tl.span_s(T0 + 5, T0 + 6) == 1.0 and tl.span_s(T0, T0 + 6) == 5.0
    # 20 s on, the first buckets have left the window and memory
    assert [b for _, b in tl.window(T0 + 21)] == [[3], None, None, None]
    assert len(tl._buckets) == 1
    tl.at(T0 + 100).append(4)
    assert tl.at(T0 + 50) == [4]  # a clock stepped back keeps filling the newest bucket
    assert tl.recent(T0 + 100, 5) == [[4]]
    with pytest.raises(ValueError):
        Timeline(list, bucket_s=5, window_s=4)


# ---------------------------------------------------------------- viewers


def report(sid: str | None = "a", **kw) -> CmcdReport:
    return CmcdReport(sid=sid, **kw)


def test_requests_sessions_and_player_figures_per_bucket():
    clock = Clock()
    v = Viewers(clock)
    v.record("demo", None)  # a request without CMCD counts for the rate only
    v.record("demo", report("a", format="h", buffer_s=2.0, throughput_bps=8e6, bitrate_bps=5e5, object_type="v"))
    v.record("demo", report("a", format="h", buffer_s=1.0, bitrate_bps=1.28e5, object_type="a", startup=True))
    v.record("demo", report("b", format="d", buffer_s=0.0, starved=True, bitrate_bps=2.5e5, object_type="v"))
    clock.now += 5
    v.record("demo", report("a", format="h", buffer_s=3.0))
    clock.now += 1
    s = v.series("demo", clock.now)
    assert len(s["t"]) == 60 and s["t"][-2:] == [T0, T0 + 5]
    assert s["requests_per_s"][-2:] == [0.8, 1.0]  # 4 requests in 5 s; 1 in the 1 s the current bucket has run
    assert s["sessions"][-2:] == [2, 1] and s["joins"][-2:] == [2, 0]
    assert s["stalls"][-2:] == [1, 0] and s["startups"][-2:] == [1, 0] and s["cmcd_requests"][-2:] == [3, 1]
    assert s["buffer_s"]["p50"][-2:] == [1.0, 3.0] and s["buffer_s"]["min"][-2:] == [0.0, 3.0]
    assert s["throughput_bps"]["p50"][-2:] == [8e6, None]
    # the requested bitrate counts video objects only (an audio rendition's would blur it)
    assert s["bitrate_bps"]["p50"][-2] == 2.5e5
    assert s["bitrates"] == {"250000": [0] * 58 + [1, 0], "500000": [0] * 58 + [1, 0]}
    assert s["sessions"][:58] == [0] * 58 and s["buffer_s"]["p50"][0] is None
    summary = v.summary("demo")
    assert summary == {
        "sessions": 2,
        "formats": {"d": 1, "h": 1},
        "buffer_s": 1.0,
        "throughput_bps": 8e6,
        "stalls": 1,
        "cmcd_requests": 4,
    }
    assert dict(v.active_sessions()) == {"demo": 2}


def test_sessions_go_quiet_then_leave_with_the_window():
    clock = Clock()
    v = Viewers(clock, window_s=60)
    v.record("demo", report("a"))
    clock.now += ACTIVE_S + 1
    v.record("demo", report("b"))
    assert v.summary("demo")["sessions"] == 1  # "a" has not been seen for longer than ACTIVE_S
    clock.now += 61
    v.record("demo", report("c"))
    assert list(v.streams["demo"].sessions) == ["c"]  # "a" and "b" are past the window: forgotten
    v.record("demo", report("a"))
    assert v.series("demo", clock.now)["joins"][-1] == 2  # back after the window: a join again


def test_sessions_and_bitrates_are_bounded_whatever_clients_send():
    clock = Clock()
    v = Viewers(clock)
    for i in range(MAX_SESSIONS + 500):
        v.record("demo", report(f"sid-{i}", bitrate_bps=float(1000 + i), object_type="v"))
    viewers = v.streams["demo"]
    assert len(viewers.sessions) == MAX_SESSIONS and "sid-0" not in viewers.sessions
    assert "sid-10499" in viewers.sessions  # the most recent stay
    bucket = viewers.timeline.at(clock.now)
    assert len(bucket.bitrates) == MAX_BITRATES and len(bucket.bitrate_bps.values) <= bucket.bitrate_bps.cap
    assert len(v.series("demo", clock.now)["bitrates"]) == MAX_BITRATES
    assert v.summary("demo")["sessions"] == MAX_SESSIONS


def test_streams_are_forgotten_and_unknown_ones_are_empty():
    clock = Clock()
    v = Viewers(clock)
    v.record("gone", report("a"))
    v.forget_except({"demo"})
    assert v.streams == {}
    assert v.summary("gone")["sessions"] == 0 and v.series("gone", clock.now)["sessions"] == [0] * 60


# ---------------------------------------------------------------- publishing


def part(track: str, msn: int, index: int, size: int, duration: int, lag_s: float, at_s: float) -> Part:
    return Part(track, msn, index, 0, duration, index == 0, b"x" * size, at_s - lag_s, at_s)


def test_latency_per_stage_and_bitrate_per_rendition():
    clock = Clock()
    p = Publishing(clock)
    p.on_publication(InitPublished("demo", VIDEO, b""))
    p.on_publication(InitPublished("demo", AUDIO, b""))
    # 0.5 s parts: 360p at 50 kB each (800 kb/s), audio at 8 kB (128 kb/s)
    for i, lag in enumerate((0.2, 0.3, 0.4)):
        p.on_publication(PartPublished("demo", part("360p", 1, i, 50_000, 45_000, lag, clock.now)))
        p.on_publication(PartPublished("demo", part("audio", 1, i, 8_000, 24_000, 0.1, clock.now)))
    p.released("demo", 0.004)
    p.released("demo", 0.010)
    p.released("nope", 1.0)  # a stream never published: no bucket
    clock.now += 5
    p.on_publication(PartPublished("demo", part("360p", 1, 3, 40_000, 45_000, 0.25, clock.now)))
    p.servable("demo", 0.002)
    s = p.series("demo", clock.now)
    assert len(s["t"]) == 60 and "nope" not in p.streams
    assert s["capture_to_publish"]["360p"] == {"p50": [None] * 58 + [0.3, 0.25], "max": [None] * 58 + [0.4, 0.25]}
    assert s["capture_to_publish"]["audio"]["p50"][-2:] == [0.1, None]
    assert s["bitrate_bps"]["360p"][-2:] == [800_000.0, 640_000.0] and s["bitrate_bps"]["audio"][-2] == 128_000.0
    assert s["publish_to_release"]["p50"][-2:] == [0.004, None] and s["publish_to_release"]["max"][-2] == 0.01
    assert s["publish_to_servable"]["p50"][-2:] == [None, 0.002]
    p.on_publication(StreamRemoved("demo"))
    assert p.streams == {} and p.timescales == {}
    assert p.series("demo", clock.now)["bitrate_bps"] == {}


def test_a_track_whose_init_was_not_heard_asks_for_its_timescale():
    asked = []

    def timescale(stream: str, track: str) -> int | None:
        asked.append((stream, track))
        return 90_000 if track == "360p" else None

    clock = Clock()
    p = Publishing(clock, timescale=timescale)
    for i in range(2):
        p.on_publication(PartPublished("demo", part("360p", 1, i, 50_000, 45_000, 0.2, clock.now)))
    p.on_publication(PartPublished("demo", part("other", 1, 0, 50_000, 45_000, 0.2, clock.now)))
    s = p.series("demo", clock.now)
    assert s["bitrate_bps"]["360p"][-1] == 800_000.0 and asked.count(("demo", "360p")) == 1
    assert s["bitrate_bps"]["other"][-1] is None  # no timescale known: no bitrate, latency still counts
    assert s["capture_to_publish"]["other"]["p50"][-1] == 0.2
    assert Fraction(s["t"][-1]) == Fraction(T0)


def test_every_part_reaches_the_histogram_even_past_the_bucketed_tracks():
    heard: list[tuple[str, str, float]] = []
    clock = Clock()
    p = Publishing(clock, on_latency=lambda stream, track, seconds: heard.append((stream, track, seconds)))
    for n in range(MAX_TRACKS + 3):
        p.on_publication(PartPublished("demo", part(f"r{n}", 1, 0, 1_000, 45_000, 0.25, clock.now)))
    p.on_publication(PartPublished("demo", Part("r0", 1, 1, 0, 45_000, False, b"x", 0.0, clock.now)))  # no capture
    assert len(heard) == MAX_TRACKS + 3 and all(s == 0.25 for _, _, s in heard)
    assert len(p.streams["demo"].at(clock.now).tracks) == MAX_TRACKS
