"""How the origin reads published media: a small protocol over any store.

The in-memory :class:`~packager.store.Store` implements it, and so does the
origin's mirror of a Redis store; handlers, renderers, the dashboard and the
metrics read only through it, never through a store's internals.

A :class:`Position` names what a held request waits for: a part
(``Position(msn, index)``) or a whole segment (``Position(msn)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packager.model import Part, Segment, StreamView
from packager.timebase import Clock


@dataclass(frozen=True, order=True)
class Position:
    """A place on a track's timeline: part ``index`` of segment ``msn``, or (``index`` None) the whole segment."""

    msn: int
    index: int | None = None

    @property
    def whole_segment(self) -> bool:
        return self.index is None


@dataclass(frozen=True)
class Progress:
    """The bytes of a segment so far (``styp`` first) and whether it is complete."""

    chunks: tuple[bytes, ...]
    complete: bool


class StreamReader(Protocol):
    """One stream, as the origin sees it. Event-loop only."""

    @property
    def name(self) -> str: ...

    def view(self) -> StreamView:
        """The immutable snapshot manifests render from (cached until the next change)."""
        ...

    @property
    def end_reason(self) -> str: ...

    @property
    def started_utc_s(self) -> float: ...

    @property
    def node(self) -> str | None:
        """The node publishing the stream (None: this process)."""
        ...

    def init(self, track: str) -> bytes | None: ...

    def part(self, track: str, msn: int, index: int) -> Part | None:
        """A part still in memory (the newest few segments' parts)."""
        ...

    def segment(self, track: str, msn: int) -> Segment | None:
        """A completed segment still listed in the window."""
        ...

    def segment_bytes(self, track: str, msn: int) -> bytes | None:
        """A completed segment's bytes while in memory (the window plus the deletion grace)."""
        ...

    def progress(self, track: str, msn: int) -> Progress | None:
        """Segment ``msn`` so far, complete or in production; None when neither."""
        ...

    def file(self, track: str, name: str) -> Path | None:
        """Where an object of the track lies on disk, if this store mirrors to disk and the file exists."""
        ...

    async def wait(self, track: str, position: Position, timeout_s: float) -> bool:
        """Wait until ``position`` is published (a part at or after it; a segment: complete); False on timeout.

        True at once when the stream has ended."""
        ...

    def waiting_positions(self, track: str) -> int:
        """Distinct positions requests are waiting for right now."""
        ...


class StoreReader(Protocol):
    """Every stream a store serves."""

    def get(self, name: str) -> StreamReader | None: ...

    def __iter__(self) -> Iterator[StreamReader]: ...

    @property
    def available(self) -> bool:
        """False while the store cannot know the current state (its backend is unreachable)."""
        ...

    clock: Clock  # the wall time its publish dates are on
