"""Pushed streams' lifecycle: a pipeline per publish, drop-and-return, end, keep, shutdown.

A publish (RTMP or HTTP push) hands in a :class:`ByteQueue` of container bytes.
The manager runs a :class:`Pipeline` on it into the stream's store. When the
feed stops, the manifests stay served; a feed that comes back within the
reconnect window continues the same stream after a discontinuity (numbers go
on, since they follow UTC). Past the window the stream ends (ENDLIST, static
MPD) and stays served as VOD for ``keep`` seconds, then leaves the store.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass

from packager.ingest.pipe import ByteQueue
from packager.pipeline import Pipeline
from packager.settings import IngestSettings
from packager.sources import SourceError
from packager.sources.media import MediaSource
from packager.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    published: bool  # False: the push was refused before any media was published
    reason: str


@dataclass
class _Feed:
    pipeline: Pipeline | None = None
    queue: ByteQueue | None = None
    end_timer: asyncio.TimerHandle | None = None
    drop_timer: asyncio.TimerHandle | None = None


class IngestManager:
    def __init__(self, settings: IngestSettings, store: Store, pipelines: dict[str, Pipeline] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.pipelines = pipelines if pipelines is not None else {}
        self.feeds: dict[str, _Feed] = {}
        self.ended_reasons: dict[str, str] = {}

    async def publish(
        self,
        stream: str,
        queue: ByteQueue,
        *,
        protocol: str,
        fmt: str | None = None,
        options: dict[str, str] | None = None,
    ) -> PublishResult:
        """Package what arrives in ``queue`` until it ends; says whether media was published and why it ended."""
        settings = self.settings.streams[stream]
        feed = self.feeds.setdefault(stream, _Feed())
        for timer in (feed.end_timer, feed.drop_timer):
            if timer is not None:
                timer.cancel()
        feed.end_timer = feed.drop_timer = None
        if feed.pipeline is not None:  # a takeover: stop the previous publisher's pipeline first
            feed.pipeline.stop()
            if feed.queue is not None:
                feed.queue.abort()
            await feed.pipeline.wait()
        existing = self.store.get(stream)
        resume = existing if existing is not None and not existing.ended else None
        source = MediaSource(
            f"{protocol}://{stream}", reader=queue, format=fmt, paced=False, live=True, options=options
        )
        pipeline = Pipeline(settings.config, source, self.store, stream=resume, end_stream=False)
        feed.pipeline = pipeline
        feed.queue = queue
        try:
            await pipeline.start()
        except SourceError as exc:
            queue.abort()
            feed.pipeline = None
            self._schedule_end(stream, feed)
            log.warning("%s: push refused: %s", stream, exc)
            return PublishResult(False, str(exc))
        self.pipelines[stream] = pipeline
        log.info("%s: %s publisher live", stream, protocol)
        reason = await pipeline.wait()
        queue.abort()  # the pipeline is done reading; unblock a writer still pushing
        if feed.pipeline is pipeline:
            feed.pipeline = None
            self._schedule_end(stream, feed)
        return PublishResult(True, reason)

    def _schedule_end(self, stream: str, feed: _Feed) -> None:
        store_stream = self.store.get(stream)
        if store_stream is None or store_stream.ended:
            return
        loop = asyncio.get_running_loop()
        log.info("%s: feed stopped; waiting %.0f s for it to come back", stream, self.settings.reconnect_window_s)
        feed.end_timer = loop.call_later(self.settings.reconnect_window_s, self.end_stream, stream, "feed lost")

    def end_stream(self, stream: str, reason: str) -> None:
        feed = self.feeds.get(stream)
        s = self.store.get(stream)
        if s is None or s.ended:
            return
        s.on_end(reason)
        self.ended_reasons[stream] = reason
        log.info("%s: ended (%s); kept as VOD for %.0f s", stream, reason, self.settings.keep_s)
        if feed is not None:
            feed.drop_timer = asyncio.get_running_loop().call_later(self.settings.keep_s, self._drop, stream)

    def _drop(self, stream: str) -> None:
        s = self.store.get(stream)
        if s is None or not s.ended:
            return
        self.store.streams.pop(stream, None)
        self.pipelines.pop(stream, None)
        if s.folder is not None:
            shutil.rmtree(s.folder, ignore_errors=True)
        log.info("%s: VOD removed after keep period", stream)

    async def shutdown(self, reason: str = "server shutting down") -> None:
        """Stop every feed and finalize every stream (VOD-complete manifests)."""
        for feed in self.feeds.values():
            for timer in (feed.end_timer, feed.drop_timer):
                if timer is not None:
                    timer.cancel()
            if feed.pipeline is not None:
                feed.pipeline.stop()
            if feed.queue is not None:
                feed.queue.abort()
        await asyncio.gather(*(f.pipeline.wait() for f in self.feeds.values() if f.pipeline is not None))
        for stream in list(self.feeds):
            s = self.store.get(stream)
            if s is not None and not s.ended:
                s.on_end(reason)
