"""A live run killed with ``kill -9`` and restarted on the same folder goes on with the window it had, its
subtitle renditions too."""

from __future__ import annotations

import re
import time

from tests.support.procs import SMALL_LADDER, free_port, get, packager, wait_segments
from tests.support.subtitles import two_subtitle_clip
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


def _non_gap(listing: list[tuple[int, bool]]) -> list[int]:
    return [m for m, gap in listing if not gap]


def test_a_restart_relists_the_subtitle_window_and_marks_the_same_downtime(tmp_path):
    cues = tuple((t + 0.5, t + 1.5, f"cue {t}") for t in range(0, 20, 2))
    clip = two_subtitle_clip(tmp_path / "subs.mkv", 20, cues, cues)
    args = [str(clip), "--loop", "--ladder", "320x180@250k", "--preset", "ultrafast", "--window", "30"]
    out, port = tmp_path / "out", free_port()
    with packager(args, port=port, out=out) as (proc, base):
        wait_segments(f"{base}/live/demo/subs-en/index.m3u8", 3, timeout_s=60)
        before = _non_gap(_listing(get(f"{base}/live/demo/subs-en/index.m3u8")[2].decode()))
        proc.kill()
        proc.wait()
    time.sleep(5)
    with packager(args, port=port, out=out) as (proc, base):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = _listing(get(f"{base}/live/demo/subs-en/index.m3u8")[2].decode())
            if _non_gap(text)[-1] > before[-1] + 3:
                break
            time.sleep(0.5)
        video = _listing(get(f"{base}/live/demo/180p/index.m3u8")[2].decode())
        assert set(before) <= set(_non_gap(text)), (before, text)
        text_gaps, video_gaps = {m for m, gap in text if gap}, {m for m, gap in video if gap}
        # the downtime, as the media lists it; the media may also hold the start of the segment it was in
        assert video_gaps and video_gaps <= text_gaps and len(text_gaps - video_gaps) <= 1, (text, video)
        for msn in _non_gap(text):
            for name in (f"{msn}.vtt", f"{msn}.m4s"):
                assert get(f"{base}/live/demo/subs-en/{name}")[0] == 200, name
        status, _, mpd = get(f"{base}/live/demo/manifest.mpd")
        assert status == 200
        root = validate_mpd(mpd)
        periods = root.findall("d:Period", {"d": root.nsmap[None]})
        assert len(periods) == 2, mpd.decode()  # the window from before the kill, then the new run
        for period in periods:
            langs = [a.get("lang") for a in period.iterfind("{*}AdaptationSet[@contentType='text']")]
            assert sorted(langs) == ["de", "en"], period.get("id")
    log = (tmp_path / f"packager-{port}.log").read_text()
    assert "resume: demo/subs-en" in log, log[-2000:]
