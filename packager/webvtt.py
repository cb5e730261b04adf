"""WebVTT subtitle segments: cue text from subtitle decoders, cue timing, and segment files.

A subtitle rendition is a run of plain WebVTT files, one per segment number
on the media segment grid. Cue times are written directly on the media clock
(live: UTC seconds), so the ``X-TIMESTAMP-MAP`` of every file maps
``LOCAL:`` the segment start to ``MPEGTS:`` the same instant in 90 kHz ticks
(modulo 2^33, as MPEG-TS timestamps wrap), the mapping HLS clients need to
place cues against fMP4 media whose decode times are on the same clock
(RFC 8216bis 3.1.4). A cue that spans a segment boundary is repeated in each
segment it overlaps (WebVTT segmentation: clients drop duplicates).

:func:`parse_segment` reads such a file back (the origin renders the DASH
rendition of a segment from it, and a restart re-lists the files on disk).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

WEBVTT_TIMESCALE = 1000  # cue times are whole milliseconds
MPEGTS_TIMESCALE = 90_000
MPEGTS_WRAP = 1 << 33
HEADER = "WEBVTT"

_TIMESTAMP = re.compile(r"^([0-9]{2,}):([0-5][0-9]):([0-5][0-9])\.([0-9]{3})\Z")
_TIMING = " --> "
_LOCAL = ",LOCAL:"
_ASS_OVERRIDE = re.compile(r"\{[^}]*\}")
_ASS_DIALOGUE_FIELDS = 9  # ReadOrder, Layer, Style, Name, MarginL, MarginR, MarginV, Effect, Text (FFmpeg >= 5)


@dataclass(frozen=True)
class Cue:
    """One subtitle cue on the media clock, in milliseconds (``WEBVTT_TIMESCALE``)."""

    start: int
    end: int
    text: str

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and self.end > start


def timestamp(ms: int) -> str:
    """A WebVTT timestamp, ``hh:mm:ss.mmm``; hours take as many digits as they need (live: UTC)."""
    if ms < 0:
        raise ValueError(f"a WebVTT timestamp cannot be negative: {ms}")
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def parse_timestamp(text: str) -> int:
    """Milliseconds of a :func:`timestamp` (``hh:mm:ss.mmm``, two or more hour digits)."""
    m = _TIMESTAMP.match(text)
    if m is None:
        raise ValueError(f"not a WebVTT timestamp: {text!r}")
    hours, minutes, seconds, millis = (int(g) for g in m.groups())
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def ass_text(line: str) -> str:
    """The plain text of an ASS event as FFmpeg's decoders give it (``Dialogue:`` line or the bare fields):
    override tags ``{\\...}`` dropped, ``\\N`` / ``\\n`` line breaks, ``\\h`` a space."""
    body = line.split(":", 1)[1] if line.startswith("Dialogue:") else line
    fields = body.split(",", _ASS_DIALOGUE_FIELDS - 1)
    text = fields[-1] if len(fields) == _ASS_DIALOGUE_FIELDS else body
    text = _ASS_OVERRIDE.sub("", text)
    text = text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    return clean_text(text)


def clean_text(text: str) -> str:
    """Cue text safe for a WebVTT cue payload: no blank lines (they end a cue), no ``-->``, ``&`` and ``<``
    escaped (markup is not carried), trailing space trimmed."""
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    body = "\n".join(ln for ln in lines if ln)
    return body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def timestamp_map(segment_start_ms: int) -> str:
    """``X-TIMESTAMP-MAP`` pinning ``LOCAL`` (cue time) ``segment_start_ms`` to the same media instant in 90 kHz."""
    mpegts = (segment_start_ms * (MPEGTS_TIMESCALE // WEBVTT_TIMESCALE)) % MPEGTS_WRAP
    return f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:{timestamp(segment_start_ms)}"


def render_segment(cues: Iterable[Cue], start_ms: int, end_ms: int) -> bytes:
    """The WebVTT file of the segment ``[start_ms, end_ms)``: the header, its timestamp map, and every cue
    overlapping it (an empty segment is just the header: players need continuous numbering)."""
    out = [HEADER, timestamp_map(start_ms), ""]
    for cue in sorted((c for c in cues if c.overlaps(start_ms, end_ms) and c.text), key=lambda c: c.start):
        out += [f"{timestamp(cue.start)}{_TIMING}{timestamp(cue.end)}", cue.text, ""]
    return ("\n".join(out) + "\n").encode()


@dataclass(frozen=True)
class VttSegment:
    """A segment file read back: where it starts (its ``X-TIMESTAMP-MAP`` ``LOCAL``) and its cues."""

    start: int
    cues: tuple[Cue, ...]


def parse_segment(data: bytes) -> VttSegment:
    """A file :func:`render_segment` wrote; ``ValueError`` for anything else (a damaged or foreign file)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("a WebVTT segment is UTF-8") from None
    head, *blocks = text.split("\n\n")
    header = head.split("\n")
    if len(header) != 2 or header[0] != HEADER or _LOCAL not in header[1]:
        raise ValueError("not a WebVTT segment with an X-TIMESTAMP-MAP")
    start = parse_timestamp(header[1].split(_LOCAL, 1)[1])
    cues = []
    for block in blocks:
        if not block.strip("\n"):
            continue
        timing, *lines = block.strip("\n").split("\n")
        begin, sep, end = timing.partition(_TIMING)
        if not sep or not lines:
            raise ValueError(f"not a WebVTT cue: {timing!r}")
        cues.append(Cue(parse_timestamp(begin), parse_timestamp(end), "\n".join(lines)))
    return VttSegment(start, tuple(cues))
