"""Splices: placement on the part grid, the IDR schedule, break pairing, SCTE-35 sections in and out, JSON."""

from __future__ import annotations

import itertools
import queue
import threading
import time

import pytest
import threefive
from threefive.encode import mk_splice_insert

from packager import scte35
from packager.scte35 import Scte35Error
from packager.splice import (
    SPLICE_TIMESCALE,
    KeyframeSchedule,
    Splice,
    SpliceError,
    SpliceRequest,
    breaks,
    kept,
    splice_from,
    splice_json,
)

PART = SPLICE_TIMESCALE // 2
FRAME = 3000  # 30 fps


def out(event: int, start: int, duration: int | None = None) -> Splice:
    return Splice(event, "out", start, duration, scte35.build("out", event, start, duration))


def back(event: int, start: int) -> Splice:
    return Splice(event, "in", start, None, scte35.build("in", event, start, None))


# --------------------------------------------------------------------------- the IDR schedule


def test_a_splice_is_placed_on_the_nearest_part_boundary_no_frame_has_reached() -> None:
    k = KeyframeSchedule(PART)
    k.submitted(10 * PART + 4 * FRAME)
    assert k.place(None) == 11 * PART  # as soon as possible: the next boundary
    assert k.place(3 * PART) == 11 * PART  # asked for the past: still the next boundary
    assert k.place(20 * PART + 1) == 20 * PART  # asked for later: the nearest boundary
    assert k.place(20 * PART + PART // 2) == 21 * PART
    assert k.place(11 * PART - 1) == 11 * PART
    assert k.place(10 * PART + 1) == 11 * PART  # nearest is 10, but frames reached it already


def test_every_encoder_gets_an_idr_at_the_first_frame_at_or_after_the_instant() -> None:
    k = KeyframeSchedule(PART)
    k.submitted(0)
    instant = k.place(2 * PART - 100)  # 2 * PART
    frames = list(range(0, 4 * PART, FRAME))
    for _ in range(3):  # three renditions, each asking for every frame in order
        prev = None
        idrs = []
        for pts in frames:
            if k.due(prev, pts):
                idrs.append(pts)
            prev = pts
        assert idrs == [instant]


def test_a_frame_grid_off_the_boundary_gets_the_idr_on_the_next_frame() -> None:
    k = KeyframeSchedule(PART)
    k.submitted(0)
    instant = k.place(PART)
    frames = [1001 + i * 3003 for i in range(40)]  # 29.97 fps, never on a boundary
    idrs = [pts for prev, pts in zip([None, *frames], frames, strict=False) if k.due(prev, pts)]
    assert len(idrs) == 1 and instant <= idrs[0] < instant + 3003


def test_a_standby_encoder_gets_an_idr_at_every_part_boundary_until_it_is_turned_off() -> None:
    k = KeyframeSchedule(PART)
    k.every_part(True)
    frames = [1001 + i * 3003 for i in range(4 * PART // 3003)]  # 29.97 fps, never on a boundary
    idrs = [pts for prev, pts in zip([None, *frames], frames, strict=False) if k.due(prev, pts)]
    assert [pts // PART for pts in idrs] == [0, 1, 2, 3]  # one per part: the first frame at or after it
    assert all(pts - pts // PART * PART < 3003 for pts in idrs[1:])
    k.every_part(False)
    assert not any(k.due(prev, pts) for prev, pts in itertools.pairwise(frames))


def test_placement_and_encoding_from_several_threads_never_miss_an_instant() -> None:
    """A source thread, two encoder threads and a placing thread: every placed instant the frames reach
    becomes exactly one IDR in each encoder."""
    k = KeyframeSchedule(PART)
    queues: list[queue.Queue[int | None]] = [queue.Queue(), queue.Queue()]
    idrs: list[list[int]] = [[], []]
    placed: list[int] = []
    last = 400 * PART
    done = threading.Event()

    def source() -> None:
        for pts in range(0, last, FRAME):
            k.submitted(pts)
            for q in queues:
                q.put(pts)
            if pts % (10 * FRAME) == 0:
                time.sleep(0.0002)
        done.set()
        for q in queues:
            q.put(None)

    def encoder(i: int) -> None:
        prev = None
        while (pts := queues[i].get()) is not None:
            if k.due(prev, pts):
                idrs[i].append(pts)
            prev = pts

    def placer() -> None:
        while not done.is_set():
            placed.append(k.place(None))
            time.sleep(0.001)

    threads = [
        threading.Thread(target=f, args=a) for f, a in ((source, ()), (encoder, (0,)), (encoder, (1,)), (placer, ()))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reached = sorted({p for p in placed if p < last - FRAME})
    assert reached
    for got in idrs:
        assert got == reached


def test_schedule_needs_a_positive_part() -> None:
    with pytest.raises(ValueError):
        KeyframeSchedule(0)


# --------------------------------------------------------------------------- requests and breaks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "out", "event_id": -1},
        {"kind": "out", "event_id": 1 << 32},
        {"kind": "in", "duration_ticks": SPLICE_TIMESCALE},
        {"kind": "out", "duration_ticks": 0},
        {"kind": "out", "duration_ticks": 25 * 3600 * SPLICE_TIMESCALE},
    ],
)
def test_impossible_requests_are_refused(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpliceError):
        SpliceRequest(**kwargs)


def test_an_in_closes_the_open_break_of_its_id_else_the_latest_open_ended_one() -> None:
    a, b = out(1, 0), out(2, 10 * PART, 4 * PART)
    c = back(9, 20 * PART)  # unknown id: closes the open-ended break 1 (break 2 returned by itself)
    pairs = breaks((a, b, c))
    assert [(x.event_id, x.out, x.back) for x in pairs] == [(1, a, c), (2, b, None)]
    assert pairs[0].end == 20 * PART and pairs[1].end == 14 * PART


def test_a_repeated_out_is_one_break_and_a_lone_in_stands_alone() -> None:
    a = out(5, 0)
    again = out(5, 0)
    lone = back(7, 4 * PART)
    pairs = breaks((lone, a, again))
    assert [(x.out, x.back) for x in pairs] == [(a, lone)]
    assert [(x.out, x.back) for x in breaks((lone,))] == [(None, lone)]


def test_breaks_that_ended_before_the_window_are_dropped_open_ones_stay() -> None:
    old = out(1, 0, 2 * PART)
    open_ended = out(2, PART)
    recent = out(3, 30 * PART, 2 * PART)
    assert kept((old, open_ended, recent), 10 * PART) == (open_ended, recent)
    assert kept((old,), None) == (old,)


def test_splice_json_round_trips_and_refuses_garbage() -> None:
    s = out(42, 123 * PART, 60 * SPLICE_TIMESCALE)
    assert splice_from(splice_json(s)) == s
    for bad in ({}, {"id": 1, "kind": "sideways", "start": 0, "section": ""}, {"id": "x"}, [], None):
        with pytest.raises(SpliceError):
            splice_from(bad)


# --------------------------------------------------------------------------- SCTE-35 sections


def test_a_built_section_is_a_splice_insert_at_the_instant() -> None:
    start = 1_796_316_640 * SPLICE_TIMESCALE  # media ticks of a UTC-anchored live clock
    section = scte35.build("out", 42, start, 30 * SPLICE_TIMESCALE)
    cue = threefive.Cue(section)
    cue.decode()
    assert cue.command.command_type == 5 and cue.command.splice_event_id == 42
    assert cue.command.out_of_network_indicator and cue.command.break_duration == 30.0
    assert round(cue.command.pts_time * SPLICE_TIMESCALE) == start % (1 << 33)
    # and read back, its instant maps through the clock it is given
    (request,) = scte35.read(section, lambda pts: pts + 7)
    assert (request.kind, request.event_id, request.at_ticks) == ("out", 42, start % (1 << 33) + 7)
    assert request.duration_ticks == 30 * SPLICE_TIMESCALE and request.section == section


def test_pts_adjustment_and_immediate_splices() -> None:
    cue = mk_splice_insert(3, pts=10.0, out=True)
    cue.info_section.pts_adjustment = 2.0
    cue.encode()
    (request,) = scte35.read(bytes(cue.bites), lambda pts: pts)
    assert request.at_ticks == 12 * SPLICE_TIMESCALE
    now = mk_splice_insert(4, out=False)
    (request,) = scte35.read(bytes(now.bites), lambda pts: pts)
    assert request.kind == "in" and request.at_ticks is None


def test_time_signal_segmentation_starts_and_ends_breaks() -> None:
    def time_signal(type_id: int, event: int, duration_s: float | None) -> bytes:
        cue = threefive.Cue()
        cue.command = threefive.TimeSignal()
        cue.command.time_specified_flag = True
        cue.command.pts_time = 100.0
        d = threefive.SegmentationDescriptor()
        d.segmentation_event_id = hex(event)
        d.segmentation_event_cancel_indicator = False
        d.segmentation_event_id_compliance_indicator = True
        d.program_segmentation_flag = True
        d.delivery_not_restricted_flag = True
        d.segmentation_type_id = type_id
        d.segmentation_duration_flag = duration_s is not None
        d.segmentation_duration = duration_s
        d.segmentation_upid_type = 0
        d.segmentation_upid_length = 0
        d.segmentation_upid = ""
        d.segment_num = 0
        d.segments_expected = 0
        cue.descriptors = [d]
        cue.encode()
        return bytes(cue.bites)

    (start,) = scte35.read(time_signal(0x34, 77, 15.0), lambda pts: pts)
    assert (start.kind, start.event_id, start.duration_ticks) == ("out", 77, 15 * SPLICE_TIMESCALE)
    (end,) = scte35.read(time_signal(0x35, 77, None), lambda pts: pts)
    assert (end.kind, end.event_id, end.at_ticks) == ("in", 77, 100 * SPLICE_TIMESCALE)
    assert scte35.read(time_signal(0x10, 1, None), lambda pts: pts) == []  # program start: not a break


@pytest.mark.parametrize(
    "section,reason",
    [
        (b"", "table id"),
        (b"\x00" * 40, "table id"),
        (b"\xfc\x30\x11" + b"\x00" * 20, "section_length"),
        (bytes(bytearray(scte35.build("out", 1, 0, None))[:-1]) + b"\x00", "CRC"),
    ],
)
def test_damaged_sections_are_refused_with_a_reason(section: bytes, reason: str) -> None:
    with pytest.raises(Scte35Error, match=reason):
        scte35.read(section, lambda pts: pts)


def test_a_section_that_does_not_decode_is_refused_not_half_read() -> None:
    body = b"\xfc\x30\x0e\x00\x00\x00\x00\x00\x00\x00\xff\xf0\x00\x62\x00\x00"  # command type 0x62
    length = len(body) - 3 + 4
    body = body[:1] + bytes([0x30 | (length >> 8), length & 0xFF]) + body[3:]
    from threefive.crc import crc32

    section = body + crc32(body).to_bytes(4, "big")
    with pytest.raises(Scte35Error, match="undecodable"):  # an intact section with a command nobody knows
        scte35.read(section, lambda pts: pts)
