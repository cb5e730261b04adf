"""Byte ranges (RFC 9110 14): parse a ``Range`` header against a body's size, coalesce, frame multipart.

Pure functions over ints and bytes. Hostile headers are bounded the way nginx
bounds them (``ngx_http_range_filter_module``), so no Range header can cost
more than about the body's size to answer:

* a number too large for a 64-bit offset is unsatisfiable (416), as nginx
  answers an ``off_t`` overflow; at most :data:`MAX_DIGITS` significant digits
  are ever converted, so thousands of digits cost nothing;
* more than :data:`MAX_RANGES` ranges: the header is ignored and the whole
  body is sent (200), as nginx does past ``max_ranges``;
* overlapping or adjacent ranges are coalesced (RFC 9110 14.3 allows it),
  keeping the order in which they first appear;
* when a multipart answer would be larger than the body itself, the header is
  ignored and the whole body is sent, as nginx does when the ranges add up to
  more than the content length.

A syntactically invalid header is ignored (200): RFC 9110 14.2 lets a server
ignore or reject it, and the whole body is always a correct answer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_RANGES = 16
MAX_DIGITS = 18  # 10**18 - 1 < 2**63 - 1: every accepted number fits a signed 64-bit offset

_SPEC = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*\Z")  # ASCII digits only (\d takes any script's)


class Unsatisfiable(Exception):
    """The header is well formed but selects nothing this body can give (416)."""


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte positions ``first``..``last`` of a body."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def touches(self, other: ByteRange) -> bool:
        """Overlapping or adjacent: the two can be sent as one range."""
        return self.first <= other.last + 1 and other.first <= self.last + 1

    def union(self, other: ByteRange) -> ByteRange:
        return ByteRange(min(self.first, other.first), max(self.last, other.last))


def _number(digits: str) -> int | None:
    if not digits:
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > MAX_DIGITS:
        raise Unsatisfiable("range offset too large")
    return int(significant)


def _one(item: str, size: int) -> ByteRange | None:
    """One range-spec against ``size``; None when it selects nothing; ValueError when malformed."""
    m = _SPEC.match(item)
    if m is None or not (m.group(1) or m.group(2)):
        raise ValueError(item)
    first, last = _number(m.group(1)), _number(m.group(2))
    if first is None:  # suffix range: the last ``last`` bytes
        assert last is not None
        return ByteRange(max(0, size - last), size - 1) if last > 0 else None
    if last is not None and last < first:
        raise ValueError(item)
    if first >= size:
        return None
    return ByteRange(first, size - 1 if last is None else min(last, size - 1))


def parse_ranges(header: str, size: int) -> list[ByteRange] | None:
    """The coalesced ranges ``header`` asks of a ``size``-byte body; None: ignore the header (send 200).

    Raises :class:`Unsatisfiable` when the answer is 416."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip() or size <= 0:
        return None  # an empty body has no byte to select: nginx sends it whole
    items = spec.split(",", MAX_RANGES)
    if len(items) > MAX_RANGES:
        return None
    try:
        ranges = [r for r in (_one(item, size) for item in items) if r is not None]
    except ValueError:
        return None
    if not ranges:
        raise Unsatisfiable("no range overlaps the body")
    return coalesce(ranges)


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge overlapping and adjacent ranges; each result sits where its first piece appeared."""
    out: list[ByteRange] = []
    for current in ranges:
        kept: list[ByteRange] = []
        at: int | None = None
        for r in out:
            if r.touches(current):
                current = current.union(r)
                at = len(kept) if at is None else at
            else:
                kept.append(r)
        kept.insert(len(kept) if at is None else at, current)
        out = kept
    return out


def multipart(data: bytes, ranges: list[ByteRange], content_type: str) -> tuple[str, bytes]:
    """``(boundary, body)`` of a ``multipart/byteranges`` answer (RFC 9110 14.6)."""
    size = len(data)
    seed = data[:64] + ",".join(f"{r.first}-{r.last}" for r in ranges).encode()
    boundary = hashlib.blake2b(seed, digest_size=8).hexdigest()
    pieces = []
    for r in ranges:
        head = f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {r.first}-{r.last}/{size}\r\n\r\n"
        pieces.append(head.encode() + data[r.first : r.last + 1] + b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode())
    return boundary, b"".join(pieces)
