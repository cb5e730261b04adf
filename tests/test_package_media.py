"""Packaging real (generated) media: VOD with --fast, live with a sliding window, bad inputs."""

from __future__ import annotations

import io
import itertools
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import m3u8
import pytest

from fixtures.media import make_clip
from packager.cmaf import parse_init as read_init
from packager.cmaf.reader import parse_fragments
from tests.support.outputs import dash_streams, decode_segments, media_playlists, mpd_timeline, segment_facts
from tests.support.procs import REPO
from tests.support.xsd import validate_mpd

pytestmark = pytest.mark.media

LADDER = "480x270@500k,320x180@250k"


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "packager", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def vod(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("vod")
    clip = make_clip(tmp / "clip.mp4", seconds=10, width=480, height=270)
    r = run_cli("package", str(clip), "--out", str(tmp / "out"), "--fast", "--ladder", LADDER, "--preset", "ultrafast")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return tmp / "out" / "demo"


def test_vod_layout_and_mpd_valid(vod):
    assert (vod / "master.m3u8").is_file() and (vod / "manifest.mpd").is_file()
    mpd = (vod / "manifest.mpd").read_bytes()
    validate_mpd(mpd)
    assert b'type="static"' in mpd and b"mediaPresentationDuration" in mpd
    assert not list(vod.rglob("*.tmp"))


def test_vod_playlists_obey_hls_rules(vod):
    master = m3u8.load(str(vod / "master.m3u8"))
    assert len(master.playlists) == 2
    for variant in master.playlists:
        codecs = variant.stream_info.codecs
        assert codecs.startswith("avc1.") and "mp4a.40.2" in codecs
        assert variant.stream_info.bandwidth >= variant.stream_info.average_bandwidth
        init = (vod / variant.uri.split("/")[0] / "init.mp4").read_bytes()
        from packager.cmaf import parse_init

        assert parse_init(init).codec == codecs.split(",")[0]
    for name, pl in media_playlists(vod).items():
        assert pl.is_endlist and pl.version >= 6
        target = pl.target_duration
        for seg in pl.segments:
            assert round(seg.duration) <= target, (name, seg.duration, target)
        assert pl.segment_map and pl.segment_map[0].uri == "init.mp4"


def test_vod_boundaries_durations_and_sync(vod):
    facts = {r: segment_facts(vod, r) for r in ("270p", "180p", "audio")}
    starts_270 = [f.start_s for f in facts["270p"]]
    assert starts_270 == [f.start_s for f in facts["180p"]]
    # EXTINF matches the media within 1 ms
    for r, fs in facts.items():
        for f in fs:
            assert abs(float(f.duration_s) - f.extinf_s) < 0.001, (r, f)
    # audio segment starts agree with video within one audio frame
    audio_starts = {f.msn: f.start_s for f in facts["audio"]}
    for f in facts["270p"]:
        if f.msn in audio_starts:
            assert abs(audio_starts[f.msn] - f.start_s) <= Fraction(1024, 48000), f.msn
    # SegmentTimeline durations match too
    timeline = mpd_timeline((vod / "manifest.mpd").read_bytes())
    for r in ("270p", "audio"):
        ts = 90000 if r != "audio" else 48000
        assert [(n, Fraction(t, ts), Fraction(d, ts)) for n, t, d in timeline[r]] == [
            (f.msn, f.start_s, f.duration_s) for f in facts[r]
        ]


def test_vod_every_segment_decodes(vod):
    assert decode_segments(vod, "270p") == 300
    assert decode_segments(vod, "180p") == 300
    assert decode_segments(vod, "audio") >= 10 * 48000 // 1024


def test_vod_plays_back_through_manifests(vod):
    with av.open(str(vod / "master.m3u8"), options={"allowed_extensions": "ALL"}) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        nv = na = 0
        for frame in c.decode(v, a):
            if isinstance(frame, av.VideoFrame):
                nv += 1
            else:
                na += frame.samples
    assert nv >= 300
    assert na >= 10 * 48000 - 1024
    # The FFmpeg in PyAV's wheels has no DASH demuxer (no libxml2): resolve the MPD's
    # SegmentTemplate ourselves and let PyAV decode what a DASH client would fetch.
    streams = dash_streams(vod / "manifest.mpd")
    assert set(streams) == {"270p", "180p", "audio"}
    for rep, data in streams.items():
        with av.open(io.BytesIO(data), format="mp4") as c:
            if rep == "audio":
                samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
                assert samples >= 10 * 48000 - 1024
            else:
                assert sum(1 for _ in c.decode(c.streams.video[0])) == 300


def test_live_window_then_ctrl_c_gives_vod(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "packager",
        "run",
        "testsrc:320x180@30",
        "--ladder",
        "320x180@250k",
        "--preset",
        "ultrafast",
        "--out",
        str(out),
        "--no-serve",
        "--window",
        "6",
        "--segment",
        "1",
        "--part",
        "0.5",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 16
        while time.monotonic() < deadline:
            time.sleep(1)
            p = out / "demo" / "180p" / "index.m3u8"
            if p.is_file():
                pl = m3u8.load(str(p))
                seen.append((pl.media_sequence, len(pl.segments)))
                for seg in pl.segments:
                    if seg.uri:  # m3u8 reports trailing LL parts as a segment without a URI
                        assert (p.parent / seg.uri).is_file()
                mpd = (out / "demo" / "manifest.mpd").read_bytes()
                validate_mpd(mpd)
                assert b'type="dynamic"' in mpd
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert max(n for _, n in seen) <= 8
    assert seen[-1][0] > seen[0][0]  # the window slid
    pl = m3u8.load(str(out / "demo" / "180p" / "index.m3u8"))
    assert pl.is_endlist
    mpd = (out / "demo" / "manifest.mpd").read_bytes()
    validate_mpd(mpd)
    assert b'type="static"' in mpd
    for seg in pl.segments:
        assert (out / "demo" / "180p" / seg.uri).is_file()
    assert "Traceback" not in err


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args,needle",
    [
        (["package", "/nonexistent/clip.mp4", "--out", "{tmp}"], "no such file"),
        (["package", "{tmp}", "--out", "{tmp}/o"], "directory"),
        (["package", "{tmp}/garbage.mp4", "--out", "{tmp}/o"], "cannot open"),
        (["package", "testsrc", "--out", "{tmp}/o", "--ladder", "big"], "--ladder"),
        (["package", "testsrc", "--out", "{tmp}/o", "--segment", "2", "--part", "0.3"], "--part"),
        (["package", "testsrc", "--out", "{tmp}/o", "--stream", "../evil"], "--stream"),
        (["package", "testsrc", "--out", "{tmp}/o", "--fps", "abc"], "--fps"),
        (["package", "testsrc", "--out", "{tmp}/o", "--audio", "0:klingon"], "--audio '0:klingon'"),
        (["package", "testsrc", "--out", "{tmp}/o", "--audio", "0::A:loud"], "unknown flag"),
        (["package", "testsrc", "--out", "{tmp}/o", "--fast"], "--duration"),
        (["package", "testsrc:13x7", "--out", "{tmp}/o", "--fast", "--duration", "1"], "testsrc"),
        (["run", "--port", "notaport"], "invalid int"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_one_line_errors(tmp_path, args, needle):
    (tmp_path / "garbage.mp4").write_bytes(bytes(range(256)) * 100)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run_cli(*args, timeout=60)
    assert r.returncode in (1, 2), r
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3, r.stderr
    assert not list(tmp_path.rglob("*.m4s"))


def _package(tmp_path: Path, clip: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    r = run_cli("package", str(clip), "--out", str(out), "--fast", "--ladder", LADDER, "--preset", "ultrafast", *extra)
    return r, out / "demo"


def test_truncated_file_gives_valid_partial_output(tmp_path):
    clip = make_clip(tmp_path / "clip.ts", seconds=4)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) * 2 // 3])
    r, out = _package(tmp_path, clip)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    validate_mpd((out / "manifest.mpd").read_bytes())
    assert m3u8.load(str(out / "180p" / "index.m3u8")).is_endlist


@pytest.mark.parametrize("kind", ["odd_size_vfr", "jumps", "audio_only", "video_only", "bitflips"])
def test_hostile_media_packages_cleanly(tmp_path, kind):
    if kind == "odd_size_vfr":
        clip = make_clip(tmp_path / "c.mkv", seconds=4, width=853, height=479, vfr=True, codec="ffv1")
    elif kind == "jumps":
        # a jump 30 s forward, then a DTS reset back to zero (two TS files back to back)
        a = make_clip(tmp_path / "a.ts", seconds=3, jump_at_s=1.5, jump_by_s=30)
        b = make_clip(tmp_path / "b.ts", seconds=2)
        clip = tmp_path / "c.ts"
        clip.write_bytes(a.read_bytes() + b.read_bytes())
    elif kind == "audio_only":
        clip = make_clip(tmp_path / "c.ts", seconds=4, video=False)
    elif kind == "video_only":
        clip = make_clip(tmp_path / "c.mp4", seconds=4, audio=False)
    else:
        clip = make_clip(tmp_path / "c.ts", seconds=4)
        data = bytearray(clip.read_bytes())
        import random

        rnd = random.Random(11)
        for _ in range(200):
            i = rnd.randrange(1000, len(data))
            data[i] ^= 1 << rnd.randrange(8)
        clip.write_bytes(bytes(data))
    r, out = _package(tmp_path, clip)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    validate_mpd((out / "manifest.mpd").read_bytes())
    pls = media_playlists(out)
    assert pls and all(pl.is_endlist and pl.segments for pl in pls.values())
    if kind == "audio_only":
        assert set(pls) == {"audio"}
    if kind == "video_only":
        assert "audio" not in pls
    if kind == "odd_size_vfr":
        assert set(pls) == {"270p", "180p", "audio"}  # both rungs fit inside 853x479
    for name, _pl in pls.items():
        for f in segment_facts(out, name):
            assert abs(float(f.duration_s) - f.extinf_s) < 0.001


def test_loop_repeats_a_file_as_one_continuous_feed(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=2)
    r, out = _package(tmp_path, clip, "--loop", "--duration", "5")
    assert r.returncode == 0, r.stderr
    facts = segment_facts(out, "180p")
    total = sum(float(f.duration_s) for f in facts)
    assert 4.9 <= total <= 5.1, total
    # one continuous timeline: each segment starts where the previous ended
    for a, b in itertools.pairwise(facts):
        assert a.start_s + a.duration_s == b.start_s
    assert decode_segments(out, "180p") == 150


def test_gop_shorter_than_a_segment_opens_parts_on_its_grid(tmp_path):
    """``--gop 1`` with 2 s segments of 1/3 s parts (the ``low`` profile's): an IDR opens the part at
    every whole second in every rendition, and no other part starts with one."""
    clip = make_clip(tmp_path / "clip.mp4", seconds=6, width=480, height=270)
    r = run_cli(
        "package", str(clip), "--out", str(tmp_path / "out"), "--fast", "--ladder", LADDER,
        "--preset", "ultrafast", "--latency", "low", "--gop", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "out" / "demo"
    for rendition in ("270p", "180p"):
        timescale = read_init((folder / rendition / "init.mp4").read_bytes()).timescale
        pl = m3u8.load(str(folder / rendition / "index.m3u8"))
        opened = []
        for seg in pl.segments:
            for frag in parse_fragments((folder / rendition / seg.uri).read_bytes()):
                sync = frag.sample_flags[0] & 0x00010000 == 0
                opened.append((Fraction(frag.base_decode_time, timescale), sync))
        assert len(opened) == 18  # 6 s of 1/3 s parts
        for start, sync in opened:
            assert sync == (start.denominator == 1), (rendition, start)
