"""A ``run`` node on a shared store: its publisher into Redis, its stream leases, its origin workers.

``run --store redis://...`` keeps the in-memory store (the pipeline publishes
into it, the disk mirror writes ``--out``) and adds a
:class:`~packager.redisstore.RedisPublisher` listener. The node claims a
stream's lease before its pipeline starts (a pushed stream through the ingest
manager's claims, the command line's source here); with ``--origin-workers N``
it serves ``--port`` through N ``packager origin --store`` processes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import socket
import sys
from typing import TYPE_CHECKING

from packager.config import ConfigError, StreamConfig, check_name
from packager.redisstore import RedisTarget

if TYPE_CHECKING:
    from packager.redundancy import Redundancy
    from packager.store import Store

log = logging.getLogger("packager")


class SharedStore:
    """``run --store``: the publisher into Redis, this node's stream leases, and the origin workers.

    Also the ingest manager's :class:`~packager.ingest.manager.StreamClaims`: a push takes the stream's
    lease before its pipeline starts, and is refused (409) while another node holds it."""

    def __init__(self, store: object, target: RedisTarget, node_id: str, *, lease_s: float = 5.0) -> None:
        from packager.redisstore import RedisPublisher
        from packager.redisstore.registry import Owners

        self.target = target
        self.node_id = node_id
        self.publisher = RedisPublisher(store, self.target, node_id, lease_s=lease_s)  # type: ignore[arg-type]
        self.owners = Owners(self.publisher.registry)  # the ingest gate's early refusal of others' streams
        self.pool: object | None = None
        self.redundancy: Redundancy | None = None  # --standby: this node is one of a stream's redundant encoders

    @classmethod
    def redundant(
        cls,
        store: Store,
        target: RedisTarget,
        node_id: str,
        config: StreamConfig,
        args: argparse.Namespace,
        pipelines: dict[str, object],
    ) -> SharedStore:
        """``run --standby``: leases of two parts; pipelines publish through the standby staging."""
        from packager.redundancy import Redundancy, failover_settings

        settings = failover_settings(config.timing.part_s, args.failover_after_slate)
        shared = cls(store, target, node_id, lease_s=settings.lease_s)
        shared.redundancy = Redundancy(shared, store, settings, pipelines)
        return shared

    @property
    def claims(self) -> object:
        """What a push must get past: the lease here, or (a redundant node) nothing, the lease decides later."""
        return self.redundancy if self.redundancy is not None else self

    async def claim(self, stream: str) -> str | None:
        """Take ``stream``'s lease: None when this node has it, else the node holding it."""
        from redis.exceptions import RedisError

        try:
            claim = await self.publisher.registry.claim(stream)
        except (RedisError, OSError) as exc:  # unreachable: publish; the publisher claims once it is back
            log.warning("%s: cannot reach %s to claim it (%s); publishing", stream, self.target.url, exc)
            return None
        return None if claim.ok else (claim.node or "unknown")

    async def release(self, stream: str) -> None:
        from redis.exceptions import RedisError

        with contextlib.suppress(RedisError, OSError):
            await self.publisher.registry.release(stream)

    async def claim_source(self, stream: str) -> str | None:
        """Claim the command line's stream; the line to print when this node may not publish it."""
        from redis.exceptions import RedisError

        try:
            claim = await self.publisher.registry.claim(stream)
        except (RedisError, OSError) as exc:
            return f"error: --store: cannot reach {self.target.url}: {exc}"
        return None if claim.ok else f"error: stream {stream!r} is live on node {claim.node}"

    async def start(self, args: argparse.Namespace) -> None:
        """Start publishing; with ``--origin-workers``, start the origins serving ``--port``."""
        await self.publisher.start()
        self.owners.start()
        if self.redundancy is not None:
            await self.redundancy.start()
        if args.origin_workers:
            from origin.workers import WorkerPool

            command = worker_command(self.target.url, args.host, args.port, args.log_level)
            self.pool = pool = WorkerPool(command, args.origin_workers)
            await pool.start()
            print(
                f"packager: serving {args.host}:{args.port} from {args.origin_workers} origin workers",
                file=sys.stderr,
            )

    async def close(self) -> None:
        if self.redundancy is not None:
            await self.redundancy.close()
        if self.pool is not None:
            await self.pool.close()  # type: ignore[attr-defined]
        await self.owners.close()
        await self.publisher.close()


def check_shared(args: argparse.Namespace) -> RedisTarget | None:
    """The ``--store`` target (None without one), after the flags that go with it are checked."""
    if args.store is None:
        if args.origin_workers:
            raise ConfigError("--origin-workers needs --store (the workers serve what the store holds)")
        if args.node_id is not None:
            raise ConfigError("--node-id needs --store (it names this node in the store's leases)")
        if args.standby:
            raise ConfigError("--standby needs --store (the redundant encoders share its stream leases)")
        return None
    from packager.redisstore import RedisTarget

    target = RedisTarget.parse(args.store)
    if args.origin_workers and args.no_serve:
        raise ConfigError("--origin-workers serves --port: it cannot go with --no-serve")
    if not 0 <= args.origin_workers <= 256:
        raise ConfigError(f"--origin-workers: {args.origin_workers} must be between 0 and 256")
    if args.node_id is not None:
        check_name(args.node_id, "--node-id")
    if not 0.5 <= args.failover_after_slate <= 3600:
        raise ConfigError(f"--failover-after-slate: {args.failover_after_slate:g} must be between 0.5 and 3600 s")
    return target


def default_node_id() -> str:
    """HOSTNAME-PID, with anything a name may not hold replaced by '-'."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:48].strip("-") or "node"
    return f"{host}-{os.getpid()}"


def worker_command(store_url: str, host: str, port: int, log_level: str) -> list[str]:
    """The command line of one origin worker of this process (it binds ``host:port`` with SO_REUSEPORT).

    Its delivery security (TLS, tokens, CORS) comes through the environment (``packager.serving.ENV``)."""
    return [
        sys.executable,
        "-m",
        "packager",
        "origin",
        "--store",
        store_url,
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        log_level,
        "--worker-of",
        str(os.getpid()),
    ]
