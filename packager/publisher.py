"""Mirrors each stream's manifests to disk after the media they name.

Listens to store changes and, at most once per event-loop turn per stream,
renders the multivariant and media playlists and the MPD and queues them on
the store's :class:`~packager.store.DiskWriter`. The writer works in order,
so every media file a manifest names is on disk before the manifest is.
"""

from __future__ import annotations

import asyncio

from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.model import MASTER_NAME, MEDIA_PLAYLIST_NAME, MPD_NAME
from packager.store import Store, StreamStore


class ManifestFiles:
    def __init__(self, store: Store, *, utc_timing_url: str = "/time") -> None:
        self.store = store
        self.utc_timing_url = utc_timing_url
        self._scheduled: set[str] = set()
        store.change_listeners.append(self._changed)

    def _changed(self, stream: StreamStore) -> None:
        if stream.name in self._scheduled:
            return
        self._scheduled.add(stream.name)
        try:
            asyncio.get_running_loop().call_soon(self._write, stream)
        except RuntimeError:
            self._write(stream)

    def _write(self, stream: StreamStore) -> None:
        self._scheduled.discard(stream.name)
        self.write_now(stream)

    def write_now(self, stream: StreamStore) -> None:
        folder = stream.folder
        if folder is None or self.store.disk is None:
            return
        view = stream.view()
        if not view.tracks:
            return
        disk = self.store.disk
        for track in view.tracks:
            disk.write(folder / track.info.name / MEDIA_PLAYLIST_NAME, render_media(view, track.info.name).encode())
        disk.write(folder / MASTER_NAME, render_master(view).encode())
        disk.write(folder / MPD_NAME, render_mpd(view, utc_timing_url=self.utc_timing_url, low_latency=False))
