"""Audio tracks: which audio streams of the input become AAC renditions, and how players present them.

``--audio`` (and ``audio`` in a TOML stream table) picks and describes them:
``INDEX[:LANGUAGE[:NAME[:FLAG[:FLAG]]]]`` items, comma separated, where INDEX
counts the input's audio streams from 0, an empty LANGUAGE or NAME keeps the
input's metadata, and FLAG is ``default`` (the track players start with) or
``description`` (an audio description of the video, for blind and partially
sighted viewers). Example: ``0:eng:English,1:deu:Deutsch:default,2:eng::description``.
Without it every audio stream becomes a track, up to ``max_tracks``.

:func:`plan_audio` turns the selection and the input's streams into
:class:`AudioTrack` values: one ``default``, unique human-readable labels,
and stable URL-safe names (``audio`` when there is one track, as always;
``audio-en``, ``audio-de``, ``audio-en-ad``, ``audio-en-2`` when there are
several).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from packager.config import DEFAULT_MAX_AUDIO, MAX_AUDIO_LIMIT, AudioChoice, AudioSelection, ConfigError
from packager.languages import UNDETERMINED, bcp47, bcp47_or_und, display_name

SINGLE_NAME = "audio"
DESCRIBES_VIDEO_DISPOSITIONS = frozenset({"visual_impaired", "descriptions"})
FLAGS = ("default", "description")
_LABEL_MAX = 64


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of the input, as its container describes it."""

    index: int  # among the input's audio streams, from 0
    language: str = UNDETERMINED  # as tagged (usually ISO 639-2)
    title: str = ""
    channels: int = 0
    dispositions: tuple[str, ...] = ()  # FFmpeg's disposition flags: "default", "visual_impaired", ...

    @property
    def describes_video(self) -> bool:
        """Marked as an audio description (FFmpeg disposition ``visual_impaired`` or ``descriptions``)."""
        return bool(DESCRIBES_VIDEO_DISPOSITIONS & set(self.dispositions))


@dataclass(frozen=True)
class AudioTrack:
    """One audio rendition to produce: its input stream and how manifests present it."""

    stream: int  # index among the input's audio streams
    name: str  # track id and folder name
    language: str  # BCP 47, "und" when unknown
    label: str  # HLS NAME / DASH Label: unique, human readable
    default: bool
    describes_video: bool


def check_label(text: str, where: str) -> str:
    label = text.strip()
    if not label or len(label) > _LABEL_MAX or not label.isprintable() or '"' in label:
        raise ConfigError(f"{where}: name {text!r} must be 1-{_LABEL_MAX} printable characters without '\"'")
    return label


def _language(text: str, where: str) -> str:
    try:
        return bcp47(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _index(text: str, where: str) -> int:
    if not (text.strip().isascii() and text.strip().isdecimal()):
        raise ConfigError(f"{where}: {text!r} is not an audio stream index (0 is the input's first audio stream)")
    return int(text)


def parse_choice(item: str, what: str = "--audio") -> AudioChoice:
    """One ``INDEX[:LANGUAGE[:NAME[:FLAG...]]]`` item."""
    where = f"{what} {item.strip()!r}"
    fields = item.split(":")
    if len(fields) > 3 + len(FLAGS):
        raise ConfigError(f"{where}: too many fields; the form is INDEX[:LANGUAGE[:NAME[:default][:description]]]")
    flags = [f.strip().lower() for f in fields[3:] if f.strip()]
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise ConfigError(f"{where}: unknown flag {unknown[0]!r} (flags: {', '.join(FLAGS)})")
    language = fields[1].strip() if len(fields) > 1 else ""
    label = fields[2] if len(fields) > 2 else ""
    return AudioChoice(
        index=_index(fields[0], where),
        language=_language(language, where) if language else None,
        label=check_label(label, where) if label.strip() else None,
        default="default" in flags,
        describes_video=True if "description" in flags else None,
    )


def parse_audio(text: str, max_tracks: int = DEFAULT_MAX_AUDIO, what: str = "--audio") -> AudioSelection:
    """The ``--audio`` flag (``what``: how errors name it); an empty text or ``all`` keeps every audio stream."""
    if not text.strip() or text.strip().lower() == "all":
        return _selection((), max_tracks, what)
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise ConfigError(f"{what}: {text!r} has an empty item; give e.g. 0:eng:English,1:deu:Deutsch:default")
    return _selection(tuple(parse_choice(item, what) for item in items), max_tracks, what)


def _selection(choices: tuple[AudioChoice, ...], max_tracks: int, what: str) -> AudioSelection:
    try:
        return AudioSelection(choices, max_tracks)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--audio", what, 1)) from None


def _table_choice(value: Any, where: str) -> AudioChoice:
    if not isinstance(value, dict):
        raise ConfigError(f'{where}: must be a table like {{index = 0, language = "en", name = "English"}}')
    bad = set(value) - {"index", "language", "name", "default", "description"}
    if bad:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(sorted(bad))}")
    index = value.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ConfigError(f"{where}.index must be an integer >= 0 (0 is the input's first audio stream)")
    for key in ("default", "description"):
        if not isinstance(value.get(key, False), bool):
            raise ConfigError(f"{where}.{key} must be true or false")
    for key in ("language", "name"):
        if not isinstance(value.get(key, ""), str):
            raise ConfigError(f"{where}.{key} must be a string")
    return AudioChoice(
        index=index,
        language=_language(value["language"], f"{where}.language") if value.get("language") else None,
        label=check_label(value["name"], f"{where}.name") if value.get("name") else None,
        default=value.get("default", False),
        describes_video=value.get("description"),
    )


def audio_from_toml(value: Any, max_tracks: Any, where: str, keep: tuple[AudioChoice, ...] = ()) -> AudioSelection:
    """A stream table's ``audio`` (the flag's text, or an array of tables; None: ``keep``) and ``max_audio``."""
    what = f"--config: {where}.audio"
    if isinstance(max_tracks, bool) or not isinstance(max_tracks, int):
        raise ConfigError(f"--config: {where}.max_audio must be an integer in 1..{MAX_AUDIO_LIMIT}")
    if value is None:
        return _selection(keep, max_tracks, what)
    if isinstance(value, str):
        return parse_audio(value, max_tracks, what)
    if isinstance(value, list):
        items = tuple(_table_choice(v, f"{what}[{i}]") for i, v in enumerate(value))
        return _selection(items, max_tracks, what)
    raise ConfigError(f'{what} must be a string like "0:eng,1:deu" or an array of tables')


def plan_audio(streams: Sequence[AudioStreamInfo], selection: AudioSelection) -> tuple[AudioTrack, ...]:
    """The tracks to produce from the input's audio ``streams``; ConfigError when a picked one is missing."""
    by_index = {s.index: s for s in streams}
    choices = selection.choices or tuple(AudioChoice(s.index) for s in streams[: selection.max_tracks])
    for c in choices:
        if c.index not in by_index:
            have = f"0..{len(streams) - 1}" if streams else "none"
            raise ConfigError(f"--audio: the input has no audio stream {c.index} (its audio streams: {have})")
    languages = [c.language or bcp47_or_und(by_index[c.index].language) for c in choices]
    described = [
        c.describes_video if c.describes_video is not None else by_index[c.index].describes_video for c in choices
    ]
    default = _default_position(choices, described)
    labels = _unique(
        [
            _label(c, by_index[c.index], lang, ad, f"Audio {i + 1}" if len(choices) > 1 else "Audio")
            for i, (c, lang, ad) in enumerate(zip(choices, languages, described, strict=True))
        ],
        " ({})",
    )
    names = _names(languages, described)
    return tuple(
        AudioTrack(c.index, names[i], languages[i], labels[i], i == default, described[i])
        for i, c in enumerate(choices)
    )


def _default_position(choices: Sequence[AudioChoice], described: Sequence[bool]) -> int:
    """The configured default, else the first track that is not an audio description, else the first."""
    for i, c in enumerate(choices):
        if c.default:
            return i
    return next((i for i, ad in enumerate(described) if not ad), 0)


def _label(choice: AudioChoice, stream: AudioStreamInfo, language: str, describes: bool, fallback: str) -> str:
    if choice.label:
        return choice.label
    if stream.title.strip():
        try:
            return check_label(stream.title, "input title")
        except ConfigError:
            pass  # an unusable title falls back to the language's name
    name = display_name(language) or fallback
    return f"{name} (audio description)" if describes else name


def _names(languages: Sequence[str], described: Sequence[bool]) -> list[str]:
    if len(languages) == 1:
        return [SINGLE_NAME]
    bases = []
    for lang, ad in zip(languages, described, strict=True):
        base = SINGLE_NAME if lang == UNDETERMINED else f"{SINGLE_NAME}-{lang.lower()}"
        bases.append(f"{base}-ad" if ad else base)
    return _unique(bases, "-{}")


def _unique(values: Sequence[str], suffix: str) -> list[str]:
    """The values with a counter appended to the second and later of each repeated one."""
    out: list[str] = []
    for value in values:
        candidate, n = value, 1
        while candidate in out:
            n += 1
            candidate = value + suffix.format(n)
        out.append(candidate)
    return out
