"""One stream's ad-break splicing: operator requests and input cues -> placed splices -> store and emsg.

The :class:`Splicer` owns the stream's :class:`~packager.splice.KeyframeSchedule`
(shared with the video encoders, which start an IDR at every placed instant).
Requests from the operator API arrive on the event loop (:meth:`request`);
cues from the input's SCTE-35 PID arrive on the source thread
(:meth:`on_cue`), are placed there (before any later frame reaches an
encoder) and handed to the loop. The store lists each splice; the video
chunkers ask :meth:`events_for` for the in-band ``emsg`` of the part that
starts at a splice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from packager import scte35
from packager.cmaf.emsg import EventMessage, emsg
from packager.manifest.adbreaks import SCTE35_INBAND_SCHEME, SCTE35_INBAND_VALUE, event_id
from packager.model import TrackInfo
from packager.scte35 import PtsMapper, Scte35Error
from packager.splice import SPLICE_TIMESCALE, KeyframeSchedule, Splice, SpliceError, SpliceRequest, breaks
from packager.timebase import MediaClock

log = logging.getLogger(__name__)


class SpliceTarget(Protocol):
    """Where a pipeline publishes (a store's stream, or a standby's staging): what splicing needs of it."""

    @property
    def name(self) -> str: ...

    clock: MediaClock
    splices: tuple[Splice, ...]

    @property
    def ended(self) -> object: ...

    def on_splice(self, splice: Splice) -> bool: ...

    def clock_utc_s(self) -> float: ...


class Splicer:
    """Places one stream's splices on IDRs at part boundaries and publishes them."""

    def __init__(self, stream: SpliceTarget, part_ticks: int, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = stream
        self.keyframes = KeyframeSchedule(part_ticks)
        self.loop = loop
        self.bad_cues = 0  # sections from the input that were refused

    def request(self, request: SpliceRequest) -> Splice:
        """Loop side (the operator API): place ``request`` and publish it; SpliceError if it cannot be."""
        if self.stream.ended:
            raise SpliceError("the stream has ended")
        event = request.event_id if request.event_id is not None else self._next_event_id(request.kind)
        splice = self._placed(request, event)
        self.stream.on_splice(splice)
        log.info("%s: splice %s %d at %s", self.stream.name, splice.kind, splice.event_id, float(splice.start_s))
        return splice

    def on_cue(self, section: bytes, to_media: PtsMapper) -> None:
        """Source thread: a section from the input; a bad one is counted and logged, never fatal."""
        try:
            requests = scte35.read(section, to_media)
        except Scte35Error as exc:
            self.bad_cues += 1
            log.warning("%s: SCTE-35 cue refused: %s", self.stream.name, exc)
            return
        for r in requests:
            self.loop.call_soon_threadsafe(self._publish, self._placed(r, r.event_id or 0))

    def _publish(self, splice: Splice) -> None:
        if not self.stream.ended and self.stream.on_splice(splice):
            log.info("%s: cue %s %d at %s", self.stream.name, splice.kind, splice.event_id, float(splice.start_s))

    def _next_event_id(self, kind: str) -> int:
        splices = self.stream.splices
        if kind == "in":
            open_ = [b for b in breaks(splices) if b.out is not None and b.end is None]
            if open_:
                return open_[-1].event_id
        return max((s.event_id for s in splices), default=0) + 1

    def _placed(self, request: SpliceRequest, event: int) -> Splice:
        """Any thread: the splice at the first part boundary the encoders have not reached, IDRs scheduled."""
        start = self.keyframes.place(request.at_ticks)
        duration = None
        if request.duration_ticks is not None:  # the return gets its IDR too
            duration = self.keyframes.place(start + request.duration_ticks) - start
        section = request.section or scte35.build(request.kind, event, start, duration)
        return Splice(event, request.kind, start, duration, section, request.origin)

    def events_for(self, info: TrackInfo) -> Callable[[int], list[bytes]]:
        """For a video chunker: the emsg of each splice placed at a part boundary (SCTE 214-3)."""

        def scaled(ticks: int) -> int:
            return ticks * info.timescale // SPLICE_TIMESCALE

        def events(boundary: int) -> list[bytes]:
            return [
                emsg(
                    EventMessage(
                        SCTE35_INBAND_SCHEME,
                        SCTE35_INBAND_VALUE,
                        info.timescale,
                        scaled(s.start),
                        None if s.duration is None else scaled(s.duration),
                        event_id(s),
                        s.section,
                    )
                )
                for s in self.stream.splices
                if scaled(s.start) == boundary
            ]

        return events
