"""Stopping a task that may sit in a Redis read: cancel it, and drop its connections if the read hides the cancel."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis


async def stop(task: asyncio.Task[None], client: redis.Redis, grace_s: float = 0.5) -> None:
    """Cancel ``task``; if a client read swallowed the cancellation, disconnect the pool and cancel again."""
    for _ in range(3):
        if task.done():
            break
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=grace_s)
        if done:
            break
        await client.connection_pool.disconnect(inuse_connections=True)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
