"""Drive a player page in Chromium and sample its stats overlay (``window.__stats``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Playback:
    samples: list[dict] = field(default_factory=list)
    media_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    ready_wall: float | None = None

    @property
    def last(self) -> dict:
        return self.samples[-1] if self.samples else {}


def open_player(browser, url: str):
    context = browser.new_context()
    page = context.new_page()
    pb = Playback()

    def on_response(resp):
        u = resp.url
        if (".m4s" in u or ".mp4" in u or ".m3u8" in u or ".mpd" in u) and resp.status >= 400:
            pb.media_errors.append(f"{resp.status} {u}")

    page.on("response", on_response)
    page.on("console", lambda m: pb.console.append(f"{m.type}: {m.text}"))
    page.goto(url)
    return context, page, pb


def sample(page, pb: Playback, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sample_once(page, pb)
        time.sleep(0.5)


def sample_once(page, pb: Playback) -> None:
    s = page.evaluate("window.__stats ? JSON.parse(JSON.stringify(window.__stats)) : null")
    if s:
        s["_wall"] = time.monotonic()
        pb.samples.append(s)
        if s.get("ready") and pb.ready_wall is None:
            pb.ready_wall = s["_wall"]


def wait_ready(page, pb: Playback, timeout_s: float = 20) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        sample(page, pb, 0.5)
        if pb.last.get("ready") and pb.last.get("currentTime", 0) > 0:
            return
        if pb.last.get("fatal"):
            break
    raise AssertionError(f"player not ready: {pb.last} console={pb.console[-10:]} errors={pb.media_errors}")


def progress_ratio(pb: Playback, since_wall: float) -> float:
    """Media time advanced / wall time passed since ``since_wall``."""
    window = [s for s in pb.samples if s["_wall"] >= since_wall]
    if len(window) < 2:
        return 0.0
    media = window[-1]["currentTime"] - window[0]["currentTime"]
    wall = window[-1]["_wall"] - window[0]["_wall"]
    return media / wall if wall > 0 else 0.0


def force_each_level(page, pb: Playback, seconds_each: float = 8) -> dict[int, float]:
    """Force every rendition in turn; returns level -> media progress ratio while forced.

    The window is long enough that one switch-time stall of a few seconds on a loaded machine does not
    read as a rendition that does not play (a rendition that does not play gives a ratio near 0).
    """
    levels = pb.last.get("levels") or []
    out = {}
    for lvl in levels:
        i = lvl["index"]
        page.evaluate(f"window.__setLevel({i})")
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            sample(page, pb, 0.5)
            if pb.last.get("level") == i:
                break
        start = time.monotonic()
        sample(page, pb, seconds_each)
        out[i] = progress_ratio(pb, start) if pb.last.get("level") == i else -1.0
    page.evaluate("window.__setLevel(-1)")
    return out
