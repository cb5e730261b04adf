"""A hot-standby encoder with real media: an IDR at every part while it stands by, so a take-over fills the
segment the dead owner left unfinished and the filled segment decodes across the switch."""

from __future__ import annotations

import asyncio
import io
from fractions import Fraction

import av
import numpy as np
import pytest

from packager.cmaf.reader import parse_fragments
from packager.config import Encoding, Ladder, StreamConfig, Timing
from packager.pipeline import Pipeline
from packager.publication import OwnerChanged
from packager.sources import TestSource
from packager.standby import StandbyStore, StandbyStream
from packager.store import Store, StreamStore
from packager.transcode import AudioEncoder
from tests.support.clock import until

pytestmark = pytest.mark.media

CONFIG = StreamConfig(
    ladder=Ladder.parse("320x180@250k"),
    timing=Timing(Fraction(1), Fraction(1, 4), Fraction(10)),
    encoding=Encoding(preset="ultrafast"),
)
VIDEO = "180p"


async def _standby_node() -> tuple[Pipeline, StandbyStream]:
    opened: list[StandbyStream] = []
    pipeline = Pipeline(CONFIG, TestSource(320, 180, Fraction(30)), StandbyStore(opened.append))
    await pipeline.start()
    return pipeline, opened[0]


def _staged_parts(staged: StandbyStream) -> list:  # type: ignore[type-arg]
    return [s.part for s in staged._parts.get(VIDEO, ())]


def _decoded(init: bytes, data: bytes) -> int:
    """Pictures a decoder gets out of ``init + data`` (it drops what cannot be decoded from what it has)."""
    with av.open(io.BytesIO(init + data), "r") as container:
        return sum(1 for _ in container.decode(video=0))


async def test_a_take_over_fills_the_segment_the_dead_owner_left_and_it_decodes_across_the_switch() -> None:
    store = Store()
    old_pipeline, old = await _standby_node()  # node a: its staging is activated into the store, then "dies"
    new_pipeline, new = await _standby_node()  # node b: stands by
    try:
        await until(lambda: old.ready() and new.ready(), timeout_s=30)
        stream = store.open_stream(
            "demo", segment_s=CONFIG.timing.segment_s, part_s=CONFIG.timing.part_s,
            window_s=CONFIG.timing.window_s, target_duration=1, clock=old.clock,
        )  # fmt: skip
        old.activate(stream, old.first_whole_msn() + 1)  # type: ignore[operator]
        await until(lambda: _published_whole_segment_and(stream, 2), timeout_s=30)
        old.deactivate()  # node a stops publishing after part 2 of a segment: its lease is gone
        assert all(p.independent for p in _staged_parts(new)[1:])  # the standby's parts all begin with an IDR
        await asyncio.sleep(0.5)  # the lease expiry: node b keeps encoding meanwhile
        fill = new.fill_from(stream)
        assert fill is not None and fill.at[VIDEO][1] == 2 and fill.gap_s == 0
        stream.hand_over(OwnerChanged("demo", "a", "b", 2, "lease expired", fill.resume_msn, fill.gap_s, 0.0))
        new.activate(stream, fill.resume_msn, fill)
        msn = fill.resume_msn
        await until(lambda: stream.segment(VIDEO, msn + 2) is not None, timeout_s=30)
    finally:
        for pipeline in (old_pipeline, new_pipeline):
            pipeline.stop()
            await asyncio.wait_for(pipeline.wait(), 30)
    filled = stream.segment(VIDEO, msn)
    assert filled is not None and not filled.cut and len(filled.parts) == 4
    assert [p.independent for p in filled.parts] == [True, False, True, True]
    init = stream.init(VIDEO)
    data = stream.segment_bytes(VIDEO, msn)
    assert init is not None and data is not None
    frames = [len(f.sample_sizes) for f in parse_fragments(data)]
    assert _decoded(init, data) == sum(frames) == 30  # every picture decodes, across the switch too
    synced = [f.sample_flags[0] & 0x00010000 == 0 for f in parse_fragments(data)]
    assert synced == [True, False, True, True]
    later = stream.segment(VIDEO, msn + 2)
    assert later is not None and [p.independent for p in later.parts] == [True, False, False, False]  # its GOP


def _published_whole_segment_and(stream: StreamStore, parts: int) -> bool:
    """The stream's video has a whole segment published and ``parts`` parts of the next one."""
    track = stream.tracks.get(VIDEO)
    return track is not None and bool(track.segments) and len(track.pending) == parts


def _encode_audio(start: int, frames: int, samples: int) -> list[int]:
    """Sample times an AAC encoder gives for ``frames`` input frames of ``samples`` each from tick ``start``."""
    got: list[int] = []  # written by the encoder's thread, read after stop() joined it
    encoder = AudioEncoder(bitrate=96_000, on_init=lambda init: None, on_samples=lambda s: got.extend(x.pts for x in s),
                           blocking=True)  # fmt: skip
    encoder.start()
    pcm = np.zeros((2, samples), dtype=np.float32)
    for n in range(frames):
        frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="stereo")
        frame.sample_rate = 48_000
        encoder.submit((frame, start + n * samples, 0.0))
    encoder.stop()
    return got


def test_two_audio_encoders_started_apart_cut_the_same_aac_frame_edges() -> None:
    """Redundant nodes start their encoders at different instants: both put every AAC frame on the media clock's
    1024-tick grid, so a take-over continues the old owner's audio with neither overlap nor hole."""
    a = _encode_audio(1796656000 * 48_000 + 317, 40, 960)  # 20 ms input frames, off the grid
    b = _encode_audio(1796656000 * 48_000 + 5000, 40, 1600)
    assert a and b and all(t % 1024 == 0 for t in a + b)
    assert a[0] - (1796656000 * 48_000 + 317) < 1024  # at most one frame's worth of the first input dropped
    shared = sorted(set(a) & set(b))
    assert len(shared) > 20 and shared == sorted(shared)
