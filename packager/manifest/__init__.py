"""Manifest rendering: HLS playlists (:mod:`.hls`) and DASH MPDs (:mod:`.dash`).

Both renderers are pure functions of one :class:`~packager.model.StreamView`
snapshot: no I/O, no codecs, no web framework. This package module holds the
few rules both formats share:

* **Numbering.** Files are named by media sequence number (msn), and both HLS
  (implicit numbering from ``EXT-X-MEDIA-SEQUENCE``) and DASH (``$Number$``
  with a ``SegmentTimeline``) count one per listed segment. After a time gap in
  the feed (a source outage) the msns jump: HLS lists the missing msns as gaps
  (:func:`gap_filled`), DASH starts a new Period
  (:mod:`packager.manifest.timeline`).
* **Measured bitrates** of the segments in the window: :func:`peak_bitrate`,
  :func:`average_bitrate`.
* **Part durations.** Parts are cut on frame boundaries at or after each
  nominal part boundary, so when a part is not a whole number of frames
  (AAC: 1024 samples; 0.5 s at 48 kHz is 23.4 frames) a part may hold one
  frame more than fits (24 frames: 0.512 s). :func:`part_target` is the
  bound HLS must advertise (every part MUST be <= PART-TARGET).
* **Audio tracks**: the one players start with (:func:`default_audio`) and
  the names they show, unique in the stream (:func:`audio_labels`).
* **Stream state**: :func:`is_low_latency` (live and not ended) and
  :func:`is_vod` (a file packaged as VOD, as opposed to a live stream that
  ended).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from packager.model import Segment, StreamView, TrackInfo, TrackView

# Fallback when nothing was measured yet: the encoder's maxrate is 1.1 x the target.
PEAK_FACTOR = Fraction(11, 10)
PART_TARGET_RESOLUTION = 100_000  # PART-TARGET is rounded up to 10 microseconds (5 decimals)

# Samples per coded audio frame by codec string prefix (AAC-LC is the default).
_AUDIO_FRAME_SAMPLES = (("mp4a.40.5", 2048), ("mp4a.40.29", 2048), ("opus", 960), ("mp4a", 1024))


def is_low_latency(view: StreamView) -> bool:
    """True while the stream is live: manifests then carry parts, hints and live timing."""
    return view.live and not view.ended


def is_vod(view: StreamView) -> bool:
    """True for a file packaged as VOD (not a live stream that ended).

    The model anchors live media time to UTC (``epoch_s == 0``); a VOD clock
    starts at the wall time packaging began, so ``epoch_s`` is non-zero. An
    ended live stream therefore keeps its live-era playlist type.
    """
    return not view.live and view.epoch_s != 0


def gap_filled(
    segments: Sequence[Segment], producing: int | None, segment_ticks: int
) -> tuple[tuple[Segment, ...], bool]:
    """Every segment of the window in msn order, with a ``gap`` placeholder for each missing msn.

    A feed that dropped and came back leaves msns nobody produced (numbers follow
    UTC); HLS numbers segments implicitly, so each missing one is listed as an
    ``EXT-X-GAP`` segment of nominal duration. Returns the segments and whether
    ``producing`` (the msn in production) follows them (gaps before it are filled too).
    """
    out: list[Segment] = []
    for seg in segments:
        if out:
            for msn in range(out[-1].msn + 1, seg.msn):
                out.append(_gap(seg.track, msn, segment_ticks))
        out.append(seg)
    if producing is None:
        return tuple(out), False
    if out and producing <= out[-1].msn:
        return tuple(out), False
    if out:
        for msn in range(out[-1].msn + 1, producing):
            out.append(_gap(out[-1].track, msn, segment_ticks))
    return tuple(out), True


def _gap(track: str, msn: int, segment_ticks: int) -> Segment:
    return Segment(track, msn, msn * segment_ticks, segment_ticks, (), 0, gap=True)


def segment_bitrate(segment: Segment, timescale: int) -> int:
    """Bits per second of one segment (its size over its duration), rounded up."""
    if segment.duration <= 0:
        return 0
    return math.ceil(Fraction(segment.size * 8 * timescale, segment.duration))


def peak_bitrate(track: TrackView) -> int:
    """Highest measured segment bitrate in the window, never below 1.1 x the configured rate.

    The encoder's VBV caps peaks near the configured max rate; a quiet picture may measure far
    lower, and advertising that would let one rendition's BANDWIDTH fall below a smaller one's."""
    rates = [segment_bitrate(s, track.info.timescale) for s in track.segments if s.duration > 0]
    return max([math.ceil(track.info.bitrate * PEAK_FACTOR), *rates])


def average_bitrate(track: TrackView) -> int:
    """Mean measured bitrate over the window (total bits over total time); configured rate before any."""
    ticks = sum(s.duration for s in track.segments if s.duration > 0)
    if ticks <= 0:
        return track.info.bitrate
    bits = sum(s.size * 8 for s in track.segments if s.duration > 0)
    return math.ceil(Fraction(bits * track.info.timescale, ticks))


def frame_duration(info: TrackInfo) -> Fraction | None:
    """Duration (seconds) of one coded frame of the track, when the track info tells it."""
    if info.kind == "video" and info.frame_rate:
        return 1 / Fraction(info.frame_rate)
    if info.kind == "audio" and info.sample_rate:
        samples = next((n for prefix, n in _AUDIO_FRAME_SAMPLES if info.codec.startswith(prefix)), 1024)
        return Fraction(samples, info.sample_rate)
    return None


def frame_ticks(info: TrackInfo) -> int | None:
    """:func:`frame_duration` in the track's ticks, when that is a whole number of them."""
    frame = frame_duration(info)
    ticks = frame * info.timescale if frame is not None else None
    return int(ticks) if ticks is not None and ticks.denominator == 1 and ticks > 0 else None


def part_bound(info: TrackInfo, part_s: Fraction) -> Fraction:
    """Longest part the chunker cuts for this track: the part duration rounded up to whole frames.

    A part runs from the first frame at or after its boundary to the first
    frame at or after the next one, so it holds ``floor`` or ``ceil`` of
    ``part_s / frame`` frames whatever the phase of the frame grid.
    """
    frame = frame_duration(info)
    if frame is None:
        return Fraction(part_s)
    return math.ceil(Fraction(part_s) / frame) * frame


def part_target(view: StreamView) -> Fraction:
    """The stream's Part Target Duration: no part of any track (listed or to come) is longer.

    A function of the stream's tracks and settings (plus any longer part
    actually listed), so every media playlist of the stream advertises the same.
    """
    global _last_part_target
    last = _last_part_target
    if last is not None and last[0] is view:  # every media playlist of one state asks (twice each)
        return last[1]
    parted = [t for t in view.tracks if t.info.kind != "text"]  # a subtitle segment is one whole "part"
    longest = max((part_bound(t.info, view.part_s) for t in parted), default=Fraction(view.part_s))
    for t in parted:
        # integer ticks in the loop: a 60 s window of 0.2 s parts is 300 parts a track, every render
        ticks = max((p.duration for seg in t.segments for p in seg.parts), default=0)
        ticks = max(ticks, max((p.duration for p in t.pending), default=0))
        longest = max(longest, Fraction(ticks, t.info.timescale))
    value = Fraction(math.ceil(longest * PART_TARGET_RESOLUTION), PART_TARGET_RESOLUTION)
    _last_part_target = (view, value)  # one tuple, swapped whole: safe from any thread
    return value


_last_part_target: tuple[StreamView, Fraction] | None = None


def default_audio(audio: Sequence[TrackView]) -> int:
    """Position of the track players start with: the one marked default, else the first."""
    return next((i for i, a in enumerate(audio) if a.info.default), 0)


def audio_labels(audio: Sequence[TrackView]) -> list[str]:
    """Each track's NAME: its label (else its name), made unique within the group by a counter."""
    out: list[str] = []
    for a in audio:
        base = a.info.label or a.info.name
        label, n = base, 1
        while label in out:
            n += 1
            label = f"{base} ({n})"
        out.append(label)
    return out
