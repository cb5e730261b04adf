"""Latency profiles: each one keeps every timing rule, and flags and config keys override it one by one."""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from lxml import etree

from packager.chunker import TrackChunker
from packager.cli import build_parser, stream_config
from packager.config import DEFAULT_TARGETS, ConfigError, Encoding, PlayerTargets, StreamConfig, Timing
from packager.latency import PROFILES, Tuning, profile, tune
from packager.manifest import part_target
from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_media
from packager.model import Part, Sample, TrackInfo
from packager.settings import load
from tests.support.views import AUDIO, V360, V720, make_view
from tests.support.xsd import validate_mpd

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
AAC_FRAME = 1024


def _view(name: str):  # type: ignore[no-untyped-def]
    p = PROFILES[name]
    view = make_view(infos=(V720, V360, AUDIO), segment_s=p.segment_s, part_s=p.part_s)
    return replace(view, targets=p.targets)


def _parts(info: TrackInfo, p_segment: Fraction, p_part: Fraction, frame: int, phase: int) -> list[Part]:
    """Parts the chunker cuts from three segments of ``frame``-tick samples starting ``phase`` ticks in."""
    out: list[Part] = []
    chunker = TrackChunker(
        info,
        segment_ticks=int(p_segment * info.timescale),
        part_ticks=int(p_part * info.timescale),
        sink=lambda part, _last, _disc: out.append(part),
    )
    t = 1000 * int(p_segment * info.timescale) + phase
    end = t + 3 * int(p_segment * info.timescale)
    while t < end:
        chunker.push(Sample(data=b"\0" * 8, dts=t, pts=t, duration=frame, keyframe=True))
        t += frame
    return out[1:-1]  # whole parts only (the first may start mid-part)


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_timing_is_valid(name: str) -> None:
    p = profile(name)
    timing = Timing(p.segment_s, p.part_s)
    Encoding(preset=p.preset, gop_s=p.gop_s).check_timing(timing)
    assert timing.parts_per_segment * p.part_s == p.segment_s
    assert p.targets.part_hold_back_parts >= 3


@pytest.mark.parametrize("name", list(PROFILES))
@pytest.mark.parametrize("phase", [0, 7, 333, 1023])
def test_audio_parts_are_whole_aac_frames_within_part_target(name: str, phase: int) -> None:
    p = PROFILES[name]
    target = part_target(_view(name))
    parts = _parts(AUDIO, p.segment_s, p.part_s, AAC_FRAME, phase)
    assert len(parts) > 5
    for part in parts:
        assert part.duration % AAC_FRAME == 0
        assert Fraction(part.duration, AUDIO.timescale) <= target


@pytest.mark.parametrize("name", list(PROFILES))
@pytest.mark.parametrize("fps", [Fraction(30), Fraction(25), Fraction(60), Fraction(30000, 1001)])
def test_video_parts_are_whole_frames_within_part_target(name: str, fps: Fraction) -> None:
    p = PROFILES[name]
    info = replace(V720, frame_rate=fps)
    view = make_view(infos=(V720, AUDIO), segment_s=p.segment_s, part_s=p.part_s)
    view = replace(view, tracks=(replace(view.tracks[0], info=info), view.tracks[1]))
    target = part_target(view)
    frame = round(90_000 / fps)
    for part in _parts(info, p.segment_s, p.part_s, frame, 0):
        assert part.duration % frame == 0
        assert Fraction(part.duration, info.timescale) <= target


def _attr(text: str, name: str) -> Fraction:
    return Fraction(re.search(rf"[:,]{name}=([0-9.]+)", text).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("name", list(PROFILES))
def test_hls_hold_backs(name: str) -> None:
    view = _view(name)
    text = render_media(view, "720p")
    part_target_s = Fraction(re.search(r"PART-TARGET=([0-9.]+)", text).group(1))  # type: ignore[union-attr]
    assert _attr(text, "PART-HOLD-BACK") >= 3 * part_target_s
    assert _attr(text, "PART-HOLD-BACK") >= PROFILES[name].targets.part_hold_back_parts * part_target(view)
    assert _attr(text, "HOLD-BACK") >= 3 * view.target_duration
    for duration in re.findall(r"#EXT-X-PART:DURATION=([0-9.]+)", text):
        assert Fraction(duration) <= part_target_s


@pytest.mark.parametrize("name", list(PROFILES))
def test_dash_targets_and_chunking(name: str) -> None:
    p = PROFILES[name]
    root = validate_mpd(render_mpd(_view(name)))
    latency = root.find("d:ServiceDescription/d:Latency", NS)
    rate = root.find("d:ServiceDescription/d:PlaybackRate", NS)
    assert int(latency.get("target")) == round(p.targets.dash_target_parts * p.part_s * 1000)
    assert int(latency.get("min")) <= int(latency.get("target")) <= int(latency.get("max"))
    assert Fraction(rate.get("max")) == 1 + p.targets.catchup_rate
    assert Fraction(rate.get("min")) == 1 - p.targets.catchup_rate
    for template in root.iterfind(".//d:SegmentTemplate", NS):
        if template.get("availabilityTimeOffset") is not None:
            # the segment in production is available one part after it starts, never before
            offset = Fraction(template.get("availabilityTimeOffset"))
            assert p.segment_s - p.part_s - Fraction(1, 10**6) <= offset <= p.segment_s - p.part_s
    assert etree.tostring(root)


def test_flags_pick_a_profile_and_override_it_one_by_one() -> None:
    parser = build_parser()
    cfg = stream_config(parser.parse_args(["run", "--latency", "ultra", "--part-hold-back", "4", "--preset", "fast"]))
    ultra = PROFILES["ultra"]
    assert (cfg.timing.segment_s, cfg.timing.part_s) == (ultra.segment_s, ultra.part_s)
    assert cfg.encoding.slice_threads and cfg.encoding.preset == "fast"
    assert cfg.targets == replace(ultra.targets, part_hold_back_parts=Fraction(4))
    normal = stream_config(parser.parse_args(["run"]))
    assert normal.timing == Timing() and normal.targets == DEFAULT_TARGETS
    assert not normal.encoding.slice_threads and normal.encoding.preset == "veryfast"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--latency", "warp"], "invalid choice"),
        (["--part-hold-back", "2"], "--part-hold-back"),
        (["--catchup-rate", "0.9"], "--catchup-rate"),
        (["--dash-target", "zero"], "--dash_target"),
        (["--gop", "0.75"], "--gop"),
        (["--latency", "ultra", "--part", "0.3"], "--part"),
    ],
)
def test_bad_flags_fail_with_the_flag_named(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    try:
        stream_config(parser.parse_args(["run", *argv]))
    except SystemExit:
        assert message in capsys.readouterr().err
    except ConfigError as exc:
        assert message.replace("_", "-") in str(exc)
    else:
        raise AssertionError(f"{argv} accepted")


def test_config_file_profiles_per_stream(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[defaults]\nlatency = "low"\n'
        '[streams.a]\nkey = "k-0123456789"\n'
        '[streams.b]\nkey = "k-0123456789"\nlatency = "ultra"\ndash_target = 5\n'
    )
    streams = load(path, StreamConfig(), []).streams
    assert streams["a"].config.timing.part_s == PROFILES["low"].part_s
    assert streams["b"].config.timing.part_s == PROFILES["ultra"].part_s
    assert streams["b"].config.targets.dash_target_parts == 5
    path.write_text('[streams.c]\nkey = "k-0123456789"\nlatency = 3\n')
    with pytest.raises(ConfigError, match=r"streams\.c.*latency"):
        load(path, StreamConfig(), [])


def test_targets_refuse_what_breaks_a_rule() -> None:
    with pytest.raises(ConfigError, match="PART-HOLD-BACK"):
        PlayerTargets(part_hold_back_parts=Fraction(5, 2))
    base = Tuning(Timing(), Encoding(), DEFAULT_TARGETS)
    with pytest.raises(ConfigError, match="gop"):
        tune(base, {"gop": "3"}, lambda k: k)


def _readme_table() -> dict[str, list[str]]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### Latency profiles") :]
    section = section[: section.index("\n### ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip(" `") for c in rows[0].strip("|").split("|")]
    assert header[1:] == list(PROFILES), header
    return {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")[1:]] for r in rows[1:]}


def _seconds(cell: str) -> Fraction:
    return Fraction(cell.split()[0].split("(")[0])


def test_readme_profile_table_is_what_the_profiles_are() -> None:
    table = _readme_table()
    row = {key.split(" (")[0]: cells for key, cells in table.items()}
    for i, (name, p) in enumerate(PROFILES.items()):
        assert _seconds(row["segment"][i]) == p.segment_s
        assert _seconds(row["part"][i]) == p.part_s
        assert row["GOP"][i] == ("one per segment" if p.gop_s is None else f"{p.gop_s} s")
        target = part_target(_view(name))
        assert row["PART-TARGET"][i] == f"{float(target):g} s"
        hold_back = re.search(r"PART-HOLD-BACK=([0-9.]+)", render_media(_view(name), "720p")).group(1)  # type: ignore[union-attr]
        assert row["PART-HOLD-BACK"][i] == f"{float(p.targets.part_hold_back_parts):g} ({hold_back} s)"
        dash_s = p.targets.dash_target_parts * p.part_s
        assert row["DASH latency target"][i] == f"{float(p.targets.dash_target_parts):g} ({float(dash_s):g} s)"
        assert _seconds(row["catch-up rate"][i]) == p.targets.catchup_rate
        threads = "slice threads" if p.slice_threads else "frame threads"
        assert row["x264"][i] == f"{p.preset}, {threads}"
