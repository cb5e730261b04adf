"""Any input PyAV opens: files (mp4, mkv, ts, flv, ...) and URLs (rtmp, rtsp, srt, http, udp).

Decodes once on the source thread, rebases timestamps onto the media clock
(UTC-anchored when paced/live, zero-based for ``--fast`` VOD), converts video
to a constant frame rate, and paces delivery at 1x unless told not to. A
corrupt packet is counted and skipped; a decoder error on one frame never
ends the stream. A pushed byte stream (``reader``) is always opened with one
of the push demuxers and its safety options (see :mod:`packager.admission`),
never with format probing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from fractions import Fraction
from typing import BinaryIO

import av

from packager.admission import PUSH_FORMATS, InputLimits, demuxer_options
from packager.prescan import declared_size
from packager.sources.audiolane import AudioLane, describe
from packager.sources.base import FrameSink, SourceError, SourceInfo
from packager.sources.clock import CfrScheduler, CueClock, Rebaser, grid_ticks
from packager.sources.textlane import TextLane, describe_text, text_streams
from packager.timebase import AUDIO_TIMESCALE, VIDEO_TIMESCALE

log = logging.getLogger(__name__)

PRESCAN_BYTES = 256 * 1024  # the SPS sits in the first video PES / the first FLV video tag
PRESCAN_S = 1.0  # a push with no H.264 SPS that early (audio only, HEVC) waits this long more
PRESCAN_STEP = 8 * 1024  # bytes to wait for between two looks

_NETWORK = ("rtmp://", "rtmps://", "rtsp://", "srt://", "http://", "https://", "udp://", "tcp://", "rtp://")


class InputOverLimit(SourceError):
    """The input's picture size or frame rate is over the configured limits."""


class InputStalled(SourceError):
    """A pushed byte stream sent nothing for longer than its reader waits."""


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _cue_streams(container: av.container.InputContainer) -> list:  # type: ignore[type-arg]
    """The input's SCTE-35 PIDs (FFmpeg exposes them as ``scte_35`` data streams)."""
    return [s for s in container.streams.data if getattr(s, "name", None) == "scte_35"]


class MediaSource:
    """A file or URL decoded with PyAV."""

    def __init__(
        self,
        url: str,
        *,
        paced: bool = True,
        loop: bool = False,
        fps: Fraction | None = None,
        open_timeout_s: float = 10.0,
        reader: BinaryIO | None = None,
        format: str | None = None,
        live: bool | None = None,
        options: dict[str, str] | None = None,
        limits: InputLimits | None = None,
    ) -> None:
        """``reader``: a pushed byte stream (``url`` only names it), opened as ``format``, one of the push formats.

        ``limits``: refuse (in ``probe``) a picture or frame rate over them."""
        if reader is not None and format not in PUSH_FORMATS:
            raise ValueError(f"a pushed byte stream needs a push format ({', '.join(PUSH_FORMATS)}), got {format!r}")
        self.url = url
        self.options = dict(options or {})  # demuxer options, e.g. a short probe for FLV from RTMP
        if reader is not None:
            self.options |= demuxer_options(format)  # type: ignore[arg-type]  # the safety options always win
        self.reader = reader
        self.format = format
        self.limits = limits
        self.live = paced if live is None else live
        self.not_before_s = 0.0  # a returning feed starts after the media already published
        self.paced = paced
        self.loop = loop
        self.want_fps = fps
        self.open_timeout_s = open_timeout_s
        self.info = SourceInfo(url, False, False)
        self.corrupt_packets = 0
        self.decode_errors = 0
        self.audio_streams: tuple[int, ...] = (0,)  # which input audio streams to decode (select_audio)
        self._container: av.container.InputContainer | None = None

    @property
    def is_network(self) -> bool:
        return self.url.startswith(_NETWORK)

    def _prescan(self) -> None:
        """Refuse a push whose declared picture is over the limits before any decoder sizes frames from it.

        Looks at (without taking) at most ``PRESCAN_BYTES`` for at most ``PRESCAN_S``; finding no
        H.264 SPS in that time leaves the decision to the probe."""
        peek = getattr(self.reader, "peek", None)
        if peek is None or self.limits is None or self.format not in ("mpegts", "flv"):
            return
        deadline = time.monotonic() + PRESCAN_S
        seen = b""
        while len(seen) < PRESCAN_BYTES and (remaining := deadline - time.monotonic()) > 0:
            more = peek(PRESCAN_BYTES, len(seen) + PRESCAN_STEP - 1 if seen else 0, remaining)
            if len(more) <= len(seen):
                return  # the end of the push, or nothing new in time
            seen = more
            size = declared_size(self.format, seen)
            if size is not None:
                problem = self.limits.problem(*size, None)
                if problem is not None:
                    raise InputOverLimit(f"{self.url}: {problem} (declared by its SPS)")
                return

    def _open(self) -> av.container.InputContainer:
        if self.reader is not None:
            try:
                return av.open(self.reader, mode="r", format=self.format, options=self.options)
            except TimeoutError as exc:
                raise InputStalled(f"{self.url}: {exc}") from None
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                raise SourceError(f"{self.url}: not a media stream PyAV can read: {_error_text(exc)}") from None
        if not self.is_network and not os.path.exists(self.url):
            raise SourceError(f"{self.url}: no such file")
        if not self.is_network and os.path.isdir(self.url):
            raise SourceError(f"{self.url}: is a directory, not a media file")
        try:
            return av.open(self.url, mode="r", timeout=(self.open_timeout_s, self.open_timeout_s))
        except av.error.FileNotFoundError:
            raise SourceError(f"{self.url}: no such file") from None
        except av.error.PermissionError:
            raise SourceError(f"{self.url}: permission denied") from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(f"{self.url}: cannot open: {_error_text(exc)}") from None

    def probe(self) -> SourceInfo:
        if self._container is not None:  # already probed and not yet run
            return self.info
        self._prescan()
        container = self._open()
        video = next((s for s in container.streams.video if s.codec_context is not None), None)
        audio = next((s for s in container.streams.audio if s.codec_context is not None), None)
        if video is None and audio is None:
            container.close()
            raise SourceError(f"{self.url}: no audio or video stream found")
        width = height = 0
        fps = self.want_fps or Fraction(30)
        if video is not None:
            width, height = video.codec_context.width, video.codec_context.height
            if not width or not height:
                container.close()
                raise SourceError(f"{self.url}: video stream has no picture size (corrupt or unsupported)")
            rate = video.average_rate or video.guessed_rate or video.base_rate
            problem = self.limits.problem(width, height, Fraction(rate) if rate else None) if self.limits else None
            if problem is not None:
                container.close()
                raise InputOverLimit(f"{self.url}: {problem}")
            if self.want_fps is None and rate and 1 <= rate <= 120:
                fps = Fraction(rate).limit_denominator(1001)
        self._container = container
        self.info = SourceInfo(
            description=self.url,
            has_video=video is not None,
            has_audio=audio is not None,
            width=width,
            height=height,
            fps=fps,
            live=self.live,
            duration_s=self._duration_s(container),
            audio_streams=tuple(describe(s, i) for i, s in enumerate(container.streams.audio)),
            subtitle_streams=tuple(describe_text(s, i) for i, s in enumerate(text_streams(container))),
        )
        return self.info

    def select_audio(self, streams: tuple[int, ...]) -> None:
        self.audio_streams = tuple(streams)

    def _lanes(self, container: av.container.InputContainer, lanes: list[AudioLane]) -> dict[int, AudioLane]:
        """Container stream index -> the lane of each selected audio stream this input has."""
        audio = container.streams.audio
        return {audio[lane.stream].index: lane for lane in lanes if lane.stream < len(audio)}

    def _duration_s(self, container: av.container.InputContainer) -> float | None:
        """The file's duration from its header (None for a looped input or one that does not say)."""
        if self.loop or not container.duration or container.duration <= 0:
            return None
        return container.duration / av.time_base

    def close(self) -> None:
        """Give up a probed input that will not be run. Safe to call more than once."""
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def run(self, sink: FrameSink, stop: threading.Event, duration_s: float | None = None) -> str:
        container = self._container or self._open()
        self._container = None
        info = self.info
        fps = info.fps
        frame_ticks_f = VIDEO_TIMESCALE / fps
        frame_ticks = round(frame_ticks_f)
        start_s = Fraction(max(time.time(), self.not_before_s))
        anchor_ticks = grid_ticks(start_s, frame_ticks, VIDEO_TIMESCALE) if info.live else 0
        anchor_s = Fraction(anchor_ticks, VIDEO_TIMESCALE)
        rebaser = Rebaser(anchor_s)
        cues = CueClock(rebaser)
        cfr = CfrScheduler(frame_ticks, anchor_ticks)
        lanes = [AudioLane(s, "a" if i == 0 else f"a{s}") for i, s in enumerate(self.audio_streams)]
        wall0 = time.monotonic()
        end_ticks = None if duration_s is None else anchor_ticks + int(Fraction(duration_s) * VIDEO_TIMESCALE)
        reason = "end of input"
        try:
            while True:
                by_stream = self._lanes(container, lanes)
                streams = [*container.streams.video[:1], *(container.streams[i] for i in by_stream)]
                for s in streams:
                    s.thread_type = "AUTO"
                streams += _cue_streams(container)
                texts = TextLane(text_streams(container), rebaser)
                streams += list(text_streams(container))
                for packet in self._packets(container, streams, stop):
                    if packet.stream.type == "data":
                        if packet.size:
                            sink.cue(bytes(packet), cues.to_media)
                        continue
                    if packet.stream.type == "subtitle":
                        for cue in texts.cues(packet):
                            if end_ticks is None or cue[1] * VIDEO_TIMESCALE < end_ticks * 1000:
                                sink.text(*cue)
                        continue
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as exc:
                        self.decode_errors += 1
                        log.debug("%s: decode error: %s", self.url, _error_text(exc))
                        continue
                    for frame in frames:
                        if stop.is_set():
                            return "stopped"
                        if isinstance(frame, av.VideoFrame):
                            src_s = (
                                Fraction(frame.pts * frame.time_base)
                                if frame.pts is not None and frame.time_base
                                else None
                            )
                            if src_s is None:
                                src_s = rebaser.expected.get("v", anchor_s) - (rebaser.offset_s or 0)
                            media_s = rebaser.media_s("v", src_s, 1 / fps)
                            cues.saw_video(src_s)
                            t_ticks = round(media_s * VIDEO_TIMESCALE)
                            if end_ticks is not None and t_ticks >= end_ticks:
                                return "duration reached"
                            for slot in cfr.slots(t_ticks):
                                if self.paced and not self._pace(wall0, slot - anchor_ticks, VIDEO_TIMESCALE, stop):
                                    return "stopped"
                                capture = float(Fraction(slot, VIDEO_TIMESCALE)) if info.live else time.time()
                                sink.video(frame, slot, capture)
                        elif isinstance(frame, av.AudioFrame):
                            lane = by_stream[packet.stream.index]
                            src_s = (
                                Fraction(frame.pts * frame.time_base)
                                if frame.pts is not None and frame.time_base
                                else None
                            )
                            dur = Fraction(frame.samples, frame.sample_rate or AUDIO_TIMESCALE)
                            if src_s is None:
                                src_s = rebaser.expected.get(lane.clock_key, anchor_s) - (rebaser.offset_s or 0)
                            media_s = rebaser.media_s(lane.clock_key, src_s, dur)
                            if end_ticks is not None and media_s * VIDEO_TIMESCALE >= end_ticks:
                                continue
                            lane.place(media_s)
                            try:
                                out = lane.resample(frame)
                            except (av.error.FFmpegError, ValueError) as exc:
                                self.decode_errors += 1
                                log.debug("%s: audio resample error: %s", self.url, _error_text(exc))
                                continue
                            for af in out:
                                if (
                                    lane is lanes[0]
                                    and not info.has_video
                                    and self.paced
                                    and not self._pace(
                                        wall0, lane.next - round(anchor_s * AUDIO_TIMESCALE), AUDIO_TIMESCALE, stop
                                    )
                                ):
                                    return "stopped"
                                capture = lane.next / AUDIO_TIMESCALE if info.live else time.time()
                                sink.audio(af, lane.advance(af.samples), capture, lane.stream)
                if stop.is_set():
                    return "stopped"
                if not self.loop or self.reader is not None:
                    return reason
                container.close()
                container = self._open()
                # Continue the timeline: the next source start maps onto the expected times.
                rebaser.offset_s = None
                next_v = rebaser.expected.get("v") or rebaser.expected.get("a") or anchor_s
                rebaser.anchor_s = next_v
                rebaser.expected.clear()
        except SourceError as exc:
            return str(exc)
        finally:
            container.close()

    def _packets(self, container: av.container.InputContainer, streams: list, stop: threading.Event):
        demux = container.demux(streams)
        while not stop.is_set():
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.InvalidDataError as exc:
                self.corrupt_packets += 1
                log.debug("%s: invalid data: %s", self.url, _error_text(exc))
                if self.corrupt_packets > 10_000:
                    raise SourceError(f"{self.url}: too much invalid data") from None
                continue
            except (av.error.FFmpegError, OSError) as exc:
                raise SourceError(f"{self.url}: read failed: {_error_text(exc)}") from None
            yield packet  # the final empty packet per stream drains its decoder
        return

    def _pace(self, wall0: float, ticks_from_start: int, timescale: int, stop: threading.Event) -> bool:
        delay = wall0 + ticks_from_start / timescale - time.monotonic()
        if delay > 0:
            return not stop.wait(delay)
        return True
