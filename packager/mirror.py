"""Mirrors a store to a folder: media first, then the manifests that name it.

A :class:`DiskMirror` is one listener of the store's publications. Media files
(init, parts, segments) are queued on the :class:`~packager.disk.DiskWriter`
as they are announced; the manifests of a changed stream are rendered at most
once per event-loop turn and queued after them. The writer works in order, so
every media file a manifest names is on disk before the manifest is. When a
stream ends its final manifests are queued at once, and listeners of
:meth:`DiskMirror.when_final` hear when they are on disk (``vod.ready``).
Retired media is deleted (live streams only); a removed stream's folder goes
after every write queued for it.

A process restarted on the same folder first calls :meth:`DiskMirror.recover`:
each live track whose new init matches the one on disk then adopts the window
it had published (:mod:`packager.resume`) before its first new part. A
subtitle rendition's folder holds its ``wvtt`` init, and each segment twice:
``{msn}.m4s`` (DASH) is written before ``{msn}.vtt`` (HLS), which a restart
reads back.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from packager import resume
from packager.cmaf.wvtt import from_webvtt
from packager.disk import DiskWriter
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.model import (
    INIT_NAME,
    MASTER_NAME,
    MEDIA_PLAYLIST_NAME,
    MPD_NAME,
    Segment,
    TrackKind,
    part_name,
    segment_name,
    track_segment_name,
)
from packager.publication import (
    InitPublished,
    MediaRetired,
    PartPublished,
    Publication,
    SegmentClosed,
    SpliceScheduled,
    StreamEnded,
    StreamOpened,
    StreamRemoved,
    StreamTiming,
)
from packager.splice import Splice
from packager.store import Store

log = logging.getLogger(__name__)

FinalListener = Callable[[str, Path], None]  # (stream, folder), called on the writer thread


class DiskMirror:
    """Writes what ``store`` publishes under ``root``/{stream}/; subscribe it with :meth:`attach`."""

    def __init__(self, store: Store, root: Path, *, utc_timing_url: str = "/time") -> None:
        self.store = store
        self.root = root
        self.utc_timing_url = utc_timing_url
        self.disk = DiskWriter()
        # streams whose manifests are due, each with whether more than a part was published (only then
        # can the multivariant playlist and the MPD, which list whole segments, change)
        self._scheduled: dict[str, bool] = {}
        self._removed: set[str] = set()
        self._final: list[FinalListener] = []
        self._live: dict[str, bool] = {}
        self._timing: dict[str, StreamTiming] = {}
        self._found: dict[tuple[str, str], resume.TrackFiles] = {}
        self._found_splices: dict[str, tuple[Splice, ...]] = {}

    def attach(self) -> DiskMirror:
        self.store.subscribe(self)
        self.store.files = self
        return self

    def when_final(self, listener: FinalListener) -> None:
        """``listener(stream, folder)`` runs once an ended stream's final manifests are on disk."""
        self._final.append(listener)

    def folder(self, stream: str) -> Path | None:
        return None if stream in self._removed else self.root / stream

    def file(self, stream: str, track: str, name: str) -> Path | None:
        folder = self.folder(stream)
        path = folder / track / name if folder is not None else None
        return path if path is not None and path.is_file() else None

    async def recover(self, *, segment_s: Fraction, window_s: Fraction) -> int:
        """Read (on a worker thread) the media of the last ``window_s`` still under the folder, for the
        live streams this process opens to adopt; returns the number of tracks found. Call before any
        stream opens."""
        first_msn = math.floor((self.store.clock.utc_s() - float(window_s)) / float(segment_s)) - 1
        found = await asyncio.to_thread(resume.scan, self.root, max(0, first_msn))
        self._found.update(found)
        self._found_splices.update(await asyncio.to_thread(resume.scan_splices, self.root))
        return len(found)

    # -- the listener
    def on_publication(self, event: Publication) -> None:
        if isinstance(event, StreamOpened):
            self._removed.discard(event.stream)
            self._live[event.stream] = event.timing.live
            self._timing[event.stream] = event.timing
            self._resume_splices(event.stream, event.timing)
            return
        folder = self.folder(event.stream)
        if folder is None:
            return
        match event:
            case InitPublished(info=info, data=data):
                self._resume(event.stream, info.name, data)
                self.disk.write(folder / info.name / INIT_NAME, data)
            case PartPublished(part=part):
                if self._kind(event.stream, part.track) != "text":
                    self.disk.write(folder / part.track / part_name(part.msn, part.index), part.data)
            case SegmentClosed(segment=seg):
                data = self.store.get(event.stream).segment_bytes(seg.track, seg.msn)  # type: ignore[union-attr]
                if data is not None:
                    self._write_segment(folder / seg.track, self._kind(event.stream, seg.track), seg, data)
            case SpliceScheduled():
                s = self.store.get(event.stream)
                if s is not None:
                    self.disk.write(folder / resume.SPLICES_NAME, resume.splices_file(s.splices))
            case MediaRetired(track=track, msn=msn, parts=parts):
                if self._live.get(event.stream, True):
                    kind = self._kind(event.stream, track)
                    self.disk.delete(folder / track / track_segment_name(kind, msn))
                    if kind == "text":  # then its ISO BMFF form
                        self.disk.delete(folder / track / segment_name(msn))
                    for m, i in parts:
                        self.disk.delete(folder / track / part_name(m, i))
            case StreamEnded():
                self._finalize(event.stream, folder)
                return
            case StreamRemoved():
                self._removed.add(event.stream)
                self._live.pop(event.stream, None)
                self.disk.remove_tree(folder)
                return
        self._schedule(event.stream, whole=not isinstance(event, PartPublished))

    def _write_segment(self, folder: Path, kind: TrackKind, seg: Segment, data: bytes) -> None:
        if kind == "text":
            # its ISO BMFF form (DASH) first: a .vtt on disk (what a restart re-lists) has it beside it
            self.disk.write(folder / segment_name(seg.msn), from_webvtt(data, seg.start, seg.end, seg.msn))
        self.disk.write(folder / track_segment_name(kind, seg.msn), data)

    def _kind(self, stream: str, track_name: str) -> TrackKind:
        s = self.store.get(stream)
        track = s.track(track_name) if s is not None else None
        return track.info.kind if track is not None else "video"

    def _resume_splices(self, stream: str, timing: StreamTiming) -> None:
        """A live stream reopened on this folder lists the splices it had (those of breaks still in its
        window stay once its old segments are adopted)."""
        found = self._found_splices.pop(stream, ())
        s = self.store.get(stream)
        if found and timing.live and s is not None:
            s.adopt_splices(found)
            log.info("resume: %s: %d splices from before the restart", stream, len(found))

    def _resume(self, stream: str, track_name: str, init: bytes) -> None:
        """A track's first init: adopt the window a killed run left on disk, if it is this run's media."""
        files = self._found.pop((stream, track_name), None)
        timing = self._timing.get(stream)
        s = self.store.get(stream)
        track = s.track(track_name) if s is not None else None
        if files is None or timing is None or not timing.live or track is None or track.segments or track.pending:
            return
        if files.init != init:
            log.info("resume: %s/%s: the encoder's init changed, not resuming the old window", stream, track_name)
            return
        ts = track.info.timescale
        now_ticks = int(self.store.clock.utc_s() * ts)
        in_ticks = resume.Timing.of(timing.segment_s, timing.part_s, timing.window_s, ts)
        read = resume.text_window if track.info.kind == "text" else resume.window
        found = read(files, track_name, in_ticks, now_ticks)
        if found:
            track.adopt(found)
            folder = self.folder(stream)
            for seg, data in found:
                if seg.cut and folder is not None:  # its file was never written: the manifests name it now
                    self.disk.write(folder / track_name / segment_name(seg.msn), data)
            log.info(
                "resume: %s/%s: %d segments from before the restart (%d..%d)",
                stream,
                track_name,
                len(found),
                found[0][0].msn,
                found[-1][0].msn,
            )

    # -- manifests
    def _schedule(self, stream: str, *, whole: bool) -> None:
        if stream in self._scheduled:
            self._scheduled[stream] |= whole
            return
        self._scheduled[stream] = whole
        try:
            asyncio.get_running_loop().call_soon(self._write, stream)
        except RuntimeError:
            self._write(stream)

    def _write(self, stream: str) -> None:
        if stream in self._scheduled:  # not already written by the stream's end
            self.write_manifests(stream, whole=self._scheduled.pop(stream))

    def write_manifests(self, stream: str, *, whole: bool = True) -> None:
        """Every media playlist (each reports the others' newest part) and, ``whole``, the multivariant
        playlist and the MPD."""
        s = self.store.get(stream)
        folder = self.folder(stream)
        if s is None or folder is None:
            return
        view = s.view()
        if not view.tracks:
            return
        for track in view.tracks:
            self.disk.write(
                folder / track.info.name / MEDIA_PLAYLIST_NAME, render_media(view, track.info.name).encode()
            )
        if whole:
            self.disk.write(folder / MASTER_NAME, render_master(view).encode())
            self.disk.write(folder / MPD_NAME, render_mpd(view, utc_timing_url=self.utc_timing_url, low_latency=False))

    def _finalize(self, stream: str, folder: Path) -> None:
        """The final (VOD-complete) manifests now, then tell who waits once they are on disk."""
        self._scheduled.pop(stream, None)
        self.write_manifests(stream)
        for listener in list(self._final):
            self.disk.notify(lambda listener=listener: listener(stream, folder))

    def close(self) -> None:
        """Flush and stop the writer thread (blocks: call off the loop or at shutdown)."""
        self.store.unsubscribe(self)
        if self.store.files is self:
            self.store.files = None
        self.disk.close()
