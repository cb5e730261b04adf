"""Who may publish: stream keys (compared in constant time), one publisher per stream, limits.

Pure bookkeeping shared by every ingest path (RTMP, HTTP push): ``check``
answers with an HTTP-style status and a one-line reason; ``begin``/``end``
hold a publisher's place; ``account`` enforces ingest bitrate limits over a
sliding window. Keys never appear in a reason or a log line. Every refusal
(and every push cut off by a limit) is also handed to ``refusal_listeners`` as
a :class:`Refusal` (the stream events report them).
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from packager.settings import IngestSettings

WINDOW_S = 5.0


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 accepted; 401 no key; 403 bad key / unknown stream; 409 already live; 429/503 limits
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Refusal:
    """A refused or cut-off publisher, for listeners (never the key)."""

    stream: str | None  # None unless a configured stream: an unknown "name" may be a pasted key
    status: int
    reason: str
    protocol: str
    peer: str


@dataclass
class Ticket:
    """A publisher's place: released with :meth:`IngestGate.end`."""

    stream: str
    protocol: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    bytes_in: int = 0
    kicked: str = ""  # set when a takeover or a limit ends this publisher


class IngestGate:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.live: dict[str, Ticket] = {}
        self.refused = 0
        self.refusal_listeners: list[Callable[[Refusal], object]] = []

    def check(self, stream: str, key: str | None, *, protocol: str = "", peer: str = "") -> Verdict:
        verdict = self._check(stream, key)
        if not verdict.ok:
            self._report(stream, verdict, protocol, peer)
        return verdict

    def _report(self, stream: str, verdict: Verdict, protocol: str, peer: str) -> None:
        known = stream if stream in self.settings.streams else None
        refusal = Refusal(known, verdict.status, verdict.reason, protocol, peer)
        for listener in self.refusal_listeners:
            listener(refusal)

    def _check(self, stream: str, key: str | None) -> Verdict:
        configured = self.settings.streams.get(stream)
        if key is None or key == "":
            self.refused += 1
            return Verdict(401, "a stream key is required")
        expected = configured.key if configured else "\0" * 32
        # compare even for unknown streams so timing does not reveal which names exist
        same = hmac.compare_digest(key.encode(), expected.encode())
        if configured is None or not same:
            self.refused += 1
            return Verdict(403, "unknown stream or wrong key")
        if stream in self.live and not configured.takeover:
            self.refused += 1
            return Verdict(409, f"stream {stream!r} already has a publisher")
        others = sum(1 for s in self.live if s != stream)
        if others >= self.settings.max_publishers:
            self.refused += 1
            return Verdict(503, f"publisher limit reached ({self.settings.max_publishers})")
        return Verdict(200, "ok")

    def begin(self, stream: str, protocol: str, peer: str) -> Ticket:
        old = self.live.get(stream)
        if old is not None:
            old.kicked = "replaced by a new publisher (takeover)"
        ticket = Ticket(stream, protocol, peer)
        self.live[stream] = ticket
        return ticket

    def end(self, ticket: Ticket) -> None:
        if self.live.get(ticket.stream) is ticket:
            del self.live[ticket.stream]

    def account(self, ticket: Ticket, nbytes: int, now: float | None = None) -> Verdict:
        """Count ``nbytes`` received; refuse once a limit is exceeded over the last few seconds."""
        verdict = self._account(ticket, nbytes, now)
        if verdict.status == 429:  # a takeover (409) is not a refusal of anyone
            self._report(ticket.stream, verdict, ticket.protocol, ticket.peer)
        return verdict

    def _account(self, ticket: Ticket, nbytes: int, now: float | None) -> Verdict:
        now = time.monotonic() if now is None else now
        ticket.bytes_in += nbytes
        ticket.samples.append((now, nbytes))
        while ticket.samples and ticket.samples[0][0] < now - WINDOW_S:
            ticket.samples.popleft()
        if ticket.kicked:
            return Verdict(409, ticket.kicked)
        if now - ticket.started < WINDOW_S:
            return Verdict(200, "ok")  # let the first seconds burst (encoders front-load)
        kbps = sum(n for _, n in ticket.samples) * 8 / WINDOW_S / 1000
        limit = self.settings.streams[ticket.stream].max_kbps if ticket.stream in self.settings.streams else 0
        if limit and kbps > limit:
            return Verdict(429, f"ingest bitrate {kbps:.0f} kb/s is over this stream's limit of {limit} kb/s")
        total = sum(sum(n for t, n in other.samples if t >= now - WINDOW_S) for other in self.live.values())
        total_kbps = total * 8 / WINDOW_S / 1000
        if total_kbps > self.settings.max_ingest_kbps:
            return Verdict(
                429, f"total ingest {total_kbps:.0f} kb/s is over the limit of {self.settings.max_ingest_kbps} kb/s"
            )
        return Verdict(200, "ok")
