"""Answer a GET/HEAD for bytes in memory: ETag/304, Last-Modified, Range/206/416, gzip.

One function every handler uses, so conditional requests, ranges and
compression behave the same for playlists, MPDs, init segments and media.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web

_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
MAX_RANGES = 8


@dataclass(frozen=True)
class Body:
    """Bytes to send, with their validators; gzip is computed once and kept."""

    data: bytes
    etag: str
    modified_s: float
    compressible: bool = False
    _gz: list[bytes] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def of(cls, data: bytes, modified_s: float, *, compressible: bool = False, tag: str | None = None) -> Body:
        etag = '"' + (tag or hashlib.blake2b(data, digest_size=12).hexdigest()) + '"'
        return cls(data, etag, modified_s, compressible)

    def gzipped(self) -> bytes:
        if not self._gz:
            self._gz.append(gzip.compress(self.data, compresslevel=6, mtime=0))
        return self._gz[0]


@functools.lru_cache(maxsize=4096)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


def http_date(ts: float) -> str:
    return _http_date(int(ts))


def _not_modified(request: web.Request, body: Body) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or body.etag in tags or f"W/{body.etag}" in tags
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            return int(body.modified_s) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
    return False


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Byte ranges as inclusive (start, end) pairs; [] if unsatisfiable; None if malformed (ignore)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    out: list[tuple[int, int]] = []
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return None
    for item in parts:
        m = _RANGE.match(item)
        if not m or (not m.group(1) and not m.group(2)):
            return None
        first, last = m.group(1), m.group(2)
        if first:
            start = int(first)
            end = int(last) if last else size - 1
            if last and end < start:
                return None
            if start >= size:
                continue
            out.append((start, min(end, size - 1)))
        else:
            suffix = int(last)
            if suffix == 0:
                continue
            out.append((max(0, size - suffix), size - 1))
    return out


def send(request: web.Request, body: Body, headers: dict[str, str], *, status: int = 200) -> web.Response:
    """Build the response for ``body`` honouring HEAD, conditional GET, Range and gzip."""
    headers = dict(headers)
    headers["ETag"] = body.etag
    headers["Last-Modified"] = http_date(body.modified_s)
    if body.compressible:
        headers["Vary"] = "Accept-Encoding" if "Vary" not in headers else headers["Vary"] + ", Accept-Encoding"
    if status == 200 and _not_modified(request, body):
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
    data = body.data
    range_header = request.headers.get("Range")
    if range_header and status == 200 and not body.compressible:
        if_range = request.headers.get("If-Range")
        if if_range is None or if_range.strip() == body.etag:
            ranges = parse_ranges(range_header, len(data))
            if ranges == []:
                headers["Content-Range"] = f"bytes */{len(data)}"
                headers["Cache-Control"] = "no-store"
                headers.pop("Content-Type", None)
                return web.Response(status=416, headers=headers, text="416: range not satisfiable\n")
            if ranges:
                return _partial(request, data, ranges, headers)
    if body.compressible and "gzip" in request.headers.get("Accept-Encoding", "").lower() and len(data) > 256:
        data = body.gzipped()
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=data, headers=headers)


def _partial(request: web.Request, data: bytes, ranges: list[tuple[int, int]], headers: dict[str, str]) -> web.Response:
    size = len(data)
    if len(ranges) == 1:
        start, end = ranges[0]
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        chunk = data[start : end + 1]
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(chunk))
            return web.Response(status=206, headers=headers)
        return web.Response(status=206, body=chunk, headers=headers)
    boundary = hashlib.blake2b(data[:64] + str(ranges).encode(), digest_size=8).hexdigest()
    ctype = headers.pop("Content-Type", "application/octet-stream")
    pieces = []
    for start, end in ranges:
        pieces.append(
            f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\r\n".encode()
            + data[start : end + 1]
            + b"\r\n"
        )
    pieces.append(f"--{boundary}--\r\n".encode())
    payload = b"".join(pieces)
    headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(payload))
        return web.Response(status=206, headers=headers)
    return web.Response(status=206, body=payload, headers=headers)


def error(status: int, reason: str, headers: dict[str, str]) -> web.Response:
    """A one-line plain-text error with the policy's headers."""
    headers = dict(headers)
    headers["Content-Type"] = "text/plain; charset=utf-8"
    return web.Response(status=status, text=f"{status}: {reason}\n", headers=headers)
