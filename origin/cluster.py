"""A stateless origin over a shared store: the app serving a Redis replica, and the cluster's metrics.

:func:`replica_app` builds the usual application (every route ``packager
run`` serves) over a :class:`~packager.redisstore.RedisReplica`, wires the
replica's publish-to-servable figures into ``origin_publish_to_servable_seconds``,
starts/stops the replica with the app, and polls every stream's node health
(:class:`~packager.redisstore.health.NodeWatch`) for ``/api/streams``. :func:`serve_replica` runs one such
origin on a listening socket until SIGTERM/SIGINT. :func:`publisher_gauges` puts
an encoder's Redis publisher counters on its own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from origin.app import create_app
from origin.handlers import STATE
from origin.metrics import OriginMetrics
from origin.transport import PLAIN, Transport
from packager.events import EventBus
from packager.redisstore import RedisPublisher, RedisReplica, RedisTarget
from packager.redisstore.health import NodeWatch
from packager.redisstore.keys import Keys
from packager.security import OPEN, SecuritySettings


def _counters(source: dict[str, int], **labels: str) -> Iterable[tuple[dict[str, str], float]]:
    for name, value in source.items():
        yield {**labels, "counter": name}, float(value)


def replica_gauges(metrics: OriginMetrics, replica: RedisReplica) -> None:
    """The replica's counters and this worker's pid (which of several workers answered a scrape)."""
    metrics.registry.gauge(
        "origin_replica",
        "Shared-store replica counters: entries applied, resyncs, reconnects, malformed entries",
        lambda: _counters(replica.metrics()),
    )
    metrics.registry.gauge(
        "origin_store_available", "1 while the shared store is reachable", lambda: [({}, float(replica.available))]
    )
    metrics.registry.gauge(
        "origin_worker_pid", "Process id of the origin worker answering", lambda: [({}, os.getpid())]
    )


def publisher_gauges(metrics: OriginMetrics, publisher: RedisPublisher) -> None:
    """An encoder's publisher counters: entries and bytes written, reconnects, dropped items, heals, queue."""
    metrics.registry.gauge(
        "packager_store_publisher", "Shared-store publisher counters", lambda: _counters(publisher.metrics())
    )


def replica_app(
    target: RedisTarget, *, security: SecuritySettings = OPEN, health_interval_s: float = 1.0
) -> web.Application:
    """The origin application over a replica of ``target`` (started and closed with the app).

    Every ``health_interval_s`` it reads each stream's node health for ``/api/streams``."""
    replica = RedisReplica(target)
    # /events from the replayed publications: every node's streams (webhooks stay with the publishing node)
    app = create_app(replica, security=security, events=EventBus())
    metrics = app[STATE].metrics
    health_client = target.client()
    watch = NodeWatch(
        health_client, Keys(target.prefix), lambda: [s.name for s in replica], interval_s=health_interval_s
    )
    app[STATE].nodes = watch

    publishing = app[STATE].publishing

    def servable(stream: str, track: str, seconds: float) -> None:
        metrics.servable.observe(max(0.0, seconds), stream=stream, rendition=track)
        publishing.servable(stream, seconds)

    replica.on_servable = servable
    replica_gauges(metrics, replica)

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        await replica.start()
        poller = asyncio.create_task(watch.run(), name="node health")
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await health_client.aclose()
            await replica.close()

    app.cleanup_ctx.insert(0, lifetime)
    return app


async def serve_replica(
    target: RedisTarget,
    *,
    sock: socket.socket,
    host: str,
    port: int,
    security: SecuritySettings = OPEN,
    transport: Transport = PLAIN,
) -> int:
    """Serve a replica of ``target`` on ``sock`` (already listening) until SIGTERM/SIGINT; 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = replica_app(target, security=security)
    transport.install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, backlog=4096, ssl_context=transport.ssl_context).start()
        state = runner.app[STATE]
        state.metrics.connections.read = lambda: [({}, float(len(runner.server.connections)))] if runner.server else []
        print(
            f"packager: origin for {target.url} on {transport.scheme}://{host}:{port}/ (pid {os.getpid()})",
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0
