"""SRT listener ingest through the system's libsrt (ctypes): many publishers, one UDP port.

The FFmpeg inside PyAV's wheels has no SRT, so the listener talks to libsrt
directly (Debian ships it with ffmpeg: ``libsrt-gnutls.so.1.5``, or the
openssl build). Using the library, rather than running ``srt-live-transmit``
per stream, keeps one port for every stream and lets the listen callback
refuse a bad stream id or key during the handshake, before any media flows.

Stream id forms a publisher may send (``srt://HOST:9000?streamid=...``):

* SRT access-control syntax: ``#!::r={stream},s={key},m=publish`` (``k=`` or
  ``key=`` are accepted for the key too);
* short form: ``{stream}?key={key}`` or ``publish/{stream}/{key}``.

Each accepted connection gets a reader thread that batches SRT messages
(MPEG-TS, 1316 bytes each) and hands them to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

log = logging.getLogger(__name__)

SRTO_RCVSYN = 2
SRTO_RCVTIMEO = 14
SRTO_STREAMID = 46
SRT_ETIMEOUT = 6003
SRT_REJX_UNAUTHORIZED = 1401
SRT_REJX_FORBIDDEN = 1403
SRT_REJX_CONFLICT = 1409
BATCH_BYTES = 64 * 1024
MAX_STREAMID = 512

_LIBS = ("libsrt-openssl.so.1.5", "libsrt-gnutls.so.1.5", "libsrt.so.1.5", "libsrt.so.1")


class SrtUnavailable(RuntimeError):
    """libsrt is not installed."""


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_uint8 * 4),
        ("sin_zero", ctypes.c_uint8 * 8),
    ]


LISTEN_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)


def load_library() -> ctypes.CDLL:
    names = [*_LIBS]
    found = ctypes.util.find_library("srt")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.srt_startup.restype = ctypes.c_int
        lib.srt_create_socket.restype = ctypes.c_int32
        lib.srt_bind.argtypes = [ctypes.c_int32, ctypes.c_void_p, ctypes.c_int]
        lib.srt_listen.argtypes = [ctypes.c_int32, ctypes.c_int]
        lib.srt_accept.argtypes = [ctypes.c_int32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        lib.srt_accept.restype = ctypes.c_int32
        lib.srt_setsockflag.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        lib.srt_getsockflag.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        lib.srt_recvmsg.argtypes = [ctypes.c_int32, ctypes.c_char_p, ctypes.c_int]
        lib.srt_close.argtypes = [ctypes.c_int32]
        lib.srt_getlasterror.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.srt_getlasterror_str.restype = ctypes.c_char_p
        lib.srt_listen_callback.argtypes = [ctypes.c_int32, LISTEN_CB, ctypes.c_void_p]
        lib.srt_setrejectreason.argtypes = [ctypes.c_int32, ctypes.c_int]
        return lib
    raise SrtUnavailable("libsrt is not installed (Debian: apt-get install libsrt1.5-openssl)")


@dataclass(frozen=True)
class StreamId:
    stream: str
    key: str | None


def parse_streamid(text: str) -> StreamId | None:
    """The stream and key a publisher's SRT stream id names, or None if it names none."""
    if not text or len(text) > MAX_STREAMID:
        return None
    if text.startswith("#!::"):
        fields = {}
        for item in text[4:].split(","):
            k, sep, v = item.partition("=")
            if not sep:
                return None
            fields[k.strip()] = v.strip()
        if fields.get("m", "publish") != "publish":
            return None
        stream = fields.get("r", "")
        key = fields.get("s") or fields.get("k") or fields.get("key")
        return StreamId(stream, key) if stream else None
    if text.startswith("publish/"):
        parts = text.split("/")
        if len(parts) == 3 and parts[1]:
            return StreamId(parts[1], parts[2] or None)
        return None
    stream, _, query = text.partition("?")
    key = None
    for item in query.split("&") if query else []:
        k, _, v = item.partition("=")
        if k == "key":
            key = unquote(v)
    return StreamId(stream, key) if stream and "/" not in stream else None


# authorize(stream, key, peer) -> (status, reason, ticket); runs on the loop
Authorize = Callable[[str, str | None, str], Awaitable[tuple[int, str, object]]]
# on_publish(stream, ticket, peer, read) -> runs on the loop until the connection ends
OnPublish = Callable[[str, object, str, "SrtConnection"], Awaitable[None]]


class SrtConnection:
    """One accepted publisher: a reader thread hands batches of bytes to ``deliver`` on the loop."""

    def __init__(self, server: SrtServer, sock: int, stream: str, peer: str) -> None:
        self.server, self.sock, self.stream, self.peer = server, sock, stream, peer
        self.closed = False
        self._thread: threading.Thread | None = None

    def start(self, deliver: Callable[[bytes], Awaitable[bool]], done: Callable[[str], None]) -> None:
        self._thread = threading.Thread(target=self._read, args=(deliver, done), name=f"srt-{self.stream}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.lib.srt_close(self.sock)

    def _read(self, deliver: Callable[[bytes], Awaitable[bool]], done: Callable[[str], None]) -> None:
        lib, loop = self.server.lib, self.server.loop
        buf = ctypes.create_string_buffer(1500)
        timeout = ctypes.c_int(50)
        lib.srt_setsockflag(self.sock, SRTO_RCVTIMEO, ctypes.byref(timeout), ctypes.sizeof(timeout))
        batch = bytearray()
        idle_ms = 0
        reason = "publisher disconnected"
        while not self.closed:
            n = lib.srt_recvmsg(self.sock, buf, len(buf))
            if n > 0:
                batch += buf.raw[:n]
                idle_ms = 0
                if len(batch) < BATCH_BYTES:
                    continue
            elif n < 0:
                code = lib.srt_getlasterror(None)
                if code != SRT_ETIMEOUT:
                    break
                idle_ms += 50
                if idle_ms >= self.server.idle_timeout_s * 1000:
                    reason = "idle timeout"
                    break
            else:
                break
            if batch:
                data, batch = bytes(batch), bytearray()
                fut = asyncio.run_coroutine_threadsafe(deliver(data), loop)
                try:
                    if not fut.result(timeout=30):
                        reason = "the stream stopped reading this feed"
                        break
                except Exception:
                    reason = "the stream stopped reading this feed"
                    break
        if batch and not self.closed:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(deliver(bytes(batch)), loop).result(timeout=30)
        self.close()
        loop.call_soon_threadsafe(done, reason)


class SrtServer:
    def __init__(
        self, host: str, port: int, authorize: Authorize, on_publish: OnPublish, *, idle_timeout_s: float = 10.0
    ) -> None:
        self.host, self.port = host, port
        self.authorize, self.on_publish = authorize, on_publish
        self.idle_timeout_s = idle_timeout_s
        self.lib = load_library()
        self.loop: asyncio.AbstractEventLoop
        self.listener = -1
        self._decisions: dict[int, tuple[str, object, str]] = {}
        self._conns: set[SrtConnection] = set()
        self._callback = LISTEN_CB(self._on_listen)  # keep a reference: libsrt calls it
        self._thread: threading.Thread | None = None
        self._closing = False

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        lib = self.lib
        lib.srt_startup()
        sock = lib.srt_create_socket()
        addr = _SockaddrIn()
        addr.sin_family = socket.AF_INET
        addr.sin_port = socket.htons(self.port)
        addr.sin_addr[:] = socket.inet_aton(socket.gethostbyname(self.host))
        if lib.srt_bind(sock, ctypes.byref(addr), ctypes.sizeof(addr)) < 0:
            text = lib.srt_getlasterror_str().decode(errors="replace")
            lib.srt_close(sock)
            raise OSError(f"srt: cannot listen on {self.host}:{self.port}: {text}")
        lib.srt_listen_callback(sock, self._callback, None)
        lib.srt_listen(sock, 64)
        self.listener = sock
        self._thread = threading.Thread(target=self._accept, name="srt-accept", daemon=True)
        self._thread.start()
        log.info("srt: listening on srt://%s:%d (streamid=#!::r=NAME,s=KEY)", self.host, self.port)

    def _on_listen(self, _opaque: int, ns: int, _hs: int, _peer: int, streamid: bytes | None) -> int:
        """libsrt's handshake hook (its thread): accept only a known stream with the right key."""
        text = (streamid or b"").decode(errors="replace")
        sid = parse_streamid(text)
        if sid is None:
            self.lib.srt_setrejectreason(ns, SRT_REJX_FORBIDDEN)
            log.warning("srt: connection refused: no usable streamid")
            return -1
        try:
            fut = asyncio.run_coroutine_threadsafe(self.authorize(sid.stream, sid.key, "srt"), self.loop)
            status, reason, ticket = fut.result(timeout=5)
        except Exception:
            status, reason, ticket = 503, "server busy", None
        if status != 200:
            code = {401: SRT_REJX_UNAUTHORIZED, 409: SRT_REJX_CONFLICT}.get(status, SRT_REJX_FORBIDDEN)
            self.lib.srt_setrejectreason(ns, code)
            return -1
        self._decisions[ns] = (sid.stream, ticket, reason)
        return 0

    def _accept(self) -> None:
        lib = self.lib
        while not self._closing:
            addr = (ctypes.c_byte * 128)()
            size = ctypes.c_int(128)
            ns = lib.srt_accept(self.listener, ctypes.byref(addr), ctypes.byref(size))
            if ns < 0:
                if self._closing:
                    return
                continue
            decision = self._decisions.pop(ns, None)
            if decision is None:
                lib.srt_close(ns)
                continue
            stream, ticket, _ = decision
            peer = "srt:" + ".".join(str(b & 0xFF) for b in bytes(addr)[4:8])
            conn = SrtConnection(self, ns, stream, peer)
            self._conns.add(conn)
            self.loop.call_soon_threadsafe(self._spawn, conn, ticket)

    def _spawn(self, conn: SrtConnection, ticket: object) -> None:
        task = self.loop.create_task(self.on_publish(conn.stream, ticket, conn.peer, conn))
        task.add_done_callback(lambda _t: self._conns.discard(conn))

    async def close(self) -> None:
        self._closing = True
        for conn in list(self._conns):
            conn.close()
        if self.listener >= 0:
            self.lib.srt_close(self.listener)
            self.listener = -1
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
