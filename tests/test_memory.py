"""Freed codec memory goes back to the system: coalesced malloc_trim after a stream or a refused probe."""

from __future__ import annotations

from packager.ingest.manager import IngestManager
from packager.memory import MemoryReturner, glibc_trim
from packager.settings import IngestSettings
from tests.support.live import make_live


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_trims_are_coalesced_per_interval() -> None:
    clock, spawned = _Clock(), []
    mem = MemoryReturner(lambda: None, min_interval_s=2.0, clock=clock, spawn=spawned.append)
    assert mem.after_free()
    assert not mem.after_free()  # a burst of ended streams costs one trim
    clock.t += 1.9
    assert not mem.after_free()
    clock.t += 0.2
    assert mem.after_free()
    assert len(spawned) == 2


def test_no_trim_function_means_nothing_to_do() -> None:
    spawned: list[object] = []
    mem = MemoryReturner(None, spawn=spawned.append)
    mem.trim = None  # a C library without malloc_trim
    assert not mem.after_free() and spawned == []


def test_glibc_trim_runs_here() -> None:
    trim = glibc_trim()
    assert trim is not None  # Debian's glibc has it
    assert trim() in (0, 1)


def test_dropping_an_ended_stream_returns_its_memory(tmp_path) -> None:
    spawned: list[object] = []
    store, d = make_live(tmp_path)
    mem = MemoryReturner(lambda: None, spawn=spawned.append)
    manager = IngestManager(IngestSettings(rtmp_port=0, srt_port=0), store, memory=mem)
    d.publish_segments(3)
    d.stream.on_end("feed lost")
    manager._drop("demo")  # what the keep timer calls
    assert store.get("demo") is None and len(spawned) == 1
    d.mirror.close()


def test_a_trim_first_collects_cycles_that_hold_codec_objects() -> None:
    import gc
    import weakref

    from packager.memory import _collect_then

    class Holder:  # stands for a pipeline whose encoder refers back to it
        pass

    a, b = Holder(), Holder()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    gc.disable()  # no automatic collection between here and the trim
    try:
        calls: list[int] = []
        _collect_then(lambda: calls.append(1))
    finally:
        gc.enable()
    assert alive() is None and calls == [1]
