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

Encryption: for a stream with a ``passphrase`` the listen callback sets it
(and the stream's key length) on the new socket, and libsrt (enforced
encryption) refuses a wrong or missing passphrase in the handshake. The
caller chooses the AES key length; one shorter than the stream's
``pbkeylen`` is closed right after accept.

Who owns what (each piece of state has one owner; the others ask it):

* the event loop: every reservation (the ingest's ``publish`` reserves and
  releases the stream), the connection set ``SrtServer._conns``, the refusal log;
* libsrt's receive thread runs the listen callback: it asks the loop (a future
  awaited with a timeout) whether the stream id may publish and reserves
  nothing, so a handshake that fails after it (a wrong passphrase, a caller
  that vanishes) leaves nothing behind;
* the accept thread only accepts and hands each socket to the loop
  (``call_soon_threadsafe``); failing accepts back off (bounded exponential)
  and are logged rate-limited by that thread's own log;
* each connection's reader thread batches SRT messages (MPEG-TS, 1316 bytes
  each) and awaits the loop's ``deliver`` off-loop (a future with a timeout).
  ``SrtConnection.close`` is called from both sides and is guarded by a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote

from packager.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

SRTO_RCVTIMEO = 14
SRTO_PASSPHRASE = 26
SRTO_PBKEYLEN = 27
SRTO_KMSTATE = 28
SRTO_STREAMID = 46
SRTO_ENFORCEDENCRYPTION = 53
SRT_KM_S_SECURED = 2
SRT_ETIMEOUT = 6003
SRT_REJX_FORBIDDEN = 1403
# libsrt's access-control rejection codes (1000 + an HTTP-like status) for the gate's statuses
REJECT_CODES = {400: 1400, 401: 1401, 403: 1403, 409: 1409, 429: 1402, 503: 1503}
LOG_CRIT = 2  # syslog level: libsrt logs a warning per refused handshake, which a flood turns into a storm
BATCH_BYTES = 64 * 1024
MAX_STREAMID = 512
POLL_MS = 50
ADMIT_TIMEOUT_S = 5.0  # the loop answers a handshake question within this, else the caller is refused
DELIVER_TIMEOUT_S = 30.0

_LIBS = ("libsrt-openssl.so.1.5", "libsrt-gnutls.so.1.5", "libsrt.so.1.5", "libsrt.so.1")


class SrtUnavailable(RuntimeError):
    """libsrt is not installed."""


class AcceptFailed(OSError):
    """``srt_accept`` returned an error (the message is libsrt's)."""


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
        lib.srt_setloglevel.argtypes = [ctypes.c_int]
        return lib
    raise SrtUnavailable("libsrt is not installed (Debian: apt-get install libsrt1.5-openssl)")


@dataclass(frozen=True)
class StreamId:
    stream: str
    key: str | None = field(repr=False)


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


def peer_text(addr: int | None) -> str:
    """The IP of a ``sockaddr`` (IPv4 or IPv6) libsrt hands over, ``?`` for anything else.

    The bare address, as the refusal throttle and event coalescing key peers on it."""
    if not addr:
        return "?"
    family = ctypes.c_ushort.from_address(addr).value
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, ctypes.string_at(addr + 4, 4))
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, ctypes.string_at(addr + 8, 16))
    return "?"


@dataclass(frozen=True)
class Backoff:
    """Bounded exponential delays between failed accepts, so a broken listener never spins a core."""

    initial_s: float = 0.05
    max_s: float = 5.0

    def delay_s(self, failures: int) -> float:
        """The pause after the ``failures``-th failure in a row (1, 2, ...)."""
        return min(self.max_s, self.initial_s * 2.0 ** min(max(failures - 1, 0), 60))


@dataclass(frozen=True)
class Admission:
    """The ingest's answer for one stream id: an HTTP-style status, a reason, and the stream's encryption."""

    status: int
    reason: str
    passphrase: str | None = field(default=None, repr=False)  # None: the stream takes unencrypted pushes
    pbkeylen: int = 16  # the shortest AES key (bytes) a publisher may use when a passphrase is set

    @property
    def ok(self) -> bool:
        return self.status == 200


class SrtIngest(Protocol):
    """The product behind the listener; both methods run on the event loop."""

    async def admit(self, sid: StreamId, peer: str) -> Admission:
        """May ``sid`` publish, and with which passphrase? Asked in the handshake: must reserve nothing."""
        ...

    async def publish(self, sid: StreamId, peer: str, conn: SrtConnection) -> None:
        """Reserve the stream, read ``conn`` until it ends, release the reservation on every path."""
        ...


class SrtConnection:
    """One accepted publisher's socket, read on its own thread.

    The loop calls ``start`` (once) and ``close``; the reader thread runs
    ``_read`` and calls ``close`` when the peer goes. ``close`` takes a lock,
    so the socket is closed exactly once whichever side gets there first.
    """

    def __init__(
        self, lib: ctypes.CDLL, loop: asyncio.AbstractEventLoop, sock: int, peer: str, idle_timeout_s: float
    ) -> None:
        self.lib, self.loop, self.sock, self.peer = lib, loop, sock, peer
        self.idle_timeout_s = idle_timeout_s
        self.stream = ""  # set by the loop once the stream id is read
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def start(self, deliver: Callable[[bytes], Awaitable[bool]], done: Callable[[str], None]) -> None:
        """Loop side: read on a thread; ``deliver`` runs on the loop per batch, ``done(reason)`` once at the end."""
        self._thread = threading.Thread(target=self._read, args=(deliver, done), name=f"srt-{self.stream}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Either side: close the socket (once); a blocked read returns and the reader thread ends."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.lib.srt_close(self.sock)

    def join(self, timeout_s: float) -> bool:
        """Any thread but the reader: wait for the reader thread to end; True once it has (or never started)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return thread is None or not thread.is_alive()

    def get_int(self, option: int) -> int:
        """Loop side: an integer socket option (libsrt answers at once)."""
        value, size = ctypes.c_int(0), ctypes.c_int(ctypes.sizeof(ctypes.c_int))
        self.lib.srt_getsockflag(self.sock, option, ctypes.byref(value), ctypes.byref(size))
        return value.value

    def streamid(self) -> str:
        """Loop side: the stream id the caller sent ("" if unreadable)."""
        buf, size = ctypes.create_string_buffer(MAX_STREAMID + 1), ctypes.c_int(MAX_STREAMID + 1)
        if self.lib.srt_getsockflag(self.sock, SRTO_STREAMID, buf, ctypes.byref(size)) < 0:
            return ""
        return buf.raw[: size.value].decode(errors="replace")

    def _read(self, deliver: Callable[[bytes], Awaitable[bool]], done: Callable[[str], None]) -> None:
        """Reader thread: pump the socket, then close it and tell the loop why it ended."""
        reason = "publisher disconnected"
        try:
            reason = self._pump(deliver)
        finally:
            self.close()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for the reason
                self.loop.call_soon_threadsafe(done, reason)

    def _pump(self, deliver: Callable[[bytes], Awaitable[bool]]) -> str:
        lib, buf = self.lib, ctypes.create_string_buffer(1500)
        timeout = ctypes.c_int(POLL_MS)
        lib.srt_setsockflag(self.sock, SRTO_RCVTIMEO, ctypes.byref(timeout), ctypes.sizeof(timeout))
        batch, idle_ms = bytearray(), 0
        while not self.closed:
            n = lib.srt_recvmsg(self.sock, buf, len(buf))
            if n > 0:
                batch += buf.raw[:n]
                idle_ms = 0
                if len(batch) < BATCH_BYTES:
                    continue
            elif n < 0 and lib.srt_getlasterror(None) == SRT_ETIMEOUT:
                idle_ms += POLL_MS
                if idle_ms >= self.idle_timeout_s * 1000:
                    return "idle timeout"
            else:
                break
            if batch:
                if not self._hand(deliver, bytes(batch)):
                    return "the stream stopped reading this feed"
                batch = bytearray()
        if batch and not self.closed:
            self._hand(deliver, bytes(batch))
        return "publisher disconnected"

    def _hand(self, deliver: Callable[[bytes], Awaitable[bool]], data: bytes) -> bool:
        """Reader thread: run ``deliver(data)`` on the loop and wait for it (bounded), True if it took the data."""
        fut = None
        try:
            fut = asyncio.run_coroutine_threadsafe(deliver(data), self.loop)  # type: ignore[arg-type]
            return bool(fut.result(timeout=DELIVER_TIMEOUT_S))
        except Exception:
            if fut is not None:
                fut.cancel()
            return False


class SrtServer:
    """The SRT listener: handshake checks, an accept thread, one reader thread per publisher."""

    def __init__(
        self,
        host: str,
        port: int,
        ingest: SrtIngest,
        *,
        idle_timeout_s: float = 10.0,
        backoff: Backoff = Backoff(),
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.host, self.port, self.ingest = host, port, ingest
        self.idle_timeout_s = idle_timeout_s
        self.backoff = backoff
        self.lib = load_library()
        self.loop: asyncio.AbstractEventLoop
        self.listener = -1
        self._stopping = threading.Event()
        self._sleep = sleep or self._stopping.wait  # a close() cuts a back-off pause short
        logs = {"clock": clock} if clock is not None else {}
        self._accept_log = RateLimitedLog(log, **logs)  # owned by the accept thread
        self._refusals = RateLimitedLog(log, **logs)  # owned by the loop
        self._conns: set[SrtConnection] = set()  # owned by the loop: connections being served
        self._opened: list[SrtConnection] = []  # owned by the loop: those whose reader may still run
        self._tasks: set[asyncio.Task[None]] = set()  # owned by the loop
        self._callback = LISTEN_CB(self._on_listen)  # keep a reference: libsrt calls it
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Loop side: bind, listen and start the accept thread."""
        self.loop = asyncio.get_running_loop()
        lib = self.lib
        lib.srt_startup()
        lib.srt_setloglevel(LOG_CRIT)
        sock = lib.srt_create_socket()
        addr = _SockaddrIn()
        addr.sin_family = socket.AF_INET
        addr.sin_port = socket.htons(self.port)
        addr.sin_addr[:] = socket.inet_aton(socket.gethostbyname(self.host))
        enforced = ctypes.c_int(1)  # libsrt's default, stated: a passphrase mismatch fails the handshake
        lib.srt_setsockflag(sock, SRTO_ENFORCEDENCRYPTION, ctypes.byref(enforced), ctypes.sizeof(enforced))
        if lib.srt_bind(sock, ctypes.byref(addr), ctypes.sizeof(addr)) < 0:
            text = lib.srt_getlasterror_str().decode(errors="replace")
            lib.srt_close(sock)
            lib.srt_cleanup()
            raise OSError(f"srt: cannot listen on {self.host}:{self.port}: {text}")
        lib.srt_listen_callback(sock, self._callback, None)
        lib.srt_listen(sock, 64)
        self.listener = sock
        self._thread = threading.Thread(target=self._accept_loop, name="srt-accept", daemon=True)
        self._thread.start()
        log.info("srt: listening on srt://%s:%d (streamid=#!::r=NAME,s=KEY)", self.host, self.port)

    # --- libsrt's receive thread -------------------------------------------------------------------

    def _on_listen(self, _opaque: int, ns: int, _hs: int, peer_addr: int | None, streamid: bytes | None) -> int:
        """libsrt's handshake hook: 0 lets the handshake go on, -1 refuses it (never raises into libsrt)."""
        try:
            return self._admit(ns, peer_text(peer_addr), (streamid or b"").decode(errors="replace"))
        except Exception as exc:  # an exception here would make ctypes return 0: accept. Refuse instead.
            self.lib.srt_setrejectreason(ns, REJECT_CODES[503])
            self._log_on_loop(("srt-hook", type(exc).__name__), "srt: handshake refused: %r", exc)
            return -1

    def _admit(self, ns: int, peer: str, text: str) -> int:
        sid = parse_streamid(text)
        if sid is None:
            self.lib.srt_setrejectreason(ns, SRT_REJX_FORBIDDEN)
            self._log_on_loop(("srt-streamid", peer), "srt %s: connection refused: no usable streamid", peer)
            return -1
        fut = asyncio.run_coroutine_threadsafe(self.ingest.admit(sid, peer), self.loop)
        try:
            admission = fut.result(timeout=ADMIT_TIMEOUT_S)
        except Exception:
            fut.cancel()
            admission = Admission(503, "server busy")
        if not admission.ok:
            self.lib.srt_setrejectreason(ns, REJECT_CODES.get(admission.status, SRT_REJX_FORBIDDEN))
            return -1
        if admission.passphrase is not None:
            secret = admission.passphrase.encode()
            keylen = ctypes.c_int(admission.pbkeylen)
            if self.lib.srt_setsockflag(ns, SRTO_PASSPHRASE, secret, len(secret)) < 0 or (
                self.lib.srt_setsockflag(ns, SRTO_PBKEYLEN, ctypes.byref(keylen), ctypes.sizeof(keylen)) < 0
            ):
                self.lib.srt_setrejectreason(ns, REJECT_CODES[503])
                return -1
        return 0

    def _log_on_loop(self, key: object, msg: str, *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: shutting down
            self.loop.call_soon_threadsafe(self._refusals.warning, key, msg, *args)

    # --- the accept thread -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        """Accept thread: every accepted socket goes to the loop; failures back off, logged rate-limited."""
        failures = 0
        while not self._stopping.is_set():
            try:
                ns, peer = self._accept()
            except AcceptFailed as exc:
                if self._stopping.is_set():
                    return
                failures += 1
                delay = self.backoff.delay_s(failures)
                self._accept_log.warning("srt-accept", "srt: accept failed: %s (retrying in %.2f s)", exc, delay)
                self._sleep(delay)
                continue
            failures = 0
            try:
                self.loop.call_soon_threadsafe(self._spawn, ns, peer)
            except RuntimeError:  # the loop is closed: nobody will serve this socket
                self.lib.srt_close(ns)
                return

    def _accept(self) -> tuple[int, str]:
        addr = (ctypes.c_byte * 128)()
        size = ctypes.c_int(128)
        ns = self.lib.srt_accept(self.listener, ctypes.byref(addr), ctypes.byref(size))
        if ns < 0:
            raise AcceptFailed(self.lib.srt_getlasterror_str().decode(errors="replace"))
        return ns, peer_text(ctypes.addressof(addr))

    # --- the event loop ----------------------------------------------------------------------------

    def _spawn(self, ns: int, peer: str) -> None:
        conn = SrtConnection(self.lib, self.loop, ns, peer, self.idle_timeout_s)
        if self._stopping.is_set():
            conn.close()
            return
        self._opened = [c for c in self._opened if not (c.closed and c.join(0))]
        self._opened.append(conn)
        self._conns.add(conn)
        task = self.loop.create_task(self._serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: SrtConnection) -> None:
        """Check the accepted socket again (the stream may have gone live meanwhile), then publish it."""
        try:
            sid = parse_streamid(conn.streamid())
            if sid is None:
                return
            admission = await self.ingest.admit(sid, conn.peer)
            if not admission.ok:
                return
            conn.stream = sid.stream
            problem = self._crypto_problem(conn, admission)
            if problem:
                key = ("srt-crypto", conn.peer)
                self._refusals.warning(key, "srt %s: %s closed: %s", conn.peer, sid.stream, problem)
                return
            await self.ingest.publish(sid, conn.peer, conn)
        except Exception as exc:
            self._refusals.warning(("srt-error", conn.stream), "srt %s: %s ended: %r", conn.peer, conn.stream, exc)
        finally:
            conn.close()
            self._conns.discard(conn)

    @staticmethod
    def _crypto_problem(conn: SrtConnection, admission: Admission) -> str:
        """Why an accepted socket does not meet the stream's encryption, or "" when it does."""
        if admission.passphrase is None:
            return ""
        if conn.get_int(SRTO_KMSTATE) != SRT_KM_S_SECURED:
            return "the connection is not encrypted with the stream's passphrase"
        keylen = conn.get_int(SRTO_PBKEYLEN)
        if keylen < admission.pbkeylen:
            return f"AES key of {keylen * 8} bits is shorter than the stream's {admission.pbkeylen * 8} (pbkeylen)"
        return ""

    async def close(self) -> None:
        """Loop side: stop accepting, close every connection and the listener, wait for every thread."""
        self._stopping.set()
        for conn in self._opened:
            conn.close()
        if self.listener >= 0:
            self.lib.srt_close(self.listener)
            self.listener = -1
        if self._tasks:  # closed sockets end their reader threads, and with them each publish
            await asyncio.wait(list(self._tasks), timeout=5)
        if await asyncio.to_thread(_join_all, self._thread, list(self._opened), 5.0):
            # balances start()'s srt_startup: libsrt's garbage-collector thread left running
            # at process exit can crash there while the library is being torn down
            self.lib.srt_cleanup()


def _join_all(acceptor: threading.Thread | None, conns: list[SrtConnection], timeout_s: float) -> bool:
    """A worker thread: wait (bounded) for the accept thread and the readers of ``conns``; True when all ended."""
    deadline = time.monotonic() + timeout_s
    if acceptor is not None:
        acceptor.join(timeout_s)
    ended = acceptor is None or not acceptor.is_alive()
    for conn in conns:
        ended = conn.join(max(0.0, deadline - time.monotonic())) and ended
    return ended
