"""Wires one stream: source thread -> encoder threads -> chunkers (loop) -> store.

The event loop owns the chunkers and the store; the source and encoder
threads only hand results over with ``loop.call_soon_threadsafe``. Stopping
(end of input, ``stop()``, Ctrl-C) drains every encoder, publishes the last
partial segment and ends the stream so its manifests become a complete VOD.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av

from packager.audiotracks import AudioStreamInfo, AudioTrack, plan_audio
from packager.chunker import TrackChunker
from packager.config import ConfigError, StreamConfig
from packager.languages import display_name
from packager.model import Sample
from packager.offloop import call_in_thread
from packager.progress import MediaProgress
from packager.scte35 import PtsMapper
from packager.sources import Source, SourceError, SourceInfo
from packager.splice import SPLICE_TIMESCALE, KeyframeSchedule
from packager.splicer import Splicer
from packager.standby import StandbyStream
from packager.store import Store, StreamStore
from packager.subtitles import Subtitles, SubtitleTrack, plan_subtitles, track_name
from packager.timebase import MediaClock
from packager.transcode import AudioEncoder, EncodedInit, VideoEncoder
from packager.webvtt import WEBVTT_TIMESCALE, Cue

log = logging.getLogger(__name__)


class _Fanout:
    """The FrameSink the source thread calls: each video frame to every rendition, audio to its track's encoder."""

    def __init__(
        self,
        video: list[VideoEncoder],
        audio: list[AudioEncoder],
        keyframes: KeyframeSchedule | None,
        on_cue: Callable[[bytes, PtsMapper], None],
        on_text: Callable[[int, int, int, str], None],
    ) -> None:
        self.video_workers = video
        self.audio_workers = {w.track.stream: w for w in audio}
        self.keyframes = keyframes
        self.on_cue = on_cue
        self.on_text = on_text

    def video(self, frame: av.VideoFrame, pts: int, capture_utc_s: float) -> None:
        if self.keyframes is not None:
            self.keyframes.submitted(pts)  # before any encoder sees it: a splice placed now lies after it
        for w in self.video_workers:
            w.submit((frame, pts, capture_utc_s))

    def cue(self, section: bytes, to_media: PtsMapper) -> None:
        self.on_cue(section, to_media)

    def text(self, stream: int, start_ms: int, end_ms: int, text: str) -> None:
        self.on_text(stream, start_ms, end_ms, text)

    def audio(self, frame: av.AudioFrame, pts: int, capture_utc_s: float, stream: int) -> None:
        worker = self.audio_workers.get(stream)
        if worker is not None:
            worker.submit((frame, pts, capture_utc_s))


def audio_tracks(info: SourceInfo, config: StreamConfig) -> tuple[AudioTrack, ...]:
    """The audio renditions of this input; SourceError when the configuration picks a stream it lacks."""
    if not info.has_audio:
        return ()
    streams = info.audio_streams or (AudioStreamInfo(0, channels=2),)
    try:
        return plan_audio(streams, config.audio)
    except ConfigError as exc:
        raise SourceError(f"{info.description}: {exc}") from None


def _no_cues(section: bytes, to_media: PtsMapper) -> None:
    """An input without video has nothing to splice: its cues are ignored."""


class Pipeline:
    """One live or VOD stream from source to store."""

    def __init__(
        self,
        config: StreamConfig,
        source: Source,
        store: Store,
        *,
        fast: bool = False,
        duration_s: float | None = None,
        backpressure: bool = False,
    ) -> None:
        """``backpressure``: a pushed input waits for the encoders instead of losing frames."""
        self.backpressure = backpressure
        self.config = config
        self.source = source
        self.store = store
        self.fast = fast
        self.duration_s = duration_s
        self.stop_event = threading.Event()
        self.stream: StreamStore | None = None
        self.info: SourceInfo | None = None
        self.chunkers: dict[str, TrackChunker] = {}
        self.video_workers: list[VideoEncoder] = []
        self.audio_workers: list[AudioEncoder] = []
        self.splicer: Splicer | None = None  # ad-break splices; None without video
        self.subtitles: Subtitles | None = None  # subtitle renditions (input streams and the live API)
        self.subtitle_tracks: tuple[SubtitleTrack, ...] = ()  # one per input text subtitle stream
        self.end_reason = ""
        self.progress = MediaProgress(duration_s)  # media time done; the total once the source is probed
        self._done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle
    async def start(self) -> StreamStore:
        """Probe the source (off the loop), build encoders and start every thread."""
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        info = await call_in_thread(self.source.probe, name=f"probe-{self.config.name}")  # not the shared executor
        self.info = info
        cfg = self.config
        tracks = audio_tracks(info, cfg)
        stream = self._open_stream(info)
        blocking = self.fast or not info.live or self.backpressure
        self.subtitles = Subtitles(stream, cfg.timing.segment_s)
        self.subtitle_tracks = plan_subtitles(info.subtitle_streams)
        for sub in self.subtitle_tracks:
            self.subtitles.add_track(sub)
        if info.has_video:
            self.splicer = Splicer(stream, cfg.timing.part_ticks(SPLICE_TIMESCALE), self._loop)
            if isinstance(stream, StandbyStream):  # a redundant node: IDRs at every part while it stands by
                stream.steer(self.splicer.keyframes)
            self._video_encoders(info, blocking)
        self.source.select_audio(tuple(t.stream for t in tracks))
        for track in tracks:
            self.audio_workers.append(
                AudioEncoder(
                    bitrate=cfg.ladder.audio_bitrate,
                    on_init=self._threadsafe(self._on_init),
                    on_samples=self._threadsafe(self._on_samples(track.name)),
                    blocking=blocking,
                    track=track,
                )
            )
        names = [w.rendition.name for w in self.video_workers] + [w.track_name for w in self.audio_workers]
        stream.expect_tracks(frozenset(names))
        self.progress.expect(names)
        totals = [t for t in (info.duration_s, self.duration_s) if t is not None]
        self.progress.total_s = min(totals) if totals else None
        for w in self._workers:
            w.start()
        threading.Thread(target=self._source_thread, name=f"source-{cfg.name}", daemon=True).start()
        log.info(
            "%s: %s -> %s",
            cfg.name,
            info.description,
            ", ".join(f"{w.rendition.name} {w.rendition.width}x{w.rendition.height}" for w in self.video_workers)
            + "".join(f" + {w.track_name} ({w.track.language})" for w in self.audio_workers),
        )
        return stream

    def _open_stream(self, info: SourceInfo) -> StreamStore:
        cfg, timing = self.config, self.config.timing
        clock = MediaClock(Fraction(0), live=True) if info.live else MediaClock(Fraction(time.time()), live=False)
        self.stream = self.store.open_stream(
            cfg.name,
            segment_s=timing.segment_s,
            part_s=timing.part_s,
            window_s=timing.window_s if info.live else Fraction(10**9),
            target_duration=timing.target_duration,
            clock=clock,
            hls_cue_tags=cfg.hls_cue_tags,
            targets=cfg.targets,
        )
        return self.stream

    def _video_encoders(self, info: SourceInfo, blocking: bool) -> None:
        """One encoder per rendition of the ladder the source's picture allows, IDRs shared with the splicer."""
        cfg = self.config
        assert self.splicer is not None
        for rendition in cfg.ladder.fit_to_source(info.width, info.height).renditions:
            self.video_workers.append(
                VideoEncoder(
                    rendition,
                    fps=cfg.encoding.fps or info.fps,
                    segment_s=cfg.timing.segment_s,
                    encoding=cfg.encoding,
                    on_init=self._threadsafe(self._on_init),
                    on_samples=self._threadsafe(self._on_samples(rendition.name)),
                    blocking=blocking,
                    keyframes=self.splicer.keyframes,
                    caption_language=cfg.cc_language,
                )
            )

    @property
    def _workers(self) -> list:
        return [*self.video_workers, *self.audio_workers]

    def stop(self) -> None:
        """Ask the source to end; the stream is then finalized. Thread-safe."""
        self.stop_event.set()

    async def wait(self) -> str:
        assert self._done is not None
        await self._done.wait()
        return self.end_reason

    async def run(self) -> str:
        await self.start()
        return await self.wait()

    # -- threads
    def _threadsafe(self, fn):  # type: ignore[no-untyped-def]
        loop = self._loop
        assert loop is not None

        def call(arg: object) -> None:
            loop.call_soon_threadsafe(fn, arg)

        return call

    def _source_thread(self) -> None:
        splicer = self.splicer
        sink = _Fanout(
            self.video_workers,
            self.audio_workers,
            splicer.keyframes if splicer else None,
            splicer.on_cue if splicer else _no_cues,
            self._text_threadsafe(),
        )
        try:
            reason = self.source.run(sink, self.stop_event, self.duration_s)
        except Exception as exc:
            log.exception("source failed")
            reason = f"source error: {exc}"
        for w in self._workers:
            w.stop()
        errors = [w.error for w in self._workers if w.error]
        if errors:
            reason = f"{reason}; {'; '.join(errors)}"
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._finish, reason)
        except RuntimeError:
            pass  # loop already closed

    def _text_threadsafe(self) -> Callable[[int, int, int, str], None]:
        loop = self._loop
        assert loop is not None

        def call(stream: int, start_ms: int, end_ms: int, text: str) -> None:
            loop.call_soon_threadsafe(self._on_text, stream, Cue(start_ms, end_ms, text))

        return call

    # -- loop side
    def live_cues(self, language: str, cues: tuple[Cue, ...]) -> tuple[str, int]:
        """Cues from the subtitle API (event loop): into the rendition of ``language`` (an input stream's, or
        one made now). Returns the track name and how many cues came too late (their segments are out)."""
        assert self.subtitles is not None
        track = next((t for t in self.subtitle_tracks if t.language == language), None)
        name = track.name if track is not None else track_name(language)
        if not self.subtitles.has(name):
            self.subtitles.add_track(SubtitleTrack(name, language, display_name(language) or name))
        late = sum(not self.subtitles.add_cue(name, cue) for cue in cues)
        return name, late

    def _on_text(self, stream: int, cue: Cue) -> None:
        """A cue of input text subtitle stream ``stream``, on the loop."""
        if self.subtitles is None or not 0 <= stream < len(self.subtitle_tracks):
            return
        if not self.subtitles.add_cue(self.subtitle_tracks[stream].name, cue):
            log.debug("%s: subtitle cue at %d ms came after its segments were published", self.config.name, cue.start)

    def _on_init(self, init: EncodedInit) -> None:
        assert self.stream is not None
        info = init.info
        if info.name not in self.chunkers:
            t = self.config.timing
            self.chunkers[info.name] = TrackChunker(
                info,
                segment_ticks=t.segment_ticks(info.timescale),
                part_ticks=t.part_ticks(info.timescale),
                sink=self.stream.on_part,
                epoch_s=float(self.stream.clock.epoch_s),
                events=self.splicer.events_for(info) if self.splicer and info.kind == "video" else None,
            )
        self.stream.on_init(info, init.data)

    def _on_samples(self, track: str):  # type: ignore[no-untyped-def]
        def handle(samples: list[Sample]) -> None:
            chunker = self.chunkers.get(track)
            if chunker is None:
                return
            timescale = chunker.info.timescale
            for s in samples:
                self.progress.advance(track, s.pts, s.duration, timescale)
                try:
                    chunker.push(s)
                except ValueError as exc:  # a bad sample is counted and dropped, never fatal
                    chunker.dropped += 1
                    log.warning("%s: sample dropped: %s", track, exc)
            if samples and self.subtitles is not None and self._leads_subtitles(chunker.info.kind):
                last = samples[-1]
                self.subtitles.advance((last.pts + last.duration) * WEBVTT_TIMESCALE // timescale)

        return handle

    def _leads_subtitles(self, kind: str) -> bool:
        """The track whose media time closes subtitle segments: the video, else the audio."""
        return kind == "video" or not self.video_workers

    def _finish(self, reason: str) -> None:
        assert self.stream is not None and self._done is not None
        for chunker in self.chunkers.values():
            chunker.flush()
        if self.subtitles is not None:
            self.subtitles.finish()
        self.end_reason = reason
        self.stream.on_end(reason)
        log.info("%s: source ended (%s)", self.config.name, reason)
        self._done.set()

    # -- introspection for metrics
    def encoder_stats(self) -> dict[str, object]:
        return {w.name: w.stats for w in self._workers}
