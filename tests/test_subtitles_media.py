"""Subtitles end to end: an MKV with two SubRip tracks is packaged; the published WebVTT segments hold the
right cues at the right media times, and the manifests list both renditions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import m3u8
import pytest

from packager.cmaf import parse_init
from tests.support.procs import REPO
from tests.support.subtitles import DE_CUES, EN_CUES, two_subtitle_clip
from tests.support.xsd import validate_mpd
from tests.test_manifest_hls import attrs, tag_lines
from tests.test_webvtt_iso import wvtt_samples

pytestmark = pytest.mark.media

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
TIMING = re.compile(r"^(\d{2,}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2,}):(\d{2}):(\d{2})\.(\d{3})$")


def _ms(h: str, m: str, s: str, ms: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def parse_vtt(text: str) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) of each cue of a WebVTT file."""
    blocks = text.split("\n\n")
    assert blocks[0].startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:"), blocks[0]
    cues = []
    for block in blocks[1:]:
        if not block.strip():
            continue
        timing, *lines = block.split("\n")
        m = TIMING.match(timing)
        assert m, timing
        cues.append((_ms(*m.groups()[:4]), _ms(*m.groups()[4:]), "\n".join(lines)))
    return cues


def published_cues(folder: Path, track: str) -> tuple[list[tuple[int, int, str]], list[int]]:
    """Every distinct cue of the track's listed segments (media ms), and the listed msns."""
    playlist = m3u8.load(str(folder / track / "index.m3u8"))
    seen: dict[tuple[int, int, str], None] = {}
    msns = []
    for seg in playlist.segments:
        msns.append(int(seg.uri.removesuffix(".vtt")))
        start = msns[-1] * 2000
        for cue in parse_vtt((folder / track / seg.uri).read_text(encoding="utf-8")):
            assert cue[0] < start + 2000 and cue[1] > start, f"{seg.uri} holds a cue outside it: {cue}"
            seen[cue] = None
    return list(seen), msns


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    clip = two_subtitle_clip(tmp_path_factory.mktemp("clip") / "subs.mkv")
    out = tmp_path_factory.mktemp("out")
    cmd = [sys.executable, "-m", "packager", "package", str(clip), "--out", str(out), "--fast"]
    cmd += ["--ladder", "320x180@250k", "--preset", "ultrafast"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out / "demo"


FRAME_MS = 40  # media time snaps video to a constant 25 fps grid: cues may sit up to a frame off it


def expected_text(text: str) -> str:
    """SubRip markup is not carried (FFmpeg turns <i> into ASS tags, which are dropped); & < > are escaped."""
    plain = re.sub(r"</?[ibu]>", "", text)
    return plain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def assert_cues(got: list[tuple[int, int, str]], cues: tuple[tuple[float, float, str], ...]) -> None:
    assert [t for _, _, t in got] == [expected_text(t) for _, _, t in cues]
    for (start, end, _), (a, b, _) in zip(got, cues, strict=True):
        assert abs(start - a * 1000) <= FRAME_MS, (start, a)
        assert end - start == round((b - a) * 1000)


def test_each_subtitle_track_holds_its_cues_at_their_media_times(packaged):
    en, en_msns = published_cues(packaged, "subs-en")
    de, de_msns = published_cues(packaged, "subs-de")
    # media time zero is the first video frame, which the clip's cues count from
    assert_cues(en, EN_CUES)
    assert_cues(de, DE_CUES)
    video = m3u8.load(str(packaged / "180p" / "index.m3u8"))
    # the same segment numbers as the video, every one listed: continuous even where no cue falls
    assert en_msns == de_msns == [int(s.uri.removesuffix(".m4s")) for s in video.segments] == list(range(5))
    assert [s.duration for s in m3u8.load(str(packaged / "subs-de" / "index.m3u8")).segments] == [
        s.duration for s in video.segments
    ]


def test_the_vtt_files_map_their_local_time_to_the_media_clock(packaged):
    text = (packaged / "subs-en" / "1.vtt").read_text()
    assert text.splitlines()[1] == "X-TIMESTAMP-MAP=MPEGTS:180000,LOCAL:00:00:02.000"


def test_manifests_list_both_subtitle_renditions(packaged):
    master = (packaged / "master.m3u8").read_text()
    subs = [a for line in tag_lines(master, "#EXT-X-MEDIA") if (a := attrs(line))["TYPE"] == "SUBTITLES"]
    assert [(s["LANGUAGE"], s["NAME"], s["URI"]) for s in subs] == [
        ("en", "English", "subs-en/index.m3u8"),
        ("de", "German", "subs-de/index.m3u8"),
    ]
    assert all(attrs(line)["SUBTITLES"] == "subs" for line in tag_lines(master, "#EXT-X-STREAM-INF"))
    assert (packaged / "subs-en" / "index.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
    root = validate_mpd((packaged / "manifest.mpd").read_bytes())
    sets = root.findall(".//d:AdaptationSet[@contentType='text']", NS)
    assert [s.get("lang") for s in sets] == ["en", "de"]
    assert [s.find("d:Representation", NS).get("codecs") for s in sets] == ["wvtt", "wvtt"]
    assert parse_init((packaged / "subs-en" / "init.mp4").read_bytes()).codec == "wvtt"


def test_the_vod_dash_form_places_the_cues_at_their_media_times(packaged):
    """VOD media time starts at zero, where the static MPD starts: dash.js shows a ``wvtt`` sample at its
    media time (Period@start and presentationTimeOffset are both zero)."""
    root = validate_mpd((packaged / "manifest.mpd").read_bytes())
    template = root.find(".//d:AdaptationSet[@lang='en']/d:Representation/d:SegmentTemplate", NS)
    assert (root.find("d:Period", NS).get("start"), template.get("presentationTimeOffset")) == ("PT0S", "0")
    shown: list[tuple[int, int, str]] = []
    for msn in range(5):
        for start, end, texts in wvtt_samples((packaged / "subs-en" / f"{msn}.m4s").read_bytes()):
            assert msn * 2000 <= start < end <= (msn + 1) * 2000
            for text in texts:  # a cue on in the next sample goes on (dash.js extends it)
                if shown and shown[-1][1:] == (start, text):
                    shown[-1] = (shown[-1][0], end, text)
                else:
                    shown.append((start, end, text))
    assert shown == published_cues(packaged, "subs-en")[0]
