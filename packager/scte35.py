"""SCTE-35 splice_info_sections <-> splice requests, through threefive.

:func:`build` writes the section for a splice the operator asked for (a
``splice_insert``, SCTE 35 9.7.3, with the placed instant as its
``pts_time``); :func:`read` turns a section from the input's SCTE-35 PID
into splice requests. Understood commands: ``splice_insert`` (out of
network or back) and ``time_signal`` with segmentation descriptors (10.3.3):
the start types of breaks and placement opportunities open a break, their
end types close it. ``splice_null``, bandwidth reservation, cancelled
events and other descriptors carry no splice and give nothing.

Sections are checked (table id 0xFC, length, CRC-32) before threefive
decodes them, so a damaged cue is refused with a reason, never half-read.
"""

from __future__ import annotations

from collections.abc import Callable

import threefive
from threefive.crc import crc32
from threefive.encode import mk_splice_insert

from packager.splice import SPLICE_TIMESCALE, SpliceKind, SpliceRequest

PTS_MODULO = 1 << 33  # pts_time and pts_adjustment are 33-bit 90 kHz counts
TABLE_ID = 0xFC
# segmentation_type_id values (SCTE 35 table 23) that start and end a break or an opportunity
_STARTS = frozenset({0x22, 0x30, 0x32, 0x34, 0x36, 0x38, 0x3A, 0x3C, 0x3E, 0x44, 0x46})
_ENDS = frozenset({0x23, 0x31, 0x33, 0x35, 0x37, 0x39, 0x3B, 0x3D, 0x3F, 0x45, 0x47})

# Maps a cue's 33-bit pts (90 kHz, pts_adjustment applied) to media ticks, or None when not yet known.
PtsMapper = Callable[[int], int | None]


class Scte35Error(ValueError):
    """A section that is not a valid splice_info_section."""


def build(kind: SpliceKind, event_id: int, start_ticks: int, duration_ticks: int | None) -> bytes:
    """A splice_insert section for a splice placed at ``start_ticks`` on the media clock."""
    pts_s = (start_ticks % PTS_MODULO) / SPLICE_TIMESCALE
    duration_s = None if duration_ticks is None else duration_ticks / SPLICE_TIMESCALE
    cue = mk_splice_insert(event_id, pts=pts_s, duration=duration_s, out=kind == "out")
    return bytes(cue.bites)


def check(section: bytes) -> None:
    """Raise :class:`Scte35Error` unless ``section`` is one whole, intact splice_info_section."""
    if len(section) < 15 or section[0] != TABLE_ID:
        raise Scte35Error("not a splice_info_section (table id 0xFC)")
    length = ((section[1] & 0x0F) << 8) | section[2]
    if length + 3 != len(section):
        raise Scte35Error(f"section_length {length} does not match the {len(section)} bytes received")
    if crc32(section) != 0:
        raise Scte35Error("CRC-32 mismatch")
    if section[4] & 0x80:
        raise Scte35Error("encrypted sections are not supported")


def read(section: bytes, to_media: PtsMapper) -> list[SpliceRequest]:
    """The splices ``section`` asks for (may be none), with instants mapped to media ticks by ``to_media``."""
    check(section)
    cue = threefive.Cue(section)
    try:
        decoded = cue.decode()
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
        raise Scte35Error(f"undecodable: {exc}") from None
    if decoded is False or cue.command is None:
        raise Scte35Error("undecodable splice command")
    adjustment = round(float(cue.info_section.pts_adjustment or 0) * SPLICE_TIMESCALE)
    command = cue.command

    def at(pts_time: float | None) -> int | None:
        if pts_time is None:
            return None
        return to_media((round(pts_time * SPLICE_TIMESCALE) + adjustment) % PTS_MODULO)

    if command.command_type == 5:
        return _splice_insert(command, section, at)
    if command.command_type == 6:
        return _time_signal(command, cue.descriptors, section, at)
    return []


def _splice_insert(command: object, section: bytes, at: Callable[[float | None], int | None]) -> list[SpliceRequest]:
    c = command
    if getattr(c, "splice_event_cancel_indicator", False):
        return []
    immediate = getattr(c, "splice_immediate_flag", False)
    duration_s = getattr(c, "break_duration", None) if getattr(c, "duration_flag", False) else None
    out = bool(getattr(c, "out_of_network_indicator", False))
    return [
        SpliceRequest(
            kind="out" if out else "in",
            event_id=int(getattr(c, "splice_event_id", 0) or 0),
            at_ticks=None if immediate else at(getattr(c, "pts_time", None)),
            duration_ticks=round(duration_s * SPLICE_TIMESCALE) if out and duration_s else None,
            section=section,
            origin="input",
        )
    ]


def _time_signal(
    command: object, descriptors: list, section: bytes, at: Callable[[float | None], int | None]
) -> list[SpliceRequest]:
    instant = at(getattr(command, "pts_time", None))
    out: list[SpliceRequest] = []
    for d in descriptors:
        kind_id = getattr(d, "segmentation_type_id", None)
        if (kind_id not in _STARTS and kind_id not in _ENDS) or getattr(
            d, "segmentation_event_cancel_indicator", False
        ):
            continue
        event_id = _event_id(getattr(d, "segmentation_event_id", 0))
        duration_s = getattr(d, "segmentation_duration", None)
        starts = kind_id in _STARTS
        out.append(
            SpliceRequest(
                kind="out" if starts else "in",
                event_id=event_id,
                at_ticks=instant,
                duration_ticks=round(duration_s * SPLICE_TIMESCALE) if starts and duration_s else None,
                section=section,
                origin="input",
            )
        )
    return out


def _event_id(value: object) -> int:
    if isinstance(value, str):
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    return int(value or 0)  # type: ignore[call-overload]
