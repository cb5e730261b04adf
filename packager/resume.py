"""Resuming a live window from disk: what a killed process had published, read back and checked.

A live run mirrors every part (``{msn}.{i}.m4s``) and every closed segment
(``{msn}.m4s``) of each track under ``{out}/{stream}/{track}/``. After
``kill -9`` (or a power cut) that media is still there, and because segment
numbers are a pure function of UTC the restarted process would publish the
very same numbers. :func:`scan` reads the recent files of every stream folder
(off the loop: it is file I/O); :func:`window` turns one track's files into
the segments the new run adopts, trusting nothing:

* the new run's init segment must be byte-identical to the one on disk (same
  ladder and encoder settings), or the old media could not be decoded with it;
* every part must parse as CMAF, start at the position its name claims under
  the new run's timing, and follow the previous part of its segment without
  overlap;
* a closed segment's file must be exactly ``styp`` + its parts;
* parts whose segment file was never written (the process died in that
  segment) form a *cut* segment (:attr:`packager.model.Segment.cut`), listed at
  its nominal duration with its real parts (its file is written on adoption);
* only segments still inside the new run's window count.

A subtitle rendition (:func:`text_window`) keeps no parts: each ``{msn}.vtt``
file must read back as the WebVTT segment its name claims, and stands for the
whole segment (a live rendition publishes only whole ones; its ISO BMFF form
``{msn}.m4s`` was written before it).

What the process lost while it was down is a run of msns nobody produced, which
manifests already render as gaps (HLS ``EXT-X-GAP`` segments; DASH, whose
``$Number$`` counts one per timeline entry, lists only the newest run).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from packager.cmaf import parse_fragments, styp
from packager.cmaf.fragment import NON_SYNC_SAMPLE_FLAGS
from packager.model import INIT_NAME, PartRef, Segment, segment_name, text_segment_name
from packager.splice import Splice, SpliceError, splice_from, splice_json
from packager.webvtt import parse_segment

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"(\d{1,18})\.m4s")
_PART = re.compile(r"(\d{1,18})\.(\d{1,4})\.m4s")
_TEXT = re.compile(r"(\d{1,18})\.vtt")
MAX_FILE_BYTES = 64 << 20  # larger than any part or segment this package writes
_NON_SYNC = NON_SYNC_SAMPLE_FLAGS & 0x00010000  # sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1)


@dataclass(frozen=True)
class TrackFiles:
    """One track's media as found on disk: its init, and the recent segments' and parts' bytes by msn."""

    init: bytes
    segments: dict[int, bytes]
    parts: dict[int, dict[int, bytes]]  # msn -> part index -> bytes
    texts: dict[int, bytes] = field(default_factory=dict)  # msn -> WebVTT file (a subtitle rendition)


@dataclass(frozen=True)
class Timing:
    """The new run's timing for one track, in its ticks."""

    segment_ticks: int
    part_ticks: int
    window_ticks: int

    @classmethod
    def of(cls, segment_s: Fraction, part_s: Fraction, window_s: Fraction, timescale: int) -> Timing:
        return cls(int(segment_s * timescale), int(part_s * timescale), int(window_s * timescale))

    def position(self, ticks: int) -> tuple[int, int]:
        msn = ticks // self.segment_ticks
        return msn, (ticks - msn * self.segment_ticks) // self.part_ticks


def scan(root: Path, first_msn: int) -> dict[tuple[str, str], TrackFiles]:
    """Every track folder ``root/{stream}/{track}/`` holding an init, with its media of msn >= ``first_msn``.

    Blocking file I/O: run it on a worker thread. Unreadable files are skipped with a warning."""
    found: dict[tuple[str, str], TrackFiles] = {}
    for stream_dir in _subfolders(root):
        for track_dir in _subfolders(stream_dir):
            files = _track_files(track_dir, first_msn)
            if files is not None:
                found[(stream_dir.name, track_dir.name)] = files
    return found


def _subfolders(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _track_files(folder: Path, first_msn: int) -> TrackFiles | None:
    init = _read(folder / INIT_NAME)
    if init is None:
        return None
    segments: dict[int, bytes] = {}
    parts: dict[int, dict[int, bytes]] = {}
    texts: dict[int, bytes] = {}
    with os.scandir(folder) as entries:
        names = [e.name for e in entries]
    for name in names:
        part, seg, text = _PART.fullmatch(name), _SEGMENT.fullmatch(name), _TEXT.fullmatch(name)
        match = part or seg or text
        if match is None or int(match[1]) < first_msn or (data := _read(folder / name)) is None:
            continue
        if part is not None:
            parts.setdefault(int(part[1]), {})[int(part[2])] = data
        else:
            (texts if text is not None else segments)[int(match[1])] = data
    return TrackFiles(init, segments, parts, texts)


def _read(path: Path) -> bytes | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            log.warning("resume: %s is too large for a part or segment, skipped", path)
            return None
        return path.read_bytes()
    except OSError as exc:
        log.warning("resume: cannot read %s: %s", path, exc.strerror)
        return None


def window(files: TrackFiles, track: str, timing: Timing, now_ticks: int) -> list[tuple[Segment, bytes]]:
    """The segments (with their bytes) the new run adopts from ``files``, oldest first.

    Segments older than the window are left out, and so is any segment that fails a check (manifests
    then show a gap where it was)."""
    out: list[tuple[Segment, bytes]] = []
    oldest_end = now_ticks - timing.window_ticks
    for msn in sorted(files.parts):
        seg = _segment(files, track, msn, timing)
        if seg is not None and seg[0].end > oldest_end and (not out or out[-1][0].end <= seg[0].start):
            _append(out, *seg)
    return out


def text_window(files: TrackFiles, track: str, timing: Timing, now_ticks: int) -> list[tuple[Segment, bytes]]:
    """:func:`window` for a subtitle rendition: its WebVTT files, each checked and a whole segment long."""
    out: list[tuple[Segment, bytes]] = []
    oldest_end = now_ticks - timing.window_ticks
    for msn in sorted(files.texts):
        data, start, duration = files.texts[msn], msn * timing.segment_ticks, timing.segment_ticks
        try:
            fits = parse_segment(data).start == start
        except ValueError:
            fits = False
        if not fits:
            log.warning("resume: %s/%s is not that WebVTT segment, not resumed", track, text_segment_name(msn))
        elif start + duration > oldest_end:
            ref = PartRef(msn, 0, start, duration, True, len(data))
            _append(out, Segment(track, msn, start, duration, (ref,), len(data)), data)
    return out


def _append(out: list[tuple[Segment, bytes]], seg: Segment, data: bytes) -> None:
    """Add ``seg`` after the adopted segments in ``out``, in the run of the one before it if it follows it."""
    previous = out[-1][0] if out else None
    if previous is not None and previous.msn + 1 == seg.msn:
        seg = replace(seg, run=previous.run_msn)
    out.append((seg, data))


def _segment(files: TrackFiles, track: str, msn: int, timing: Timing) -> tuple[Segment, bytes] | None:
    refs = _parts(files.parts[msn], msn, timing)
    if refs is None:
        log.warning("resume: %s segment %d: parts do not fit the stream's timing, not resumed", track, msn)
        return None
    data = styp() + b"".join(files.parts[msn][r.index] for r in refs)
    closed = files.segments.get(msn)
    if closed is not None and closed != data:
        log.warning("resume: %s/%s is not its parts, not resumed", track, segment_name(msn))
        return None
    duration = refs[-1].start + refs[-1].duration - refs[0].start
    seg = Segment(track, msn, refs[0].start, duration, tuple(refs), len(data), cut=closed is None)
    return seg, data


def _parts(by_index: dict[int, bytes], msn: int, timing: Timing) -> list[PartRef] | None:
    """The part references of one segment, or None when any part is broken, misplaced or after a hole."""
    refs: list[PartRef] = []
    for index in sorted(by_index):
        data = by_index[index]
        try:
            fragments = parse_fragments(data)
        except ValueError:
            return None
        if len(fragments) != 1 or not fragments[0].sample_durations:
            return None
        f = fragments[0]
        if timing.position(f.base_decode_time) != (msn, index):
            return None
        if refs and refs[-1].start + refs[-1].duration > f.base_decode_time:
            return None  # overlaps the part before it
        independent = not f.sample_flags[0] & _NON_SYNC
        refs.append(PartRef(msn, index, f.base_decode_time, f.duration, independent, len(data)))
    return refs or None


SPLICES_NAME = "splices.json"  # a stream folder's ad-break splices (the disk mirror keeps it current)
MAX_SPLICES_BYTES = 1 << 20


def scan_splices(root: Path) -> dict[str, tuple[Splice, ...]]:
    """The splices each stream folder under ``root`` had published. Blocking: run it on a worker thread.

    A file that is unreadable or not a list of splices is skipped with a warning (its stream resumes
    without them)."""
    found: dict[str, tuple[Splice, ...]] = {}
    for stream_dir in _subfolders(root):
        path = stream_dir / SPLICES_NAME
        try:
            if not path.is_file() or path.stat().st_size > MAX_SPLICES_BYTES:
                continue
            values = json.loads(path.read_bytes())
            if not isinstance(values, list):
                raise SpliceError("not a list")
            found[stream_dir.name] = tuple(sorted((splice_from(v) for v in values), key=lambda s: s.start))
        except (OSError, ValueError) as exc:
            log.warning("resume: %s: ignored (%s)", path, exc)
    return found


def splices_file(splices: tuple[Splice, ...]) -> bytes:
    return json.dumps([splice_json(s) for s in splices], separators=(",", ":")).encode()
