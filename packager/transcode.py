"""Per-rendition scale + encode on worker threads; each audio track encoded once and shared.

Video: one thread per rendition with its own ``VideoReformatter`` (a shared
scaler is slower and unsafe across threads), libx264 with a fixed GOP of one
segment, no scene-cut keyframes, no B-frames (zero-latency), and an IDR forced
on the first frame at or after every segment boundary of the media clock, so
every rendition cuts at the same instants. Audio: one AAC-LC 48 kHz stereo
encoder thread per audio track (language), whose init carries its language.

Workers hand encoded samples back to the event loop with
``loop.call_soon_threadsafe``; a ``None`` in a worker's queue stops it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

import av

from packager.audiotracks import AudioTrack
from packager.cmaf import aac, audio_init, avc, video_init
from packager.cmaf.captions import MAX_CC_COUNT, sei_nal, with_sei
from packager.config import Encoding, Rendition
from packager.languages import iso639_2t
from packager.model import Sample, TrackInfo
from packager.splice import KeyframeSchedule
from packager.timebase import AUDIO_TIMESCALE, VIDEO_TIMESCALE

log = logging.getLogger(__name__)

AAC_FRAME = 1024


@dataclass(frozen=True)
class EncodedInit:
    info: TrackInfo
    data: bytes


SampleSink = Callable[[list[Sample]], None]
InitSink = Callable[[EncodedInit], None]


@dataclass(frozen=True)
class EncoderStats:
    """One encoder's counters at one instant."""

    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    media_s: float = 0.0
    busy_s: float = 0.0

    @property
    def realtime_factor(self) -> float:
        return self.media_s / self.busy_s if self.busy_s > 0 else 0.0


class EncoderCounters:
    """One encoder's running counters, written on two threads and read on a third, so behind a lock.

    The worker thread calls ``took_frame``, ``gave_frames`` and ``was_busy``; the source thread calls
    ``dropped_frame`` (from ``submit``); the event loop (metrics) calls ``snapshot``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = EncoderStats()

    def took_frame(self, media_s: float) -> None:
        with self._lock:
            v = self._value
            self._value = replace(v, frames_in=v.frames_in + 1, media_s=v.media_s + media_s)

    def gave_frames(self, count: int) -> None:
        with self._lock:
            self._value = replace(self._value, frames_out=self._value.frames_out + count)

    def was_busy(self, seconds: float) -> None:
        with self._lock:
            self._value = replace(self._value, busy_s=self._value.busy_s + seconds)

    def dropped_frame(self) -> None:
        with self._lock:
            self._value = replace(self._value, frames_dropped=self._value.frames_dropped + 1)

    def snapshot(self) -> EncoderStats:
        with self._lock:
            return self._value


class _Worker:
    """A thread fed through a bounded queue; ``submit`` drops (live) or blocks (VOD) when full.

    ``submit`` and ``stop`` are called on the source thread, ``start`` and ``stats`` anywhere; the
    rest runs on the worker thread. ``error`` is written by the worker thread only, before it ends,
    and read after ``stop`` has joined it."""

    name = "worker"

    def __init__(self, *, blocking: bool, depth: int = 60) -> None:
        self.q: queue.Queue[tuple | None] = queue.Queue(maxsize=depth)
        self.blocking = blocking
        self.counters = EncoderCounters()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    @property
    def stats(self) -> EncoderStats:
        return self.counters.snapshot()

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: tuple) -> None:
        if self.blocking:
            self.q.put(item)
            return
        try:
            self.q.put_nowait(item)
        except queue.Full:
            self.counters.dropped_frame()

    def stop(self) -> None:
        """Flush the encoder and end the thread (blocks until done)."""
        self.q.put(None)
        self._thread.join()

    def _loop(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is None:
                    self._flush()
                    return
                t0 = time.perf_counter()
                self._handle(*item)
                self.counters.was_busy(time.perf_counter() - t0)
        except Exception as exc:  # an encoder failure ends this track, not the process
            self.error = f"{self.name}: {type(exc).__name__}: {exc}"
            log.exception("%s failed", self.name)

    def _handle(self, *item: object) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError


class VideoEncoder(_Worker):
    """Scale + H.264 encode one rendition."""

    def __init__(
        self,
        rendition: Rendition,
        *,
        fps: Fraction,
        segment_s: Fraction,
        encoding: Encoding,
        on_init: InitSink,
        on_samples: SampleSink,
        blocking: bool,
        keyframes: KeyframeSchedule | None = None,
        caption_language: str = "und",
    ) -> None:
        """``keyframes``: extra instants (ad-break splices) where this encoder starts an IDR too;
        ``caption_language``: what the CEA-608 captions passed through from the input are signalled as."""
        self.name = f"encode-{rendition.name}"
        super().__init__(blocking=blocking)
        self.rendition = rendition
        self.fps = fps
        self.frame_ticks = round(VIDEO_TIMESCALE / fps)
        gop_s = encoding.gop_s or segment_s  # divides segment_s (checked with the config): IDRs at segment starts
        self.gop_ticks = int(gop_s * VIDEO_TIMESCALE)
        self.on_init = on_init
        self.on_samples = on_samples
        self.reformatter = av.video.reformatter.VideoReformatter()
        gop = max(1, round(gop_s * fps))
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = rendition.width, rendition.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, VIDEO_TIMESCALE)
        ctx.framerate = fps
        ctx.bit_rate = rendition.bitrate
        ctx.gop_size = gop
        ctx.max_b_frames = 0
        # SLICE: libx264 splits each picture between its threads, no picture is held back; AUTO lets it
        # encode pictures in parallel (frame threads), which holds two pictures back (67 ms at 30 fps)
        ctx.thread_type = "SLICE" if encoding.slice_threads else "AUTO"
        x264 = [
            f"keyint={gop}",
            f"min-keyint={gop}",
            "scenecut=0",
            "open-gop=0",
            "bframes=0",
            f"vbv-maxrate={rendition.maxrate // 1000}",
            f"vbv-bufsize={rendition.bufsize // 1000}",
            "nal-hrd=none",
            "repeat-headers=1",
            "aud=0",
        ]
        # a53cc=0: the input's captions are put back by this encoder (_with_captions), once per source frame,
        # whether or not the scaler handed libx264 the source frame with its side data
        options = {"preset": encoding.preset, "forced-idr": "1", "a53cc": "0", "x264-params": ":".join(x264)}
        if encoding.tune_zerolatency:
            options["tune"] = "zerolatency"
        ctx.options = options
        ctx.open()
        self.ctx = ctx
        self.next_boundary: int | None = None
        self.keyframes = keyframes
        self.last_pts: int | None = None
        self.capture: dict[int, float] = {}
        self.sent_init = False
        self.caption_language = caption_language
        self.captions: dict[int, bytes] = {}  # pts -> the source frame's cc_data triplets
        self.saw_captions = False
        self.info: TrackInfo | None = None
        self.init_data = b""
        self._last_source: av.VideoFrame | None = None

    def _handle(self, frame: av.VideoFrame, pts: int, capture_utc_s: float) -> None:  # type: ignore[override]
        self._take_captions(frame, pts)
        out = self.reformatter.reformat(
            frame,
            width=self.rendition.width,
            height=self.rendition.height,
            format="yuv420p",
            interpolation="BILINEAR",
        )
        # Same size and format gives back the shared source frame itself: setting pts and pict_type
        # on it is safe because every worker sets both on its own output before encoding, and
        # libx264 copies the picture during encode().
        out.pts = pts
        out.time_base = Fraction(1, VIDEO_TIMESCALE)
        spliced = self.keyframes is not None and self.keyframes.due(self.last_pts, pts)
        if self.next_boundary is None or pts >= self.next_boundary or spliced:
            out.pict_type = av.video.frame.PictureType.I
            self.next_boundary = (pts // self.gop_ticks + 1) * self.gop_ticks
        else:
            out.pict_type = av.video.frame.PictureType.NONE
        self.last_pts = pts
        self.capture[pts] = capture_utc_s
        self._emit(self.ctx.encode(out))
        self.counters.took_frame(1 / float(self.fps))

    def _flush(self) -> None:
        try:
            self._emit(self.ctx.encode(None))
        except av.error.EOFError:
            pass

    def _take_captions(self, frame: av.VideoFrame, pts: int) -> None:
        """Keep the source frame's cc_data for the picture at ``pts``; a frame repeated to fill the frame
        rate carries none (its captions went out with its first copy)."""
        if frame is self._last_source:
            return
        self._last_source = frame
        side = frame.side_data.get(av.sidedata.sidedata.Type.A53_CC)
        if side is None:
            return
        data = bytes(side)
        data = data[: len(data) - len(data) % 3]
        if data:
            self.captions[pts] = data
            self.saw_captions = True

    def _with_captions(self, sample: bytes, pts: int) -> bytes:
        data = self.captions.pop(pts, b"")
        for start in range(0, len(data), 3 * MAX_CC_COUNT):
            sample = with_sei(sample, sei_nal(data[start : start + 3 * MAX_CC_COUNT]))
        return sample

    def _track_info(self, codec: str) -> TrackInfo:
        return TrackInfo(
            name=self.rendition.name,
            kind="video",
            codec=codec,
            timescale=VIDEO_TIMESCALE,
            bitrate=self.rendition.bitrate,
            width=self.rendition.width,
            height=self.rendition.height,
            frame_rate=self.fps,
            captions=self.caption_language if self.saw_captions else None,
        )

    def _announce(self, raw: bytes) -> None:
        """The init (from the first keyframe's parameter sets), or a new TrackInfo once captions appear."""
        if not self.sent_init:
            sps, pps = avc.parameter_sets(raw)
            if not sps or not pps:
                raise RuntimeError("encoder gave a keyframe without SPS/PPS")
            info = self._track_info(avc.codec_string(sps[0]))
            self.init_data = video_init(
                track_id=1,
                timescale=VIDEO_TIMESCALE,
                width=info.width,
                height=info.height,
                sps=sps,
                pps=pps,
                bitrate=self.rendition.bitrate,
            )
            self.info, self.sent_init = info, True
            self.on_init(EncodedInit(info, self.init_data))
        elif self.saw_captions and self.info is not None and self.info.captions is None:
            # captions began after the first picture: the manifests learn of them now
            self.info = replace(self.info, captions=self.caption_language)
            self.on_init(EncodedInit(self.info, self.init_data))

    def _emit(self, packets: list[av.Packet]) -> None:
        samples = []
        for packet in packets:
            raw = bytes(packet)
            if not self.sent_init and not packet.is_keyframe:
                continue
            self._announce(raw)
            pts = packet.pts if packet.pts is not None else 0
            dts = packet.dts if packet.dts is not None else pts
            samples.append(
                Sample(
                    data=self._with_captions(avc.annexb_to_mp4(raw), pts),
                    dts=dts,
                    pts=pts,
                    duration=self.frame_ticks,
                    keyframe=packet.is_keyframe,
                    capture_utc_s=self.capture.pop(pts, 0.0),
                )
            )
        if samples:
            self.counters.gave_frames(len(samples))
            self.on_samples(samples)


SINGLE_AUDIO = AudioTrack(0, "audio", "und", "", default=True, describes_video=False)


class AudioEncoder(_Worker):
    """AAC-LC 48 kHz stereo of one audio track, encoded once for every variant."""

    def __init__(
        self,
        *,
        bitrate: int,
        on_init: InitSink,
        on_samples: SampleSink,
        blocking: bool,
        track: AudioTrack = SINGLE_AUDIO,
    ) -> None:
        self.name = "encode-audio" if track.name == "audio" else f"encode-{track.name}"
        super().__init__(blocking=blocking, depth=400)
        self.track = track
        self.track_name = track.name
        self.bitrate = bitrate
        self.on_init = on_init
        self.on_samples = on_samples
        self.fifo = av.AudioFifo()
        # AAC frames start on one grid of the media clock, whole multiples of AAC_FRAME ticks: every encoder of
        # the stream (a redundant node, a restart) cuts the same frame edges, so a take-over continues the old
        # owner's audio with neither overlap nor hole, and its segments end where the manifests said they would
        self.next_pts: int | None = None  # media time of the first sample in the fifo (after _skip)
        self._skip = 0  # samples still to drop before the grid
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate = AUDIO_TIMESCALE
        ctx.layout = "stereo"
        ctx.format = "fltp"
        ctx.bit_rate = bitrate
        ctx.time_base = Fraction(1, AUDIO_TIMESCALE)
        ctx.open()
        self.ctx = ctx
        self.capture: dict[int, float] = {}
        self.first_pts: int | None = None  # encoder priming before this is not published
        asc = bytes(ctx.extradata) if ctx.extradata else aac.audio_specific_config(AUDIO_TIMESCALE, 2)
        info = TrackInfo(
            name=track.name,
            kind="audio",
            codec=aac.codec_string(),
            timescale=AUDIO_TIMESCALE,
            bitrate=bitrate,
            sample_rate=AUDIO_TIMESCALE,
            channels=2,
            language=track.language,
            label=track.label,
            default=track.default,
            describes_video=track.describes_video,
        )
        data = audio_init(
            track_id=1,
            timescale=AUDIO_TIMESCALE,
            sample_rate=AUDIO_TIMESCALE,
            channels=2,
            asc=asc,
            bitrate=bitrate,
            language=iso639_2t(track.language),
        )
        self.init = EncodedInit(info, data)
        self.sent_init = False

    def _handle(self, frame: av.AudioFrame, pts: int, capture_utc_s: float) -> None:  # type: ignore[override]
        if not self.sent_init:
            self.on_init(self.init)
            self.sent_init = True
        expected = None if self.next_pts is None else self.next_pts + self.fifo.samples - self._skip
        if expected is not None and abs(pts - expected) > AUDIO_TIMESCALE // 10:
            # the timeline moved (gap or re-anchor): drop what is buffered and start over there
            self.fifo = av.AudioFifo()
            self.next_pts = None
        if self.next_pts is None:
            self._skip = -pts % AAC_FRAME
            self.next_pts = pts + self._skip
        if self.first_pts is None:
            self.first_pts = self.next_pts
        frame.pts = None
        self.fifo.write(frame)
        if self._skip:
            skipped = min(self._skip, self.fifo.samples)
            self.fifo.read(skipped)
            self._skip -= skipped
        out = []
        while self.fifo.samples >= AAC_FRAME:
            chunk = self.fifo.read(AAC_FRAME)
            chunk.pts = self.next_pts
            chunk.time_base = Fraction(1, AUDIO_TIMESCALE)
            chunk.sample_rate = AUDIO_TIMESCALE
            self.capture[self.next_pts] = capture_utc_s
            self.next_pts += AAC_FRAME
            out.extend(self.ctx.encode(chunk))
        self.counters.took_frame(frame.samples / AUDIO_TIMESCALE)
        self._emit(out)

    def _flush(self) -> None:
        out = []
        if self.fifo.samples and self.next_pts is not None:
            chunk = self.fifo.read()
            chunk.pts = self.next_pts
            chunk.time_base = Fraction(1, AUDIO_TIMESCALE)
            out.extend(self.ctx.encode(chunk))
        try:
            out.extend(self.ctx.encode(None))
        except av.error.EOFError:
            pass
        self._emit(out)

    def _emit(self, packets: list[av.Packet]) -> None:
        samples = []
        for packet in packets:
            if packet.pts is None or (self.first_pts is not None and packet.pts < self.first_pts):
                continue  # the encoder's priming frame: no edit lists, so it is not published
            duration = packet.duration or AAC_FRAME
            samples.append(
                Sample(
                    data=bytes(packet),
                    dts=packet.pts,
                    pts=packet.pts,
                    duration=duration,
                    keyframe=True,
                    capture_utc_s=self.capture.pop(packet.pts + AAC_FRAME, self.capture.pop(packet.pts, 0.0)),
                )
            )
        if samples:
            self.counters.gave_frames(len(samples))
            self.on_samples(samples)
        if len(self.capture) > 1000:
            for key in sorted(self.capture)[:-100]:
                del self.capture[key]
