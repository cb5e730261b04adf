"""What a DASH MPD lists: each Representation's segments, grouped into one Period per unbroken run.

``$Number$`` counts one per ``S`` entry of a ``SegmentTimeline`` (dash.js
ignores ``S@n``, dash.js issue 5107), so segment numbers can only skip where a
new Period starts with its own ``startNumber``. A feed or encoder that stopped
and came back later (msns follow UTC, so the numbers jump) therefore starts a
new Period; the older run stays listed in the Period before it, and the time
between them is a hole in the presentation (ISO/IEC 23009-1 5.3.2: a Period
lasts until the next one starts, its media may end earlier).

Period identity must not move while the Period is listed (players match
Periods across MPD updates by ``@id``): a Period is named by its run's first
msn (:attr:`packager.model.Segment.run`, which every segment carries, so the
name outlives that first segment's leaving the window), and starts at that
msn's nominal boundary, ``run * segment_s`` on the UTC media timeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from packager.manifest import frame_ticks
from packager.model import StreamView, TrackView


@dataclass(frozen=True)
class TimelineEntry:
    """One segment as the SegmentTimeline lists it (``producing``: the one still being produced)."""

    msn: int
    start: int
    duration: int
    producing: bool = False
    run: int | None = None  # first msn of its unbroken run (None: its own)

    @property
    def run_msn(self) -> int:
        return self.msn if self.run is None else self.run


@dataclass(frozen=True)
class S:
    """One ``S`` element: ``t`` only where times are not contiguous with the previous entry."""

    t: int | None
    d: int
    r: int = 0


@dataclass(frozen=True)
class PeriodPlan:
    """One Period: its run (None before anything is listed), where it starts and what it lists.

    ``origin_s`` is the media time at the Period's start (each Representation's
    ``presentationTimeOffset``); ``start_s`` is ``Period@start``."""

    run: int | None
    origin_s: Fraction
    start_s: Fraction
    entries: Mapping[str, tuple[TimelineEntry, ...]]

    @property
    def id(self) -> str:
        return "0" if self.run is None else str(self.run)


def still_producing(view: StreamView, now_utc_s: float) -> bool:
    """Whether a live stream's segment due next can still be promised: something was published within
    the last segment duration. Longer than that with nothing new (every encoder down), an MPD that
    listed it early would name media no encoder may ever make; the origin waits at most two segments
    for it before answering 404."""
    return now_utc_s - view.published_utc_s <= float(view.segment_s)


def production_msn(track: TrackView) -> int | None:
    """Msn of the segment in production: the pending one, or the next one once the previous closed."""
    if track.pending_msn is not None:
        return track.pending_msn
    if track.next_part is not None and (not track.segments or track.next_part[0] > track.segments[-1].msn):
        return track.next_part[0]
    return None


def production_end(track: TrackView, start: int, boundary: int) -> int:
    """Where the segment in production will end. The chunker closes a segment with the sample that
    reaches its boundary, so with samples of one length it ends on the first sample edge at or past it:
    an audio segment overruns its nominal end by up to one AAC frame. Listed so from the start, the
    entry does not change when the segment closes (a SegmentTimeline entry must not change between MPD
    updates), and a player asks for the next segment at the time it really starts: dash.js, told the
    nominal end, looks for the next segment there, finds the one it just loaded, and waits for the MPD
    update after next."""
    step = frame_ticks(track.info)
    if not step or boundary <= start:
        return boundary
    return start + -(-(boundary - start) // step) * step


def timeline_entries(view: StreamView, track: TrackView, *, with_production: bool) -> tuple[TimelineEntry, ...]:
    """Every segment of the track's window, plus (``with_production``) the one in production."""
    entries: list[TimelineEntry] = []
    for s in track.segments:
        prev = entries[-1] if entries else None
        run = s.run if s.run is not None or prev is None or prev.msn + 1 != s.msn else prev.run_msn
        entries.append(TimelineEntry(s.msn, s.start, s.duration, run=run))
    producing = production_msn(track) if with_production else None
    last = track.segments[-1] if track.segments else None
    if producing is None or (last is not None and producing <= last.msn):
        return _without_holes(entries, int(view.segment_s * track.info.timescale))
    follows = last is not None and last.msn + 1 == producing
    if not follows and not track.pending:
        # a new run is listed from its first real part on: the number a new owner expected to resume at
        # may never be produced (its encoder was still starting)
        return _without_holes(entries, int(view.segment_s * track.info.timescale))
    segment_ticks = int(view.segment_s * track.info.timescale)
    if track.pending:
        start = track.pending[0].start
    elif follows and last is not None:
        start = last.end
    else:
        start = producing * segment_ticks
    duration = production_end(track, start, (producing + 1) * segment_ticks) - start
    if not 0 < duration <= segment_ticks + (frame_ticks(track.info) or 0):
        duration = segment_ticks
    run = entries[-1].run_msn if follows and entries else producing
    entries.append(TimelineEntry(producing, start, duration, producing=True, run=run))
    return _without_holes(entries, int(view.segment_s * track.info.timescale))


def _without_holes(entries: list[TimelineEntry], segment_ticks: int) -> tuple[TimelineEntry, ...]:
    """Consecutive segments listed back to back: one that ends early (cut by a failover, its missing tail
    marked GAP in HLS) is listed up to the next one's start, as HLS lists it at its nominal duration.

    dash.js asks for the segment at the previous one's end plus 10 ms and finds nothing inside a timeline
    hole, so it would wait there until something seeks it past; a short gap *inside* the media it steps
    over like any buffer gap."""
    for i in range(len(entries) - 1):
        e, f = entries[i], entries[i + 1]
        if f.msn == e.msn + 1 and 0 < f.start - (e.start + e.duration) < segment_ticks:
            entries[i] = dataclasses.replace(e, duration=f.start - e.start)
    return tuple(entries)


def compress_timeline(entries: Sequence[TimelineEntry]) -> tuple[S, ...]:
    """``S`` elements for ``entries``: equal contiguous durations fold into ``r``."""
    out: list[S] = []
    prev_end: int | None = None
    for e in entries:
        contiguous = prev_end is not None and e.start == prev_end
        if out and contiguous and out[-1].d == e.duration:
            out[-1] = S(out[-1].t, out[-1].d, out[-1].r + 1)
        elif contiguous:
            out.append(S(None, e.duration))
        else:
            out.append(S(e.start, e.duration))
        prev_end = e.start + e.duration
    return tuple(out)


def plan_periods(
    view: StreamView, per_track: Mapping[str, tuple[TimelineEntry, ...]], *, static_origin_s: Fraction | None
) -> tuple[PeriodPlan, ...]:
    """The Periods for ``per_track`` (each track's :func:`timeline_entries`), oldest first.

    A Period is listed only while every track that lists anything has entries in
    it: the newest one appears once each rendition has begun it, the oldest goes
    as soon as one rendition's window slid past it. Subtitle tracks do not count
    while any audio or video track lists media. ``static_origin_s`` (a static
    MPD) is the first media time: presentation time zero, where the first Period
    starts; a dynamic MPD keeps the UTC media timeline (zero at the epoch)."""
    presentation_origin = static_origin_s or Fraction(0)
    listing = [name for name, entries in per_track.items() if entries]
    # Subtitles follow the media's Periods: a subtitle rendition that begins mid-stream (the live cue API)
    # neither starts a Period nor holds back the ones it has no segment in.
    kinds = {t.info.name: t.info.kind for t in view.tracks}
    listing = [name for name in listing if kinds.get(name) != "text"] or listing
    runs = sorted({e.run_msn for name in listing for e in per_track[name]})
    plans: list[PeriodPlan] = []
    for i, run in enumerate(runs):
        upto = runs[i + 1] if i + 1 < len(runs) else None
        entries = {
            name: tuple(e for e in es if e.msn >= run and (upto is None or e.msn < upto))
            for name, es in per_track.items()
        }
        if not all(entries[name] for name in listing):
            continue
        origin = run * view.segment_s
        if static_origin_s is not None and not plans:
            origin = static_origin_s
        plans.append(PeriodPlan(run, origin, origin - presentation_origin, entries))
    if not plans:
        empty = {name: () for name in per_track}
        plans.append(PeriodPlan(None, presentation_origin, Fraction(0), empty))
    return tuple(plans)
