"""Publication events <-> Redis stream entry fields, exactly: Fractions as ``num/den``, floats by repr.

Each event becomes a flat ``bytes -> bytes`` mapping with its type in field
``t``; media payloads (init data, part data) travel raw in field ``b`` so a
replica gets a part in one read. The publisher adds envelope fields of its own
(``p``: the id of the stream's previous entry, ``k``: a snapshot was written
with this entry, ``t=y``: a sync marker with no event), which :func:`decode` ignores.
The JSON helpers here are shared with the snapshots.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from packager.config import PlayerTargets
from packager.model import Part, PartRef, Segment, TrackInfo
from packager.publication import (
    InitPublished,
    InputSwitched,
    MediaRetired,
    OwnerChanged,
    PartPublished,
    Publication,
    SegmentClosed,
    SpliceScheduled,
    StreamEnded,
    StreamOpened,
    StreamRemoved,
    StreamTiming,
    TracksExpected,
)
from packager.splice import splice_from, splice_json

Fields = dict[bytes, bytes]
SYNC = b"y"  # type of a marker entry: no event, a snapshot was written with it


class CodecError(ValueError):
    """An entry that is not an encoded publication."""


# --------------------------------------------------------------------------- scalars


def frac(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def unfrac(text: str) -> Fraction:
    num, den = text.split("/")
    return Fraction(int(num), int(den))


def _i(value: int) -> bytes:
    return str(value).encode()


def _f(value: float) -> bytes:
    return repr(float(value)).encode()


def _b(value: bool) -> bytes:
    return b"1" if value else b"0"


def _s(value: str) -> bytes:
    return value.encode()


def dumps(value: Any) -> bytes:
    """Deterministic compact JSON (floats by repr, so they round-trip exactly)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


# --------------------------------------------------------------------------- value types as JSON


def timing_json(t: StreamTiming) -> dict[str, Any]:
    return {
        "segment_s": frac(t.segment_s),
        "part_s": frac(t.part_s),
        "window_s": frac(t.window_s),
        "target_duration": t.target_duration,
        "epoch_s": frac(t.epoch_s),
        "live": t.live,
        "hls_cue_tags": t.hls_cue_tags,
        "targets": {
            "part_hold_back_parts": frac(t.targets.part_hold_back_parts),
            "dash_target_parts": frac(t.targets.dash_target_parts),
            "catchup_rate": frac(t.targets.catchup_rate),
        },
    }


def timing_from(d: Mapping[str, Any]) -> StreamTiming:
    return StreamTiming(
        unfrac(d["segment_s"]),
        unfrac(d["part_s"]),
        unfrac(d["window_s"]),
        int(d["target_duration"]),
        unfrac(d["epoch_s"]),
        bool(d["live"]),
        bool(d.get("hls_cue_tags", False)),
        targets_from(d.get("targets")),
    )


def targets_from(d: Mapping[str, Any] | None) -> PlayerTargets:
    """A stream's player targets; an entry written before they were carried gets the defaults."""
    if not d:
        return PlayerTargets()
    return PlayerTargets(unfrac(d["part_hold_back_parts"]), unfrac(d["dash_target_parts"]), unfrac(d["catchup_rate"]))


def info_json(info: TrackInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "kind": info.kind,
        "codec": info.codec,
        "timescale": info.timescale,
        "bitrate": info.bitrate,
        "width": info.width,
        "height": info.height,
        "frame_rate": None if info.frame_rate is None else frac(info.frame_rate),
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "language": info.language,
        "captions": info.captions,
        "label": info.label,
        "default": info.default,
        "describes_video": info.describes_video,
    }


def info_from(d: Mapping[str, Any]) -> TrackInfo:
    rate = d["frame_rate"]
    return TrackInfo(
        name=d["name"],
        kind=d["kind"],
        codec=d["codec"],
        timescale=int(d["timescale"]),
        bitrate=int(d["bitrate"]),
        width=int(d["width"]),
        height=int(d["height"]),
        frame_rate=None if rate is None else unfrac(rate),
        sample_rate=int(d["sample_rate"]),
        channels=int(d["channels"]),
        language=d["language"],
        captions=d.get("captions"),
        label=str(d.get("label", "")),  # absent in what older encoders published
        default=bool(d.get("default", False)),
        describes_video=bool(d.get("describes_video", False)),
    )


def ref_list(p: PartRef) -> list[int]:
    return [p.msn, p.index, p.start, p.duration, int(p.independent), p.size]


def ref_from(v: list[int]) -> PartRef:
    return PartRef(int(v[0]), int(v[1]), int(v[2]), int(v[3]), bool(v[4]), int(v[5]))


def segment_json(s: Segment) -> list[Any]:
    parts = [ref_list(p) for p in s.parts]
    flags = [s.discontinuity, s.published_utc_s, s.gap, s.cut, s.run]
    return [s.track, s.msn, s.start, s.duration, parts, s.size, *flags]


def segment_from(v: list[Any]) -> Segment:
    return Segment(
        track=v[0],
        msn=int(v[1]),
        start=int(v[2]),
        duration=int(v[3]),
        parts=tuple(ref_from(p) for p in v[4]),
        size=int(v[5]),
        discontinuity=bool(v[6]),
        published_utc_s=float(v[7]),
        gap=bool(v[8]),
        cut=len(v) > 9 and bool(v[9]),
        run=int(v[10]) if len(v) > 10 and v[10] is not None else None,
    )


def part_meta(p: Part) -> list[Any]:
    """A part without its payload (the payload travels in its own key)."""
    return [p.track, p.msn, p.index, p.start, p.duration, p.independent, p.capture_utc_s, p.published_utc_s]


def part_from(v: list[Any], data: bytes) -> Part:
    return Part(v[0], int(v[1]), int(v[2]), int(v[3]), int(v[4]), bool(v[5]), data, float(v[6]), float(v[7]))


# --------------------------------------------------------------------------- events


def encode(event: Publication) -> Fields:
    """The entry fields of ``event`` (deterministic: equal events give equal fields)."""
    s = _s(event.stream)
    match event:
        case PartPublished(part=p, discontinuity=disc):
            return {
                b"t": b"p",
                b"s": s,
                b"tr": _s(p.track),
                b"m": _i(p.msn),
                b"n": _i(p.index),
                b"st": _i(p.start),
                b"du": _i(p.duration),
                b"in": _b(p.independent),
                b"ca": _f(p.capture_utc_s),
                b"pu": _f(p.published_utc_s),
                b"di": _b(disc),
                b"b": p.data,
            }
        case SegmentClosed(segment=seg):
            return {b"t": b"c", b"s": s, b"g": dumps(segment_json(seg))}
        case InitPublished(info=info, data=data):
            return {b"t": b"i", b"s": s, b"if": dumps(info_json(info)), b"b": data}
        case StreamOpened(timing=timing, started_utc_s=started):
            return {b"t": b"o", b"s": s, b"tm": dumps(timing_json(timing)), b"su": _f(started)}
        case TracksExpected(tracks=tracks):
            return {b"t": b"x", b"s": s, b"tr": dumps(sorted(tracks))}
        case MediaRetired(track=track, msn=msn, parts=parts):
            return {b"t": b"r", b"s": s, b"tr": _s(track), b"m": _i(msn), b"ps": dumps([list(k) for k in parts])}
        case InputSwitched():
            return {b"t": b"w", b"s": s}
        case OwnerChanged():
            return {b"t": b"f", b"s": s, b"oc": dumps(_owner_json(event))}
        case SpliceScheduled(splice=splice):
            return {b"t": b"a", b"s": s, b"sp": dumps(splice_json(splice))}
        case StreamEnded(reason=reason, ended_utc_s=ended):
            return {b"t": b"e", b"s": s, b"re": _s(reason), b"eu": _f(ended)}
        case StreamRemoved():
            return {b"t": b"d", b"s": s}
    raise CodecError(f"cannot encode {type(event).__name__}")


def _owner_json(e: OwnerChanged) -> dict[str, Any]:
    return {
        "from": e.from_node,
        "to": e.to_node,
        "epoch": e.epoch,
        "reason": e.reason,
        "msn": e.resume_msn,
        "gap": e.gap_s,
        "at": e.changed_utc_s,
    }


def _owner_from(stream: str, d: Mapping[str, Any]) -> OwnerChanged:
    origin = d["from"]
    return OwnerChanged(
        stream,
        str(origin) if origin is not None else None,
        str(d["to"]),
        int(d["epoch"]),
        str(d["reason"]),
        int(d["msn"]),
        float(d["gap"]),
        float(d["at"]),
    )


def _part(f: Mapping[bytes, bytes], stream: str) -> PartPublished:
    part = Part(
        track=f[b"tr"].decode(),
        msn=int(f[b"m"]),
        index=int(f[b"n"]),
        start=int(f[b"st"]),
        duration=int(f[b"du"]),
        independent=f[b"in"] == b"1",
        data=bytes(f[b"b"]),
        capture_utc_s=float(f[b"ca"]),
        published_utc_s=float(f[b"pu"]),
    )
    return PartPublished(stream, part, f[b"di"] == b"1")


def _other(kind: bytes, f: Mapping[bytes, bytes], stream: str) -> Publication:
    match kind:
        case b"c":
            return SegmentClosed(stream, segment_from(json.loads(f[b"g"])))
        case b"i":
            return InitPublished(stream, info_from(json.loads(f[b"if"])), bytes(f[b"b"]))
        case b"o":
            return StreamOpened(stream, timing_from(json.loads(f[b"tm"])), float(f[b"su"]))
        case b"x":
            return TracksExpected(stream, frozenset(json.loads(f[b"tr"])))
        case b"r":
            keys = tuple((int(a), int(b)) for a, b in json.loads(f[b"ps"]))
            return MediaRetired(stream, f[b"tr"].decode(), int(f[b"m"]), keys)
        case b"w":
            return InputSwitched(stream)
        case b"e":
            return StreamEnded(stream, f[b"re"].decode(), float(f[b"eu"]))
        case b"f":
            return _owner_from(stream, json.loads(f[b"oc"]))
        case b"d":
            return StreamRemoved(stream)
        case b"a":
            return SpliceScheduled(stream, splice_from(json.loads(f[b"sp"])))
    raise CodecError(f"unknown entry type {kind!r}")


def decode(fields: Mapping[bytes, bytes]) -> Publication | None:
    """The event of an entry; None for a sync marker. Raises :class:`CodecError` when malformed."""
    kind = fields.get(b"t")
    if kind == SYNC:
        return None
    try:
        stream = fields[b"s"].decode()
        if kind == b"p":
            return _part(fields, stream)
        return _other(kind or b"", fields, stream)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise CodecError(f"malformed entry of type {kind!r}: {exc}") from exc
