"""Ad-break splices: the values a stream carries, and the schedule that puts each one on an IDR.

A splice comes from the operator API or from an SCTE-35 cue in the input
(:mod:`packager.scte35` reads and builds the sections). Whatever instant it
asks for, :class:`KeyframeSchedule` moves it to the nearest *part boundary*
(at most half a part away), or to the first one the encoders have not
reached yet when that is later, and every rendition's encoder starts an
IDR on the first frame at or after it: the part that begins there is
``INDEPENDENT=YES`` in every rendition, at the same instant. Segment and
part numbers stay pure functions of time (the splice adds an IDR inside a
segment; it never moves a boundary), so redundant encoders and every rule
the timing model relies on are untouched.

Times are 90 kHz media ticks (:data:`SPLICE_TIMESCALE`, the video clock and
SCTE-35's own), on the stream's UTC-anchored media clock.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from packager.timebase import VIDEO_TIMESCALE

SPLICE_TIMESCALE = VIDEO_TIMESCALE
SpliceKind = Literal["out", "in"]
SpliceOrigin = Literal["api", "input"]
MAX_EVENT_ID = 0xFFFFFFFF  # splice_event_id is 32 bits (SCTE 35 9.7.3)
MAX_BREAK_S = 24 * 3600
_KEEP_TICKS = 120 * SPLICE_TIMESCALE  # instants this far behind the encoders are forgotten


class SpliceError(ValueError):
    """A splice request that cannot be honoured, with a one-line reason."""


@dataclass(frozen=True)
class SpliceRequest:
    """What an operator or a cue asks for, before it is placed on the part grid."""

    kind: SpliceKind
    event_id: int | None = None  # None: the stream's next free id
    at_ticks: int | None = None  # None: as soon as possible
    duration_ticks: int | None = None  # planned break duration (an out only)
    section: bytes | None = None  # the cue as received; None: one is built for the placed instant
    origin: SpliceOrigin = "api"

    def __post_init__(self) -> None:
        if self.event_id is not None and not 0 <= self.event_id <= MAX_EVENT_ID:
            raise SpliceError(f"id {self.event_id} is outside 0..{MAX_EVENT_ID}")
        if self.duration_ticks is not None:
            if self.kind != "out":
                raise SpliceError("only a break out has a duration")
            if not 0 < self.duration_ticks <= MAX_BREAK_S * SPLICE_TIMESCALE:
                raise SpliceError(f"duration must be above 0 and at most {MAX_BREAK_S} s")


@dataclass(frozen=True)
class Splice:
    """A placed splice: ``start`` is a part boundary where every rendition has an IDR."""

    event_id: int
    kind: SpliceKind
    start: int  # SPLICE_TIMESCALE ticks on the media clock
    duration: int | None  # planned break duration, ticks (an out only)
    section: bytes  # the splice_info_section, as received or as built
    origin: SpliceOrigin = "api"

    @property
    def start_s(self) -> Fraction:
        return Fraction(self.start, SPLICE_TIMESCALE)

    @property
    def end(self) -> int | None:
        """Where a break out with a planned duration returns; None for an open-ended one or an in."""
        return None if self.duration is None else self.start + self.duration


def splice_json(s: Splice) -> dict[str, Any]:
    """The splice as JSON values (the shared store's log and snapshots, the disk mirror's splices file)."""
    return {
        "id": s.event_id,
        "kind": s.kind,
        "start": s.start,
        "duration": s.duration,
        "section": s.section.hex(),
        "origin": s.origin,
    }


def splice_from(d: Any) -> Splice:
    """The splice of :func:`splice_json`'s output; SpliceError (a ValueError) when it is not one."""
    try:
        kind, origin = str(d["kind"]), str(d.get("origin", "api"))
        duration = d.get("duration")
        values = (int(d["id"]), int(d["start"]), None if duration is None else int(duration))
        section = bytes.fromhex(str(d["section"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SpliceError(f"not a splice: {exc}") from None
    if kind not in ("out", "in") or origin not in ("api", "input"):
        raise SpliceError(f"not a splice: {kind!r} from {origin!r}")
    return Splice(values[0], kind, values[1], values[2], section, origin)  # type: ignore[arg-type]


class KeyframeSchedule:
    """Instants at which every video encoder must start an IDR. One lock guards all state.

    The source thread calls :meth:`submitted` before it hands a frame to the
    encoders; :meth:`place` (the event loop for the API, the source thread
    for cues) picks an instant no frame at or after which was handed over
    yet; each encoder thread asks :meth:`due` for every frame, in order. So
    the first frame at or after a placed instant always sees it.

    A hot-standby encoder's staging (the event loop) turns :meth:`every_part`
    on while it holds its media back: then every part boundary is such an
    instant, so a take-over can continue the old owner's segment from any
    part (the new owner's first part decodes without anything before it).
    """

    def __init__(self, part_ticks: int) -> None:
        if part_ticks <= 0:
            raise ValueError("part_ticks must be positive")
        self.part_ticks = part_ticks
        self._lock = threading.Lock()
        self._instants: list[int] = []
        self._submitted: int | None = None  # newest frame time handed to the encoders
        self._every_part = False

    def submitted(self, pts: int) -> None:
        """Source side: the frame at ``pts`` goes to the encoders now."""
        with self._lock:
            if self._submitted is None or pts > self._submitted:
                self._submitted = pts

    def place(self, at_ticks: int | None) -> int:
        """Any side: the part boundary nearest ``at_ticks`` (None: as soon as possible), or the first that no
        encoder has reached when that is later; scheduled."""
        with self._lock:
            earliest = -(2**62) if self._submitted is None else self._submitted + 1
            first_free = -(-earliest // self.part_ticks) * self.part_ticks
            if at_ticks is None:
                instant = first_free
            else:
                nearest = (at_ticks + self.part_ticks // 2) // self.part_ticks * self.part_ticks
                instant = max(nearest, first_free)
            if instant not in self._instants:
                bisect.insort(self._instants, instant)
            self._forget_old()
            return instant

    def every_part(self, on: bool) -> None:
        """Loop side (a standby's staging): start an IDR at every part boundary from the next frame on, or stop."""
        with self._lock:
            self._every_part = on

    def due(self, prev_pts: int | None, pts: int) -> bool:
        """Encoder side: does the frame at ``pts`` (after one at ``prev_pts``) have to be an IDR?"""
        with self._lock:
            if self._every_part and (prev_pts is None or pts // self.part_ticks > prev_pts // self.part_ticks):
                return True  # the first frame at or after a part boundary
            i = bisect.bisect_right(self._instants, pts)
            if i == 0:
                return False
            return prev_pts is None or self._instants[i - 1] > prev_pts

    def _forget_old(self) -> None:
        if self._submitted is not None:
            keep = bisect.bisect_left(self._instants, self._submitted - _KEEP_TICKS)
            del self._instants[:keep]


@dataclass(frozen=True)
class Break:
    """An ad break as manifests list it: its out (None: only its return was signalled) and its return."""

    event_id: int
    out: Splice | None
    back: Splice | None

    @property
    def start(self) -> int:
        first = self.out or self.back
        assert first is not None
        return first.start

    @property
    def end(self) -> int | None:
        """Where the break returns: its in, else the out's planned end; None while open-ended."""
        if self.back is not None:
            return self.back.start
        return None if self.out is None else self.out.end


def breaks(splices: tuple[Splice, ...] | list[Splice]) -> list[Break]:
    """Pair outs with their returns, in start order: an in closes the open out with its event id, else
    the latest open-ended out; an in with no open out stands alone (a return whose out left the window)."""
    result: list[Break] = []
    open_: dict[int, int] = {}  # event id -> index in result of the open out
    for s in sorted(splices, key=lambda s: (s.start, s.kind != "in")):
        if s.kind == "out":
            if s.event_id in open_:
                continue  # a repeated out for a break already open (cues are often sent more than once)
            open_[s.event_id] = len(result)
            result.append(Break(s.event_id, s, None))
            continue
        open_ended = (k for k in reversed(open_) if result[open_[k]].end is None)
        key = s.event_id if s.event_id in open_ else next(open_ended, None)
        if key is None:
            if not any(b.back == s or (b.out is None and b.event_id == s.event_id) for b in result):
                result.append(Break(s.event_id, None, s))
            continue
        i = open_.pop(key)
        result[i] = Break(result[i].event_id, result[i].out, s)
    return result


def kept(splices: tuple[Splice, ...], window_start: int | None) -> tuple[Splice, ...]:
    """The splices of every break still (partly) inside a window starting at ``window_start``."""
    if window_start is None:
        return splices
    alive = set()
    for b in breaks(splices):
        end = b.end
        if end is None or end >= window_start:
            alive.update(id(s) for s in (b.out, b.back) if s is not None)
    return tuple(s for s in splices if id(s) in alive)
