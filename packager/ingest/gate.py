"""Who may publish: stream keys (compared in constant time), one publisher per stream, limits.

Pure bookkeeping shared by every ingest path (RTMP, SRT, HTTP push): ``check``
answers with an HTTP-style status and a one-line reason; ``begin``/``end``
hold a publisher's place; ``account`` measures each publisher's bitrate over a
sliding window. Keys never appear in a reason or a log line. Every refusal
(and every push cut off by a limit) is also handed to ``refusal_listeners`` as
a :class:`Refusal` (the stream events report them).

The total ingest limit is enforced at admission, the way a CDN origin or
MediaMTX-style server budgets capacity: each admitted publisher reserves a
budget (its stream's ``max_kbps``, else ``publisher_kbps``, by default an equal
share ``max_ingest_kbps / max_publishers``). ``check`` refuses a newcomer (503)
when its budget plus what is already committed (the reserved budgets, or the
measured total if bursts have pushed it higher) would exceed
``max_ingest_kbps``. A publisher that grows past its own budget is the one cut
(429, after a few seconds of allowed start-up burst), so an innocent publisher
is never cut for another's traffic.

A peer address that keeps being refused is answered 429 at once, without a key
comparison, and reported at most once per window with a count (see
:mod:`packager.ingest.throttle`).

Every rate is a running sum kept per publisher and for all of them: O(1)
amortised per chunk, however many chunks are in the window.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from packager.ingest.throttle import RefusalThrottle
from packager.peer import peer_address
from packager.settings import IngestSettings

WINDOW_S = 5.0
THROTTLED = "too many refused attempts, retry later"


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
    count: int = 1  # attempts this report stands for (a throttled peer's are coalesced)


def _kbps(nbytes: int) -> float:
    return nbytes * 8 / WINDOW_S / 1000


@dataclass
class Ticket:
    """A publisher's place: released with :meth:`IngestGate.end`."""

    stream: str
    protocol: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    budget_kbps: int = 0  # reserved at admission; above it (after the start-up burst) this publisher is cut
    samples: deque[tuple[float, int]] = field(default_factory=deque)  # (time, bytes) within the window
    window_bytes: int = 0  # running sum of ``samples``
    bytes_in: int = 0
    kicked: str = ""  # set when a takeover or a limit ends this publisher
    open: bool = True  # False once ended: its bytes no longer count in the total
    counted: int = 0  # this publisher's bytes in the gate's total window

    @property
    def kbps(self) -> float:
        """Bitrate over the window, as of this publisher's last :meth:`IngestGate.account`."""
        return _kbps(self.window_bytes)


class IngestGate:
    def __init__(self, settings: IngestSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.live: dict[str, Ticket] = {}
        self.refused = 0
        self.refusal_listeners: list[Callable[[Refusal], object]] = []
        self.throttle = RefusalThrottle(settings.refusal_limit, settings.refusal_window_s)
        self._recent: deque[tuple[float, int, Ticket]] = deque()  # every publisher's samples within the window
        self._total_bytes = 0  # running sum of ``_recent`` over open tickets
        self._now = float("-inf")  # newest time seen: the window only moves forward
        # with a shared store: the node that publishes a stream elsewhere (None: nobody, or this node)
        self.owner_elsewhere: Callable[[str], str | None] | None = None

    # ------------------------------------------------------------------ admission

    def check(self, stream: str, key: str | None, *, protocol: str = "", peer: str = "") -> Verdict:
        now = self._advance(self.clock())
        address = peer_address(peer)
        if address is not None and self.throttle.blocked(address, now):
            self.refused += 1
            verdict = Verdict(429, THROTTLED)
            count = self.throttle.report_due(address, now)
            if count:
                self._report(stream, verdict, protocol, peer, count)
            return verdict
        verdict = self._check(stream, key)
        if not verdict.ok:
            self.refused += 1
            if address is not None:
                self.throttle.refused(address, now)
            self._report(stream, verdict, protocol, peer)
        return verdict

    def _report(self, stream: str, verdict: Verdict, protocol: str, peer: str, count: int = 1) -> None:
        known = stream if stream in self.settings.streams else None
        refusal = Refusal(known, verdict.status, verdict.reason, protocol, peer, count)
        for listener in self.refusal_listeners:
            listener(refusal)

    def _check(self, stream: str, key: str | None) -> Verdict:
        configured = self.settings.streams.get(stream)
        if key is None or key == "":
            return Verdict(401, "a stream key is required")
        expected = configured.key if configured else "\0" * 32
        # compare even for unknown streams so timing does not reveal which names exist
        same = hmac.compare_digest(key.encode(), expected.encode())
        if configured is None or not same:
            return Verdict(403, "unknown stream or wrong key")
        if stream in self.live and not configured.takeover:
            return Verdict(409, f"stream {stream!r} already has a publisher")
        elsewhere = self.owner_elsewhere(stream) if self.owner_elsewhere is not None else None
        if elsewhere is not None:
            return Verdict(409, f"stream {stream!r} is live on node {elsewhere}")
        others = sum(1 for s in self.live if s != stream)
        if others >= self.settings.max_publishers:
            return Verdict(503, f"publisher limit reached ({self.settings.max_publishers})")
        return self._admit(stream)

    def _admit(self, stream: str) -> Verdict:
        """503 unless ``stream``'s budget fits beside what the other publishers hold (a takeover frees its own)."""
        need = self.budget_kbps(stream)
        reserved = sum(t.budget_kbps for s, t in self.live.items() if s != stream)
        replaced = self.live.get(stream)
        measured = _kbps(self._total_bytes - (replaced.counted if replaced else 0))
        committed = max(reserved, round(measured))
        limit = self.settings.max_ingest_kbps
        if committed + need > limit:
            return Verdict(
                503,
                f"total ingest limit reached: {committed} of {limit} kb/s committed, this stream needs {need} kb/s",
            )
        return Verdict(200, "ok")

    def budget_kbps(self, stream: str) -> int:
        """What a publisher of ``stream`` reserves: its ``max_kbps``, else the per-publisher default."""
        configured = self.settings.streams.get(stream)
        if configured is not None and configured.max_kbps is not None:
            return configured.max_kbps
        if self.settings.publisher_kbps is not None:
            return self.settings.publisher_kbps
        return self.settings.max_ingest_kbps // self.settings.max_publishers

    # ------------------------------------------------------------------ places

    def begin(self, stream: str, protocol: str, peer: str) -> Ticket:
        old = self.live.get(stream)
        if old is not None:
            old.kicked = "replaced by a new publisher (takeover)"
        ticket = Ticket(stream, protocol, peer, started=self.clock(), budget_kbps=self.budget_kbps(stream))
        self.live[stream] = ticket
        return ticket

    def end(self, ticket: Ticket) -> None:
        if self.live.get(ticket.stream) is ticket:
            del self.live[ticket.stream]
        if ticket.open:
            ticket.open = False
            self._total_bytes -= ticket.counted

    @property
    def ingest_kbps(self) -> float:
        """All open publishers together over the window, as of the latest check or account."""
        return _kbps(self._total_bytes)

    # ------------------------------------------------------------------ metering

    def account(self, ticket: Ticket, nbytes: int, now: float | None = None) -> Verdict:
        """Count ``nbytes`` received; cut this publisher once it is over its own budget for the window."""
        verdict = self._account(ticket, nbytes, self._advance(self.clock() if now is None else now))
        if verdict.status == 429:  # a takeover (409) is not a refusal of anyone
            self._report(ticket.stream, verdict, ticket.protocol, ticket.peer)
        return verdict

    def _account(self, ticket: Ticket, nbytes: int, now: float) -> Verdict:
        ticket.bytes_in += nbytes
        ticket.samples.append((now, nbytes))
        ticket.window_bytes += nbytes
        _expire(ticket, now)
        if ticket.open:
            self._recent.append((now, nbytes, ticket))
            ticket.counted += nbytes
            self._total_bytes += nbytes
        if ticket.kicked:
            return Verdict(409, ticket.kicked)
        if now - ticket.started < WINDOW_S:
            return Verdict(200, "ok")  # let the first seconds burst (encoders front-load)
        if ticket.kbps > ticket.budget_kbps:
            return Verdict(429, f"ingest bitrate {ticket.kbps:.0f} kb/s is over the limit of {ticket.budget_kbps} kb/s")
        return Verdict(200, "ok")

    def _advance(self, now: float) -> float:
        """Move the window to ``now`` (never backwards) and drop every publisher's samples older than it."""
        self._now = now = max(now, self._now)
        recent = self._recent
        while recent and recent[0][0] < now - WINDOW_S:
            _, nbytes, ticket = recent.popleft()
            ticket.counted -= nbytes
            if ticket.open:
                self._total_bytes -= nbytes
        return now


def _expire(ticket: Ticket, now: float) -> None:
    samples = ticket.samples
    while samples and samples[0][0] < now - WINDOW_S:
        ticket.window_bytes -= samples.popleft()[1]
