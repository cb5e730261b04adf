"""Pushed streams' lifecycle: one pipeline per stream across pushes, slate, end, keep, shutdown.

A publish (RTMP or HTTP push) hands in a :class:`ByteQueue` of container
bytes. The first push of a stream starts a :class:`Pipeline` on a
:class:`FeedSource`; later pushes (a feed that came back, or a takeover) are
probed and attached to that same feed, so encoders, numbering and the media
timeline simply continue. Between pushes the feed shows a slate; when no push
returns within the reconnect window the pipeline ends the stream (ENDLIST,
static MPD), which then stays served as VOD for ``keep`` seconds.

Every push is probed before anything is built from it, on its own thread with
a deadline (a stalled peer never holds a thread of the loop's shared executor,
which serves files), and refused with a status and reason when it is not
usable media or is over the input limits.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from packager.ingest.pipe import ByteQueue
from packager.memory import MemoryReturner
from packager.offloop import call_in_thread
from packager.pipeline import Pipeline
from packager.ratelog import RateLimitedLog
from packager.settings import IngestSettings
from packager.sources import SourceError
from packager.sources.feed import Attached, FeedSource
from packager.sources.media import InputOverLimit, InputStalled, MediaSource
from packager.store import Store

log = logging.getLogger(__name__)

PROBE_DEADLINE_S = 30.0  # a peer trickling bytes cannot keep a probe going longer than this


@dataclass(frozen=True)
class PublishResult:
    published: bool  # False: the push was refused before any media was published
    reason: str
    status: int = 200  # HTTP-style: 200 published; 408 no media in time; 415 not usable media; 422 over the limits


class StreamClaims(Protocol):
    """Who may publish a stream when several nodes share one store (the Redis registry's leases)."""

    async def claim(self, stream: str) -> str | None:
        """Take ``stream`` for this node; None when taken (or already ours), else the node holding it."""
        ...

    async def release(self, stream: str) -> None: ...


@dataclass
class _Feed:
    pipeline: Pipeline
    source: FeedSource
    queue: ByteQueue | None = None


class IngestManager:
    def __init__(
        self,
        settings: IngestSettings,
        store: Store,
        pipelines: dict[str, Pipeline] | None = None,
        memory: MemoryReturner | None = None,
        claims: StreamClaims | None = None,
        stage: object | None = None,
    ) -> None:
        """``stage``: what pipelines publish into instead of ``store`` (a redundant node's standby staging,
        which publishes into ``store`` only while this node holds the stream's lease)."""
        self.settings = settings
        self.stage = stage if stage is not None else store
        self.claims = claims
        self.memory = memory if memory is not None else MemoryReturner()
        self.store = store
        self.pipelines = pipelines if pipelines is not None else {}
        self.feeds: dict[str, _Feed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._drop_timers: dict[str, asyncio.TimerHandle] = {}
        self._refusals = RateLimitedLog(log)

    async def publish(
        self,
        stream: str,
        queue: ByteQueue,
        *,
        protocol: str,
        fmt: str,
        options: dict[str, str] | None = None,
    ) -> PublishResult:
        """Package what arrives in ``queue`` (container ``fmt``) until it ends; says whether it was published and why.

        ``fmt`` is one of the push demuxers (``packager.admission.PUSH_FORMATS``), never guessed."""
        source = MediaSource(
            f"{protocol}://{stream}",
            reader=queue,
            format=fmt,
            paced=False,
            live=True,
            options=options,
            limits=self.settings.input_limits,
        )
        feed = self.feeds.get(stream)
        running = feed is not None and not feed.pipeline.stop_event.is_set() and not feed.source.finished
        if running:
            source.want_fps = feed.source.info.fps  # type: ignore[union-attr]  # a returning feed keeps its fps
        elif (holder := await self._claim(stream)) is not None:
            source.close()
            return self._refuse(stream, queue, 409, f"stream {stream!r} is live on node {holder}")
        refused = await self._probe(stream, source, queue)
        if refused is not None:
            if not running:
                await self._release(stream)
            return refused  # an ended stream's VOD keeps its removal timer
        timer = self._drop_timers.pop(stream, None)
        if timer is not None:
            timer.cancel()  # the stream goes live again
        entry = self._attach(stream, source, queue, protocol)
        if entry is None:  # a first push, or the previous feed just ended: start a feed (reuses the probe)
            started = await self._start_feed(stream, source, queue, protocol)
            if isinstance(started, PublishResult):
                return started
            entry = started
        reason = await entry.finished()
        queue.abort()  # the input is done reading; unblock a writer still pushing
        return PublishResult(True, reason)

    async def _claim(self, stream: str) -> str | None:
        return await self.claims.claim(stream) if self.claims is not None else None

    async def _release(self, stream: str) -> None:
        if self.claims is not None and stream not in self.feeds:
            await self.claims.release(stream)

    async def _probe(self, stream: str, source: MediaSource, queue: ByteQueue) -> PublishResult | None:
        """Open and probe ``source`` on its own thread; a refusal, or None when it is usable media."""
        before = queue.read_timeout_s
        if before is None:  # a probe waits for bytes no longer than a push may stay idle
            queue.read_timeout_s = self.settings.push_idle_timeout_s
        probing = call_in_thread(source.probe, name=f"probe-{stream}", on_abandoned=lambda _info: source.close())
        try:
            await asyncio.wait_for(probing, PROBE_DEADLINE_S)
        except TimeoutError:
            return self._refuse(stream, queue, 408, f"no usable media within {PROBE_DEADLINE_S:g} s")
        except InputStalled as exc:
            return self._refuse(stream, queue, 408, str(exc))
        except InputOverLimit as exc:
            self.memory.after_free()  # the probe decoded pictures of the refused size: give the pages back
            return self._refuse(stream, queue, 422, str(exc))
        except SourceError as exc:
            return self._refuse(stream, queue, 415, str(exc))
        finally:
            queue.read_timeout_s = before
        return None

    def _refuse(self, stream: str, queue: ByteQueue, status: int, reason: str) -> PublishResult:
        queue.abort()  # also ends a probe still blocked reading
        self._refusals.warning(("push-refused", stream, status), "%s: push refused: %s", stream, reason)
        return PublishResult(False, reason, status)

    def _attach(self, stream: str, source: MediaSource, queue: ByteQueue, protocol: str) -> Attached | None:
        """Make the probed ``source`` the input of the stream's running feed; None when there is none."""
        feed = self.feeds.get(stream)
        if feed is None or feed.pipeline.stop_event.is_set() or feed.source.finished:
            return None
        previous = feed.queue
        entry = feed.source.attach(source)
        if entry is None:
            return None
        if previous is not None:
            previous.abort()  # a takeover: the previous publisher's input ends now
        feed.queue = queue
        current = self.store.get(stream)
        if current is not None:
            current.on_input_switch()
        log.info("%s: %s publisher back on the same timeline", stream, protocol)
        return entry

    async def _start_feed(
        self, stream: str, source: MediaSource, queue: ByteQueue, protocol: str
    ) -> Attached | PublishResult:
        feed_source = FeedSource(source, window_s=self.settings.reconnect_window_s)
        pipeline = Pipeline(
            self.settings.streams[stream].config,
            feed_source,
            self.stage,  # type: ignore[arg-type]
            backpressure=True,
        )
        try:
            await pipeline.start()
        except SourceError as exc:
            source.close()
            await self._release(stream)
            return self._refuse(stream, queue, 415, str(exc))
        feed = _Feed(pipeline, feed_source, queue)
        self.feeds[stream] = feed
        self.pipelines[stream] = pipeline
        task = asyncio.create_task(self._watch(stream, feed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("%s: %s publisher live", stream, protocol)
        return feed_source.first

    async def _watch(self, stream: str, feed: _Feed) -> None:
        """When the feed's pipeline ends (window passed or shutdown), keep the VOD, then drop it."""
        reason = await feed.pipeline.wait()
        if self.feeds.get(stream) is feed:
            del self.feeds[stream]
            await self._release(stream)  # another node may publish it now
        log.info("%s: ended (%s); kept as VOD for %.0f s", stream, reason, self.settings.keep_s)
        self.memory.after_free()  # its input's decoder and frame pools are gone
        loop = asyncio.get_running_loop()
        self._drop_timers[stream] = loop.call_later(self.settings.keep_s, self._drop, stream)

    def _drop(self, stream: str) -> None:
        self._drop_timers.pop(stream, None)
        s = self.store.get(stream)
        if s is None or not s.ended or stream in self.feeds:
            return
        self.store.remove(stream)  # listeners hear it: the disk mirror removes its folder behind queued writes
        self.pipelines.pop(stream, None)
        self.memory.after_free()  # the stream's encoders and media are gone
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
