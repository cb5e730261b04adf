"""The store: publishing, the sliding window, wake-ups, files on disk."""

import asyncio
import time
from fractions import Fraction

from packager.model import part_name, segment_name
from packager.store import SEGMENT_HEADER, atomic_write
from tests.support.live import make_live


def test_parts_segments_and_hint():
    _store, d = make_live()
    d.publish(2)
    v = d.stream.view().track("360p")
    assert v.pending_msn == 1000 and [p.index for p in v.pending] == [0, 1]
    assert v.next_part == (1000, 2) and v.segments == ()
    assert v.pending[0].independent and not v.pending[1].independent
    d.publish(2)
    v = d.stream.view().track("360p")
    assert len(v.segments) == 1 and v.pending == () and v.next_part == (1001, 0)
    seg = v.segments[0]
    track = d.stream.track("360p")
    data = track.get_segment_bytes(1000)
    assert data.startswith(SEGMENT_HEADER)
    assert data == SEGMENT_HEADER + b"".join(d.part_bytes(track.info, 1000, i) for i in range(4))
    assert seg.size == len(data) and seg.duration == 90_000
    assert v.last_part == (1000, 3)


def test_view_is_cached_per_version():
    _store, d = make_live()
    d.publish(1)
    a = d.stream.view()
    assert d.stream.view() is a
    d.publish(1)
    b = d.stream.view()
    assert b is not a and b.version > a.version


def test_window_slides_and_memory_is_bounded():
    _store, d = make_live(window_s=Fraction(5))
    d.stream.grace_s = 0.0
    d.publish_segments(30)
    track = d.stream.track("360p")
    v = d.stream.view().track("360p")
    assert len(v.segments) == 5
    assert v.segments[0].msn == 1025
    time.sleep(0.01)
    d.publish(1)
    assert len(track.segment_data) <= 7
    assert all(k[0] >= 1020 for k in track.parts)


def test_end_closes_everything():
    _store, d = make_live()
    d.publish(6)
    d.stream.on_end("test")
    v = d.stream.view()
    assert v.ended and not v.live
    t = v.track("360p")
    assert [s.msn for s in t.segments] == [1000, 1001] and t.pending == () and t.next_part is None
    assert t.segments[-1].duration == 2 * 22_500


async def test_waiters_share_one_future_and_wake_on_publish():
    _store, d = make_live()
    d.publish(1)
    track = d.stream.track("360p")
    waits = [asyncio.create_task(track.wait_part(1000, 2, 5)) for _ in range(500)]
    await asyncio.sleep(0)
    assert track.waiter_count == 1
    d.publish(1)  # (1000, 1): not yet
    await asyncio.sleep(0)
    assert not any(w.done() for w in waits)
    d.publish(1)  # (1000, 2)
    assert all(await asyncio.gather(*waits))
    assert track.waiter_count == 0


async def test_wait_segment_and_timeout():
    _store, d = make_live()
    track = d.stream.track("360p")
    assert await track.wait_part(1000, 0, 0.01) is False
    t = asyncio.create_task(track.wait_segment(1000, 5))
    d.publish(3)
    await asyncio.sleep(0)
    assert not t.done()
    d.publish(1)
    assert await t is True


async def test_end_wakes_waiters():
    _store, d = make_live()
    d.publish(1)
    track = d.stream.track("360p")
    t = asyncio.create_task(track.wait_part(1005, 0, 5))
    await asyncio.sleep(0)
    d.stream.on_end("stop")
    assert await t is True


def test_files_written_in_order_and_deleted_after_grace(tmp_path):
    store, d = make_live(tmp_path, window_s=Fraction(3))
    d.stream.grace_s = 0.0
    d.publish_segments(2)
    store.disk.flush()
    folder = tmp_path / "demo" / "360p"
    assert (folder / "init.mp4").read_bytes().startswith(b"ftyp")
    assert (folder / segment_name(1000)).is_file() and (folder / part_name(1000, 3)).is_file()
    d.publish_segments(6)
    time.sleep(0.01)
    d.publish(1)
    store.disk.flush()
    assert not (folder / segment_name(1000)).exists()
    assert not (folder / part_name(1000, 0)).exists()
    assert (folder / segment_name(1007)).is_file()
    assert not list(folder.glob(".*.tmp"))
    store.close()


def test_atomic_write_never_leaves_partial(tmp_path):
    target = tmp_path / "a" / "b.bin"
    atomic_write(target, b"x" * 1000)
    atomic_write(target, b"y" * 10)
    assert target.read_bytes() == b"y" * 10
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]
