"""Config parsing and validation: good values parse, bad ones name the field."""

from fractions import Fraction

import pytest

from packager.config import ConfigError, Encoding, Ladder, Timing, check_name, parse_bitrate, parse_seconds


def test_default_ladder_parses_highest_first():
    ladder = Ladder.parse("640x360@800k,1280x720@3000k,854x480@1400k", "96k")
    assert [r.name for r in ladder.renditions] == ["720p", "480p", "360p"]
    assert ladder.renditions[0].bitrate == 3_000_000
    assert ladder.audio_bitrate == 96_000


@pytest.mark.parametrize("text,bps", [("800k", 800_000), ("3M", 3_000_000), ("1.5m", 1_500_000), ("128000", 128_000)])
def test_bitrates(text, bps):
    assert parse_bitrate(text) == bps


@pytest.mark.parametrize(
    "ladder,field",
    [
        ("", "--ladder"),
        ("1280x720", "--ladder"),
        ("1280*720@3000k", "--ladder"),
        ("1280x720@fast", "bitrate"),
        ("8x8@100k", "outside"),
        ("99999x720@1M", "outside"),
        ("1280x720@1k", "outside"),
        ("1280x720@3000k,1280x720@2000k", "twice"),
        ("1280x720@3000k;640x360@800k", "--ladder"),
    ],
)
def test_bad_ladders_name_the_problem(ladder, field):
    with pytest.raises(ConfigError, match=field):
        Ladder.parse(ladder)


def test_odd_sizes_round_to_even():
    ladder = Ladder.parse("853x479@1000k")
    r = ladder.renditions[0]
    assert (r.width, r.height) == (852, 478)


def test_never_upscale():
    ladder = Ladder.parse("1280x720@3000k,854x480@1400k,640x360@800k")
    assert [r.name for r in ladder.fit_to_source(854, 480).renditions] == ["480p", "360p"]
    assert [r.name for r in ladder.fit_to_source(853, 479).renditions] == ["360p"]
    tiny = ladder.fit_to_source(320, 180).renditions
    assert len(tiny) == 1 and tiny[0].width <= 320 and tiny[0].height <= 180


@pytest.mark.parametrize(
    "seg,part,window,msg",
    [
        ("2", "0.3", "60", "divide"),
        ("2", "3", "60", "longer"),
        ("0", "0.5", "60", "segment"),
        ("30", "1", "600", "segment"),
        ("2", "0.05", "60", "minimum"),
        ("2", "0.5", "4", "window"),
        ("2", "-1", "60", "part"),
    ],
)
def test_bad_timing(seg, part, window, msg):
    with pytest.raises(ConfigError, match=msg):
        Timing(parse_seconds(seg, "--segment"), parse_seconds(part, "--part"), parse_seconds(window, "--window"))


def test_timing_ticks_and_target():
    t = Timing(Fraction(2), Fraction(1, 2), Fraction(60))
    assert t.segment_ticks(90_000) == 180_000
    assert t.part_ticks(48_000) == 24_000
    assert t.parts_per_segment == 4
    assert t.target_duration == 2
    assert Timing(Fraction(3, 2), Fraction(1, 2), Fraction(60)).target_duration == 2


def test_not_a_number():
    with pytest.raises(ConfigError, match="--segment"):
        parse_seconds("two", "--segment")


def test_names_and_presets():
    assert check_name("demo_1", "--stream") == "demo_1"
    for bad in ("", "../x", "a/b", "x" * 65, "-x", "a b", "a%2e", "demo\n", "demo\r", "dé", "١٢"):
        with pytest.raises(ConfigError):
            check_name(bad, "--stream")
    with pytest.raises(ConfigError, match="--preset"):
        Encoding(preset="warp")
    with pytest.raises(ConfigError, match="--fps"):
        Encoding(fps=Fraction(500))
