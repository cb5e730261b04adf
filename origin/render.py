"""Manifest bytes per stream state: rendered once per (state, variant), shared by every request."""

from __future__ import annotations

from dataclasses import dataclass, field

from origin.responses import Body
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master, render_media
from packager.model import StreamView


@dataclass
class RenderCache:
    """Keeps the newest rendering of each manifest variant; a new state version replaces it."""

    utc_timing_url: str = "/time"
    entries: dict[tuple, tuple[int, Body]] = field(default_factory=dict)
    renders: int = 0

    def _get(self, key: tuple, view: StreamView, make) -> Body:  # type: ignore[no-untyped-def]
        hit = self.entries.get(key)
        if hit is not None and hit[0] == view.version:
            return hit[1]
        self.renders += 1
        data = make()
        body = Body.of(data, view.published_utc_s, compressible=True)
        self.entries[key] = (view.version, body)
        return body

    def master(self, view: StreamView) -> Body:
        return self._get((view.name, "master"), view, lambda: render_master(view).encode())

    def media(self, view: StreamView, track: str, skip: bool) -> Body:
        return self._get((view.name, "media", track, skip), view, lambda: render_media(view, track, skip=skip).encode())

    def mpd(self, view: StreamView, low_latency: bool, producing: bool = True) -> Body:
        return self._get(
            (view.name, "mpd", low_latency, producing),
            view,
            lambda: render_mpd(view, utc_timing_url=self.utc_timing_url, low_latency=low_latency, producing=producing),
        )
