"""The store: publishing, the sliding window, wake-ups, files on disk."""

import asyncio
import threading
from fractions import Fraction

from packager.disk import DiskWriter, atomic_write
from packager.model import part_name, segment_name
from packager.reader import Position
from packager.store import SEGMENT_HEADER
from tests.support.clock import ManualClock, until
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
    data = d.stream.segment_bytes("360p", 1000)
    assert data.startswith(SEGMENT_HEADER)
    assert data == SEGMENT_HEADER + b"".join(d.part_bytes(track.info, 1000, i) for i in range(4))
    assert seg.size == len(data) and seg.duration == 90_000
    assert v.last_part == (1000, 3)


def test_each_segment_names_the_first_segment_of_its_unbroken_run():
    clock = ManualClock()
    _store, d = make_live(window_s=Fraction(6), clock=clock)
    d.publish_segments(3)
    d.msn += 2  # the feed was away for two segments
    d.publish_segments(2)
    runs = [(s.msn, s.run_msn) for s in d.stream.view().track("360p").segments]
    assert runs == [(1001, 1000), (1002, 1000), (1005, 1005), (1006, 1005)]  # 1000 slid out: 1001 still names it
    d.publish_segments(6)
    runs = [(s.msn, s.run_msn) for s in d.stream.view().track("360p").segments]
    # the window slid past the new run's first segment: the others still name it
    assert runs[0][0] > 1005 and {r for _, r in runs} == {1005}


def test_view_is_cached_per_version():
    _store, d = make_live()
    d.publish(1)
    a = d.stream.view()
    assert d.stream.view() is a
    d.publish(1)
    b = d.stream.view()
    assert b is not a and b.version > a.version


def test_window_slides_and_memory_is_bounded_after_the_grace():
    clock = ManualClock()
    _store, d = make_live(window_s=Fraction(5), clock=clock)
    d.publish_segments(30)
    track = d.stream.track("360p")
    v = d.stream.view().track("360p")
    assert len(v.segments) == 5
    assert v.segments[0].msn == 1025
    assert 1000 in track.segment_data  # out of the manifests, still in memory during the grace
    clock.advance(d.stream.grace_s)
    d.publish(1)
    assert len(track.segment_data) <= 7 and 1000 not in track.segment_data
    assert all(k[0] >= 1020 for k in track.parts)


def test_publish_dates_come_from_the_store_clock():
    clock = ManualClock(utc_s=2_000_000_000.0)
    _store, d = make_live(clock=clock)
    assert d.stream.started_utc_s == 2_000_000_000.0
    clock.advance(7)
    d.publish_segments(1)
    assert d.stream.view().track("360p").segments[0].published_utc_s == 2_000_000_007.0
    clock.advance(1)
    d.stream.on_end("test")
    assert d.stream.published_utc_s == 2_000_000_008.0


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
    waits = [asyncio.create_task(track.wait(Position(1000, 2), 5)) for _ in range(500)]
    await asyncio.sleep(0)
    assert track.waiter_count == 1
    d.publish(1)  # (1000, 1): not yet
    await asyncio.sleep(0)
    assert not any(w.done() for w in waits)
    d.publish(1)  # (1000, 2)
    assert all(await asyncio.gather(*waits))
    assert track.waiter_count == 0


async def test_wait_times_out_on_the_store_clock():
    clock = ManualClock()
    _store, d = make_live(clock=clock)
    track = d.stream.track("360p")
    waits = [asyncio.create_task(track.wait(Position(1000, 0), 3)) for _ in range(3)]
    await until(lambda: track.held_count == 3)
    clock.advance(2.9)
    await asyncio.sleep(0)
    assert not any(w.done() for w in waits)
    clock.advance(0.1)
    assert await asyncio.gather(*waits) == [False, False, False]
    assert track.held_count == 0 and clock.sleeping == 0


async def test_wait_segment():
    _store, d = make_live()
    track = d.stream.track("360p")
    t = asyncio.create_task(track.wait(Position(1000), 5))
    d.publish(3)
    await asyncio.sleep(0)
    assert not t.done()
    d.publish(1)
    assert await t is True


async def test_end_wakes_waiters():
    _store, d = make_live()
    d.publish(1)
    track = d.stream.track("360p")
    t = asyncio.create_task(track.wait(Position(1005, 0), 5))
    await asyncio.sleep(0)
    d.stream.on_end("stop")
    assert await t is True


def test_files_written_in_order_and_deleted_after_grace(tmp_path):
    clock = ManualClock()
    _store, d = make_live(tmp_path, window_s=Fraction(3), clock=clock)
    d.publish_segments(2)
    assert d.mirror.disk.flush()
    folder = tmp_path / "demo" / "360p"
    assert (folder / "init.mp4").read_bytes().startswith(b"ftyp")
    assert (folder / segment_name(1000)).is_file() and (folder / part_name(1000, 3)).is_file()
    d.publish_segments(6)
    assert d.mirror.disk.flush()
    assert (folder / segment_name(1000)).is_file()  # left the manifests, not yet the disk
    clock.advance(d.stream.grace_s)
    d.publish(1)
    assert d.mirror.disk.flush()
    assert not (folder / segment_name(1000)).exists()
    assert not (folder / part_name(1000, 0)).exists()
    assert (folder / segment_name(1007)).is_file()
    assert not list(folder.glob(".*.tmp"))
    d.mirror.close()


def test_atomic_write_never_leaves_partial(tmp_path):
    target = tmp_path / "a" / "b.bin"
    atomic_write(target, b"x" * 1000)
    atomic_write(target, b"y" * 10)
    assert target.read_bytes() == b"y" * 10
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]


def test_removed_stream_folder_is_gone_after_queued_writes_and_stays_gone(tmp_path):
    store, d = make_live(tmp_path)
    d.publish_segments(20)  # hundreds of writes still queued when the removal is asked for
    d.stream.on_end("test")
    store.remove("demo")
    d.stream.on_init(d.tracks[0], b"ftyp+moov late")  # a late write for the removed stream is dropped
    d.publish(2)
    assert d.mirror.folder("demo") is None
    assert d.mirror.disk.flush()
    assert not (tmp_path / "demo").exists()
    assert d.mirror.disk.errors == 0
    d.mirror.close()
    assert not (tmp_path / "demo").exists()


def test_disk_writer_removal_runs_after_earlier_writes_and_before_later_ones(tmp_path):
    disk = DiskWriter()
    folder = tmp_path / "s"
    for i in range(200):
        disk.write(folder / "t" / f"{i}.m4s", b"x" * 1000)
    disk.remove_tree(folder)
    disk.write(folder / "new" / "init.mp4", b"ftyp")  # a new stream of the same name, queued after
    assert disk.flush()
    assert [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()] == ["new/init.mp4"]
    disk.close()


def test_concurrent_flushes_each_wait_for_their_own_writes(tmp_path):
    disk = DiskWriter()
    missing: list[str] = []

    def writer(n: int) -> None:
        for i in range(30):
            path = tmp_path / f"{n}" / f"{i}.bin"
            disk.write(path, bytes(2000))
            disk.flush()
            if not path.is_file():
                missing.append(path.name)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    disk.close()
    assert missing == []


def test_flush_after_close_returns_at_once(tmp_path):
    disk = DiskWriter()
    disk.write(tmp_path / "a.bin", b"a")
    disk.close()
    assert disk.flush(timeout=5) is True
    assert (tmp_path / "a.bin").read_bytes() == b"a"


async def test_ingest_drops_an_ended_stream_on_the_writer_thread_behind_its_writes(tmp_path):
    from packager.ingest.manager import IngestManager
    from packager.settings import IngestSettings

    store, d = make_live(tmp_path)
    manager = IngestManager(IngestSettings(rtmp_port=0, srt_port=0), store)
    d.publish_segments(20)
    d.stream.on_end("feed lost")
    manager._drop("demo")  # what the keep timer calls
    assert store.get("demo") is None
    assert d.mirror.disk.flush()
    assert not (tmp_path / "demo").exists()
    d.mirror.close()


async def test_a_refused_push_leaves_an_ended_streams_removal_timer(tmp_path):
    import asyncio

    from packager.config import StreamConfig
    from packager.ingest.manager import IngestManager
    from packager.ingest.pipe import ByteQueue
    from packager.settings import IngestSettings, StreamSettings

    store, d = make_live(tmp_path)
    settings = IngestSettings(rtmp_port=0, srt_port=0, streams={"demo": StreamSettings(StreamConfig(), "k" * 16)})
    manager = IngestManager(settings, store)
    d.publish_segments(2)
    d.stream.on_end("feed lost")
    timer = asyncio.get_running_loop().call_later(3600, manager._drop, "demo")
    manager._drop_timers["demo"] = timer
    queue = ByteQueue()
    await queue.put(b"\x47" + bytes(187) * 3)  # TS sync bytes, nothing a demuxer can use
    queue.close()
    result = await manager.publish("demo", queue, protocol="http", fmt="mpegts")
    assert not result.published
    assert manager._drop_timers.get("demo") is timer and not timer.cancelled()
    timer.cancel()
    d.mirror.close()
