"""A live run killed with ``kill -9`` and restarted on the same folder goes on with the window it had."""

from __future__ import annotations

import re
import time

from tests.support.procs import SMALL_LADDER, free_port, get, packager, wait_segments
from tests.support.xsd import validate_mpd

ARGS = ["testsrc:480x270@30", "--ladder", SMALL_LADDER, "--preset", "ultrafast", "--window", "30"]
PLAYLISTS = ("270p/index.m3u8", "180p/index.m3u8", "audio/index.m3u8")


def _listing(text: str) -> list[tuple[int, bool]]:
    """(msn, is a gap) of every segment a media playlist lists."""
    msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])  # type: ignore[index]
    out, gap = [], False
    for line in text.splitlines():
        if line == "#EXT-X-GAP":
            gap = True
        elif line and not line.startswith("#"):
            out.append((msn, gap))
            msn, gap = msn + 1, False
    return out


def _media_uris(text: str) -> list[str]:
    """Every segment and part URI the playlist names as media (not GAP)."""
    uris = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line and not line.startswith("#") and lines[n - 1] != "#EXT-X-GAP":
            uris.append(line)
        elif line.startswith("#EXT-X-PART:") and "GAP=YES" not in line:
            uris.append(re.search(r'URI="([^"]+)"', line)[1])  # type: ignore[index]
    return uris


def _newest(base: str) -> int:
    return max(m for m, gap in _listing(get(f"{base}/live/demo/270p/index.m3u8")[2].decode()) if not gap)


def test_a_restart_after_kill_9_relists_the_window_and_marks_the_downtime_as_gaps(tmp_path):
    out, port = tmp_path / "out", free_port()
    with packager(ARGS, port=port, out=out) as (proc, base):
        wait_segments(f"{base}/live/demo/270p/index.m3u8", 4, timeout_s=60)
        before = [m for m, gap in _listing(get(f"{base}/live/demo/270p/index.m3u8")[2].decode()) if not gap]
        proc.kill()  # kill -9: nothing is finalized
        proc.wait()
    time.sleep(5)  # the downtime: real seconds of media nobody produced
    with packager(ARGS, port=port, out=out) as (proc, base):
        deadline = time.monotonic() + 60
        while _newest(base) <= before[-1] + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        listings = {}
        for name in PLAYLISTS:
            status, _, body = get(f"{base}/live/demo/{name}")
            assert status == 200
            text = body.decode()
            listings[name] = _listing(text)
            for uri in _media_uris(text):
                assert get(f"{base}/live/demo/{name.split('/')[0]}/{uri}")[0] == 200, (name, uri)
        listed = listings["270p/index.m3u8"]
        msns = [m for m, _ in listed]
        assert msns == list(range(msns[0], msns[-1] + 1))  # numbering continues through the downtime
        assert set(before) <= {m for m, gap in listed if not gap}, "the window from before the kill is gone"
        downtime = [m for m, gap in listed if gap]
        assert downtime and before[-1] <= downtime[0] and downtime[-1] < msns[-1], listed
        status, _, mpd = get(f"{base}/live/demo/manifest.mpd")
        assert status == 200
        validate_mpd(mpd)
    log = (tmp_path / f"packager-{port}.log").read_text()
    assert "resume: demo/270p" in log, log[-2000:]
