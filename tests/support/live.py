"""A store driven by hand: publish parts at will, no PyAV, no sleeps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from packager.mirror import DiskMirror
from packager.model import Part, TrackInfo
from packager.publication import PublicationListener
from packager.store import Store, StreamStore
from packager.timebase import SYSTEM_CLOCK, Clock, MediaClock

VIDEO = TrackInfo("360p", "video", "avc1.64001e", 90_000, 800_000, 640, 360, Fraction(30))
VIDEO2 = TrackInfo("180p", "video", "avc1.64000d", 90_000, 300_000, 320, 180, Fraction(30))
AUDIO = TrackInfo("audio", "audio", "mp4a.40.2", 48_000, 128_000, sample_rate=48_000, channels=2)


@dataclass
class Driver:
    """Publishes synthetic parts for every track, one part position at a time."""

    stream: StreamStore
    tracks: tuple[TrackInfo, ...]
    segment_s: Fraction
    part_s: Fraction
    msn: int = 1000
    index: int = 0
    published: list[tuple[int, int]] = field(default_factory=list)
    mirror: DiskMirror | None = None  # the disk mirror, when the store was made with a folder
    every_part_independent: bool = False  # as a standby encoder makes them (an IDR at every part)

    @property
    def parts_per_segment(self) -> int:
        return int(self.segment_s / self.part_s)

    def part_bytes(self, info: TrackInfo, msn: int, index: int) -> bytes:
        return f"moof+mdat {info.name} {msn}.{index} ".encode() * 8

    def publish(self, count: int = 1, *, discontinuity: bool = False) -> None:
        """Publish ``count`` part positions; ``discontinuity`` flags the first of them in every track."""
        for n in range(count):
            for info in self.tracks:
                ts = info.timescale
                start = int((self.msn * self.segment_s + self.index * self.part_s) * ts)
                dur = int(self.part_s * ts)
                part = Part(
                    info.name,
                    self.msn,
                    self.index,
                    start,
                    dur,
                    self.index == 0 or self.every_part_independent,
                    self.part_bytes(info, self.msn, self.index),
                    capture_utc_s=time.time() - 0.1,
                    published_utc_s=time.time(),
                )
                self.stream.on_part(part, self.index == self.parts_per_segment - 1, discontinuity and n == 0)
            self.published.append((self.msn, self.index))
            self.index += 1
            if self.index == self.parts_per_segment:
                self.index = 0
                self.msn += 1

    def publish_segments(self, n: int) -> None:
        self.publish(n * self.parts_per_segment)


def make_live(
    root: Path | None = None,
    *,
    segment_s: Fraction = Fraction(1),
    part_s: Fraction = Fraction(1, 4),
    window_s: Fraction = Fraction(10),
    tracks: tuple[TrackInfo, ...] = (VIDEO, VIDEO2, AUDIO),
    name: str = "demo",
    live: bool = True,
    clock: Clock = SYSTEM_CLOCK,
    listeners: tuple[PublicationListener, ...] = (),
    expect_tracks: bool = False,
    store: Store | None = None,
) -> tuple[Store, Driver]:
    """A store with stream ``name`` open and every track's init published.

    ``listeners`` hear everything from the stream's opening on (before the disk mirror, when ``root`` is
    given); ``expect_tracks``: announce the tracks before their inits, as a pipeline does; ``store``: open
    the stream in this store (its listeners already subscribed) instead of a new one."""
    store = store if store is not None else Store(clock=clock)
    for listener in listeners:
        store.subscribe(listener)
    mirror = DiskMirror(store, root).attach() if root is not None else None
    target = max(1, -(-segment_s.numerator // segment_s.denominator))
    stream = store.open_stream(
        name,
        segment_s=segment_s,
        part_s=part_s,
        window_s=window_s,
        target_duration=target,
        clock=MediaClock(Fraction(0), live=live),
    )
    if expect_tracks:
        stream.expect_tracks(frozenset(info.name for info in tracks))
    for info in tracks:
        stream.on_init(info, b"ftyp+moov " + info.name.encode())
    return store, Driver(stream, tracks, segment_s, part_s, mirror=mirror)
