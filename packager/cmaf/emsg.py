"""Event message boxes (``emsg``, ISO/IEC 23009-1 5.10.3.3): events carried in-band in a chunk.

Version 1 only: its ``presentation_time`` is absolute on the track's
timescale, so the box means the same in whichever chunk it travels (version
0's delta is relative to the segment start, which a chunk does not know).
CMAF (ISO/IEC 23000-19 7.4.5) puts ``emsg`` boxes before the chunk's ``moof``.
"""

from __future__ import annotations

from dataclasses import dataclass

from packager.cmaf.boxes import full_box, u32, u64

UNKNOWN_DURATION = 0xFFFFFFFF


@dataclass(frozen=True)
class EventMessage:
    scheme_id_uri: str
    value: str
    timescale: int
    presentation_time: int
    duration: int | None  # ticks; None: unknown
    id: int
    message_data: bytes


def emsg(event: EventMessage) -> bytes:
    duration = UNKNOWN_DURATION if event.duration is None else min(event.duration, UNKNOWN_DURATION - 1)
    return full_box(
        b"emsg",
        1,
        0,
        u32(event.timescale),
        u64(event.presentation_time),
        u32(duration),
        u32(event.id & 0xFFFFFFFF),
        event.scheme_id_uri.encode() + b"\0",
        event.value.encode() + b"\0",
        event.message_data,
    )
