"""Several audio languages end to end: an MKV with an English 440 Hz and a German 880 Hz stream, packaged.

Each audio rendition must carry its own input stream (the tone is measured
with an FFT on the samples decoded from its published segments), the
manifests must describe both tracks, and ``--audio`` must rename, pick the
default and mark an audio description.
"""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import av
import m3u8
import numpy as np
import pytest
from lxml import etree

from tests.support.languages import two_language_clip
from tests.support.procs import REPO
from tests.support.xsd import validate_mpd
from tests.test_manifest_hls import attrs, tag_lines

pytestmark = pytest.mark.media

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def package(clip: Path, out: Path, *extra: str) -> Path:
    cmd = [sys.executable, "-m", "packager", "package", str(clip), "--out", str(out), "--fast"]
    cmd += ["--ladder", "320x180@250k", "--preset", "ultrafast", *extra]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out / "demo"


def dominant_hz(folder: Path, track: str) -> float:
    """The strongest frequency in the audio decoded from every segment the track's playlist lists."""
    init = (folder / track / "init.mp4").read_bytes()
    chunks = []
    for seg in m3u8.load(str(folder / track / "index.m3u8")).segments:
        with av.open(io.BytesIO(init + (folder / track / seg.uri).read_bytes()), "r", format="mp4") as c:
            chunks += [f.to_ndarray()[0] for f in c.decode(c.streams.audio[0])]
    samples = np.concatenate(chunks)
    assert samples.size > 48_000 * 4, f"{track}: only {samples.size} samples"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / 48_000)[int(np.argmax(spectrum))])


def media_attrs(master: str) -> list[dict[str, str]]:
    return [attrs(line) for line in tag_lines(master, "#EXT-X-MEDIA")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return two_language_clip(tmp_path_factory.mktemp("clip") / "two.mkv")


@pytest.fixture(scope="module")
def packaged(clip, tmp_path_factory) -> Path:
    return package(clip, tmp_path_factory.mktemp("out"))


def test_each_audio_rendition_carries_its_own_input_stream(packaged):
    assert abs(dominant_hz(packaged, "audio-en") - 440) < 5
    assert abs(dominant_hz(packaged, "audio-de") - 880) < 5


def test_master_lists_both_languages_in_one_group(packaged):
    media = media_attrs((packaged / "master.m3u8").read_text())
    by_lang = {m["LANGUAGE"]: m for m in media}
    assert set(by_lang) == {"en", "de"}
    assert {m["GROUP-ID"] for m in media} == {"audio"}
    assert [m["DEFAULT"] for m in media].count("YES") == 1 and by_lang["en"]["DEFAULT"] == "YES"
    assert (by_lang["en"]["NAME"], by_lang["de"]["NAME"]) == ("English", "German")
    assert by_lang["de"]["URI"] == "audio-de/index.m3u8" and all(m["CHANNELS"] == "2" for m in media)


def test_mpd_has_one_adaptation_set_per_language(packaged):
    mpd = (packaged / "manifest.mpd").read_bytes()
    validate_mpd(mpd)
    root = etree.fromstring(mpd)
    sets = {a.get("lang"): a for a in root.iterfind(".//d:AdaptationSet[@contentType='audio']", NS)}
    assert set(sets) == {"en", "de"}
    roles = {lang: [r.get("value") for r in a.iterfind("d:Role", NS)] for lang, a in sets.items()}
    assert roles == {"en": ["main"], "de": ["alternate"]}


def test_audio_flag_renames_picks_the_default_and_marks_a_description(clip, tmp_path):
    out = package(clip, tmp_path, "--audio", "1:deu:Deutsch:default,0:eng:English described:description")
    media = {m["LANGUAGE"]: m for m in media_attrs((out / "master.m3u8").read_text())}
    assert media["de"]["NAME"] == "Deutsch" and media["de"]["DEFAULT"] == "YES"
    assert media["en"]["DEFAULT"] == "NO"
    assert media["en"]["CHARACTERISTICS"] == "public.accessibility.describes-video"
    assert abs(dominant_hz(out, "audio-en-ad") - 440) < 5 and abs(dominant_hz(out, "audio-de") - 880) < 5
    mpd = (out / "manifest.mpd").read_bytes()
    validate_mpd(mpd)
    (ad,) = etree.fromstring(mpd).iterfind(".//d:AdaptationSet[@lang='en']", NS)
    assert [r.get("value") for r in ad.iterfind("d:Role", NS)] == ["alternate", "description"]
    assert ad.findtext("d:Label", namespaces=NS) == "English described"


def test_picking_one_stream_keeps_the_single_audio_layout(clip, tmp_path):
    out = package(clip, tmp_path, "--audio", "1")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["180p", "audio"]
    (media,) = media_attrs((out / "master.m3u8").read_text())
    assert media["LANGUAGE"] == "de" and media["URI"] == "audio/index.m3u8"
    assert abs(dominant_hz(out, "audio") - 880) < 5


def test_a_missing_audio_stream_is_a_one_line_error(clip, tmp_path):
    cmd = [sys.executable, "-m", "packager", "package", str(clip), "--out", str(tmp_path), "--fast", "--audio", "5"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no audio stream 5" in r.stderr and "Traceback" not in r.stderr


def test_the_input_names_and_flags_an_audio_description(tmp_path):
    from packager.sources import AudioStreamInfo, MediaSource

    clip = two_language_clip(tmp_path / "ad.mkv", seconds=3, german_described=True)
    source = MediaSource(str(clip), paced=False)
    try:
        streams = source.probe().audio_streams
    finally:
        source.close()
    assert streams[1] == AudioStreamInfo(1, "deu", "Hörfilm", 1, ("visual_impaired",))
    assert (streams[0].index, streams[0].language, streams[0].describes_video) == (0, "eng", False)
    out = package(clip, tmp_path / "out")
    (ad,) = [m for m in media_attrs((out / "master.m3u8").read_text()) if m["LANGUAGE"] == "de"]
    assert ad["NAME"] == "Hörfilm" and ad["URI"] == "audio-de-ad/index.m3u8" and ad["DEFAULT"] == "NO"
    assert ad["CHARACTERISTICS"] == "public.accessibility.describes-video"


class _Recorder:
    """A FrameSink that keeps (pts, samples) of every audio frame per input audio stream."""

    def __init__(self) -> None:
        self.frames: dict[int, list[tuple[int, int]]] = {}
        self.last_video = 0

    def video(self, frame, pts: int, capture_utc_s: float) -> None:
        self.last_video = pts

    def audio(self, frame, pts: int, capture_utc_s: float, stream: int) -> None:
        self.frames.setdefault(stream, []).append((pts, frame.samples))


def test_a_feed_keeps_each_language_continuous_from_the_input_into_the_slate(tmp_path):
    import threading

    from packager.sources import MediaSource
    from packager.sources.feed import FeedSource

    clip = two_language_clip(tmp_path / "two.mkv", seconds=2)
    feed = FeedSource(MediaSource(str(clip)), window_s=1.0)
    feed.probe()
    feed.select_audio((1, 0))
    sink = _Recorder()
    assert feed.run(sink, threading.Event()) == "feed lost"
    assert feed.slate_frames > 0 and set(sink.frames) == {0, 1}
    for stream, frames in sink.frames.items():
        for (pts, samples), (next_pts, _) in itertools.pairwise(frames):
            assert next_pts == pts + samples, (stream, pts, samples, next_pts)
        end = frames[-1][0] + frames[-1][1]
        assert end >= sink.last_video * 48_000 // 90_000, stream  # the slate's silence reached the end
