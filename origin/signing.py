"""Carry a playback token on every URI a manifest names, so players need only the page URL.

hls.js and dash.js resolve a manifest's relative URIs against the manifest
URL *without* its query, so a token given as ``?token=`` on the multivariant
playlist or MPD would not reach the media playlists, init segments, parts or
segments. The origin therefore appends it to each URI in the manifest it
answers: HLS URI lines and every ``URI="..."`` attribute (maps, parts,
preload hints, rendition reports, renditions); DASH ``SegmentTemplate``
``media``/``initialization`` and any ``BaseURL``. Pure text rewriting over the
cached rendering; the rendering itself stays shared by every viewer.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from origin.policy import Kind
from origin.responses import Body

HLS_ATTRIBUTE = re.compile(rb'URI="([^"]*)"')
MPD_ATTRIBUTE = re.compile(rb'\b(media|initialization)="([^"]*)"')
MPD_BASE_URL = re.compile(rb"<BaseURL>([^<]*)</BaseURL>")
HLS_KINDS = (Kind.MASTER, Kind.PLAYLIST, Kind.PLAYLIST_BLOCKING)


def _with(uri: bytes, query: bytes, joiner: bytes) -> bytes:
    return uri + (joiner if b"?" in uri else b"?") + query


def sign_hls(text: bytes, token: str) -> bytes:
    query = b"token=" + quote(token, safe="").encode()
    lines = []
    for line in text.split(b"\n"):
        if line and not line.startswith(b"#"):
            line = _with(line, query, b"&")
        elif line.startswith(b"#EXT") and b'URI="' in line:
            line = HLS_ATTRIBUTE.sub(lambda m: b'URI="' + _with(m.group(1), query, b"&") + b'"', line)
        lines.append(line)
    return b"\n".join(lines)


def sign_mpd(text: bytes, token: str) -> bytes:
    query = b"token=" + quote(token, safe="").encode()
    text = MPD_ATTRIBUTE.sub(lambda m: m.group(1) + b'="' + _with(m.group(2), query, b"&amp;") + b'"', text)
    return MPD_BASE_URL.sub(lambda m: b"<BaseURL>" + _with(m.group(1), query, b"&amp;") + b"</BaseURL>", text)


def signed(body: Body, kind: Kind, token: str | None) -> Body:
    """``body`` with ``token`` on every URI it names (unchanged without a token or for other kinds)."""
    if token is None:
        return body
    if kind in HLS_KINDS:
        data = sign_hls(body.data, token)
    elif kind is Kind.MPD:
        data = sign_mpd(body.data, token)
    else:
        return body
    return Body.of(data, body.modified_s, compressible=body.compressible)
