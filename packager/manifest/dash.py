"""DASH MPDs: dynamic (live, optionally low-latency chunked) and static (ended / VOD), built with lxml.

:func:`render_mpd` turns one :class:`~packager.model.StreamView` into MPD
bytes (with an XML declaration) valid against the ISO/IEC 23009-1 schema
(5th edition + Amd. 1). Element order follows the schema's sequences.

Timeline model:

* One Period per unbroken run of segment numbers (:mod:`packager.manifest.timeline`):
  normally one, named by its run's first msn and starting at that msn's
  boundary on the UTC media timeline (``presentationTimeOffset`` is the same
  instant in each timescale). Live media time is UTC-anchored, so
  ``availabilityStartTime`` is ``epoch_s`` (1970-01-01T00:00:00Z) and never
  changes across updates. A feed or encoder that stopped and came back later
  starts a new Period; the older run stays listed before it and the time
  between is a hole. A static MPD (ended / VOD) starts its first Period at its
  first media (presentation time zero).
* Every Representation has its own ``SegmentTemplate`` (audio and video
  timescales differ, and renditions may be a part apart at a snapshot) with
  ``$Number$`` addressing (files are named by msn) and a ``SegmentTimeline``
  of exact tick durations, ``r``-compressed, with a fresh ``S@t`` wherever
  times are not contiguous (a cut segment: an encoder failed over mid-segment).
* Low-latency (chunked) mode adds the segment in production as the last
  ``S`` (its nominal end is the next segment boundary) so players can request
  it while it is produced, ``availabilityTimeOffset = segment - part`` with
  ``availabilityTimeComplete="false"`` (the first part of a segment is
  available one part after its start), a ``ServiceDescription`` with the
  latency target and catch-up playback rates, ``ProducerReferenceTime``
  (type "captured": the media clock is the capture clock) and ``Resync``
  points at part boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from lxml import etree

from packager.manifest import audio_labels, default_audio, is_low_latency, part_bound, peak_bitrate
from packager.manifest.adbreaks import (
    SCTE35_INBAND_SCHEME,
    SCTE35_INBAND_VALUE,
    SCTE35_NS,
    SCTE35_XML_BIN_SCHEME,
    dash_events,
)
from packager.manifest.timeline import PeriodPlan, TimelineEntry, compress_timeline, plan_periods, timeline_entries
from packager.model import INIT_NAME, StreamView, TrackInfo, TrackView
from packager.splice import SPLICE_TIMESCALE
from packager.timebase import iso_from_epoch_s

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
PROFILE_LIVE = "urn:mpeg:dash:profile:isoff-live:2011"
PROFILE_CMAF = "urn:mpeg:dash:profile:cmaf:2019"
PROFILE_LOW_LATENCY = "http://www.dashif.org/guidelines/low-latency-live-v5"
UTC_HTTP_ISO = "urn:mpeg:dash:utc:http-iso:2014"
AUDIO_CHANNELS_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"
CEA608_SCHEME = "urn:scte:dash:cc:cea-608:2015"  # Accessibility: captions in the video's SEI (DASH-IF IOP)
AUDIO_PURPOSE_SCHEME = "urn:tva:metadata:cs:AudioPurposeCS:2007"  # DASH-IF IOP: audio description
AUDIO_PURPOSE_VISUALLY_IMPAIRED = "1"

INIT_TEMPLATE = f"$RepresentationID$/{INIT_NAME}"
MEDIA_TEMPLATE = "$RepresentationID$/$Number$.m4s"  # == segment_name(msn) under the track folder

PRT_ID = 0  # ProducerReferenceTime@id, referenced by ServiceDescription/Latency@referenceId
SERVICE_DESCRIPTION_ID = 0
NON_LL_DELAY_SEGMENTS = 3  # suggestedPresentationDelay without chunking, like HLS HOLD-BACK


def xs_duration(seconds: Fraction | int, *, round_up: bool = False) -> str:
    """An ``xs:duration`` with up to microsecond precision: ``PT2S``, ``PT0.5S``, ``PT1H2M3.5S``."""
    micros_exact = Fraction(seconds) * 1_000_000
    micros = math.ceil(micros_exact) if round_up else round(micros_exact)
    if micros < 0:
        raise ValueError(f"negative duration: {seconds}")
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    whole, frac = divmod(rest, 1_000_000)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if whole or frac or out == "PT":
        out += str(whole)
        if frac:
            out += "." + f"{frac:06d}".rstrip("0")
        out += "S"
    return out


def _decimal(value: Fraction, *, round_down: bool = False) -> str:
    """A short xs:double / decimal text for a seconds value: ``1.5``, ``2``, ``0.333333``."""
    if round_down:
        value = Fraction(math.floor(value * 1_000_000), 1_000_000)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _ratio(width: int, height: int) -> str:
    g = math.gcd(width, height) or 1
    return f"{width // g}:{height // g}"


def _frame_rate(rate: Fraction) -> str:
    rate = Fraction(rate)
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


@dataclass(frozen=True)
class LatencyTargets:
    """ServiceDescription latency (milliseconds) for chunked low-latency playback."""

    target_ms: int
    min_ms: int
    max_ms: int


def latency_targets(view: StreamView) -> LatencyTargets:
    """Target the stream's ``dash_target_parts`` parts (the latency profile's: 3 at ``normal``, 1.5 s
    with 0.5 s parts: one in flight, one buffered, one of margin for the player's catch-up); min one
    part less; max one segment more. Measured with dash.js in headless Chromium (bench/latency.py)."""
    target = view.targets.dash_target_parts * view.part_s
    return LatencyTargets(
        target_ms=round(target * 1000),
        min_ms=round((target - view.part_s) * 1000),
        max_ms=round((target + view.segment_s) * 1000),
    )


def _el(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{MPD_NS}}}{tag}", attrs)


@dataclass(frozen=True)
class _Mode:
    low_latency: bool  # chunked low-latency live
    utc_timing_url: str
    origin_s: Fraction = Fraction(0)  # media time at the Period's start (presentationTimeOffset), seconds


def render_mpd(
    view: StreamView,
    *,
    utc_timing_url: str = "/time",
    low_latency: bool = True,
    now_utc_s: float | None = None,
    producing: bool = True,
) -> bytes:
    """The MPD for ``view`` as UTF-8 bytes with an XML declaration.

    Live and not ended: ``type="dynamic"``; with ``low_latency`` (and parts
    shorter than segments) the chunked low-latency form, listing the segment
    in production unless ``producing`` is false (no encoder has published for
    a while: the segment due next may never come). Ended or VOD:
    ``type="static"`` with ``mediaPresentationDuration``. ``now_utc_s`` is
    only used as ``publishTime`` when the view carries no publish time.
    """
    dynamic = is_low_latency(view)
    mode = _Mode(
        low_latency=dynamic and low_latency and view.part_s < view.segment_s,
        utc_timing_url=utc_timing_url,
    )
    per_track = {  # a subtitle segment exists only once whole: never listed while in production
        t.info.name: timeline_entries(view, t, with_production=mode.low_latency and producing and t.info.kind != "text")
        for t in view.tracks
    }

    profiles = [PROFILE_LIVE, PROFILE_CMAF]
    if mode.low_latency:
        profiles.append(PROFILE_LOW_LATENCY)
    published = view.published_utc_s or (now_utc_s or 0.0)
    longest = max(
        (Fraction(e.duration, t.info.timescale) for t in view.tracks for e in per_track[t.info.name]),
        default=Fraction(0),
    )
    max_segment = max(longest, view.segment_s)

    mpd = etree.Element(f"{{{MPD_NS}}}MPD", nsmap={None: MPD_NS})
    mpd.set("profiles", ",".join(profiles))
    mpd.set("type", "dynamic" if dynamic else "static")
    mpd.set("availabilityStartTime", iso_from_epoch_s(view.epoch_s))
    mpd.set("publishTime", iso_from_epoch_s(published))
    static_origin_s: Fraction | None = None
    if dynamic:
        # A fresh MPD is needed to learn each new segment; in chunked mode a
        # segment becomes available one part after it starts.
        mpd.set("minimumUpdatePeriod", xs_duration(view.part_s if mode.low_latency else view.segment_s))
        mpd.set("timeShiftBufferDepth", xs_duration(view.window_s))
        if mode.low_latency:
            delay = Fraction(latency_targets(view).target_ms, 1000)
        else:
            delay = NON_LL_DELAY_SEGMENTS * view.segment_s
        mpd.set("suggestedPresentationDelay", xs_duration(delay))
    else:
        # A finished presentation starts at its first listed media (an ended live stream sits far
        # out on the UTC timeline): presentationTimeOffset moves it to zero for a fresh player.
        static_origin_s = _first_media_s(view, per_track)
        ends = (
            Fraction(es[-1].start + es[-1].duration, t.info.timescale)
            for t in view.tracks
            if (es := per_track[t.info.name])
        )
        end = max(ends, default=Fraction(0))
        mpd.set("mediaPresentationDuration", xs_duration(end - static_origin_s, round_up=True))
    mpd.set("maxSegmentDuration", xs_duration(max_segment, round_up=True))
    mpd.set(
        "minBufferTime",
        xs_duration(min(2 * view.part_s, view.segment_s) if mode.low_latency else view.segment_s),
    )

    if mode.low_latency:
        targets = latency_targets(view)
        sd = _el(mpd, "ServiceDescription", id=str(SERVICE_DESCRIPTION_ID))
        _el(
            sd,
            "Latency",
            referenceId=str(PRT_ID),
            target=str(targets.target_ms),
            min=str(targets.min_ms),
            max=str(targets.max_ms),
        )
        rate = view.targets.catchup_rate
        _el(sd, "PlaybackRate", min=_decimal(1 - rate), max=_decimal(1 + rate))

    plans = plan_periods(view, per_track, static_origin_s=static_origin_s)
    for i, plan in enumerate(plans):
        end_s = plans[i + 1].origin_s if i + 1 < len(plans) else None
        _period(mpd, view, plan, replace(mode, origin_s=plan.origin_s), end_s=end_s, first=i == 0)

    if dynamic:
        _utc_timing(mpd, mode.utc_timing_url)
    return etree.tostring(mpd, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _first_media_s(view: StreamView, per_track: dict[str, tuple[TimelineEntry, ...]]) -> Fraction:
    starts = (Fraction(es[0].start, t.info.timescale) for t in view.tracks if (es := per_track[t.info.name]))
    return min(starts, default=Fraction(0))


def _period(
    mpd: etree._Element, view: StreamView, plan: PeriodPlan, mode: _Mode, *, end_s: Fraction | None, first: bool
) -> None:
    period = _el(mpd, "Period", id=plan.id, start=xs_duration(plan.start_s))
    _event_stream(period, view, plan.origin_s, end_s, first=first)
    if view.video:
        _adaptation_set(period, view, view.video, as_id=0, mode=mode, per_track=plan.entries)
    default = default_audio(view.audio)
    for i, (track, label) in enumerate(zip(view.audio, audio_labels(view.audio), strict=True)):
        described = _AudioSet(label=label, default=i == default)
        _adaptation_set(period, view, (track,), as_id=1 + i, mode=mode, per_track=plan.entries, audio=described)
    for i, track in enumerate(view.text):
        _text_set(period, view, track, as_id=1 + len(view.audio) + i, mode=mode, entries=plan.entries[track.info.name])


def _event_stream(
    period: etree._Element, view: StreamView, origin_s: Fraction, end_s: Fraction | None, *, first: bool
) -> None:
    """The Period's SCTE-35 splices as an EventStream whose presentationTime is the media time."""
    start = math.floor(origin_s * SPLICE_TIMESCALE)
    end = None if end_s is None else math.floor(end_s * SPLICE_TIMESCALE)
    events = dash_events(view.splices, start, end, first=first)
    if not events:
        return
    stream = _el(
        period,
        "EventStream",
        schemeIdUri=SCTE35_XML_BIN_SCHEME,
        timescale=str(SPLICE_TIMESCALE),
        presentationTimeOffset=str(start),
    )
    for e in events:
        event = _el(stream, "Event", presentationTime=str(e.presentation_time), id=str(e.id))
        if e.duration is not None:
            event.set("duration", str(e.duration))
        signal = etree.SubElement(event, f"{{{SCTE35_NS}}}Signal", nsmap={"scte35": SCTE35_NS})
        etree.SubElement(signal, f"{{{SCTE35_NS}}}Binary").text = e.binary


def _utc_timing(parent: etree._Element, url: str) -> None:
    _el(parent, "UTCTiming", schemeIdUri=UTC_HTTP_ISO, value=url)


def _producer_reference_time(
    parent: etree._Element, view: StreamView, track: TrackView, entries: Sequence[TimelineEntry], url: str
) -> None:
    presentation = entries[0].start if entries else 0
    wall = view.epoch_s + Fraction(presentation, track.info.timescale)
    prt = _el(
        parent,
        "ProducerReferenceTime",
        id=str(PRT_ID),
        type="captured",
        wallClockTime=iso_from_epoch_s(wall),
        presentationTime=str(presentation),
    )
    _utc_timing(prt, url)


@dataclass(frozen=True)
class _AudioSet:
    """How an audio AdaptationSet presents its track: its Label and whether it is the main one."""

    label: str
    default: bool


def _audio_roles(aset: etree._Element, info: TrackInfo, described: _AudioSet) -> None:
    """Accessibility and Role (in schema order): main or alternate, plus description for an audio description."""
    if info.describes_video:
        _el(aset, "Accessibility", schemeIdUri=AUDIO_PURPOSE_SCHEME, value=AUDIO_PURPOSE_VISUALLY_IMPAIRED)
    _el(aset, "Role", schemeIdUri=ROLE_SCHEME, value="main" if described.default else "alternate")
    if info.describes_video:
        _el(aset, "Role", schemeIdUri=ROLE_SCHEME, value="description")


def _adaptation_set(
    period: etree._Element,
    view: StreamView,
    tracks: Sequence[TrackView],
    *,
    as_id: int,
    mode: _Mode,
    per_track: Mapping[str, tuple[TimelineEntry, ...]],
    audio: _AudioSet | None = None,
) -> None:
    video = tracks[0].info.kind == "video"
    aset = _el(
        period,
        "AdaptationSet",
        id=str(as_id),
        contentType="video" if video else "audio",
        mimeType="video/mp4" if video else "audio/mp4",
        segmentAlignment="true",
        startWithSAP="1",
    )
    if video:
        sized = [t for t in tracks if t.info.width and t.info.height]
        if sized:
            aset.set("maxWidth", str(max(t.info.width for t in sized)))
            aset.set("maxHeight", str(max(t.info.height for t in sized)))
            # The ladder keeps the source's aspect ratio up to even-size rounding: the top rung's.
            aset.set("par", _ratio(sized[0].info.width, sized[0].info.height))
        rates = [Fraction(t.info.frame_rate) for t in tracks if t.info.frame_rate]
        if rates:
            aset.set("maxFrameRate", _frame_rate(max(rates)))
    else:
        lang = tracks[0].info.language or "und"
        aset.set("lang", lang)

    if video:
        # splices are also carried in-band: an emsg in the part that starts at each splice (SCTE 214-3)
        _el(aset, "InbandEventStream", schemeIdUri=SCTE35_INBAND_SCHEME, value=SCTE35_INBAND_VALUE)
    if audio is not None:
        _el(aset, "Label").text = audio.label
    shared_timescale = len({t.info.timescale for t in tracks}) == 1
    if mode.low_latency and shared_timescale:
        first = tracks[0]
        _producer_reference_time(aset, view, first, per_track[first.info.name], mode.utc_timing_url)
    captions = next((t.info.captions for t in tracks if video and t.info.captions is not None), None)
    if captions is not None:
        # value: channel=language, ISO 639-2 per SCTE 214-1 (a tag that is not three letters is given as is)
        _el(aset, "Accessibility", schemeIdUri=CEA608_SCHEME, value="CC1" if captions == "und" else f"CC1={captions}")
    if audio is None:
        _el(aset, "Role", schemeIdUri=ROLE_SCHEME, value="main")
    else:
        _audio_roles(aset, tracks[0].info, audio)

    for t in tracks:
        _representation(aset, view, t, per_track[t.info.name], mode=mode, prt=mode.low_latency and not shared_timescale)


def _text_set(
    period: etree._Element,
    view: StreamView,
    track: TrackView,
    *,
    as_id: int,
    mode: _Mode,
    entries: Sequence[TimelineEntry],
) -> None:
    """A WebVTT subtitle rendition in its ISO BMFF form (``application/mp4``, ``wvtt``; one whole segment per
    number, no chunked availability) with ``lang``, ``Label`` and ``Role`` subtitle.

    Why not the plain ``{msn}.vtt`` files HLS lists: dash.js (5.2) gives the cues of a plain ``text/vtt``
    segment their times as they are (TextSourceBuffer._appendText adds 0), so they would have to be
    presentation times, and those depend on the MPD: UTC in the dynamic MPD (Period@start equals the
    presentationTimeOffset), media time minus the first listed media in the static one an ended stream gets.
    One set of files cannot be right for both (and the ended form is only known at the end). ``wvtt``
    samples carry media times like the video, and dash.js adds ``Period@start - presentationTimeOffset`` to
    them as it does for the video (TextSourceBuffer._appendFragmentedWebVtt), in every MPD type and Period;
    segmented subtitles in DASH are meant to be ISO BMFF anyway (DASH-IF IOP 6.4.5)."""
    info = track.info
    aset = _el(
        period,
        "AdaptationSet",
        id=str(as_id),
        contentType="text",
        mimeType="application/mp4",
        lang=info.language or "und",
        segmentAlignment="true",
        startWithSAP="1",
    )
    _el(aset, "Label").text = info.label or info.name
    _el(aset, "Role", schemeIdUri=ROLE_SCHEME, value="subtitle")
    rep = _el(aset, "Representation", id=info.name, bandwidth=str(info.bitrate or 1), codecs=info.codec)
    pto = math.floor(mode.origin_s * info.timescale)
    template = _el(rep, "SegmentTemplate", timescale=str(info.timescale), presentationTimeOffset=str(pto))
    template.set("startNumber", str(entries[0].msn if entries else _next_msn(track)))
    template.set("initialization", INIT_TEMPLATE)
    template.set("media", MEDIA_TEMPLATE)
    _segment_timeline(template, entries)


def _representation(
    aset: etree._Element,
    view: StreamView,
    track: TrackView,
    entries: Sequence[TimelineEntry],
    *,
    mode: _Mode,
    prt: bool,
) -> None:
    info = track.info
    rep = _el(aset, "Representation", id=info.name, bandwidth=str(info.bitrate or peak_bitrate(track) or 1))
    rep.set("codecs", info.codec)
    if info.kind == "video":
        if info.width and info.height:
            rep.set("width", str(info.width))
            rep.set("height", str(info.height))
            rep.set("sar", "1:1")
        if info.frame_rate:
            rep.set("frameRate", _frame_rate(info.frame_rate))
    else:
        if info.sample_rate:
            rep.set("audioSamplingRate", str(info.sample_rate))
        if info.channels:
            _el(rep, "AudioChannelConfiguration", schemeIdUri=AUDIO_CHANNELS_SCHEME, value=str(info.channels))
    if prt:
        _producer_reference_time(rep, view, track, entries, mode.utc_timing_url)
    if mode.low_latency:
        # Every part (CMAF chunk, moof+mdat) boundary is a resync point; only the first is a SAP.
        # dT: the longest distance between two of them, in the Representation's timescale.
        _el(rep, "Resync", type="0", dT=str(math.ceil(part_bound(info, view.part_s) * info.timescale)))

    pto = math.floor(mode.origin_s * info.timescale)
    template = _el(rep, "SegmentTemplate", timescale=str(info.timescale), presentationTimeOffset=str(pto))
    if mode.low_latency:
        # rounded down: a segment is never announced before its first part is complete
        template.set("availabilityTimeOffset", _decimal(view.segment_s - view.part_s, round_down=True))
        template.set("availabilityTimeComplete", "false")
    template.set("startNumber", str(entries[0].msn if entries else _next_msn(track)))
    template.set("initialization", INIT_TEMPLATE)
    template.set("media", MEDIA_TEMPLATE)
    _segment_timeline(template, entries)


def _segment_timeline(template: etree._Element, entries: Sequence[TimelineEntry]) -> None:
    """The template's SegmentTimeline: ``r``-compressed, a fresh ``S@t`` wherever times are not contiguous."""
    timeline = _el(template, "SegmentTimeline")
    for s in compress_timeline(entries):
        element = _el(timeline, "S")
        if s.t is not None:
            element.set("t", str(s.t))
        element.set("d", str(s.d))
        if s.r:
            element.set("r", str(s.r))


def _next_msn(track: TrackView) -> int:
    if track.next_part is not None:
        return track.next_part[0]
    return track.segments[-1].msn + 1 if track.segments else 0
