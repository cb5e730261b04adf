"""Node health in Redis: which encoder nodes carry a stream, in which role, and whether their input is live.

``lp:nodes:{stream}`` is a hash: field = node id, value = a JSON :class:`NodeStatus`. Every node of a stream
:func:`report` s its status each part; the hash expires ``ttl_s`` after the last report, and :func:`read`
keeps only entries updated within ``stale_s``, so a dead node drops out on its own. A malformed value is
skipped (logged once per node and value), never raised. :class:`NodeWatch` is an origin's view: it reads
every stream's entries about once a second for ``/api/streams``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from redis.exceptions import RedisError

from packager.redisstore.keys import Keys
from packager.timebase import SYSTEM_CLOCK, Clock, iso_from_epoch_s

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
            if len(_logged) > 1000:
                _logged.clear()
            _logged.add((stream + "/" + name, data))
            log.warning("skipping malformed health entry %s of %s: %s", name, stream, exc)
        return None


class NodeWatch:
    """What every stream's nodes said lately, read from Redis every ``interval_s`` (an origin's view). Loop only.

    ``streams`` names the streams to look at on each round; an unreachable Redis keeps the last answer."""

    def __init__(
        self,
        client: HealthClient,
        keys: Keys,
        streams: Callable[[], Iterable[str]],
        *,
        clock: Clock = SYSTEM_CLOCK,
        interval_s: float = 1.0,
        stale_s: float = 3.0,
    ) -> None:
        if interval_s <= 0 or stale_s <= 0:
            raise ValueError("interval_s and stale_s must be > 0")
        self.client = client
        self.keys = keys
        self.streams = streams
        self.clock = clock
        self.interval_s = interval_s
        self.stale_s = stale_s
        self._nodes: dict[str, tuple[NodeStatus, ...]] = {}

    def nodes(self, stream: str) -> tuple[NodeStatus, ...]:
        """The fresh entries of ``stream`` as of the last round (active first)."""
        return self._nodes.get(stream, ())

    async def poll(self) -> None:
        """One round: every stream's entries, streams no longer named dropped."""
        names = sorted(set(self.streams()))
        found: dict[str, tuple[NodeStatus, ...]] = {}
        for name in names:
            try:
                found[name] = await read(
                    self.client, self.keys, name, now_utc_s=self.clock.utc_s(), stale_s=self.stale_s
                )
            except (RedisError, OSError):
                found[name] = self._nodes.get(name, ())
        self._nodes = found

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll()
            await self.clock.sleep(self.interval_s)


def status_json(status: NodeStatus, now_utc_s: float) -> dict[str, Any]:
    """One entry as ``/api/streams`` shows it."""
    return {
        "node": status.node,
        "role": status.role,
        "input": status.input,
        "input_since": iso_from_epoch_s(status.input_since_utc_s),
        "age_s": round(max(0.0, now_utc_s - status.updated_utc_s), 3),
        "epoch": status.epoch,
    }
