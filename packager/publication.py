"""What the store announces: typed publication events, in order, to listeners that subscribe.

The store is the one place media becomes public. Each change it makes is
announced as one frozen event *after* the change is servable from memory, so
a listener (the disk mirror, the stream-event emitter, the Redis publisher)
may read the store while it handles the event. The order for one track is
the order a player sees::

    StreamOpened, InitPublished, (PartPublished ... SegmentClosed)*, StreamEnded, StreamRemoved

``SpliceScheduled`` says an ad-break splice was placed (it may lie ahead
of the newest media: the encoders start an IDR there when they reach it).
``OwnerChanged`` says another node now publishes the stream (a redundant
encoder took over): the segments the old owner left unfinished were closed
as *cut* right before it (``SegmentClosed`` with ``segment.cut``), and the new
owner's media follows from ``resume_msn``.

``SegmentClosed`` for a segment comes right after the part that completed it
(or right before the first part of the next segment when the feed skipped
ahead). ``MediaRetired`` says a segment left memory, the deletion grace after
it left the manifests (RFC 8216bis 6.2.2): the disk mirror deletes its files.

Listeners follow the :class:`PublicationListener` protocol (one method, like
Shaka Packager's ``MuxerListener`` notifiers); they are called on the event
loop, synchronously, in subscription order, and must not block.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from packager.config import DEFAULT_TARGETS, PlayerTargets
from packager.model import Part, Segment, TrackInfo
from packager.splice import Splice


@dataclass(frozen=True)
class StreamTiming:
    """A stream's timing model: what every number and manifest of it derives from."""

    segment_s: Fraction
    part_s: Fraction
    window_s: Fraction
    target_duration: int
    epoch_s: Fraction  # UTC seconds of media time 0 (0 for live feeds)
    live: bool  # False: VOD (a file packaged at machine speed)
    # Manifest dialect every renderer of the stream (origins, the disk mirror) must agree on:
    # legacy EXT-X-CUE-OUT/IN ad markers next to EXT-X-DATERANGE.
    hls_cue_tags: bool = False
    targets: PlayerTargets = DEFAULT_TARGETS  # hold-backs, DASH latency target, catch-up rate


@dataclass(frozen=True)
class StreamOpened:
    stream: str
    timing: StreamTiming
    started_utc_s: float


@dataclass(frozen=True)
class TracksExpected:
    """Every rendition the stream's pipeline will publish (known before their inits arrive)."""

    stream: str
    tracks: frozenset[str]


@dataclass(frozen=True)
class InitPublished:
    stream: str
    info: TrackInfo
    data: bytes


@dataclass(frozen=True)
class PartPublished:
    """A part is servable. ``discontinuity``: media before it does not continue into it."""

    stream: str
    part: Part
    discontinuity: bool = False


@dataclass(frozen=True)
class SegmentClosed:
    """A segment is complete: its bytes are ``styp`` + its parts, servable as one object."""

    stream: str
    segment: Segment


@dataclass(frozen=True)
class MediaRetired:
    """Segment ``msn`` of ``track`` (and the parts listed) left memory; it left every manifest earlier."""

    stream: str
    track: str
    msn: int
    parts: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class InputSwitched:
    """The feed's input changed (a publisher came back or took over) on a continuing timeline."""

    stream: str


@dataclass(frozen=True)
class OwnerChanged:
    """Node ``to_node`` holds the stream's lease (epoch ``epoch``) and publishes it from segment ``resume_msn`` on
    (when it fills the segment the old owner left unfinished, from the part after the old owner's last one).

    ``reason``: why the lease moved ("lease expired": the old owner stopped renewing it; "input": the old
    owner's input was on the slate while this one's was live; "released": the old owner gave it up;
    "restart": the owner came back after being down). ``gap_s``: media time between the end of the old
    owner's last part and the start of the new owner's first (0 for a hand-over on a segment boundary or a
    filled segment)."""

    stream: str
    from_node: str | None
    to_node: str
    epoch: int
    reason: str
    resume_msn: int
    gap_s: float
    changed_utc_s: float


@dataclass(frozen=True)
class SpliceScheduled:
    """An ad-break splice is placed: every rendition's media has an IDR at ``splice.start``; manifests list it."""

    stream: str
    splice: Splice


@dataclass(frozen=True)
class StreamEnded:
    stream: str
    reason: str
    ended_utc_s: float


@dataclass(frozen=True)
class StreamRemoved:
    """The stream's keep period passed: it is no longer served and its files go."""

    stream: str


Publication = (
    StreamOpened
    | TracksExpected
    | InitPublished
    | PartPublished
    | SegmentClosed
    | MediaRetired
    | InputSwitched
    | OwnerChanged
    | SpliceScheduled
    | StreamEnded
    | StreamRemoved
)


class PublicationListener(Protocol):
    """Hears every publication of a store, in order, on the event loop; never blocks."""

    def on_publication(self, event: Publication) -> None: ...
