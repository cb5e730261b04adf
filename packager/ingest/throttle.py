"""Per-peer refusal throttle: a peer address that keeps being refused is answered 429 without another look.

A wrong-key flood (thousands of attempts a second from one address) must cost
the server nothing: after ``limit`` refusals from one address within
``window_s`` seconds, :meth:`RefusalThrottle.blocked` is true for that address
until the oldest of those refusals is ``window_s`` old, and the gate answers
429 at once, without comparing a key. Like nginx ``limit_req`` keyed on
``$binary_remote_addr``, the unit is the peer's IP address (the port is
dropped: every new connection has a new one); a peer whose address cannot be
told (no IP) is never throttled, so one bucket never stands for many peers.

Blocked attempts do not extend the block (a broadcaster who mistyped a key
gets back in after the window); they are reported at most once per address per
window with the number of attempts since the previous report. Memory is
bounded: at most ``max_peers`` addresses are remembered, each with at most
``limit`` timestamps; past that the address refused longest ago is forgotten.
Pure bookkeeping; the caller passes the time.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

MAX_PEERS = 4096


@dataclass
class _Peer:
    refusals: deque[float]  # times of the newest refusals (maxlen = the limit)
    reported_at: float | None = None  # when a blocked attempt was last reported
    unreported: int = 0  # blocked attempts since that report


class RefusalThrottle:
    """One owner (the event loop) calls it; not thread-safe by design."""

    def __init__(self, limit: int, window_s: float, *, max_peers: int = MAX_PEERS) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_peers = max_peers
        self._peers: OrderedDict[str, _Peer] = OrderedDict()

    def blocked(self, address: str, now: float) -> bool:
        """True when ``address`` had ``limit`` refusals within the last ``window_s`` seconds."""
        peer = self._peers.get(address)
        return peer is not None and len(peer.refusals) >= self.limit and now - peer.refusals[0] < self.window_s

    def refused(self, address: str, now: float) -> None:
        """Count one refusal of ``address`` (a full check said no)."""
        peer = self._peers.pop(address, None)
        if peer is None:
            peer = _Peer(deque(maxlen=self.limit))
        peer.refusals.append(now)
        self._peers[address] = peer  # newest last: the oldest is forgotten first
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)

    def report_due(self, address: str, now: float) -> int:
        """For a blocked attempt: how many attempts to report now (this one included), or 0 to stay quiet."""
        peer = self._peers.get(address)
        if peer is None:
            return 1
        peer.unreported += 1
        if peer.reported_at is not None and now - peer.reported_at < self.window_s:
            return 0
        count, peer.unreported, peer.reported_at = peer.unreported, 0, now
        return count

    def __len__(self) -> int:
        return len(self._peers)
