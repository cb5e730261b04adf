"""Node health in Redis: which encoder nodes carry a stream, in which role, and whether their input is live.

``lp:nodes:{stream}`` is a hash: field = node id, value = a JSON :class:`NodeStatus`. Every node of a stream
:func:`report` s its status each part; the hash expires ``ttl_s`` after the last report, and :func:`read`
keeps only entries updated within ``stale_s``, so a dead node drops out on its own. A malformed value is
skipped (logged once per node and value), never raised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from packager.redisstore.keys import Keys

log = logging.getLogger(__name__)

ROLES = ("active", "standby", "releasing")  # releasing: handing the stream off at a segment boundary
INPUTS = ("live", "slate", "none")


class HealthClient(Protocol):
    """The few Redis commands health needs (a ``redis.asyncio.Redis`` is one)."""

    async def hset(self, name: str, key: str, value: str) -> Any: ...

    async def pexpire(self, name: str, time: int) -> Any: ...

    async def hgetall(self, name: str) -> Any: ...

    async def hdel(self, name: str, *keys: str) -> Any: ...


@dataclass(frozen=True)
class NodeStatus:
    """One node's view of a stream: its role, its input and since when, its lease epoch, when it said so."""

    node: str
    role: str  # "active" | "standby" | "releasing"
    input: str  # "live" | "slate" | "none"
    input_since_utc_s: float
    epoch: int
    updated_utc_s: float

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if self.input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, not {self.input!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeStatus:
        """Parse a stored value; ``ValueError`` when it is not a status."""
        try:
            raw = json.loads(text)
            return cls(
                node=str(raw["node"]),
                role=str(raw["role"]),
                input=str(raw["input"]),
                input_since_utc_s=float(raw["input_since_utc_s"]),
                epoch=int(raw["epoch"]),
                updated_utc_s=float(raw["updated_utc_s"]),
            )
        except (TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a node status: {exc}") from exc


_logged: set[tuple[str, bytes]] = set()


async def report(client: HealthClient, keys: Keys, stream: str, status: NodeStatus, ttl_s: float) -> None:
    """Store ``status`` as ``status.node``'s entry for ``stream``; the hash expires ``ttl_s`` from now."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    key = keys.nodes(stream)
    await client.hset(key, status.node, status.to_json())
    await client.pexpire(key, max(1, round(ttl_s * 1000)))


async def read(
    client: HealthClient, keys: Keys, stream: str, *, now_utc_s: float, stale_s: float
) -> tuple[NodeStatus, ...]:
    """The entries of ``stream`` updated within ``stale_s`` of ``now_utc_s``: active first, then by node id."""
    raw: dict[Any, Any] = await client.hgetall(keys.nodes(stream)) or {}
    found = [s for field, value in raw.items() if (s := _parse(stream, field, value)) is not None]
    fresh = [s for s in found if now_utc_s - s.updated_utc_s <= stale_s]
    return tuple(sorted(fresh, key=lambda s: (s.role != "active", s.node)))


async def forget(client: HealthClient, keys: Keys, stream: str, node: str) -> None:
    """Remove ``node``'s entry for ``stream`` (a node that stops carrying it)."""
    await client.hdel(keys.nodes(stream), node)


def _parse(stream: str, field: Any, value: Any) -> NodeStatus | None:
    data = value if isinstance(value, bytes) else str(value).encode()
    try:
        return NodeStatus.from_json(data)
    except ValueError as exc:
        name = field.decode(errors="replace") if isinstance(field, bytes) else str(field)
        if (stream + "/" + name, data) not in _logged:
            _logged.add((stream + "/" + name, data))
            log.warning("skipping malformed health entry %s of %s: %s", name, stream, exc)
        return None
