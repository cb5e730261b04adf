"""Consistent chunking: encoded samples -> CMAF parts with time-derived numbers.

Pure logic, run on the event loop, one :class:`TrackChunker` per track. A part
closes as soon as a sample reaches the part boundary (no waiting for the next
sample), so a part is published one sample-duration after its last frame was
encoded. Segment and part numbers depend only on the first sample's decode
time, so every rendition and every redundant packager derive the same ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from packager.cmaf import Prft, chunk
from packager.model import Part, Sample, TrackInfo

log = logging.getLogger(__name__)

PartSink = Callable[[Part, bool, bool], None]  # (part, last_in_segment, discontinuity)
# The emsg boxes for the part whose nominal boundary is at the given track tick (none: [])
EventSource = Callable[[int], list[bytes]]


class TrackChunker:
    """Groups one track's samples into parts and segments and hands them to ``sink``."""

    def __init__(
        self,
        info: TrackInfo,
        *,
        segment_ticks: int,
        part_ticks: int,
        sink: PartSink,
        epoch_s: float = 0.0,
        track_id: int = 1,
        events: EventSource | None = None,
    ) -> None:
        if segment_ticks <= 0 or part_ticks <= 0 or segment_ticks % part_ticks:
            raise ValueError("segment_ticks must be a positive multiple of part_ticks")
        self.info = info
        self.segment_ticks = segment_ticks
        self.part_ticks = part_ticks
        self.parts_per_segment = segment_ticks // part_ticks
        self.sink = sink
        self.epoch_s = epoch_s
        self.track_id = track_id
        self.events = events
        self._samples: list[Sample] = []
        self._msn = -1
        self._index = -1
        self._last_msn: int | None = None
        self._last_end: int | None = None
        self.dropped = 0

    def position(self, ticks: int) -> tuple[int, int]:
        msn = ticks // self.segment_ticks
        return msn, (ticks - msn * self.segment_ticks) // self.part_ticks

    def _part_end(self) -> int:
        return self._msn * self.segment_ticks + (self._index + 1) * self.part_ticks

    def _segment_end(self) -> int:
        return (self._msn + 1) * self.segment_ticks

    def push(self, sample: Sample) -> None:
        if self._last_end is not None and sample.dts < self._last_end and not self._samples:
            # Overlaps media already published: a timestamp went backwards.
            self.dropped += 1
            log.warning("%s: sample at %d overlaps published media, dropped", self.info.name, sample.dts)
            return
        if self._samples:
            msn, index = self.position(sample.dts)
            if (msn, index) != (self._msn, self._index) or sample.dts < self._samples[-1].dts:
                # A gap or an early part end: close what we have first.
                self._emit(last_in_segment=msn != self._msn)
        if not self._samples:
            msn, index = self.position(sample.dts)
            starts_segment = msn != self._last_msn
            if starts_segment and self.info.kind == "video" and not sample.keyframe:
                self.dropped += 1
                return
            self._msn, self._index = msn, index
        if self._samples:
            prev = self._samples[-1]
            if prev.dts + prev.duration != sample.dts and sample.dts > prev.dts:
                # MP4 durations are decode-time deltas: stretch or shrink the previous sample
                self._samples[-1] = replace(prev, duration=sample.dts - prev.dts)
        self._samples.append(sample)
        end = sample.dts + sample.duration
        if end >= self._part_end():
            self._emit(last_in_segment=end >= self._segment_end())

    def flush(self) -> None:
        """End of stream: publish what is left as the last part of its segment."""
        if self._samples:
            self._emit(last_in_segment=True)

    def _emit(self, *, last_in_segment: bool) -> None:
        samples, self._samples = self._samples, []
        first = samples[0]
        seq = self._msn * self.parts_per_segment + self._index + 1
        prft = Prft(
            ntp_utc_s=first.capture_utc_s or (self.epoch_s + first.dts / self.info.timescale), media_time=first.pts
        )
        boundary = self._msn * self.segment_ticks + self._index * self.part_ticks
        events = self.events(boundary) if self.events is not None else []
        data = chunk(
            sequence_number=seq & 0xFFFFFFFF, track_id=self.track_id, samples=samples, prft=prft, events=events
        )
        end = samples[-1].dts + samples[-1].duration
        part = Part(
            track=self.info.name,
            msn=self._msn,
            index=self._index,
            start=first.dts,
            duration=end - first.dts,
            independent=first.keyframe,
            data=data,
            capture_utc_s=first.capture_utc_s,
            published_utc_s=time.time(),
        )
        self._last_msn = self._msn
        self._last_end = end
        # The media clock keeps one continuous timeline across inputs, so a part never starts a discontinuity.
        self.sink(part, last_in_segment, False)
