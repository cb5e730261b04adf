"""Ad breaks in manifests: HLS ``EXT-X-DATERANGE`` / ``EXT-X-CUE-*`` and DASH ``EventStream`` events.

Pure functions of a view's splices (:func:`packager.splice.breaks` pairs
outs with their returns). The rules kept:

* HLS (RFC 8216bis 4.4.5.1 and its "Mapping SCTE-35 into EXT-X-DATERANGE"):
  one ID per break; the out tag carries ``START-DATE`` (the splice instant
  on the media clock, as ``EXT-X-PROGRAM-DATE-TIME`` counts it),
  ``PLANNED-DURATION`` when the cue had one and ``SCTE35-OUT`` (the section,
  hex); the return is a second tag with the same ID and ``START-DATE``, its
  ``DURATION`` and ``SCTE35-IN``. Attributes in both tags have the same
  value. Every tag is listed in every playlist (full or delta: this server
  never sets ``CAN-SKIP-DATERANGES``) while its break touches the window.
* Legacy ad servers: ``EXT-X-CUE-OUT:<duration>`` before the segment the break
  starts in, ``EXT-X-CUE-IN`` before the one it returns in (only when asked).
* DASH (SCTE 214-1, DASH-IF IOP 10): an ``EventStream`` per Period with scheme
  ``urn:scte:scte35:2014:xml+bin``, timescale 90 kHz and the Period's
  ``presentationTimeOffset``, so ``presentationTime`` is the media time; each
  splice is one ``Event`` holding ``scte35:Signal/scte35:Binary`` (base64).
  Event ids are a function of the splice instant, so every MPD update and
  every redundant packager gives the same splice the same id.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from packager.splice import SPLICE_TIMESCALE, Break, Splice, breaks
from packager.timebase import iso_from_epoch_s

SCTE35_XML_BIN_SCHEME = "urn:scte:scte35:2014:xml+bin"  # MPD EventStream (SCTE 214-1 6.7.4)
SCTE35_INBAND_SCHEME = "urn:scte:scte35:2013:bin"  # emsg in the segments (SCTE 214-3)
# emsg value and InbandEventStream@value: players match the two as one pair (scheme, value)
SCTE35_INBAND_VALUE = "1"
SCTE35_NS = "http://www.scte.org/schemas/35/2016"
_EVENT_ID_TICKS = SPLICE_TIMESCALE // 10  # splices are at least a part (>= 0.1 s) apart


def _fmt(value: Fraction) -> str:
    text = f"{float(value):.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _hex(section: bytes) -> str:
    return "0x" + section.hex().upper()


def daterange_id(b: Break) -> str:
    return f"splice-{b.event_id}-{b.start}"


def dateranges(splices: Sequence[Splice], epoch_s: Fraction) -> list[str]:
    """The ``EXT-X-DATERANGE`` tags of every break among ``splices``, by start."""
    lines = []
    for b in breaks(tuple(splices)):
        start_date = iso_from_epoch_s(epoch_s + Fraction(b.start, SPLICE_TIMESCALE))
        head = f'#EXT-X-DATERANGE:ID="{daterange_id(b)}",START-DATE="{start_date}"'
        if b.out is not None:
            planned = f",PLANNED-DURATION={_fmt(Fraction(b.out.duration, SPLICE_TIMESCALE))}" if b.out.duration else ""
            lines.append(f"{head}{planned},SCTE35-OUT={_hex(b.out.section)}")
        if b.back is not None:
            duration = f",DURATION={_fmt(Fraction(b.back.start - b.start, SPLICE_TIMESCALE))}" if b.out else ""
            lines.append(f"{head}{duration},SCTE35-IN={_hex(b.back.section)}")
    return lines


def cue_tags(splices: Sequence[Splice], start: int, end: int, timescale: int) -> list[str]:
    """Legacy ``EXT-X-CUE-OUT`` / ``EXT-X-CUE-IN`` for the segment spanning ``[start, end)`` track ticks."""
    lo, hi = start * SPLICE_TIMESCALE // timescale, end * SPLICE_TIMESCALE // timescale
    lines = []
    for b in breaks(tuple(splices)):
        if b.out is not None and lo <= b.start < hi:
            planned = None if b.end is None else Fraction(b.end - b.start, SPLICE_TIMESCALE)
            lines.append("#EXT-X-CUE-OUT" if planned is None else f"#EXT-X-CUE-OUT:{_fmt(planned)}")
        returns = b.end
        if returns is not None and lo <= returns < hi:
            lines.append("#EXT-X-CUE-IN")
    return lines


@dataclass(frozen=True)
class DashEvent:
    """One ``Event`` of the SCTE-35 ``EventStream``: times in SPLICE_TIMESCALE ticks."""

    id: int
    presentation_time: int
    duration: int | None
    section: bytes

    @property
    def binary(self) -> str:
        return base64.b64encode(self.section).decode("ascii")


def event_id(splice: Splice) -> int:
    """A 32-bit id that is a function of the splice alone (instant and kind)."""
    return ((splice.start // _EVENT_ID_TICKS) * 2 + (splice.kind == "in")) & 0xFFFFFFFF


def dash_events(splices: Sequence[Splice], start: int, end: int | None, *, first: bool) -> list[DashEvent]:
    """The events of the Period spanning ``[start, end)`` splice ticks (``end`` None: the last Period);
    the ``first`` Period also lists the splices of breaks that began before the window."""
    events = []
    for b in breaks(tuple(splices)):
        for s in (b.out, b.back):
            if s is None or (s.start < start and not first) or (end is not None and s.start >= end):
                continue
            duration = None
            if s is b.out and b.end is not None:
                duration = b.end - b.start
            events.append(DashEvent(event_id(s), s.start, duration, s.section))
    return sorted(events, key=lambda e: e.presentation_time)
