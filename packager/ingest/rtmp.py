"""An asyncio RTMP server: many publishers (OBS, ffmpeg) on one port, each handed out as an FLV byte stream.

The server speaks just enough RTMP for publishing: the plain handshake (a
"complex" C1 is echoed, which ffmpeg and OBS accept), chunk streams (fmt 0-3,
1/2/3-byte chunk stream ids, extended timestamps, Set Chunk Size both ways,
Abort, Acknowledgement / Window Acknowledgement Size, Set Peer Bandwidth,
User Control ping) and the commands connect, releaseStream, FCPublish,
createStream, publish, FCUnpublish, deleteStream and ``@setDataFrame``
``onMetaData``. It parses; the caller decides: an ``Authorizer`` accepts or
refuses each publish, and a ``PublishHandler`` receives every accepted
``PublishSession``, whose ``read(n)`` yields a continuous FLV file (header,
script/audio/video tags with RTMP timestamps, PreviousTagSize fields) that
PyAV opens as ``format="flv"``.

Accepted publish URL forms (the stream key is never logged; it shows as ``***``):

| client setting | RTMP app | publish name | stream, key |
|---|---|---|---|
| ffmpeg ``rtmp://HOST:PORT/live/{stream}?key=KEY`` | ``live`` | ``{stream}?key=KEY`` | ``{stream}``, ``KEY`` |
| OBS Server ``rtmp://HOST:PORT/live``, Stream Key ``{stream}?key=KEY`` | ``live`` | ``{stream}?key=KEY`` | same |
| ffmpeg ``rtmp://HOST:PORT/live/{stream}/{KEY}`` | ``live/{stream}`` | ``{KEY}`` | ``{stream}``, ``KEY`` |
| OBS Server ``rtmp://HOST:PORT/live/{stream}``, Stream Key ``KEY`` | ``live/{stream}`` | ``KEY`` | same |
| OBS Server ``rtmp://HOST:PORT/live``, Stream Key ``{stream}/{KEY}`` | ``live`` | ``{stream}/{KEY}`` | same |
| OBS Server ``rtmp://HOST:PORT/live?key=KEY``, Stream Key ``{stream}`` | ``live?key=KEY`` | ``{stream}`` | same |
| no key: ``rtmp://HOST:PORT/live/{stream}`` | ``live`` | ``{stream}`` | ``{stream}``, ``None`` |

The Authorizer gets the first app segment (``live``), the stream name, the key
(``None`` if absent or empty) and the peer address. A stream name is one path
segment; a key must not contain ``/``, ``?`` or ``&`` (``%XX`` escapes in a
``?key=`` value are decoded). A refused publish that gave no separate key logs
its stream name as ``***`` too: a broadcaster who typed only the key in OBS's
"Stream Key" field sends the key as the stream name.

Hostile input never raises out of the server, and nobody without a key can
make it hold much for long:

- the handshake and the publish together must complete within
  ``handshake_timeout_s`` of the accept (the key is checked at publish);
- until then messages are at most 64 KiB (commands only), and all such
  connections together buffer at most ``unauthenticated_memory_bytes``
  (:class:`~packager.ingest.slots.MemoryBudget`: the biggest holder goes first);
- connections are capped overall (``max_sessions``), per peer address
  (``max_connections_per_peer``, default 16) and while unauthorised
  (``max_unauthenticated``, default half of ``max_sessions``, so publishers
  whose key was accepted always find a slot); a newcomer over a cap pushes
  out the oldest waiting connection of its own (or the most crowded) address,
  so an idle flood replaces only itself (:class:`~packager.ingest.slots.ConnectionSlots`);
- after authorisation chunk sizes are 1..65536 and messages at most
  ``max_message_size``; a connection silent for ``idle_timeout_s`` is dropped;
  a consumer that falls more than ``max_buffer_bytes`` behind loses its session.

With ``ssl`` the server speaks RTMPS (RTMP over TLS): the TLS handshake is the
first part of the handshake above, so it holds an unauthorised slot, counts
against every cap and must finish within the same ``handshake_timeout_s``; a
handshake that fails frees its slot at once. The context is used live, so a
certificate reloaded into it (:class:`~packager.tls.ServerTls`) serves the next
handshake while open sessions keep theirs.

Every refused or broken connection is closed with a logged line saying why;
lines a peer can repeat at will are rate-limited per peer address
(:class:`~packager.ratelog.RateLimitedLog`, one line with a count per
``log_interval_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ssl import SSLContext, SSLError
from typing import Protocol
from urllib.parse import unquote

from packager.ingest import amf
from packager.ingest.pipe import take
from packager.ingest.slots import ConnectionSlots, MemoryBudget, SlotLimits
from packager.peer import format_peer
from packager.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

MiB = 1024 * 1024

# RTMP message types
MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_ACK = 3
MSG_USER_CONTROL = 4
MSG_WINDOW_ACK_SIZE = 5
MSG_SET_PEER_BANDWIDTH = 6
MSG_AUDIO = 8
MSG_VIDEO = 9
MSG_DATA_AMF3 = 15
MSG_COMMAND_AMF3 = 17
MSG_DATA_AMF0 = 18
MSG_COMMAND_AMF0 = 20

# FLV tag types
FLV_AUDIO = 8
FLV_VIDEO = 9
FLV_SCRIPT = 18

# onStatus codes
PUBLISH_START = "NetStream.Publish.Start"
PUBLISH_BADNAME = "NetStream.Publish.BadName"
PUBLISH_UNAUTHORIZED = "NetStream.Publish.Unauthorized"

MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 65536
DEFAULT_CHUNK_SIZE = 128
SERVER_CHUNK_SIZE = 4096
WINDOW_ACK_SIZE = 5_000_000
MAX_CHUNK_STREAMS = 64
MAX_AMF_MESSAGE = 1 * MiB
# Until a publish is authorised only commands flow (connect/createStream/publish: a few KiB each), so
# anything larger is refused before a key was checked; media sizes are allowed afterwards.
PRE_AUTH_MESSAGE_SIZE = 64 * 1024
PRE_AUTH_CHUNK_SIZE = 64 * 1024
UNAUTHENTICATED_MEMORY = 4 * MiB
READ_SIZE = 64 * 1024
MAX_NAME_LENGTH = 1024
HANDSHAKE_SIZE = 1536
_TS_MASK = 0xFFFFFFFF
_EXTENDED = 0xFFFFFF


class ChunkError(ValueError):
    """The peer broke the RTMP chunk protocol or a limit; the message says how."""


class RtmpProtocolError(ValueError):
    """The peer sent a command or message the server cannot accept."""


# ---------------------------------------------------------------- values and seams


@dataclass(frozen=True)
class RtmpMessage:
    """One reassembled RTMP message."""

    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True)
class PublishTarget:
    """What a publish request names: the app's first segment, the stream and the key (if any)."""

    app: str
    stream: str
    key: str | None


@dataclass(frozen=True)
class Decision:
    """The Authorizer's answer. ``stream`` is the canonical stream name to publish as.

    ``status`` is the onStatus code sent on refusal: ``PUBLISH_UNAUTHORIZED`` when
    empty; use ``PUBLISH_BADNAME`` for unknown or already-live streams."""

    ok: bool
    stream: str
    reason: str = ""
    status: str = ""


class Authorizer(Protocol):
    """Decides whether a publish may start. Must not block; never sees a reason to log the key."""

    def __call__(self, app: str, stream_name: str, key: str | None, peer: str) -> Decision: ...


class PublishHandler(Protocol):
    """Receives each accepted publish session once (run as its own task)."""

    def __call__(self, session: PublishSession) -> Awaitable[None]: ...


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params[unquote(name)] = unquote(value)
    return params


def parse_publish_target(app: str, name: str) -> PublishTarget:
    """Split the connect ``app`` and the publish ``name`` into app, stream and key (see the module docstring).

    Raises ``ValueError`` when no single stream name can be found."""
    if len(app) > MAX_NAME_LENGTH or len(name) > MAX_NAME_LENGTH:
        raise ValueError("app or stream name too long")
    app_path, _, app_query = app.partition("?")
    name_path, _, name_query = name.partition("?")
    app_parts = [p for p in app_path.split("/") if p]
    if not app_parts:
        raise ValueError("empty app")
    query = {**_parse_query(app_query), **_parse_query(name_query)}
    segments = app_parts[1:] + [p for p in name_path.split("/") if p]
    key = query.get("key")
    if key is not None:
        if len(segments) != 1:
            raise ValueError(f"expected one stream name with ?key=, got {len(segments)} path segments")
        stream = segments[0]
    elif len(segments) == 2:
        stream, key = segments
    elif len(segments) == 1:
        stream = segments[0]
    else:
        raise ValueError(f"expected {{stream}} or {{stream}}/{{key}}, got {len(segments)} path segments")
    return PublishTarget(app_parts[0], stream, key or None)


# ---------------------------------------------------------------- chunk streams


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 2 or csid > 65599:
        raise ValueError(f"chunk stream id {csid} out of range 2..65599")
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    rest = csid - 64
    return bytes((fmt << 6 | 1, rest & 0xFF, rest >> 8))


def encode_message(
    csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> bytes:
    """One message as chunks: a fmt 0 chunk, then fmt 3 continuations (extended timestamp repeated)."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    if len(payload) > 0xFFFFFF:
        raise ValueError(f"message of {len(payload)} bytes exceeds the 24-bit length field")
    timestamp &= _TS_MASK
    extended = timestamp >= _EXTENDED
    ext = timestamp.to_bytes(4, "big") if extended else b""
    out = bytearray(_basic_header(0, csid))
    out += (_EXTENDED if extended else timestamp).to_bytes(3, "big")
    out += len(payload).to_bytes(3, "big") + bytes((type_id,)) + stream_id.to_bytes(4, "little") + ext
    continuation = _basic_header(3, csid) + ext
    for i, start in enumerate(range(0, len(payload), chunk_size)):
        if i:
            out += continuation
        out += payload[start : start + chunk_size]
    return bytes(out)


class _ChunkStream:
    """Per chunk stream id: the last header's fields and the message being assembled."""

    __slots__ = (
        "delta",
        "ext_value",
        "extended",
        "length",
        "msg_timestamp",
        "partial",
        "stream_id",
        "timestamp",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.ext_value = 0
        self.msg_timestamp = 0
        self.partial: bytearray | None = None


class ChunkParser:
    """Sans-IO RTMP chunk stream decoder: ``feed(bytes) -> [RtmpMessage]``.

    Set Chunk Size and Abort are applied here (they change how the following
    bytes parse) and are not returned; every other complete message is."""

    def __init__(
        self,
        *,
        max_message_size: int = 8 * MiB,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.max_chunk_streams = max_chunk_streams
        self._chunk_size = chunk_size
        self._streams: dict[int, _ChunkStream] = {}
        self._buf = bytearray()
        self._partial_bytes = 0
        self.limit(max_message_size=max_message_size, max_chunk_size=max_chunk_size)

    def limit(self, *, max_message_size: int, max_chunk_size: int) -> None:
        """Set the bounds for what follows (a server raises them once the publish is authorised)."""
        if not 1 <= max_message_size <= 0xFFFFFF or not MIN_CHUNK_SIZE <= max_chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"bad parser limits: message {max_message_size}, chunk {max_chunk_size}")
        self.max_message_size = max_message_size
        self.max_chunk_size = max_chunk_size
        self.max_partial_bytes = 2 * max_message_size

    def discard(self) -> None:
        """Drop every buffered byte (the connection is going away)."""
        self._buf.clear()
        for st in self._streams.values():
            st.partial = None
        self._partial_bytes = 0

    @property
    def chunk_size(self) -> int:
        """The peer's current chunk size."""
        return self._chunk_size

    @property
    def buffered(self) -> int:
        """Bytes held: unparsed input plus partially assembled messages."""
        return len(self._buf) + self._partial_bytes

    def feed(self, data: bytes) -> list[RtmpMessage]:
        """Parse ``data`` (any split); return the messages completed by it. Raises ``ChunkError``."""
        self._buf += data
        out: list[RtmpMessage] = []
        pos = 0
        try:
            while True:
                nxt = self._chunk(pos, out)
                if nxt is None:
                    break
                pos = nxt
        finally:
            del self._buf[:pos]
        return out

    def _chunk(self, pos: int, out: list[RtmpMessage]) -> int | None:
        buf = self._buf
        n = len(buf)
        if pos >= n:
            return None
        b0 = buf[pos]
        fmt, csid, p = b0 >> 6, b0 & 0x3F, pos + 1
        if csid == 0:
            if p + 1 > n:
                return None
            csid, p = 64 + buf[p], p + 1
        elif csid == 1:
            if p + 2 > n:
                return None
            csid, p = 64 + buf[p] + (buf[p + 1] << 8), p + 2
        st = self._streams.get(csid)
        if st is None:
            if fmt != 0:
                raise ChunkError(f"chunk stream {csid} starts with a fmt {fmt} header (needs fmt 0)")
            if len(self._streams) >= self.max_chunk_streams:
                raise ChunkError(f"more than {self.max_chunk_streams} chunk streams")
        starting = st is None or st.partial is None
        if fmt < 3 and not starting:
            raise ChunkError(f"chunk stream {csid}: fmt {fmt} header before the previous message completed")
        hlen = (11, 7, 3, 0)[fmt]
        if p + hlen > n:
            return None
        ts_field = length = type_id = stream_id = -1
        if fmt <= 2:
            ts_field = int.from_bytes(buf[p : p + 3], "big")
        if fmt <= 1:
            length = int.from_bytes(buf[p + 3 : p + 6], "big")
            type_id = buf[p + 6]
        if fmt == 0:
            stream_id = int.from_bytes(buf[p + 7 : p + 11], "little")
        p += hlen
        ext = -1
        if fmt <= 2:
            if ts_field == _EXTENDED:
                if p + 4 > n:
                    return None
                ext, p = int.from_bytes(buf[p : p + 4], "big"), p + 4
        elif st is not None and st.extended:
            # Extended timestamps repeat in fmt 3 chunks; some encoders omit them on
            # continuations, so a continuation only consumes them when they match.
            if p + 4 > n:
                return None
            value = int.from_bytes(buf[p : p + 4], "big")
            if starting or value == st.ext_value:
                ext, p = value, p + 4
        if starting:
            if fmt <= 1:
                remaining = length
            else:
                assert st is not None
                remaining = st.length
            if remaining > self.max_message_size:
                raise ChunkError(f"message length {remaining} exceeds the limit of {self.max_message_size} bytes")
        else:
            assert st is not None and st.partial is not None
            remaining = st.length - len(st.partial)
        take = min(self._chunk_size, remaining)
        if p + take > n:
            return None
        if self._partial_bytes + take > self.max_partial_bytes:
            raise ChunkError(f"more than {self.max_partial_bytes} bytes in unfinished messages")

        # The chunk is complete: commit its header.
        if st is None:
            st = self._streams[csid] = _ChunkStream()
        if fmt <= 2:
            st.extended = ts_field == _EXTENDED
            st.ext_value = ext if st.extended else 0
            field = ext if st.extended else ts_field
            if fmt == 0:
                st.timestamp = st.delta = field
                st.stream_id = stream_id
            else:
                st.delta = field
                st.timestamp = (st.timestamp + field) & _TS_MASK
            if fmt <= 1:
                st.length, st.type_id = length, type_id
        elif starting:
            if ext >= 0:
                st.delta = st.ext_value = ext
            st.timestamp = (st.timestamp + st.delta) & _TS_MASK
        if starting:
            st.partial = bytearray()
            st.msg_timestamp = st.timestamp
        partial = st.partial
        assert partial is not None
        partial += buf[p : p + take]
        self._partial_bytes += take
        p += take
        if len(partial) == st.length:
            self._partial_bytes -= st.length
            st.partial = None
            self._deliver(RtmpMessage(csid, st.type_id, st.stream_id, st.msg_timestamp, bytes(partial)), out)
        return p

    def _deliver(self, msg: RtmpMessage, out: list[RtmpMessage]) -> None:
        if msg.type_id == MSG_SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise ChunkError("short Set Chunk Size message")
            size = int.from_bytes(msg.payload[:4], "big")
            if not MIN_CHUNK_SIZE <= size <= self.max_chunk_size:
                raise ChunkError(f"chunk size {size} out of range {MIN_CHUNK_SIZE}..{self.max_chunk_size}")
            self._chunk_size = size
        elif msg.type_id == MSG_ABORT:
            if len(msg.payload) < 4:
                raise ChunkError("short Abort message")
            st = self._streams.get(int.from_bytes(msg.payload[:4], "big"))
            if st is not None and st.partial is not None:
                self._partial_bytes -= len(st.partial)
                st.partial = None
        else:
            out.append(msg)


# ---------------------------------------------------------------- FLV


def flv_header(*, audio: bool, video: bool) -> bytes:
    """The 9-byte FLV header plus PreviousTagSize0."""
    flags = (0x04 if audio else 0) | (0x01 if video else 0)
    return b"FLV\x01" + bytes((flags,)) + (9).to_bytes(4, "big") + b"\x00\x00\x00\x00"


def flv_tag(tag_type: int, timestamp: int, payload: bytes) -> bytes:
    """One FLV tag and the PreviousTagSize that follows it."""
    size = len(payload)
    if size > 0xFFFFFF:
        raise ValueError(f"FLV tag of {size} bytes exceeds the 24-bit size field")
    ts = timestamp & _TS_MASK
    head = bytes((tag_type,)) + size.to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") + bytes((ts >> 24,))
    return head + b"\x00\x00\x00" + payload + (11 + size).to_bytes(4, "big")


def metadata_flags(script: bytes) -> tuple[bool | None, bool | None]:
    """(has_audio, has_video) announced by an ``onMetaData`` script body; ``None`` where it says nothing."""
    try:
        values = amf.decode(script)
    except amf.AmfError:
        return None, None
    props = values[1] if len(values) > 1 else None
    if not isinstance(props, dict):
        return None, None
    audio: bool | None = None
    video: bool | None = None
    if isinstance(props.get("hasAudio"), bool):
        audio = bool(props["hasAudio"])
    elif "audiocodecid" in props:
        audio = True
    if isinstance(props.get("hasVideo"), bool):
        video = bool(props["hasVideo"])
    elif "videocodecid" in props:
        video = True
    return audio, video


class FlvWriter:
    """Sans-IO FLV muxer for one session: tags in, file bytes out.

    The header's audio/video flags come from ``onMetaData`` when it announces
    them, else from what is seen: tags are held until both kinds appeared, one
    second of media passed, or the hold grows past its bound."""

    HOLD_MS = 1000
    HOLD_TAGS = 200
    HOLD_BYTES = 2 * MiB

    def __init__(self) -> None:
        self.started = False
        self.has_audio = False
        self.has_video = False
        self._announced = False
        self._held: list[tuple[int, int, bytes]] = []
        self._held_bytes = 0

    def metadata(self, timestamp: int, script: bytes) -> bytes:
        """An ``onMetaData`` script body (``"onMetaData"`` + properties)."""
        if not self.started:
            audio, video = metadata_flags(script)
            if audio or video:
                self._announced = True
                self.has_audio = self.has_audio or bool(audio)
                self.has_video = self.has_video or bool(video)
        return self._add(FLV_SCRIPT, timestamp, script)

    def media(self, tag_type: int, timestamp: int, payload: bytes) -> bytes:
        """An audio (8) or video (9) message body."""
        if not self.started:
            if tag_type == FLV_AUDIO:
                self.has_audio = True
            elif tag_type == FLV_VIDEO:
                self.has_video = True
        return self._add(tag_type, timestamp, payload)

    def finish(self) -> bytes:
        """Whatever is still held (with the header) at the end of the session."""
        return self._start() if self._held else b""

    def _add(self, tag_type: int, timestamp: int, payload: bytes) -> bytes:
        if self.started:
            return flv_tag(tag_type, timestamp, payload)
        self._held.append((tag_type, timestamp, payload))
        self._held_bytes += len(payload)
        media_ts = [ts for kind, ts, _ in self._held if kind != FLV_SCRIPT]
        if (
            self._announced
            or (self.has_audio and self.has_video)
            or (media_ts and (max(media_ts) - min(media_ts)) & _TS_MASK >= self.HOLD_MS)
            or len(self._held) >= self.HOLD_TAGS
            or self._held_bytes >= self.HOLD_BYTES
        ):
            return self._start()
        return b""

    def _start(self) -> bytes:
        self.started = True
        parts = [flv_header(audio=self.has_audio, video=self.has_video)]
        parts.extend(flv_tag(kind, ts, payload) for kind, ts, payload in self._held)
        self._held.clear()
        self._held_bytes = 0
        return b"".join(parts)


# ---------------------------------------------------------------- sessions


class PublishSession:
    """One accepted publish: its media as an FLV byte stream for a single consumer (on the loop).

    ``read(n)`` returns FLV bytes, ``b""`` once the publish ended and the buffer
    is drained. ``closed`` resolves to the reason the session ended: "publisher
    disconnected", "unpublished (FCUnpublish)", "idle timeout ...", "protocol
    error: ...", "consumer too slow: ...", "server shutting down", or the reason
    given to ``close``."""

    def __init__(
        self,
        *,
        stream: str,
        app: str,
        peer: str,
        max_buffer_bytes: int = 16 * MiB,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        self.stream = stream
        self.app = app
        self.peer = peer
        self.max_buffer_bytes = max_buffer_bytes
        self.started_at = time.time()
        self.bytes_out = 0
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._on_close = on_close
        self._flv = FlvWriter()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._wake = asyncio.Event()

    @property
    def close_reason(self) -> str | None:
        """Why the session ended, or ``None`` while it is live."""
        return self.closed.result() if self.closed.done() else None

    @property
    def buffered(self) -> int:
        """FLV bytes produced but not yet read."""
        return self._size

    @property
    def has_audio(self) -> bool:
        return self._flv.has_audio

    @property
    def has_video(self) -> bool:
        return self._flv.has_video

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of FLV (everything buffered if ``n < 0``); waits for data; ``b""`` at the end."""
        if n == 0:
            return b""
        while not self._chunks:
            if self.closed.done():
                return b""
            self._wake.clear()
            await self._wake.wait()
        out = take(self._chunks, n, self._size)
        self._size -= len(out)
        return out

    def close(self, reason: str = "closed by consumer") -> None:
        """Kick the publisher: end the session, drop what is buffered, close its connection."""
        if self._end(reason, drop=True) and self._on_close is not None:
            self._on_close(reason)

    # -- fed by the connection (on the loop)

    def _push(self, data: bytes) -> None:
        if not data or self.closed.done():
            return
        self._chunks.append(data)
        self._size += len(data)
        self.bytes_out += len(data)
        self._wake.set()
        if self._size > self.max_buffer_bytes:
            limit = self.max_buffer_bytes / MiB
            self.close(f"consumer too slow: more than {limit:g} MiB of FLV buffered")

    def _media(self, tag_type: int, timestamp: int, payload: bytes) -> None:
        if not self.closed.done():
            self._push(self._flv.media(tag_type, timestamp, payload))

    def _metadata(self, timestamp: int, script: bytes) -> None:
        if not self.closed.done():
            self._push(self._flv.metadata(timestamp, script))

    def _finish(self, reason: str) -> None:
        """The publish ended on the connection's side; buffered data stays readable."""
        if not self.closed.done():
            self._push(self._flv.finish())
        self._end(reason, drop=False)

    def _end(self, reason: str, *, drop: bool) -> bool:
        if drop:
            self._chunks.clear()
            self._size = 0
        if self.closed.done():
            return False
        self.closed.set_result(reason)
        self._wake.set()
        return True


# ---------------------------------------------------------------- connections


class _Close(Exception):
    """Ends a connection with a reason; ``warn`` marks refusals and bad input."""

    def __init__(self, reason: str, *, warn: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.warn = warn


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Connection:
    """One TCP connection: handshake, chunk stream, commands, at most one live publish at a time."""

    def __init__(
        self, server: RtmpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, host: str
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.host = host
        self.label = f"{server.scheme} {peer}"  # how log lines name it: "rtmps 203.0.113.7:50123"
        self.parser = ChunkParser(max_message_size=PRE_AUTH_MESSAGE_SIZE, max_chunk_size=PRE_AUTH_CHUNK_SIZE)
        self.out_chunk_size = DEFAULT_CHUNK_SIZE
        self.app: str | None = None
        self.session: PublishSession | None = None
        self.handshaken = False
        self.published = False
        self.stop_reason: str | None = None
        self.stop_warn = False
        self.peer_window = 0
        self.received = 0
        self.acked = 0
        self.tls_ready = False  # RTMPS: the TLS handshake finished
        self._deadline: asyncio.TimerHandle | None = None
        self._tls_pending: asyncio.Timeout | None = None  # RTMPS: set while the TLS handshake runs

    # -- lifecycle

    def stop(self, reason: str, *, warn: bool = False) -> None:
        """End the connection from outside (kick, shutdown): the read loop sees EOF and exits."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_warn = reason, warn
        if self.session is not None:
            self.session._end(reason, drop=True)
        if self._tls_pending is not None:  # closing the socket under start_tls would break the writer: cut it short
            if not self._tls_pending.expired():
                self._tls_pending.reschedule(asyncio.get_running_loop().time())
            return
        self.writer.close()

    def evict(self, reason: str) -> None:
        """Go now (deadline passed, slots or memory budget): drop buffers, abort the socket unflushed."""
        self.parser.discard()
        self.server.budget.release(self)
        self.stop(reason, warn=True)
        # close() would wait for a peer that never reads to take our replies; abort does not.
        if self._tls_pending is None:  # (a TLS handshake being cut short aborts its socket itself)
            self.writer.transport.abort()

    def _expire(self) -> None:
        if not self.published:
            limit = self.server.handshake_timeout_s
            if self.handshaken:
                self.evict(f"no publish within {limit:g} s")
            else:
                tls = "TLS " if self.server.ssl is not None and not self.tls_ready else ""
                self.evict(f"{tls}handshake timeout after {limit:g} s")

    def _authorised(self) -> None:
        """The publish was accepted: lift the pre-authorisation limits and free the pending slot."""
        self.published = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.server._authorised(self)
        self.parser.limit(max_message_size=self.server.max_message_size, max_chunk_size=MAX_CHUNK_SIZE)

    async def run(self) -> None:
        limit = self.server.handshake_timeout_s
        self._deadline = asyncio.get_running_loop().call_later(limit, self._expire)
        reason, warn = "publisher disconnected", False
        try:
            if self.server.ssl is not None:
                await self._start_tls(self.server.ssl)
            await self._handshake()
            await self._serve()
        except _Close as exc:
            reason, warn = exc.reason, exc.warn
        except (ChunkError, RtmpProtocolError, amf.AmfError) as exc:
            when = "" if self.published else " (before the publish was authorised)"
            reason, warn = f"protocol error: {exc}{when}", True
        except (ConnectionError, asyncio.IncompleteReadError):
            reason, warn = "publisher disconnected", False
        except Exception as exc:  # a bug must not take the server down
            log.exception("%s: internal error", self.label)
            reason, warn = f"internal error: {type(exc).__name__}", True
        finally:
            self._deadline.cancel()
            if self.stop_reason is not None:
                reason, warn = self.stop_reason, self.stop_warn
            self._log_end(reason, warn)
            await self._close_socket()

    def _log_end(self, reason: str, warn: bool) -> None:
        session = self.session
        self.session = None
        if session is not None:
            session._finish(reason)
            log.info("%s stream=%s: publish ended: %s", self.label, session.stream, session.close_reason)
        elif warn:  # anyone can cause these, as often as they like: one line per flood
            self.server.rate_log.warning((self.host, "closed"), "%s: connection closed: %s", self.label, reason)
        else:
            log.debug("%s: connection closed: %s", self.label, reason)

    async def _close_socket(self) -> None:
        if self.server.ssl is not None and not self.tls_ready:
            return  # the TLS handshake never finished: _start_tls aborted the socket
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except Exception:  # a peer that never reads keeps the socket flushing: drop it
            self.writer.transport.abort()

    async def _start_tls(self, context: SSLContext) -> None:
        """RTMPS: the TLS handshake, within the connection's deadline (``stop`` cuts it short)."""
        # No await comes before start_tls pauses reading: the ClientHello must reach TLS, not the stream buffer.
        raw = self.writer.transport
        try:
            async with asyncio.timeout(None) as self._tls_pending:
                await self.writer.start_tls(context, ssl_handshake_timeout=self.server.handshake_timeout_s)
        except TimeoutError:
            raise _Close(self.stop_reason or "TLS handshake cut short") from None
        except ConnectionError:
            raise _Close("disconnected during TLS handshake", warn=False) from None
        except (SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            raise _Close(f"TLS handshake failed: {reason}") from None
        finally:
            self._tls_pending = None
            if self.writer.transport is raw:
                raw.abort()
        self.tls_ready = True

    async def _handshake(self) -> None:
        # The connection's deadline (see ``run``) bounds the handshake; no timeout of its own.
        try:
            c0 = await self.reader.readexactly(1)
            if c0[0] != 3:
                raise _Close(f"bad handshake: version byte 0x{c0[0]:02x}, not RTMP 3")
            c1 = await self.reader.readexactly(HANDSHAKE_SIZE)
            uptime = int(time.monotonic() * 1000) & _TS_MASK
            s1 = uptime.to_bytes(4, "big") + bytes(4) + os.urandom(HANDSHAKE_SIZE - 8)
            self.writer.write(b"\x03" + s1 + c1)
            await self.writer.drain()
            await self.reader.readexactly(HANDSHAKE_SIZE)
        except asyncio.IncompleteReadError:
            raise _Close("disconnected during handshake") from None
        self.handshaken = True
        self.received = 1 + 2 * HANDSHAKE_SIZE

    async def _serve(self) -> None:
        while self.stop_reason is None:
            # No local keeps the bytes read: while waiting for more, the parser's buffer is all we hold.
            await self._take_in(await self._read())
            if self.stop_reason is None and self.peer_window and self.received - self.acked >= self.peer_window:
                self.acked = self.received
                await self._send(2, MSG_ACK, (self.received & _TS_MASK).to_bytes(4, "big"))

    async def _read(self) -> bytes:
        idle = self.server.idle_timeout_s
        try:
            async with asyncio.timeout(idle):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            raise _Close(f"idle timeout: no data for {idle:g} s", warn=self.session is None) from None
        if not data:
            raise _Close(self.stop_reason or "publisher disconnected", warn=False)
        self.received += len(data)
        return data

    async def _take_in(self, data: bytes) -> None:
        """Parse ``data`` and act on its messages; before authorisation, within the shared memory budget."""
        if self.stop_reason is not None:  # stopped while the read was pending: what it returned is moot
            return
        budget = self.server.budget
        if not self.published and not budget.charge(self, self.parser.buffered + len(data)):
            raise _Close(f"unauthenticated connections would hold more than {budget.limit_bytes} bytes together")
        for msg in self.parser.feed(data):
            await self._on_message(msg)
            if self.stop_reason is not None:
                return
        if not self.published:
            budget.charge(self, self.parser.buffered)  # less than charged above: always fits

    # -- sending

    async def _send(self, csid: int, type_id: int, payload: bytes, stream_id: int = 0, timestamp: int = 0) -> None:
        self.writer.write(encode_message(csid, type_id, stream_id, timestamp, payload, self.out_chunk_size))
        try:
            async with asyncio.timeout(self.server.idle_timeout_s):
                await self.writer.drain()
        except TimeoutError:
            raise _Close("peer does not read its replies") from None

    async def _command(self, *values: amf.AmfValue, stream_id: int = 0) -> None:
        await self._send(5 if stream_id else 3, MSG_COMMAND_AMF0, amf.encode(*values), stream_id)

    async def _status(self, stream_id: int, level: str, code: str, description: str, details: str) -> None:
        info = {"level": level, "code": code, "description": description, "details": details}
        await self._command("onStatus", 0, None, info, stream_id=stream_id)

    # -- receiving

    async def _on_message(self, msg: RtmpMessage) -> None:
        t = msg.type_id
        if t in (MSG_AUDIO, MSG_VIDEO):
            if self.session is not None and msg.payload:
                self.session._media(t, msg.timestamp, msg.payload)
        elif t in (MSG_DATA_AMF0, MSG_DATA_AMF3):
            self._on_data(msg)
        elif t in (MSG_COMMAND_AMF0, MSG_COMMAND_AMF3):
            await self._on_command(msg)
        elif t == MSG_WINDOW_ACK_SIZE:
            if len(msg.payload) < 4:
                raise RtmpProtocolError("short Window Acknowledgement Size message")
            self.peer_window = int.from_bytes(msg.payload[:4], "big")
        elif t == MSG_USER_CONTROL and len(msg.payload) >= 6 and msg.payload[:2] == b"\x00\x06":  # ping request
            await self._send(2, MSG_USER_CONTROL, b"\x00\x07" + msg.payload[2:6])
        # Acknowledgement, Set Peer Bandwidth, shared objects, aggregates: nothing to do for a publisher.

    def _amf_body(self, msg: RtmpMessage) -> bytes:
        if len(msg.payload) > MAX_AMF_MESSAGE:
            raise RtmpProtocolError(f"AMF message of {len(msg.payload)} bytes exceeds {MAX_AMF_MESSAGE}")
        if msg.type_id in (MSG_DATA_AMF3, MSG_COMMAND_AMF3):
            if not msg.payload or msg.payload[0] != 0:
                raise RtmpProtocolError("AMF3 message without the AMF0 format byte")
            return msg.payload[1:]
        return msg.payload

    def _on_data(self, msg: RtmpMessage) -> None:
        body = self._amf_body(msg)
        if self.session is None or not body:
            return
        try:
            name, end = amf.decode_one(body)
            if name == "@setDataFrame":
                body = body[end:]
                name, _ = amf.decode_one(body)
            if name != "onMetaData":
                return
            amf.decode(body)
        except amf.AmfError as exc:
            log.debug("%s: ignoring malformed data message: %s", self.label, exc)
            return
        self.session._metadata(msg.timestamp, body)

    async def _on_command(self, msg: RtmpMessage) -> None:
        values = amf.decode(self._amf_body(msg))
        if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], int | float):
            raise RtmpProtocolError("command without a name and transaction id")
        if isinstance(values[1], bool):
            raise RtmpProtocolError("command transaction id is not a number")
        name, txid, args = values[0], float(values[1]), values[2:]
        if name == "connect":
            await self._on_connect(txid, args)
            return
        if self.app is None:
            raise RtmpProtocolError(f"command {_short(name)} before connect")
        if name == "releaseStream":
            if txid:
                await self._command("_result", txid, None, amf.UNDEFINED)
        elif name == "FCPublish":
            await self._command("onFCPublish", 0, None, {"code": PUBLISH_START, "description": "FCPublish"})
        elif name == "createStream":
            await self._command("_result", txid, None, 1.0)
        elif name == "publish":
            await self._on_publish(msg.stream_id or 1, args)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            self._end_session(f"unpublished ({name})")
        else:
            log.debug("%s: ignoring command %s", self.label, _short(name))

    async def _on_connect(self, txid: float, args: list[amf.AmfValue]) -> None:
        if self.app is not None:
            raise RtmpProtocolError("second connect on one connection")
        cmd = args[0] if args else None
        if not isinstance(cmd, dict) or not isinstance(cmd.get("app"), str):
            raise RtmpProtocolError("connect without an app name")
        app = cmd["app"]
        assert isinstance(app, str)
        self.app = app
        encoding = cmd.get("objectEncoding", 0.0)
        await self._send(2, MSG_WINDOW_ACK_SIZE, WINDOW_ACK_SIZE.to_bytes(4, "big"))
        await self._send(2, MSG_SET_PEER_BANDWIDTH, WINDOW_ACK_SIZE.to_bytes(4, "big") + b"\x02")
        await self._send(2, MSG_SET_CHUNK_SIZE, SERVER_CHUNK_SIZE.to_bytes(4, "big"))
        self.out_chunk_size = SERVER_CHUNK_SIZE
        props = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
        info = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": encoding if isinstance(encoding, int | float) else 0.0,
        }
        await self._command("_result", txid, props, info)

    async def _refuse(self, stream_id: int, code: str, description: str, log_reason: str) -> None:
        await self._status(stream_id, "error", code, description, "")
        raise _Close(f"publish refused: {log_reason}")

    async def _on_publish(self, stream_id: int, args: list[amf.AmfValue]) -> None:
        if self.session is not None:
            raise RtmpProtocolError("publish while already publishing")
        assert self.app is not None
        name = args[1] if len(args) > 1 else None
        if not isinstance(name, str):
            await self._refuse(stream_id, PUBLISH_BADNAME, "missing stream name", "missing stream name")
            return
        try:
            target = parse_publish_target(self.app, name)
        except ValueError as exc:
            await self._refuse(stream_id, PUBLISH_BADNAME, "bad stream name", f"bad stream name ({exc})")
            return
        shown = f"app={_short(target.app)} stream={_short(target.stream)} key={'***' if target.key else 'none'}"
        refused = shown if target.key else f"app={_short(target.app)} stream=*** key=none"
        try:
            decision = self.server.authorize(target.app, target.stream, target.key, self.peer)
        except Exception:
            log.exception("%s: authorizer failed for %s", self.label, refused)
            await self._refuse(stream_id, PUBLISH_UNAUTHORIZED, "not authorized", f"{refused}: authorizer error")
            return
        if not decision.ok:
            code = decision.status or PUBLISH_UNAUTHORIZED
            await self._refuse(stream_id, code, decision.reason or "refused", f"{refused}: {decision.reason or code}")
            return
        stream = decision.stream or target.stream
        # Session and handler are set up before any await, so an Authorizer that
        # tracks live streams sees a consistent state for the next publisher.
        session = PublishSession(
            stream=stream,
            app=target.app,
            peer=self.peer,
            max_buffer_bytes=self.server.max_buffer_bytes,
            on_close=self.stop,
        )
        self.session = session
        self._authorised()
        self.server._start_handler(session)
        log.info("%s: publish started: %s as %s", self.label, shown, _short(stream))
        await self._send(2, MSG_USER_CONTROL, b"\x00\x00" + stream_id.to_bytes(4, "big"))
        await self._status(stream_id, "status", PUBLISH_START, f"{stream} is now published", stream)

    def _end_session(self, reason: str) -> None:
        session, self.session = self.session, None
        if session is not None:
            session._finish(reason)
            log.info("%s stream=%s: publish ended: %s", self.label, session.stream, session.close_reason)


# ---------------------------------------------------------------- server


class RtmpServer:
    """Accepts RTMP publishers on one port (RTMPS with ``ssl``); see the module docstring for URL forms and limits."""

    def __init__(
        self,
        host: str,
        port: int,
        authorize: Authorizer,
        on_publish: PublishHandler,
        *,
        max_sessions: int = 64,
        max_connections_per_peer: int | None = None,
        max_unauthenticated: int | None = None,
        unauthenticated_memory_bytes: int = UNAUTHENTICATED_MEMORY,
        max_message_size: int = 8 * MiB,
        handshake_timeout_s: float = 10.0,
        idle_timeout_s: float = 30.0,
        max_buffer_bytes: int = 16 * MiB,
        log_interval_s: float = 10.0,
        ssl: SSLContext | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        # By default one address gets at most 16 slots and unauthorised connections at most half of
        # them, so the other half stays free for publishers whose key was accepted.
        self.slots = ConnectionSlots(
            SlotLimits(
                max_sessions,
                min(16, max_sessions) if max_connections_per_peer is None else max_connections_per_peer,
                max(1, max_sessions // 2) if max_unauthenticated is None else max_unauthenticated,
            )
        )
        self.budget = MemoryBudget(unauthenticated_memory_bytes)
        self.rate_log = RateLimitedLog(log, interval_s=log_interval_s)
        if not 1 <= max_message_size <= 0xFFFFFF:
            raise ValueError(f"max_message_size must be 1..{0xFFFFFF}, got {max_message_size}")
        if handshake_timeout_s <= 0 or idle_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")
        if max_buffer_bytes < 1:
            raise ValueError(f"max_buffer_bytes must be >= 1, got {max_buffer_bytes}")
        self.host = host
        self.authorize = authorize
        self.on_publish = on_publish
        self.max_message_size = max_message_size
        self.handshake_timeout_s = handshake_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_buffer_bytes = max_buffer_bytes
        self.ssl = ssl  # RTMPS: every connection starts with a TLS handshake in this (live, reloadable) context
        self.scheme = "rtmp" if ssl is None else "rtmps"  # how log lines name this server's connections
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        """The bound port (the real one after ``start`` when constructed with port 0)."""
        return self._port

    @property
    def connections(self) -> int:
        """Open connections (authorised or not)."""
        return len(self._connections)

    @property
    def sessions(self) -> tuple[PublishSession, ...]:
        """The live publish sessions."""
        live = (c.session for c in self._connections.values())
        return tuple(s for s in live if s is not None and not s.closed.done())

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._server is not None:
            raise RuntimeError("RTMP server already started")
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("%s: listening on %s:%d", self.scheme, self.host, self._port)

    async def close(self) -> None:
        """Stop accepting, end every session ("server shutting down") and wait for handlers (up to 5 s)."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            conn.stop("server shutting down")
        await self._wait(set(self._connections), 5.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self._server.wait_closed()
        await self._wait(set(self._handlers), 5.0)

    @staticmethod
    async def _wait(tasks: set[asyncio.Task[None]], timeout: float) -> None:
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        host = str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)
        peer = format_peer(addr) if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)
        conn = _Connection(self, reader, writer, peer, host)
        why = "server shutting down" if self._closing else self.slots.admit(conn, host)
        if why is not None:
            self.rate_log.warning((host, "refused"), "%s %s: connection refused: %s", self.scheme, peer, why)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = conn
        try:
            await conn.run()
        finally:
            del self._connections[task]
            self.slots.leave(conn)
            self.budget.release(conn)

    def _authorised(self, conn: _Connection) -> None:
        self.slots.authenticated(conn)
        self.budget.release(conn)

    def _start_handler(self, session: PublishSession) -> None:
        task = asyncio.create_task(self._run_handler(session), name=f"rtmp-publish-{session.stream}")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_handler(self, session: PublishSession) -> None:
        try:
            await self.on_publish(session)
        except asyncio.CancelledError:
            session.close("server shutting down")
            raise
        except Exception:
            log.exception("%s %s stream=%s: publish handler failed", self.scheme, session.peer, session.stream)
            session.close("publish handler failed")
