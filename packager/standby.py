"""A hot-standby encoder's output: encoded and kept back until this node takes the stream over.

A redundant node's pipeline publishes into a :class:`StandbyStream` instead
of the store. While the node is standby the stream keeps each track's init
and its newest few segments of parts, and publishes nothing, and its video
encoders start an IDR at every part boundary (:meth:`StandbyStream.steer`):
every staged video part decodes without anything before it.

When the node takes the lease over, :meth:`StandbyStream.fill_from` finds,
for every track, the part right after the old owner's last one among what
it staged. If every track has it (an independent one for video) and the
inits are the same, :meth:`StandbyStream.activate` continues the old owner's
segments from there: the parts the dead node never published are filled
from this encoder and nothing is lost. Otherwise it hands the live
:class:`~packager.store.StreamStore` everything from the resume segment on
(whole segments only: parts of one segment from two encoders do not decode
across a switch inside a GOP). Either way it then forwards every part as it
comes, with the encoders back on the stream's own GOP. On a hand-off
(:meth:`StandbyStream.stop_after`) it finishes the current segment on every
track, then goes back to holding.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from packager.config import DEFAULT_TARGETS, PlayerTargets
from packager.model import Part, TrackInfo
from packager.splice import KeyframeSchedule, Splice
from packager.store import StreamStore
from packager.timebase import SYSTEM_CLOCK, Clock, MediaClock

log = logging.getLogger(__name__)

KEEP_SEGMENTS = 3  # enough to resume after a lease expiry (two parts) plus a slow claim
KEEP_SPLICES = 64  # the newest splices, handed to the store on a take-over (it keeps the window's)
Position = tuple[int, int]  # (segment number, part index)


@dataclass(frozen=True)
class StagedTiming:
    """The timing a standby pipeline opened its stream with (what a take-over must match)."""

    segment_s: Fraction
    part_s: Fraction
    window_s: Fraction
    target_duration: int
    hls_cue_tags: bool = False
    targets: PlayerTargets = DEFAULT_TARGETS


@dataclass(frozen=True)
class Fill:
    """Where a take-over continues each track inside the old owner's segments (the part right after its last
    one), and the media lost between the old owner's last part and this encoder's first (seconds)."""

    at: Mapping[str, Position]
    gap_s: float

    @property
    def resume_msn(self) -> int:
        """The oldest segment the take-over continues (none before it is left unfinished)."""
        return min(msn for msn, _ in self.at.values())


@dataclass(frozen=True)
class _Staged:
    part: Part
    last_in_segment: bool
    discontinuity: bool


class StandbyStream:
    """The pipeline's listener on a redundant node. Event-loop only."""

    def __init__(self, name: str, timing: StagedTiming, clock: MediaClock, *, utc: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self.timing = timing
        self.clock = clock
        self.utc = utc
        self.expected: frozenset[str] = frozenset()
        self.inits: dict[str, tuple[TrackInfo, bytes]] = {}
        self.ended: str | None = None
        self.target: StreamStore | None = None
        self._parts: dict[str, deque[_Staged]] = {}
        self._stop_after: int | None = None
        self._resume_msn = 0
        self._resume_at: dict[str, Position] = {}  # per track, where a mid-segment take-over continued
        self._keyframes: KeyframeSchedule | None = None
        self._stopped_tracks: set[str] = set()
        self._on_stopped: Callable[[], None] | None = None
        self.splices: tuple[Splice, ...] = ()

    # -- StreamListener (the pipeline's side)
    def expect_tracks(self, names: frozenset[str]) -> None:
        self.expected = names
        if self.target is not None:
            self.target.expect_tracks(names)

    def on_init(self, info: TrackInfo, data: bytes) -> None:
        self.inits[info.name] = (info, data)
        self._parts.setdefault(info.name, deque())
        if self.target is not None:
            self.target.on_init(info, data)

    def on_part(self, part: Part, last_in_segment: bool, discontinuity: bool) -> None:
        staged = _Staged(part, last_in_segment, discontinuity)
        if self.target is not None and not self._past_stop(part):
            if (part.msn, part.index) >= self._resume_at.get(part.track, (self._resume_msn, 0)):
                # (the rest of a segment begun before a whole-segment switch is not ours)
                self.target.on_part(part, last_in_segment, discontinuity)
            return
        parts = self._parts.setdefault(part.track, deque())
        parts.append(staged)
        while parts and parts[0].part.msn < part.msn - KEEP_SEGMENTS + 1:
            parts.popleft()

    def on_input_switch(self) -> None:
        if self.target is not None:
            self.target.on_input_switch()

    def on_splice(self, splice: Splice) -> bool:
        """A placed splice: staged (this encoder's media has its IDR), and published while active."""
        if splice in self.splices:
            return False
        self.splices = tuple(sorted((*self.splices, splice), key=lambda s: s.start))[-KEEP_SPLICES:]
        if self.target is not None:
            self.target.on_splice(splice)
        return True

    def clock_utc_s(self) -> float:
        return self.utc.utc_s()

    def on_end(self, reason: str, ended_utc_s: float | None = None) -> None:
        self.ended = reason
        if self.target is not None:
            self.target.on_end(reason, ended_utc_s)

    # -- the failover controller's side
    def ready(self) -> bool:
        """Every expected track has its init and a whole segment's start staged or flowing."""
        return bool(self.expected) and self.first_whole_msn() is not None

    def first_whole_msn(self) -> int | None:
        """The first segment every track has from its first part on; None while some track has none."""
        firsts = []
        for name in self.expected:
            if name not in self.inits:
                return None
            starts = [s.part.msn for s in self._parts.get(name, ()) if s.part.index == 0]
            if not starts:
                return None
            firsts.append(starts[0])
        return max(firsts) if firsts else None

    def steer(self, keyframes: KeyframeSchedule) -> None:
        """The pipeline's IDR schedule: an IDR at every part boundary while this stream holds its media back."""
        self._keyframes = keyframes
        keyframes.every_part(self.target is None)

    def _hold(self, holding: bool) -> None:
        if self._keyframes is not None:
            self._keyframes.every_part(holding)

    def fill_from(self, stream: StreamStore) -> Fill | None:
        """How this encoder continues ``stream`` from the part after the old owner's last one on every track:
        None unless it staged that part (an independent one for video) with the same init on every track."""
        at: dict[str, Position] = {}
        gap_s = 0.0
        for name in self.expected:
            track, init = stream.tracks.get(name), self.inits.get(name)
            if init is not None and init[0].kind == "text":
                if track is not None and track.next_part is not None:  # whole cue segments: the next one follows
                    at[name] = track.next_part
                continue
            if track is None or init is None or track.init != init[1] or track.next_part is None:
                return None
            at[name] = track.next_part
            found = next((s.part for s in self._parts.get(name, ()) if (s.part.msn, s.part.index) == at[name]), None)
            if found is None or (track.info.kind == "video" and not found.independent):
                return None
            end = track.end_ticks
            if end is not None:
                gap_s = max(gap_s, (found.start - end) / track.info.timescale)
        return Fill(at, gap_s) if at else None

    def activate(self, target: StreamStore, resume_msn: int, fill: Fill | None = None) -> None:
        """Publish into ``target`` from segment ``resume_msn`` on (inits first where they differ); with
        ``fill``, from each track's position in it instead (see :meth:`fill_from`)."""
        if target.expected_tracks != self.expected:
            target.expect_tracks(self.expected)
        changed = self._publish_inits(target)
        self._resume_at = dict(fill.at) if fill is not None else {}
        now = self.utc.utc_s()
        for name, parts in self._parts.items():
            start = self._resume_at.get(name, (resume_msn, 0))
            first = True
            for staged in parts:
                part = staged.part
                position = (part.msn, part.index)
                if position < start or (first and part.index != 0 and position != start):
                    continue
                fresh = dataclasses.replace(part, published_utc_s=now)
                target.on_part(fresh, staged.last_in_segment, staged.discontinuity or (first and name in changed))
                first = False
            parts.clear()
        for splice in self.splices:
            target.on_splice(splice)
        self.target = target
        self._resume_msn = resume_msn
        self._stop_after = None
        self._hold(False)

    def _publish_inits(self, target: StreamStore) -> set[str]:
        """Inits the target lacks or has different: published; the names of those that differed."""
        changed: set[str] = set()
        for name, (info, data) in self.inits.items():
            track = target.tracks.get(name)
            if track is not None and track.init == data:
                continue
            if track is not None and track.init is not None:
                log.warning("%s: %s: this encoder's init differs from the previous owner's", self.name, name)
                changed.add(name)
            target.on_init(info, data)
        return changed

    def deactivate(self) -> None:
        """Publish nothing more (the lease is gone); keep staging."""
        self.target = None
        self._stop_after = None
        self._hold(True)

    def stop_after(self, msn: int, on_stopped: Callable[[], None]) -> None:
        """Finish segment ``msn`` on every track, then stop publishing and call ``on_stopped`` once."""
        self._stop_after = msn
        self._stopped_tracks = set()
        self._on_stopped = on_stopped

    def _past_stop(self, part: Part) -> bool:
        if self._stop_after is None or part.msn <= self._stop_after:
            return False
        self._stopped_tracks.add(part.track)
        if self._stopped_tracks >= self.expected and self._on_stopped is not None:
            callback, self._on_stopped = self._on_stopped, None
            self.target = None
            self._stop_after = None
            self._hold(True)
            callback()
        return True


class StandbyStore:
    """What a redundant node's pipelines open their streams on: each one a :class:`StandbyStream`,
    handed to ``on_open`` (the failover controller starts from it)."""

    def __init__(self, on_open: Callable[[StandbyStream], None], *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.on_open = on_open
        self.clock = clock
        self.streams: dict[str, StandbyStream] = {}

    def open_stream(
        self,
        name: str,
        *,
        segment_s: Fraction,
        part_s: Fraction,
        window_s: Fraction,
        target_duration: int,
        clock: MediaClock,
        started_utc_s: float | None = None,
        hls_cue_tags: bool = False,
        targets: PlayerTargets = DEFAULT_TARGETS,
    ) -> StandbyStream:
        timing = StagedTiming(segment_s, part_s, window_s, target_duration, hls_cue_tags, targets)
        stream = StandbyStream(name, timing, clock, utc=self.clock)
        self.streams[name] = stream
        self.on_open(stream)
        return stream
