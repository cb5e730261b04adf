"""A stream's whole state as one JSON document, and rebuilding a replica's stream from it.

:func:`capture` reads a publisher's :class:`~packager.store.StreamStore` (no
payloads: those live in their media keys); :func:`media_keys` names every key
a restore needs; :func:`restore` rebuilds the replica's stream *in place* when
the timing is unchanged, so TrackStore objects and the requests waiting on
them survive, or replaces it and wakes every waiter of the old one.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from packager.model import Part, Segment
from packager.redisstore.codec import (
    dumps,
    info_from,
    info_json,
    part_from,
    part_meta,
    segment_from,
    segment_json,
    timing_from,
    timing_json,
)
from packager.redisstore.keys import Keys
from packager.splice import splice_from, splice_json
from packager.store import Store, StreamStore, TrackStore


@dataclass(frozen=True)
class Snapshot:
    """A parsed snapshot: the id of the last log entry it includes and the stream's state."""

    stream: str
    log_id: str
    state: dict[str, Any]


def _track_json(t: TrackStore) -> dict[str, Any]:
    return {
        "info": info_json(t.info),
        "init": t.init is not None,
        "segments": [segment_json(s) for s in t.segments],
        "parts": [part_meta(p) for p in t.parts.values()],
        "pending": [[p.msn, p.index] for p in t.pending],
        "pending_msn": t.pending_msn,
        "pending_discontinuity": t.pending_discontinuity,
        "next_part": None if t.next_part is None else list(t.next_part),
        "discontinuity_sequence": t.discontinuity_sequence,
        "last_completed_msn": t.last_completed_msn,
    }


def capture(stream: StreamStore, log_id: str) -> bytes:
    """The snapshot of ``stream`` as of log entry ``log_id``."""
    return dumps(
        {
            "id": log_id,
            "stream": stream.name,
            "timing": timing_json(stream.timing),
            "started_utc_s": stream.started_utc_s,
            "published_utc_s": stream.published_utc_s,
            "expected": sorted(stream.expected_tracks),
            "ended": stream.ended,
            "end_reason": stream.end_reason,
            "tracks": [_track_json(t) for t in stream.tracks.values()],
            "splices": [splice_json(s) for s in stream.splices],
        }
    )


def parse(data: bytes) -> Snapshot:
    state = json.loads(data)
    return Snapshot(state["stream"], state["id"], state)


def media_keys(keys: Keys, snap: Snapshot) -> list[str]:
    """Every media key the snapshot names: inits, the window's segments, the parts kept in memory."""
    name = snap.stream
    out: list[str] = []
    for t in snap.state["tracks"]:
        track = t["info"]["name"]
        if t["init"]:
            out.append(keys.init(name, track))
        out.extend(keys.seg(name, track, int(s[1])) for s in t["segments"])
        out.extend(keys.part(name, track, int(p[1]), int(p[2])) for p in t["parts"])
    return out


def _fill_track(track: TrackStore, t: dict[str, Any], media: dict[str, bytes], keys: Keys) -> None:
    name, tname = track.stream.name, track.info.name
    track.init = media.get(keys.init(name, tname)) if t["init"] else None
    before = {seg.msn: seg for seg in track.segments}
    old_data, old_parts, old_retired = track.segment_data, track.parts, list(track.retired)
    track.segments = deque(segment_from(s) for s in t["segments"])
    track.segment_data = {s.msn: media[keys.seg(name, tname, s.msn)] for s in track.segments}
    parts: dict[tuple[int, int], Part] = {}
    for meta in t["parts"]:
        msn, index = int(meta[1]), int(meta[2])
        parts[(msn, index)] = part_from(meta, media[keys.part(name, tname, msn, index)])
    # what manifests served before the resync named stays servable; the window trim drops old parts
    track.parts = {**{k: p for k, p in old_parts.items() if k not in parts}, **parts}
    _keep_what_was_named(track, before, old_data, old_retired)
    track.pending = [parts[(int(m), int(i))] for m, i in t["pending"]]
    track.pending_msn = t["pending_msn"]
    track.pending_discontinuity = bool(t["pending_discontinuity"])
    track.next_part = None if t["next_part"] is None else (int(t["next_part"][0]), int(t["next_part"][1]))
    track.discontinuity_sequence = int(t["discontinuity_sequence"])
    track.last_completed_msn = t["last_completed_msn"]


def _keep_what_was_named(
    track: TrackStore, listed: dict[int, Segment], data: dict[int, bytes], retired: list[Any]
) -> None:
    """Segments the replica held before a resync and the snapshot no longer lists stay for the deletion grace:
    those already retired keep their due time, those it still listed start theirs now (oldest due first)."""
    track.retired.clear()
    for r in retired:
        if r.msn not in track.segment_data and r.msn in data:
            track.segment_data[r.msn] = data[r.msn]
            track.retired.append(r)
    for msn in sorted(listed):
        if msn not in track.segment_data and msn in data:
            keys = tuple((p.msn, p.index) for p in listed[msn].parts)
            track.keep_through_grace(msn, data[msn], keys)


def _fresh(store: Store, snap: Snapshot) -> StreamStore:
    state = snap.state
    stream = StreamStore(store, snap.stream, timing_from(state["timing"]), float(state["started_utc_s"]))
    old = store.streams.get(snap.stream)
    store.streams[snap.stream] = stream
    if old is not None:
        wake_all(old)
    return stream


def wake_all(stream: StreamStore) -> None:
    """Release every request held on ``stream`` (it is being replaced or removed)."""
    for track in stream.tracks.values():
        track.release_all()


def restore(store: Store, snap: Snapshot, media: dict[str, bytes], keys: Keys, node: str | None) -> StreamStore:
    """Make ``store``'s stream the snapshot's. ``media`` must hold every key of :func:`media_keys`."""
    state = snap.state
    stream = store.streams.get(snap.stream)
    if stream is None or stream.timing != timing_from(state["timing"]):
        stream = _fresh(store, snap)
    tracks: dict[str, TrackStore] = {}
    for t in state["tracks"]:
        info = info_from(t["info"])
        track = stream.tracks.get(info.name) or TrackStore(stream, info)
        track.info = info
        _fill_track(track, t, media, keys)
        tracks[info.name] = track
    dropped = [t for name, t in stream.tracks.items() if name not in tracks]
    stream.tracks = tracks
    stream.expected_tracks = frozenset(state["expected"])
    stream.splices = tuple(splice_from(s) for s in state.get("splices", ()))
    stream.restored(
        ended=bool(state["ended"]),
        end_reason=state["end_reason"],
        started_utc_s=float(state["started_utc_s"]),
        published_utc_s=float(state["published_utc_s"]),
    )
    stream.node = node
    for track in dropped:
        track.release_all()
    for track in tracks.values():
        # a snapshot taken at SegmentClosed precedes the window slide that follows it on the publisher;
        # an ended stream satisfies every waiter, so all of them go
        track.settle()
    return stream
