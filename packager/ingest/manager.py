"""Pushed streams' lifecycle: one pipeline per stream across pushes, slate, end, keep, shutdown.

A publish (RTMP or HTTP push) hands in a :class:`ByteQueue` of container
bytes. The first push of a stream starts a :class:`Pipeline` on a
:class:`FeedSource`; later pushes (a feed that came back, or a takeover) are
probed and attached to that same feed, so encoders, numbering and the media
timeline simply continue. Between pushes the feed shows a slate; when no push
returns within the reconnect window the pipeline ends the stream (ENDLIST,
static MPD), which then stays served as VOD for ``keep`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from packager.ingest.pipe import ByteQueue
from packager.pipeline import Pipeline
from packager.settings import IngestSettings
from packager.sources import SourceError
from packager.sources.feed import FeedSource
from packager.sources.media import MediaSource
from packager.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    published: bool  # False: the push was refused before any media was published
    reason: str


@dataclass
class _Feed:
    pipeline: Pipeline
    source: FeedSource
    queue: ByteQueue | None = None


class IngestManager:
    def __init__(self, settings: IngestSettings, store: Store, pipelines: dict[str, Pipeline] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.pipelines = pipelines if pipelines is not None else {}
        self.feeds: dict[str, _Feed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._drop_timers: dict[str, asyncio.TimerHandle] = {}

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
        source = MediaSource(
            f"{protocol}://{stream}", reader=queue, format=fmt, paced=False, live=True, options=options
        )
        timer = self._drop_timers.pop(stream, None)
        if timer is not None:
            timer.cancel()
        feed = self.feeds.get(stream)
        entry = None
        if feed is not None and not feed.pipeline.stop_event.is_set() and not feed.source.finished:
            source.want_fps = feed.source.info.fps
            try:
                await asyncio.to_thread(source.probe)
            except SourceError as exc:
                queue.abort()
                log.warning("%s: push refused: %s", stream, exc)
                return PublishResult(False, str(exc))
            previous = feed.queue
            entry = feed.source.attach(source)
            if entry is not None:
                if previous is not None:
                    previous.abort()  # a takeover: the previous publisher's input ends now
                feed.queue = queue
                current = self.store.get(stream)
                if current is not None:
                    current.on_input_switch()
                log.info("%s: %s publisher back on the same timeline", stream, protocol)
        if entry is None:  # a first push, or the previous feed just ended: start a feed (reuses a probe)
            feed_source = FeedSource(source, window_s=self.settings.reconnect_window_s)
            pipeline = Pipeline(settings.config, feed_source, self.store, backpressure=True)
            try:
                await pipeline.start()
            except SourceError as exc:
                queue.abort()
                log.warning("%s: push refused: %s", stream, exc)
                return PublishResult(False, str(exc))
            feed = _Feed(pipeline, feed_source, queue)
            self.feeds[stream] = feed
            self.pipelines[stream] = pipeline
            task = asyncio.create_task(self._watch(stream, feed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            entry = feed_source.first
            log.info("%s: %s publisher live", stream, protocol)
        assert entry is not None
        await asyncio.to_thread(entry.done.wait)
        queue.abort()  # the input is done reading; unblock a writer still pushing
        return PublishResult(True, entry.reason)

    async def _watch(self, stream: str, feed: _Feed) -> None:
        """When the feed's pipeline ends (window passed or shutdown), keep the VOD, then drop it."""
        reason = await feed.pipeline.wait()
        if self.feeds.get(stream) is feed:
            del self.feeds[stream]
        log.info("%s: ended (%s); kept as VOD for %.0f s", stream, reason, self.settings.keep_s)
        loop = asyncio.get_running_loop()
        self._drop_timers[stream] = loop.call_later(self.settings.keep_s, self._drop, stream)

    def _drop(self, stream: str) -> None:
        self._drop_timers.pop(stream, None)
        s = self.store.get(stream)
        if s is None or not s.ended or stream in self.feeds:
            return
        self.store.streams.pop(stream, None)
        self.pipelines.pop(stream, None)
        s.remove_files()  # on the disk-writer thread, after every write still queued for the stream
        log.info("%s: VOD removed after keep period", stream)

    async def shutdown(self) -> None:
        """Stop every feed; each pipeline finalizes its stream (VOD-complete manifests)."""
        for timer in self._drop_timers.values():
            timer.cancel()
        feeds = list(self.feeds.values())
        for feed in feeds:
            feed.pipeline.stop()
            if feed.queue is not None:
                feed.queue.abort()
        await asyncio.gather(*(f.pipeline.wait() for f in feeds))
        for task in list(self._tasks):
            task.cancel()
