"""Realistic :class:`StreamView` snapshots built by hand (no PyAV, no store) for manifest tests.

Timing follows what the chunker produces from real encoders:

* a part closes with the frame that reaches its boundary, so each part (and
  segment) starts at the first frame start at or after its nominal boundary;
* video at 30 fps on a 90 kHz clock: 0.5 s parts and 2 s segments are whole
  frames and fall exactly on boundaries (0.25 s parts alternate 8 and 7 frames);
* AAC audio on a 48 kHz clock in 1024-sample frames: durations wobble by a
  frame (0.5 s parts are 23 or 24 frames).

Live views use UTC-anchored media time (``epoch_s == 0``, msns around
875 000 000); VOD views start media time at zero with a wall-clock epoch.
Sizes follow each track's bitrate with a larger keyframe part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from fractions import Fraction

from packager.model import PartRef, Segment, StreamView, TrackInfo, TrackView

V720 = TrackInfo("720p", "video", "avc1.64001f", 90_000, 3_000_000, 1280, 720, Fraction(30))
V480 = TrackInfo("480p", "video", "avc1.64001e", 90_000, 1_400_000, 854, 480, Fraction(30))
V360 = TrackInfo("360p", "video", "avc1.64001e", 90_000, 800_000, 640, 360, Fraction(30))
AUDIO = TrackInfo("audio", "audio", "mp4a.40.2", 48_000, 128_000, sample_rate=48_000, channels=2, language="en")
LADDER = (V720, V480, V360, AUDIO)

AAC_FRAME = 1024
STYP_SIZE = 24
LIVE_MSN = 875_000_000  # 2-second segments around late 2025 on a UTC clock
VOD_EPOCH = Fraction(1_764_000_000)


def _align(ticks: int, info: TrackInfo) -> int:
    """Where media actually starts for a nominal boundary: the first frame start at or after it."""
    if info.kind == "audio":
        frame = AAC_FRAME
    else:
        assert info.frame_rate is not None
        frame_exact = info.timescale / Fraction(info.frame_rate)
        assert frame_exact.denominator == 1, "whole-tick frame durations only"
        frame = int(frame_exact)
    return -(-ticks // frame) * frame


def _part_size(info: TrackInfo, msn: int, index: int, duration: int) -> int:
    bits = info.bitrate * duration / info.timescale
    if info.kind == "audio":
        return max(1, round(bits / 8))
    # keyframe parts are heavy, the rest vary a little from segment to segment
    factor = 2.2 if index == 0 else 0.55 + 0.15 * ((msn + index) % 3)
    return max(1, round(bits * factor / 8))


def make_part(info: TrackInfo, msn: int, index: int, segment_s: Fraction, part_s: Fraction) -> PartRef:
    seg_ticks = int(segment_s * info.timescale)
    part_ticks = int(part_s * info.timescale)
    start = _align(msn * seg_ticks + index * part_ticks, info)
    end = _align(msn * seg_ticks + (index + 1) * part_ticks, info)
    return PartRef(
        msn=msn,
        index=index,
        start=start,
        duration=end - start,
        independent=index == 0 or info.kind == "audio",
        size=_part_size(info, msn, index, end - start),
    )


def make_segment(
    info: TrackInfo, msn: int, segment_s: Fraction, part_s: Fraction, *, discontinuity: bool = False
) -> Segment:
    count = int(segment_s / part_s)
    parts = tuple(make_part(info, msn, i, segment_s, part_s) for i in range(count))
    return Segment(
        track=info.name,
        msn=msn,
        start=parts[0].start,
        duration=parts[-1].start + parts[-1].duration - parts[0].start,
        parts=parts,
        size=STYP_SIZE + sum(p.size for p in parts),
        discontinuity=discontinuity,
        published_utc_s=float(Fraction(parts[-1].start + parts[-1].duration, info.timescale)),
    )


def make_track(
    info: TrackInfo,
    msns: Iterable[int],
    *,
    segment_s: Fraction = Fraction(2),
    part_s: Fraction = Fraction(1, 2),
    pending_parts: int = 2,
    pending_msn: int | None = None,
    discontinuities: Iterable[int] = (),
    discontinuity_sequence: int = 0,
    live: bool = True,
) -> TrackView:
    """A track holding complete segments ``msns`` and ``pending_parts`` parts of the next segment.

    ``pending_msn`` defaults to the msn after the last complete segment; a
    discontinuity at that msn marks the segment in production. When not
    ``live`` nothing is pending and there is no preload hint.
    """
    msns = sorted(msns)
    marks = set(discontinuities)
    segments = tuple(make_segment(info, m, segment_s, part_s, discontinuity=m in marks) for m in msns)
    per_segment = int(segment_s / part_s)
    if pending_msn is None:
        pending_msn = msns[-1] + 1 if msns else LIVE_MSN
    if not live:
        return TrackView(info, segments, (), None, None, discontinuity_sequence=discontinuity_sequence)
    pending = tuple(make_part(info, pending_msn, i, segment_s, part_s) for i in range(pending_parts))
    if pending_parts >= per_segment:
        raise ValueError("a full segment is not pending: list it as complete")
    next_part = (pending_msn, pending_parts)
    return TrackView(
        info=info,
        segments=segments,
        pending=pending,
        pending_msn=pending_msn if pending else None,
        next_part=next_part,
        discontinuity_sequence=discontinuity_sequence,
        pending_discontinuity=bool(pending) and pending_msn in marks,
    )


def make_view(
    *,
    infos: tuple[TrackInfo, ...] = LADDER,
    first_msn: int | None = None,
    count: int = 10,
    pending_parts: int = 2,
    live: bool = True,
    ended: bool = False,
    segment_s: Fraction = Fraction(2),
    part_s: Fraction = Fraction(1, 2),
    window_s: Fraction = Fraction(60),
    gaps: Iterable[int] = (),
    discontinuities: Iterable[int] = (),
    discontinuity_sequence: int = 0,
    version: int = 1,
) -> StreamView:
    """A stream view: ``count`` consecutive msns from ``first_msn`` minus ``gaps``, for every track.

    ``live``: a live stream in progress (UTC clock). ``ended``: a live stream
    that ended (the store then reports ``live=False``). Neither: VOD.
    """
    vod = not live and not ended
    if first_msn is None:
        first_msn = 0 if vod else LIVE_MSN
    gap_set = set(gaps)
    msns = [first_msn + i for i in range(count) if first_msn + i not in gap_set]
    in_progress = live and not ended
    tracks = tuple(
        make_track(
            info,
            msns,
            segment_s=segment_s,
            part_s=part_s,
            pending_parts=pending_parts,
            discontinuities=discontinuities,
            discontinuity_sequence=discontinuity_sequence,
            live=in_progress,
        )
        for info in infos
    )
    epoch = VOD_EPOCH if vod else Fraction(0)
    newest = max(
        (
            Fraction(
                t.pending[-1].start + t.pending[-1].duration if t.pending else t.segments[-1].end,
                t.info.timescale,
            )
            for t in tracks
            if t.pending or t.segments
        ),
        default=Fraction(0),
    )
    return StreamView(
        name="demo",
        version=version,
        segment_s=segment_s,
        part_s=part_s,
        window_s=window_s,
        target_duration=max(1, -(-segment_s.numerator // segment_s.denominator)),
        epoch_s=epoch,
        live=in_progress,
        ended=ended,
        tracks=tracks,
        published_utc_s=float(epoch + newest) + 0.05,
    )


def advance(view: StreamView, parts: int = 1) -> StreamView:
    """The same stream ``parts`` part positions later: the window slides like the store's."""
    per_segment = int(view.segment_s / view.part_s)
    tracks = []
    for t in view.tracks:
        segments = list(t.segments)
        pending_msn = t.pending_msn if t.pending_msn is not None else (t.next_part or (0, 0))[0]
        pending = list(t.pending)
        for _ in range(parts):
            pending.append(make_part(t.info, pending_msn, len(pending), view.segment_s, view.part_s))
            if len(pending) == per_segment:
                segments.append(make_segment(t.info, pending_msn, view.segment_s, view.part_s))
                pending, pending_msn = [], pending_msn + 1
        limit = (pending[-1].start + pending[-1].duration if pending else segments[-1].end) - int(
            view.window_s * t.info.timescale
        )
        dseq = t.discontinuity_sequence
        while len(segments) > 1 and segments[0].end <= limit:
            segments.pop(0)
            if segments[0].discontinuity:
                dseq += 1  # the store counts the tag of a segment that becomes the first
        tracks.append(
            replace(
                t,
                segments=tuple(segments),
                pending=tuple(pending),
                pending_msn=pending_msn if pending else None,
                next_part=(pending_msn, len(pending)),
                discontinuity_sequence=dseq,
                pending_discontinuity=False,
            )
        )
    return replace(
        view,
        version=view.version + parts,
        tracks=tuple(tracks),
        published_utc_s=view.published_utc_s + float(view.part_s) * parts,
    )
