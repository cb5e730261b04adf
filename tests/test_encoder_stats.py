"""Encoder counters: written on the worker and source threads, read on the loop as one consistent snapshot."""

import threading
from fractions import Fraction

import av
import pytest

from packager.config import Encoding, Rendition
from packager.transcode import EncoderCounters, EncoderStats, VideoEncoder


def test_counters_from_two_threads_add_up_exactly():
    counters = EncoderCounters()

    def worker() -> None:
        for _ in range(20_000):
            counters.took_frame(0.5)
            counters.gave_frames(1)
            counters.was_busy(0.25)

    def source() -> None:
        for _ in range(20_000):
            counters.dropped_frame()

    threads = [threading.Thread(target=worker), threading.Thread(target=source)]
    for t in threads:
        t.start()
    seen = [counters.snapshot() for _ in range(200)]  # the loop reading meanwhile
    for t in threads:
        t.join()
    assert counters.snapshot() == EncoderStats(20_000, 20_000, 20_000, 10_000.0, 5_000.0)
    assert counters.snapshot().realtime_factor == 2.0
    assert all(s.frames_out <= s.frames_in for s in seen)  # a snapshot is one instant of the worker's counts


def test_a_snapshot_does_not_move_with_later_counting():
    counters = EncoderCounters()
    counters.dropped_frame()
    before = counters.snapshot()
    counters.dropped_frame()
    assert before.frames_dropped == 1 and counters.snapshot().frames_dropped == 2


@pytest.mark.media
def test_live_encoder_counts_what_it_took_and_what_it_dropped():
    encoder = VideoEncoder(
        Rendition("180p", 320, 180, 200_000),
        fps=Fraction(30),
        segment_s=Fraction(1),
        encoding=Encoding(preset="ultrafast"),
        on_init=lambda _init: None,
        on_samples=lambda _samples: None,
        blocking=False,
    )
    frame = av.VideoFrame(320, 180, "yuv420p")
    submitted = 400
    for n in range(submitted):  # faster than it encodes, before it even starts: the queue overflows
        encoder.submit((frame, n * 3000, n / 30))
    encoder.start()
    encoder.stop()
    stats = encoder.stats
    assert stats.frames_dropped == submitted - 60  # the queue holds 60
    assert stats.frames_in == 60 and stats.frames_out == 60
    assert stats.media_s == pytest.approx(2.0) and stats.busy_s > 0
