"""A live test-source pipeline served by an origin app with an admin token: what the operator APIs act on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from fractions import Fraction
from typing import Any

from origin.app import create_app
from packager.config import Encoding, Ladder, StreamConfig
from packager.pipeline import Pipeline
from packager.security import SecuritySettings
from packager.sources import TestSource
from packager.store import Store, StreamStore
from tests.support.clock import until

ADMIN_TOKEN = "an-admin-token-of-enough-length-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def encoding(
    aiohttp_client: Callable[[Any], Awaitable[Any]], ladder: str, width: int, height: int
) -> AsyncIterator[tuple[Any, StreamStore, Pipeline]]:
    """(client, stream, pipeline) of ``testsrc`` encoded to ``ladder``, once every track has a segment."""
    store = Store()
    config = StreamConfig(ladder=Ladder.parse(ladder), encoding=Encoding(preset="ultrafast"))
    pipeline = Pipeline(config, TestSource(width, height, Fraction(30)), store)
    stream = await pipeline.start()
    app = create_app(store, pipelines={"demo": pipeline}, security=SecuritySettings(admin_token=ADMIN_TOKEN))
    client = await aiohttp_client(app)
    tracks = len(ladder.split(",")) + 1
    await until(lambda: len(stream.tracks) == tracks and all(t.segments for t in stream.tracks.values()), timeout_s=30)
    try:
        yield client, stream, pipeline
    finally:
        pipeline.stop()
        await asyncio.wait_for(pipeline.wait(), 30)
