"""HLS playlists: the multivariant playlist and Low-Latency HLS media playlists (RFC 8216bis).

Pure text renderers over one :class:`~packager.model.StreamView`:

* :func:`render_master` - the multivariant playlist: one ``EXT-X-STREAM-INF``
  per video rendition, all sharing one audio group with an ``EXT-X-MEDIA``
  per audio track (language, name, default, channels, audio description).
* :func:`render_media` - one track's media playlist. While the stream is live
  it is a Low-Latency HLS playlist (``EXT-X-SERVER-CONTROL``, ``EXT-X-PART``,
  ``EXT-X-PRELOAD-HINT``, ``EXT-X-RENDITION-REPORT``, optional delta update
  with ``EXT-X-SKIP``); once ended, or for VOD, it is a plain playlist closed
  by ``EXT-X-ENDLIST``.

Rules this module keeps (see DESIGN.md "Rules that peers get wrong"):

* ``EXT-X-TARGETDURATION`` is the view's (fixed) target duration;
  ``EXT-X-SERVER-CONTROL`` and ``EXT-X-PART-INF`` depend only on stream-wide
  values, so every media playlist of a stream carries the same ones.
  ``PART-TARGET`` is :func:`packager.manifest.part_target`: the configured
  part duration rounded up to whole frames of every track (0.512 s for 0.5 s
  parts of 48 kHz AAC), since every part MUST be <= PART-TARGET;
  ``PART-HOLD-BACK`` is the latency profile's multiple of it (at least three
  times), rounded up so it never falls below.
* Segment numbers are the file msns. HLS numbers segments implicitly from
  ``EXT-X-MEDIA-SEQUENCE``, so after a time gap each msn nobody produced is
  listed as an ``EXT-X-GAP`` segment (:func:`packager.manifest.gap_filled`).
* Discontinuities: ``TrackView.discontinuity_sequence`` already counts the
  discontinuity of the first segment in the window (the store increments it
  when such a segment becomes the first), so no ``EXT-X-DISCONTINUITY`` is
  written before the first listed segment, and segments dropped with an older
  run add theirs to ``EXT-X-DISCONTINUITY-SEQUENCE``. The sequence is the same
  in a delta update as in the full playlist.
* Partial segments are listed for segments that start within the last three
  target durations of the playlist's end, and for the segment in production.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from packager.manifest import (
    audio_labels,
    average_bitrate,
    default_audio,
    gap_filled,
    is_low_latency,
    is_vod,
    part_target,
    peak_bitrate,
)
from packager.manifest.adbreaks import cue_tags, dateranges
from packager.model import (
    INIT_NAME,
    MEDIA_PLAYLIST_NAME,
    PartRef,
    Segment,
    StreamView,
    TrackView,
    part_name,
    segment_name,
    text_segment_name,
)
from packager.timebase import iso_from_epoch_s

HLS_VERSION = 6  # EXT-X-MAP in a Media Playlist without EXT-X-I-FRAMES-ONLY
HLS_SKIP_VERSION = 9  # a Playlist containing EXT-X-SKIP (rfc8216bis, protocol version compatibility)
AUDIO_GROUP = "audio"
CC_GROUP = "cc"
SUBTITLES_GROUP = "subs"
DESCRIBES_VIDEO = "public.accessibility.describes-video"  # EXT-X-MEDIA CHARACTERISTICS of an audio description

PART_WINDOW_TARGETS = 3  # parts listed for segments starting within 3 target durations of the end
HOLD_BACK_TARGETS = 3  # HOLD-BACK >= 3 x TARGETDURATION
SKIP_TARGETS = 6  # CAN-SKIP-UNTIL >= 6 x TARGETDURATION

_DECIMALS = 5


def fmt_seconds(value: Fraction | int, *, round_up: bool = False) -> str:
    """Seconds as an HLS decimal: up to 5 decimals, trailing zeros trimmed, at least one decimal.

    ``2 -> "2.0"``, ``1/2 -> "0.5"``, ``2.021333.. -> "2.02133"`` (``"2.02134"`` with ``round_up``).
    """
    scale = 10**_DECIMALS
    scaled = math.ceil(Fraction(value) * scale) if round_up else round(Fraction(value) * scale)
    whole, frac = divmod(scaled, scale)
    digits = f"{frac:0{_DECIMALS}d}".rstrip("0") or "0"
    return f"{whole}.{digits}"


def _quoted(text: str) -> str:
    return f'"{text}"'


# --------------------------------------------------------------------------- multivariant


def audio_media_lines(audio: Sequence[TrackView]) -> list[str]:
    """One ``EXT-X-MEDIA TYPE=AUDIO`` per track, all in one group, exactly one ``DEFAULT=YES``.

    ``LANGUAGE`` is the track's BCP 47 tag (left out when undetermined), ``CHANNELS`` the AAC
    channel count, and an audio description carries
    ``CHARACTERISTICS="public.accessibility.describes-video"``."""
    default = default_audio(audio)
    lines = []
    for i, (a, label) in enumerate(zip(audio, audio_labels(audio), strict=True)):
        attrs = ["TYPE=AUDIO", f"GROUP-ID={_quoted(AUDIO_GROUP)}", f"NAME={_quoted(label)}"]
        if a.info.language and a.info.language != "und":
            attrs.append(f"LANGUAGE={_quoted(a.info.language)}")
        attrs += [f"DEFAULT={'YES' if i == default else 'NO'}", "AUTOSELECT=YES"]
        if a.info.describes_video:
            attrs.append(f"CHARACTERISTICS={_quoted(DESCRIBES_VIDEO)}")
        if a.info.channels:
            attrs.append(f"CHANNELS={_quoted(str(a.info.channels))}")
        attrs.append(f"URI={_quoted(_media_uri(a.info.name))}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    return lines


def render_master(view: StreamView) -> str:
    """The multivariant playlist: every video rendition as a variant referencing one audio group.

    ``BANDWIDTH`` is the peak measured segment bitrate of the video plus that
    of the audio (1.1 x the configured rate before anything was measured), and
    never lower than ``AVERAGE-BANDWIDTH``. Without video, each audio track is
    a variant of its own; without audio, variants carry no ``AUDIO`` group.
    """
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    video = view.video
    audio = view.audio
    audio_peak = max((peak_bitrate(a) for a in audio), default=0)
    audio_average = max((average_bitrate(a) for a in audio), default=0)
    audio_codecs = list(dict.fromkeys(a.info.codec for a in audio))

    if video and audio:
        lines += audio_media_lines(audio)

    captions = _closed_captions(view, lines)
    subtitles = subtitle_media_lines(view.text)
    lines += subtitles
    for v in video:
        average = average_bitrate(v) + audio_average
        bandwidth = max(peak_bitrate(v) + audio_peak, average)
        attrs = [
            f"BANDWIDTH={bandwidth}",
            f"AVERAGE-BANDWIDTH={average}",
            f"CODECS={_quoted(','.join([v.info.codec, *audio_codecs]))}",
        ]
        if v.info.width and v.info.height:
            attrs.append(f"RESOLUTION={v.info.width}x{v.info.height}")
        if v.info.frame_rate:
            attrs.append(f"FRAME-RATE={float(v.info.frame_rate):.3f}")
        if audio:
            attrs.append(f"AUDIO={_quoted(AUDIO_GROUP)}")
        if subtitles:
            attrs.append(f"SUBTITLES={_quoted(SUBTITLES_GROUP)}")
        attrs.append(captions)
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(_media_uri(v.info.name))

    if not video:
        for a in audio:
            average = average_bitrate(a)
            bandwidth = max(peak_bitrate(a), average)
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},CODECS={_quoted(a.info.codec)}"
            )
            lines.append(_media_uri(a.info.name))
    return "\n".join(lines) + "\n"


def subtitle_media_lines(text: Sequence[TrackView]) -> list[str]:
    """One ``EXT-X-MEDIA TYPE=SUBTITLES`` per WebVTT rendition, all in group ``subs``, unique NAMEs, at most
    one ``DEFAULT=YES`` (the track marked default; none marked: none, so players start without subtitles)."""
    default = next((i for i, t in enumerate(text) if t.info.default), None)
    lines = []
    for i, (t, label) in enumerate(zip(text, audio_labels(text), strict=True)):
        attrs = ["TYPE=SUBTITLES", f"GROUP-ID={_quoted(SUBTITLES_GROUP)}", f"NAME={_quoted(label)}"]
        if t.info.language and t.info.language != "und":
            attrs.append(f"LANGUAGE={_quoted(t.info.language)}")
        attrs += [f"DEFAULT={'YES' if i == default else 'NO'}", "AUTOSELECT=YES", "FORCED=NO"]
        attrs.append(f"URI={_quoted(_media_uri(t.info.name))}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    return lines


def _closed_captions(view: StreamView, lines: list[str]) -> str:
    """The CEA-608 rendition (CC1, in the video's SEI) when the video carries captions, appended to ``lines``;
    the variants' ``CLOSED-CAPTIONS`` attribute: the group, or ``NONE`` (RFC 8216bis 4.4.6.2)."""
    language = next((v.info.captions for v in view.video if v.info.captions is not None), None)
    if language is None:
        return "CLOSED-CAPTIONS=NONE"
    attrs = ["TYPE=CLOSED-CAPTIONS", f"GROUP-ID={_quoted(CC_GROUP)}", f"NAME={_quoted(language_name(language))}"]
    if language != "und":
        attrs.append(f"LANGUAGE={_quoted(language)}")
    attrs += ["DEFAULT=YES", "AUTOSELECT=YES", 'INSTREAM-ID="CC1"']
    lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    return f"CLOSED-CAPTIONS={_quoted(CC_GROUP)}"


def language_name(tag: str) -> str:
    """A rendition NAME for a language tag: the tag itself, or "CC1" when it is not said."""
    return "CC1" if tag == "und" else tag


def _media_uri(track: str) -> str:
    return f"{track}/{MEDIA_PLAYLIST_NAME}"


# --------------------------------------------------------------------------- media playlists


def server_control(view: StreamView) -> str:
    """``EXT-X-SERVER-CONTROL`` line: a function of stream-wide values only, identical for every track."""
    target = view.target_duration
    return (
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"CAN-SKIP-UNTIL={fmt_seconds(SKIP_TARGETS * target)},"
        f"PART-HOLD-BACK={fmt_seconds(view.targets.part_hold_back_parts * part_target(view), round_up=True)},"
        f"HOLD-BACK={fmt_seconds(HOLD_BACK_TARGETS * target)}"
    )


@dataclass(frozen=True)
class _Plan:
    """What a media playlist lists, decided before any text is written."""

    media_sequence: int
    discontinuity_sequence: int
    any_discontinuity: bool
    segments: tuple[Segment, ...]  # listed complete segments, oldest first (skipped ones included)
    skipped: int  # leading segments replaced by EXT-X-SKIP
    pending: tuple[PartRef, ...]  # parts of the segment in production, when listed
    pending_discontinuity: bool
    first_untagged: int  # msn of the first listed item: it never carries EXT-X-DISCONTINUITY
    end_ticks: int | None  # end of the newest listed media (parts included)


def _require(view: StreamView, track: str) -> TrackView:
    tv = view.track(track)
    if tv is None:
        raise KeyError(f"stream {view.name!r} has no track {track!r}")
    return tv


def _plan(view: StreamView, tv: TrackView, *, skip: bool) -> _Plan:
    live = is_low_latency(view)
    window = tv.segments
    pending = tv.pending if live and tv.pending_msn is not None else ()
    segment_ticks = int(view.segment_s * tv.info.timescale)
    run, pending_continues = gap_filled(window, tv.pending_msn if pending else None, segment_ticks)
    if not pending_continues:
        pending = ()

    # Discontinuity flags of everything the full window holds, in order.
    flags = [s.discontinuity for s in window]
    if pending:
        flags.append(tv.pending_discontinuity)
    # Index (in that list) of the first item this playlist lists.
    if run:
        first = 0  # gaps are filled: the whole window is listed
    elif pending:
        first = len(window)
    else:
        first = len(flags)
    dseq = tv.discontinuity_sequence + sum(flags[1 : first + 1])

    if run:
        media_sequence = run[0].msn
        first_untagged = run[0].msn
    elif pending and tv.pending_msn is not None:
        media_sequence = tv.pending_msn
        first_untagged = tv.pending_msn
    elif tv.next_part is not None:
        media_sequence = first_untagged = tv.next_part[0]
    else:
        media_sequence = first_untagged = window[-1].msn + 1 if window else 0

    skipped = 0
    if skip and live and run:
        boundary = run[-1].end - SKIP_TARGETS * view.target_duration * tv.info.timescale
        while skipped < len(run) and run[skipped].end <= boundary:
            skipped += 1

    end_ticks: int | None = None
    if pending:
        end_ticks = pending[-1].start + pending[-1].duration
    elif run:
        end_ticks = run[-1].end
    return _Plan(
        media_sequence=media_sequence,
        discontinuity_sequence=dseq,
        any_discontinuity=any(flags[first:]),
        segments=run,
        skipped=skipped,
        pending=pending,
        pending_discontinuity=bool(pending) and tv.pending_discontinuity,
        first_untagged=first_untagged,
        end_ticks=end_ticks,
    )


def playlist_end_s(view: StreamView, track: str) -> Fraction | None:
    """Media time (seconds) where the track's playlist ends, parts of the segment in production included.

    ``None`` when the playlist lists no media yet.
    """
    tv = _require(view, track)
    plan = _plan(view, tv, skip=False)
    if plan.end_ticks is None:
        return None
    return Fraction(plan.end_ticks, tv.info.timescale)


def skip_possible(view: StreamView, track: str) -> bool:
    """True when a delta update (``_HLS_skip=YES``) of this track would skip at least one segment."""
    tv = _require(view, track)
    return _plan(view, tv, skip=True).skipped > 0


def render_media(view: StreamView, track: str, *, skip: bool = False) -> str:
    """Media playlist of ``track``; with ``skip`` a Playlist Delta Update when the window is long enough.

    Ad breaks are ``EXT-X-DATERANGE`` tags (:mod:`packager.manifest.adbreaks`), listed before the
    segments in full and delta playlists alike; ``view.hls_cue_tags`` adds legacy ``EXT-X-CUE-OUT/IN``.

    Live: a Low-Latency HLS playlist. Ended or VOD: ``EXT-X-ENDLIST`` (plus
    ``EXT-X-PLAYLIST-TYPE:VOD`` for VOD) and no low-latency tags. ``skip`` only
    applies while live; the segments it replaces are those that end at least
    ``CAN-SKIP-UNTIL`` seconds before the end of the newest complete segment.
    Raises ``KeyError`` for an unknown track.
    """
    tv = _require(view, track)
    if tv.info.kind == "text":
        return render_text_media(view, tv)
    live = is_low_latency(view)
    plan = _plan(view, tv, skip=skip)
    timescale = tv.info.timescale

    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_SKIP_VERSION if plan.skipped else HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{view.target_duration}",
    ]
    if live:
        lines.append(server_control(view))
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={fmt_seconds(part_target(view))}")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{plan.media_sequence}")
    if plan.discontinuity_sequence > 0 or plan.any_discontinuity:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{plan.discontinuity_sequence}")
    if is_vod(view):
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    lines.append(f"#EXT-X-MAP:URI={_quoted(INIT_NAME)}")
    if plan.skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={plan.skipped}")
    lines.extend(dateranges(view.splices, view.epoch_s))

    parts_from: int | None = None
    if live and plan.end_ticks is not None:
        parts_from = plan.end_ticks - PART_WINDOW_TARGETS * view.target_duration * timescale

    for seg in plan.segments[plan.skipped :]:
        if seg.discontinuity and seg.msn != plan.first_untagged:
            lines.append("#EXT-X-DISCONTINUITY")
        if view.hls_cue_tags:
            lines.extend(cue_tags(view.splices, seg.start, _nominal_end(view, seg, timescale), timescale))
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(view, seg.start, timescale)}")
        if parts_from is not None and seg.start >= parts_from:
            lines.extend(_part_line(p, timescale) for p in seg.parts)
            if seg.cut:
                lines.extend(_gap_parts(view, seg, timescale))
        duration = _nominal_end(view, seg, timescale) - seg.start if seg.cut else seg.duration
        lines.append(_extinf(duration, timescale))
        if seg.gap or (seg.cut and not seg.parts):  # a cut segment holds the media of its first parts
            lines.append("#EXT-X-GAP")
        lines.append(segment_name(seg.msn))

    if not live:
        lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    if plan.pending:
        if plan.pending_discontinuity and plan.pending[0].msn != plan.first_untagged:
            lines.append("#EXT-X-DISCONTINUITY")
        first = plan.pending[0]
        if view.hls_cue_tags:
            nominal_end = (first.msn + 1) * int(view.segment_s * timescale)
            lines.extend(cue_tags(view.splices, first.start, nominal_end, timescale))
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(view, first.start, timescale)}")
        lines.extend(_part_line(p, timescale) for p in plan.pending)
    if tv.next_part is not None:
        msn, index = tv.next_part
        lines.append(f"#EXT-X-PRELOAD-HINT:TYPE=PART,URI={_quoted(part_name(msn, index))}")
    for other in view.tracks:
        if other.info.name == tv.info.name or other.info.kind == "text":
            continue
        last = other.last_part
        if last is None:
            continue
        lines.append(
            f"#EXT-X-RENDITION-REPORT:URI={_quoted('../' + _media_uri(other.info.name))},"
            f"LAST-MSN={last[0]},LAST-PART={last[1]}"
        )
    return "\n".join(lines) + "\n"


def render_text_media(view: StreamView, tv: TrackView) -> str:
    """The media playlist of a WebVTT rendition: whole segments only (no parts, no preload hint, no
    ``EXT-X-MAP``: each file stands alone), the same ``EXT-X-SERVER-CONTROL`` as every other media playlist so
    clients may block on its next segment, ``EXT-X-ENDLIST`` once ended. Delta updates are not offered."""
    live = is_low_latency(view)
    plan = _plan(view, tv, skip=False)
    timescale = tv.info.timescale
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", f"#EXT-X-TARGETDURATION:{view.target_duration}"]
    if live:
        lines.append(server_control(view))
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{plan.media_sequence}")
    if plan.discontinuity_sequence > 0 or plan.any_discontinuity:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{plan.discontinuity_sequence}")
    if is_vod(view):
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    for seg in plan.segments:
        if seg.discontinuity and seg.msn != plan.first_untagged:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(view, seg.start, timescale)}")
        lines.append(f"#EXTINF:{fmt_seconds(Fraction(seg.duration, timescale))},")
        if seg.gap:
            lines.append("#EXT-X-GAP")
        lines.append(text_segment_name(seg.msn))
    if not live:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _nominal_end(view: StreamView, seg: Segment, timescale: int) -> int:
    """Where a segment ends on the grid (a cut segment's real media stops before)."""
    return (seg.msn + 1) * int(view.segment_s * timescale)


def _gap_parts(view: StreamView, seg: Segment, timescale: int) -> list[str]:
    """A cut segment's missing parts, up to its nominal end: listed ``GAP=YES`` (RFC 8216bis 4.4.4.9), so
    players step over them; their URIs are never requested and never exist."""
    part_ticks = int(view.part_s * timescale)
    end = _nominal_end(view, seg, timescale)
    t = seg.start + seg.duration
    index = seg.parts[-1].index + 1 if seg.parts else 0
    lines = []
    while t < end:
        d = min(part_ticks, end - t)
        lines.append(
            f"#EXT-X-PART:DURATION={fmt_seconds(Fraction(d, timescale))},"
            f"URI={_quoted(part_name(seg.msn, index))},GAP=YES"
        )
        t, index = t + d, index + 1
    return lines


def _pdt(view: StreamView, ticks: int, timescale: int) -> str:
    return _date(view.epoch_s, ticks, timescale)


@functools.lru_cache(maxsize=1024)
def _extinf(ticks: int, timescale: int) -> str:
    return f"#EXTINF:{fmt_seconds(Fraction(ticks, timescale))},"


@functools.lru_cache(maxsize=8192)
def _date(epoch_s: Fraction, ticks: int, timescale: int) -> str:
    """A segment's PROGRAM-DATE-TIME text, formatted once: each segment stays listed a whole window,
    its playlist rendered at every part of every track meanwhile."""
    return iso_from_epoch_s(epoch_s + Fraction(ticks, timescale))


@functools.lru_cache(maxsize=4096)
def _part_line(part: PartRef, timescale: int) -> str:
    line = (
        f"#EXT-X-PART:DURATION={fmt_seconds(Fraction(part.duration, timescale))},"
        f"URI={_quoted(part_name(part.msn, part.index))}"
    )
    if part.independent:
        line += ",INDEPENDENT=YES"
    return line
