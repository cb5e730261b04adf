"""Check a packaged output folder the way a strict player would."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import m3u8
from lxml import etree

from packager.cmaf import parse_fragments, parse_init

MPD_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


@dataclass(frozen=True)
class SegmentFact:
    msn: int
    start_s: Fraction
    duration_s: Fraction
    extinf_s: float


def media_playlists(folder: Path) -> dict[str, m3u8.M3U8]:
    master = m3u8.load(str(folder / "master.m3u8"))
    uris = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    return {u.split("/")[0]: m3u8.load(str(folder / u)) for u in uris}


def segment_facts(folder: Path, rendition: str) -> list[SegmentFact]:
    """Start and duration of each segment, read from the media itself, with its EXTINF."""
    pl = m3u8.load(str(folder / rendition / "index.m3u8"))
    init = parse_init((folder / rendition / "init.mp4").read_bytes())
    out = []
    for seg in pl.segments:
        data = (folder / rendition / seg.uri).read_bytes()
        frags = parse_fragments(data)
        start = frags[0].base_decode_time
        # fragments within a segment never overlap and never go back
        t = start
        for f in frags:
            assert f.base_decode_time >= t, (rendition, seg.uri)
            t = f.base_decode_time + sum(f.sample_durations)
        total = t - start
        msn = int(seg.uri.split(".")[0])
        out.append(SegmentFact(msn, Fraction(start, init.timescale), Fraction(total, init.timescale), seg.duration))
    return out


def decode_segments(folder: Path, rendition: str) -> int:
    """Decode init + each segment with PyAV; returns the number of frames decoded."""
    init = (folder / rendition / "init.mp4").read_bytes()
    pl = m3u8.load(str(folder / rendition / "index.m3u8"))
    frames = 0
    for seg in pl.segments:
        import io

        buf = io.BytesIO(init + (folder / rendition / seg.uri).read_bytes())
        with av.open(buf, "r", format="mp4") as c:
            for _frame in c.decode(c.streams[0]):
                frames += 1
    return frames


def mpd_timeline(mpd_bytes: bytes) -> dict[str, list[tuple[int, int, int]]]:
    """Representation id -> [(number, t, d)] from SegmentTemplate/SegmentTimeline."""
    root = etree.fromstring(mpd_bytes)
    out: dict[str, list[tuple[int, int, int]]] = {}
    for aset in root.iterfind(".//d:AdaptationSet", MPD_NS):
        for rep in aset.iterfind("d:Representation", MPD_NS):
            tmpl = rep.find("d:SegmentTemplate", MPD_NS)
            if tmpl is None:
                tmpl = aset.find("d:SegmentTemplate", MPD_NS)
            number = int(tmpl.get("startNumber", "1"))
            entries = []
            t = 0
            for s in tmpl.iterfind("d:SegmentTimeline/d:S", MPD_NS):
                if s.get("t") is not None:
                    t = int(s.get("t"))
                d = int(s.get("d"))
                for _ in range(int(s.get("r", "0")) + 1):
                    entries.append((number, t, d))
                    number += 1
                    t += d
            out[rep.get("id")] = entries
    return out


def dash_streams(mpd_path: Path) -> dict[str, bytes]:
    """Representation id -> init + every segment the MPD names, in order (what a DASH client fetches)."""
    root = etree.fromstring(mpd_path.read_bytes())
    out: dict[str, bytes] = {}
    timelines = mpd_timeline(mpd_path.read_bytes())
    for aset in root.iterfind(".//d:AdaptationSet", MPD_NS):
        for rep in aset.iterfind("d:Representation", MPD_NS):
            tmpl = rep.find("d:SegmentTemplate", MPD_NS)
            if tmpl is None:
                tmpl = aset.find("d:SegmentTemplate", MPD_NS)
            rid = rep.get("id")

            def expand(pattern: str, number: int = 0, time: int = 0, rid: str = rid) -> str:
                return (
                    pattern.replace("$RepresentationID$", rid)
                    .replace("$Number$", str(number))
                    .replace("$Time$", str(time))
                )

            data = [(mpd_path.parent / expand(tmpl.get("initialization"))).read_bytes()]
            for number, t, _d in timelines[rid]:
                data.append((mpd_path.parent / expand(tmpl.get("media"), number, t)).read_bytes())
            out[rid] = b"".join(data)
    return out
