"""Answer a GET/HEAD for bytes in memory: ETag/304, Last-Modified, Range/206/416, gzip.

One function every handler uses, so conditional requests, ranges and
compression behave the same for playlists, MPDs, init segments and media.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web

from origin.ranges import Unsatisfiable, multipart, parse_ranges


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


def send(request: web.Request, body: Body, headers: dict[str, str], *, status: int = 200) -> web.Response:
    """Build the response for ``body`` honouring HEAD, conditional GET, Range and gzip."""
    headers = dict(headers)
    headers["ETag"] = body.etag
    headers["Last-Modified"] = http_date(body.modified_s)
    if body.compressible:
        headers["Vary"] = "Accept-Encoding" if "Vary" not in headers else headers["Vary"] + ", Accept-Encoding"
    if status == 200 and _not_modified(request, body):
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
    range_header = request.headers.get("Range")
    if range_header and status == 200 and not body.compressible:
        ranged = _ranged(request, body, range_header, headers)
        if ranged is not None:
            return ranged
    data = body.data
    if body.compressible and "gzip" in request.headers.get("Accept-Encoding", "").lower() and len(data) > 256:
        data = body.gzipped()
        headers["Content-Encoding"] = "gzip"
    return _answer(request, status, data, headers)


def _ranged(request: web.Request, body: Body, range_header: str, headers: dict[str, str]) -> web.Response | None:
    """The 206 or 416 answer to ``range_header``, or None when the whole body is the answer."""
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != body.etag:
        return None
    data = body.data
    try:
        ranges = parse_ranges(range_header, len(data))
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{len(data)}"
        headers["Cache-Control"] = "no-store"
        headers.pop("Content-Type", None)
        return web.Response(status=416, headers=headers, text="416: range not satisfiable\n")
    if not ranges:
        return None
    if len(ranges) == 1:
        r = ranges[0]
        headers["Content-Range"] = f"bytes {r.first}-{r.last}/{len(data)}"
        return _answer(request, 206, data[r.first : r.last + 1], headers)
    boundary, payload = multipart(data, ranges, headers.get("Content-Type", "application/octet-stream"))
    if len(payload) > len(data):
        return None  # framing many small ranges would outgrow the body: send it whole (nginx does the same)
    headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    return _answer(request, 206, payload, headers)


def _answer(request: web.Request, status: int, data: bytes, headers: dict[str, str]) -> web.Response:
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=data, headers=headers)


def error(status: int, reason: str, headers: dict[str, str]) -> web.Response:
    """A one-line plain-text error with the policy's headers."""
    headers = dict(headers)
    headers["Content-Type"] = "text/plain; charset=utf-8"
    return web.Response(status=status, text=f"{status}: {reason}\n", headers=headers)
