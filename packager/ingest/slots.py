"""Connection slots and the shared memory budget for ingest peers that have not authenticated yet.

Anyone can open a TCP connection; only a key holder should be able to make the
server hold much for long. Two pure accounting objects (owned by the event
loop, no I/O) enforce that:

- :class:`ConnectionSlots` caps connections overall, per peer address, and
  those not yet authorised. A newcomer over a cap pushes out the oldest
  unauthorised connection of its own address (per-address cap) or of the
  address holding the most of them (unauthorised cap), so a flood of idle
  connections only ever replaces its own, and a real publisher, even one
  behind the same address, gets in as long as it completes its publish
  before the flood has opened as many new connections as the cap allows. A
  newcomer is refused only when there is nobody to push out: the address's
  connections are all authorised publishers, or every waiting connection
  comes from a different address.
- :class:`MemoryBudget` bounds the bytes all unauthorised connections may
  buffer together. A connection that would take the total past the limit
  first evicts larger holders (an honest connect/publish command is a few KiB,
  a hostile half-sent message is large); when it is itself the largest, it is
  refused and must close.

Holders are any objects with ``evict(reason)``; eviction is synchronous
bookkeeping here and the holder is expected to drop what it buffers at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol


class Holder(Protocol):
    """A connection that can be told to go away (it closes and drops its buffers at once)."""

    def evict(self, reason: str) -> None: ...


@dataclass(frozen=True)
class SlotLimits:
    """Connection caps: all connections, per peer address, and those not yet authorised."""

    max_connections: int = 64
    max_per_peer: int = 16
    max_unauthenticated: int = 32

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")
        if not 1 <= self.max_per_peer <= self.max_connections:
            raise ValueError(f"max_per_peer must be in 1..{self.max_connections}, got {self.max_per_peer}")
        if not 1 <= self.max_unauthenticated <= self.max_connections:
            raise ValueError(
                f"max_unauthenticated must be in 1..{self.max_connections}, got {self.max_unauthenticated}"
            )


class ConnectionSlots:
    """Who holds a slot, from which address, and whether it has authenticated yet."""

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self._host: dict[Holder, str] = {}
        self._per_peer: Counter[str] = Counter()
        self._pending: dict[Holder, None] = {}  # not yet authorised, oldest first

    @property
    def total(self) -> int:
        return len(self._host)

    @property
    def unauthenticated(self) -> int:
        return len(self._pending)

    def from_peer(self, host: str) -> int:
        """Connections currently held by ``host``."""
        return self._per_peer[host]

    def admit(self, holder: Holder, host: str) -> str | None:
        """Take a slot for a new, unauthorised connection; the reason it is refused, or ``None`` when admitted.

        Making room evicts at most one waiting connection (which frees a slot of every kind)."""
        limits = self.limits
        if self._per_peer[host] >= limits.max_per_peer and not self._evict_oldest(host):
            return f"too many connections from {host} (max_per_peer={limits.max_per_peer})"
        if self.unauthenticated >= limits.max_unauthenticated and not self._evict_crowded():
            return f"too many unauthenticated connections (max_unauthenticated={limits.max_unauthenticated})"
        if self.total >= limits.max_connections:
            return f"too many connections (max_sessions={limits.max_connections})"
        self._host[holder] = host
        self._per_peer[host] += 1
        self._pending[holder] = None
        return None

    def authenticated(self, holder: Holder) -> None:
        """The connection's publish was authorised: it no longer counts against the unauthenticated cap."""
        self._pending.pop(holder, None)

    def leave(self, holder: Holder) -> None:
        """The connection is gone: free its slot."""
        self._pending.pop(holder, None)
        host = self._host.pop(holder, None)
        if host is not None:
            self._per_peer[host] -= 1
            if self._per_peer[host] <= 0:
                del self._per_peer[host]

    def _evict_oldest(self, host: str) -> bool:
        victim = next((h for h in self._pending if self._host[h] == host), None)
        if victim is None:
            return False  # all of this address's connections are authorised publishers
        self._evict(victim, f"evicted: too many connections from {host} (max_per_peer={self.limits.max_per_peer})")
        return True

    def _evict_crowded(self) -> bool:
        pending_by_host = Counter(self._host[h] for h in self._pending)
        crowded = [host for host, n in pending_by_host.items() if n > 1]
        if not crowded:
            return False  # every waiting connection comes from its own address: nobody to prefer
        heaviest = max(crowded, key=lambda host: pending_by_host[host])
        victim = next(h for h in self._pending if self._host[h] == heaviest)
        count = pending_by_host[heaviest]
        self._evict(victim, f"evicted: too many unauthenticated connections ({count} from {heaviest})")
        return True

    def _evict(self, victim: Holder, reason: str) -> None:
        # Its slot is free at once: the holder drops everything now, only its socket task is still ending.
        self.leave(victim)
        victim.evict(reason)


class MemoryBudget:
    """Bytes that every unauthorised connection may buffer together; ``used`` never exceeds ``limit_bytes``."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError(f"limit_bytes must be >= 1, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self.used = 0
        self.peak = 0
        self._held: dict[Holder, int] = {}

    def holding(self, holder: Holder) -> int:
        return self._held.get(holder, 0)

    def charge(self, holder: Holder, nbytes: int) -> bool:
        """Set what ``holder`` buffers to ``nbytes``. False (nothing changed) when it would pass the limit."""
        if nbytes > self.limit_bytes:
            return False
        while self.used - self.holding(holder) + nbytes > self.limit_bytes:
            victim = max((h for h in self._held if h is not holder), key=self._held.__getitem__, default=None)
            if victim is None or self._held[victim] <= nbytes:
                return False
            self.release(victim)
            victim.evict(f"evicted: unauthenticated connections hold more than {self.limit_bytes} bytes together")
        self.used += nbytes - self.holding(holder)
        self._held[holder] = nbytes
        self.peak = max(self.peak, self.used)
        return True

    def release(self, holder: Holder) -> None:
        """``holder`` buffers nothing any more (authorised, or closed)."""
        self.used -= self._held.pop(holder, 0)
