"""Audio track selection: the ``--audio`` syntax, its TOML form, language tags and the track plan (no PyAV)."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.audiotracks import AudioStreamInfo, audio_from_toml, parse_audio, plan_audio
from packager.cli import build_parser, stream_config
from packager.config import AudioChoice, AudioSelection, ConfigError, StreamConfig
from packager.languages import bcp47, display_name, iso639_2t
from packager.model import TrackInfo
from packager.redisstore.codec import info_from, info_json
from packager.settings import load

ENG = AudioStreamInfo(0, "eng", "", 2)
GER = AudioStreamInfo(1, "ger", "", 2)  # Matroska tags German with the bibliographic code


@pytest.mark.parametrize(
    "code,tag",
    [("eng", "en"), ("en", "en"), ("ger", "de"), ("deu", "de"), ("FRE", "fr"), ("pt-br", "pt-BR"), ("", "und")],
)
def test_language_codes_become_bcp47_tags(code, tag):
    assert bcp47(code) == tag


def test_language_helpers():
    assert iso639_2t("de") == "deu" and iso639_2t("und") == "und"
    assert display_name("de") == "German" and display_name("und") == ""
    for bad in ("xx", "english", "e1", "zzz"):
        with pytest.raises(ValueError, match="language code"):
            bcp47(bad)


def test_audio_flag_parses_index_language_name_and_flags():
    sel = parse_audio("0:eng:English, 1:deu:Deutsch:default,2:eng::description")
    assert sel.choices == (
        AudioChoice(0, "en", "English"),
        AudioChoice(1, "de", "Deutsch", default=True),
        AudioChoice(2, "en", None, describes_video=True),
    )
    assert parse_audio("").choices == () and parse_audio("all", 3) == AudioSelection((), 3)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("x:eng", "not an audio stream index"),
        ("²", "not an audio stream index"),
        ("-1", "not an audio stream index"),
        ("0:klingon", "not a language code"),
        ("0:qqq", "not an ISO 639"),
        ("0:eng:English:loud", "unknown flag 'loud'"),
        ("0:eng:English:default:description:more", "too many fields"),
        ("0,,1", "empty item"),
        ("0,0", "picked twice"),
        ("0::A:default,1::B:default", "more than one track is marked default"),
        ('0:eng:Say "hi"', "printable characters"),
        ("0,1,2", "more than --max-audio 2"),
    ],
)
def test_malformed_audio_flags_are_clear_errors(text, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        parse_audio(text, max_tracks=2)
    assert str(info.value).startswith("--audio")


def test_cli_flag_reaches_the_stream_config():
    args = build_parser().parse_args(["package", "f.mkv", "--out", "o", "--audio", "1:de::default", "--max-audio", "4"])
    assert stream_config(args).audio == AudioSelection((AudioChoice(1, "de", None, default=True),), 4)
    args = build_parser().parse_args(["package", "f.mkv", "--out", "o", "--max-audio", "0"])
    with pytest.raises(ConfigError, match="--max-audio"):
        stream_config(args)


def test_toml_takes_the_flag_text_or_tables(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[defaults]\naudio = "0:eng,1:deu:Deutsch:default"\n'
        '[streams.studio]\nkey = "a-long-key"\nmax_audio = 3\n'
        'audio = [{index = 1, language = "de", name = "Deutsch"}, {index = 0, description = true}]\n'
    )
    settings = load(path, StreamConfig(), [])
    audio = settings.streams["studio"].config.audio
    assert audio == AudioSelection((AudioChoice(1, "de", "Deutsch"), AudioChoice(0, describes_video=True)), 3)


@pytest.mark.parametrize(
    "value,needle",
    [
        ([{"index": -1}], r"audio\[0\].index"),
        ([{"index": 0, "lang": "en"}], "unknown field"),
        ([{"index": 0, "default": "yes"}], "true or false"),
        (42, "a string like"),
        ("0:xx", "not an ISO 639"),
    ],
)
def test_bad_toml_audio_names_the_field(value, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        audio_from_toml(value, 8, "[streams.studio]")
    assert str(info.value).startswith("--config: [streams.studio].audio")


def test_every_stream_becomes_a_track_with_unique_names_and_one_default():
    streams = (ENG, GER, AudioStreamInfo(2, "eng", "", 2), AudioStreamInfo(3, "und", "Commentary", 1))
    tracks = plan_audio(streams, AudioSelection())
    assert [t.name for t in tracks] == ["audio-en", "audio-de", "audio-en-2", "audio"]
    assert [t.label for t in tracks] == ["English", "German", "English (2)", "Commentary"]
    assert [t.language for t in tracks] == ["en", "de", "en", "und"]
    assert [t.default for t in tracks] == [True, False, False, False]
    assert [t.stream for t in plan_audio(streams, AudioSelection(max_tracks=2))] == [0, 1]


def test_an_input_audio_description_is_marked_and_not_the_default():
    described = AudioStreamInfo(0, "eng", "", 2, ("default", "visual_impaired"))
    assert described.describes_video and not AudioStreamInfo(0, dispositions=("default", "dub")).describes_video
    tracks = plan_audio((described, GER), AudioSelection())
    assert [(t.name, t.label, t.describes_video, t.default) for t in tracks] == [
        ("audio-en-ad", "English (audio description)", True, False),
        ("audio-de", "German", False, True),
    ]


def test_the_configuration_overrides_the_input():
    sel = parse_audio("1:fr:Français:default,0::Original:description")
    tracks = plan_audio((ENG, GER), sel)
    assert [(t.stream, t.name, t.language, t.label, t.default, t.describes_video) for t in tracks] == [
        (1, "audio-fr", "fr", "Français", True, False),
        (0, "audio-en-ad", "en", "Original", False, True),
    ]


def test_one_track_keeps_the_single_audio_name():
    (track,) = plan_audio((ENG, GER), parse_audio("1"))
    assert (track.name, track.language, track.label, track.default) == ("audio", "de", "German", True)
    (track,) = plan_audio((AudioStreamInfo(0),), AudioSelection())
    assert (track.name, track.label) == ("audio", "Audio")


def test_picking_a_stream_the_input_lacks_fails():
    with pytest.raises(ConfigError, match=r"no audio stream 2 \(its audio streams: 0..1\)"):
        plan_audio((ENG, GER), parse_audio("2"))


def test_track_presentation_survives_the_redis_codec():
    info = TrackInfo("audio-de", "audio", "mp4a.40.2", 48_000, 128_000, sample_rate=48_000, channels=2)
    info = TrackInfo(**{**info.__dict__, "language": "de", "label": "Deutsch", "default": True})
    described = TrackInfo(**{**info.__dict__, "default": False, "describes_video": True})
    for value in (info, described):
        assert info_from(info_json(value)) == value
    old = {k: v for k, v in info_json(info).items() if k not in ("label", "default", "describes_video")}
    assert info_from(old) == TrackInfo(**{**info.__dict__, "label": "", "default": False})
