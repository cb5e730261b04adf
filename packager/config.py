"""Validated configuration values: ladder, timing, encoder and source settings.

Everything a user can set is parsed and checked here, up front, so a bad flag
fails at start with a message naming the field and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction


class ConfigError(ValueError):
    """A setting is invalid; the message names the field and why."""


_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:bps)?\s*$")
_RUNG = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*@\s*([^,]+?)\s*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # \Z: "$" also matches before a final newline

MAX_DIMENSION = 7680


def parse_bitrate(text: str, what: str = "bitrate") -> int:
    """'3000k' -> 3_000_000, '1.5M' -> 1_500_000, '800000' -> 800_000."""
    m = _BITRATE.match(text)
    if not m:
        raise ConfigError(f"{what}: {text!r} is not a bitrate (examples: 800k, 3M, 128000)")
    value = Fraction(m.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()]
    bps = int(value)
    if bps < 8_000 or bps > 200_000_000:
        raise ConfigError(f"{what}: {text!r} is outside 8k..200M")
    return bps


def parse_seconds(text: str | float | Fraction, what: str) -> Fraction:
    try:
        value = Fraction(str(text)).limit_denominator(1000)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{what}: {text!r} is not a number of seconds") from None
    return value


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"{what}: {name!r} must be 1-64 characters of letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Rendition:
    """One video rung of the ladder."""

    name: str
    width: int
    height: int
    bitrate: int  # bits per second

    @property
    def maxrate(self) -> int:
        return self.bitrate * 11 // 10

    @property
    def bufsize(self) -> int:
        return self.bitrate * 2


@dataclass(frozen=True)
class Ladder:
    renditions: tuple[Rendition, ...]
    audio_bitrate: int = 128_000

    @classmethod
    def parse(cls, text: str, audio_bitrate: str | int = 128_000) -> Ladder:
        """Parse ``1280x720@3000k,854x480@1400k``: width x height @ bitrate, highest first."""
        if not text or not text.strip():
            raise ConfigError("--ladder: empty; give e.g. 1280x720@3000k,640x360@800k")
        rungs: list[Rendition] = []
        for item in text.split(","):
            m = _RUNG.match(item)
            if not m:
                raise ConfigError(f"--ladder: {item.strip()!r} is not WIDTHxHEIGHT@BITRATE (e.g. 854x480@1400k)")
            w, h = int(m.group(1)), int(m.group(2))
            if not (16 <= w <= MAX_DIMENSION and 16 <= h <= MAX_DIMENSION):
                raise ConfigError(f"--ladder: {w}x{h} is outside 16..{MAX_DIMENSION} pixels")
            # H.264 4:2:0 needs even dimensions; round down rather than fail.
            w, h = w - w % 2, h - h % 2
            bitrate = parse_bitrate(m.group(3), f"--ladder bitrate of {item.strip()}")
            rungs.append(Rendition(name=f"{h}p", width=w, height=h, bitrate=bitrate))
        names = [r.name for r in rungs]
        for i, r in enumerate(rungs):
            if names.count(r.name) > 1:
                rungs[i] = Rendition(f"{r.width}x{r.height}", r.width, r.height, r.bitrate)
        names = [r.name for r in rungs]
        if len(set(names)) != len(names):
            raise ConfigError(f"--ladder: the same size appears twice: {text!r}")
        rungs.sort(key=lambda r: (r.height, r.bitrate), reverse=True)
        ab = audio_bitrate if isinstance(audio_bitrate, int) else parse_bitrate(audio_bitrate, "--audio-bitrate")
        if not 16_000 <= ab <= 512_000:
            raise ConfigError(f"--audio-bitrate: {ab} is outside 16k..512k")
        return cls(tuple(rungs), ab)

    def fit_to_source(self, width: int, height: int) -> Ladder:
        """Drop rungs larger than the source (never upscale); keep at least the smallest, scaled down."""
        kept = tuple(r for r in self.renditions if r.height <= height and r.width <= width)
        if kept:
            return Ladder(kept, self.audio_bitrate)
        smallest = self.renditions[-1]
        scale = min(Fraction(width, smallest.width), Fraction(height, smallest.height))
        w = max(16, int(smallest.width * scale)) // 2 * 2
        h = max(16, int(smallest.height * scale)) // 2 * 2
        return Ladder((Rendition(f"{h}p", w, h, smallest.bitrate),), self.audio_bitrate)


DEFAULT_LADDER = "1280x720@3000k,854x480@1400k,640x360@800k"
DEFAULT_MAX_AUDIO = 8
MAX_AUDIO_LIMIT = 32


@dataclass(frozen=True)
class AudioChoice:
    """One picked input audio stream and what the configuration says about it (None: the input's)."""

    index: int  # among the input's audio streams, from 0
    language: str | None = None  # BCP 47
    label: str | None = None
    default: bool = False
    describes_video: bool | None = None


@dataclass(frozen=True)
class AudioSelection:
    """The configured choice of audio streams; no ``choices`` means every one, up to ``max_tracks``."""

    choices: tuple[AudioChoice, ...] = ()
    max_tracks: int = DEFAULT_MAX_AUDIO

    def __post_init__(self) -> None:
        if not 1 <= self.max_tracks <= MAX_AUDIO_LIMIT:
            raise ConfigError(f"--max-audio: {self.max_tracks} must be in 1..{MAX_AUDIO_LIMIT}")
        if len(self.choices) > self.max_tracks:
            raise ConfigError(f"--audio: {len(self.choices)} tracks is more than --max-audio {self.max_tracks}")
        indices = [c.index for c in self.choices]
        if len(set(indices)) != len(indices):
            raise ConfigError("--audio: an input audio stream is picked twice")
        if sum(c.default for c in self.choices) > 1:
            raise ConfigError("--audio: more than one track is marked default")


@dataclass(frozen=True)
class Timing:
    """Segment and part durations (seconds, exact fractions) and the live window."""

    segment_s: Fraction = Fraction(2)
    part_s: Fraction = Fraction(1, 2)
    window_s: Fraction = Fraction(60)

    def __post_init__(self) -> None:
        if self.part_s <= 0:
            raise ConfigError(f"--part: {float(self.part_s)} must be > 0")
        if self.segment_s <= 0 or self.segment_s > 20:
            raise ConfigError(f"--segment: {float(self.segment_s)} must be in (0, 20] seconds")
        if self.part_s > self.segment_s:
            raise ConfigError(f"--part: {float(self.part_s)} s is longer than --segment {float(self.segment_s)} s")
        if (self.segment_s / self.part_s).denominator != 1:
            raise ConfigError(f"--part: {float(self.part_s)} s must divide --segment {float(self.segment_s)} s exactly")
        if self.part_s < Fraction(1, 10):
            raise ConfigError(f"--part: {float(self.part_s)} s is below the 0.1 s minimum")
        if self.window_s < 3 * self.segment_s:
            raise ConfigError(
                f"--window: {float(self.window_s)} s must hold at least 3 segments ({float(3 * self.segment_s)} s)"
            )
        if self.window_s > 6 * 3600:
            raise ConfigError(f"--window: {float(self.window_s)} s is over the 6 h maximum")

    @property
    def parts_per_segment(self) -> int:
        return int(self.segment_s / self.part_s)

    def segment_ticks(self, timescale: int) -> int:
        value = self.segment_s * timescale
        if value.denominator != 1:
            raise ConfigError(f"--segment: {float(self.segment_s)} s is not a whole number of 1/{timescale} s ticks")
        return int(value)

    def part_ticks(self, timescale: int) -> int:
        value = self.part_s * timescale
        if value.denominator != 1:
            raise ConfigError(f"--part: {float(self.part_s)} s is not a whole number of 1/{timescale} s ticks")
        return int(value)

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: segment durations never exceed the configured one, so round it up."""
        return max(1, -(-self.segment_s.numerator // self.segment_s.denominator))


@dataclass(frozen=True)
class Encoding:
    """x264 settings. ``gop_s``: an IDR every this many seconds (None: one per segment), on the same
    instants in every rendition; ``slice_threads``: threads share each picture (no frame of delay)
    rather than encode several pictures at once (more throughput, two frames of delay)."""

    preset: str = "veryfast"
    fps: Fraction | None = None  # None: follow the source (testsrc: 30)
    tune_zerolatency: bool = True
    gop_s: Fraction | None = None
    slice_threads: bool = False

    def __post_init__(self) -> None:
        presets = {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}
        if self.preset not in presets:
            raise ConfigError(f"--preset: {self.preset!r} is not one of {', '.join(sorted(presets))}")
        if self.fps is not None and not (1 <= self.fps <= 120):
            raise ConfigError(f"--fps: {float(self.fps)} must be in 1..120")
        if self.gop_s is not None and not (0 < self.gop_s <= 20):
            raise ConfigError(f"--gop: {float(self.gop_s)} must be in (0, 20] seconds")

    def check_timing(self, timing: Timing) -> None:
        """The GOP fits the timing: IDRs at every segment start, and only at part starts (INDEPENDENT parts)."""
        if self.gop_s is None:
            return
        if (timing.segment_s / self.gop_s).denominator != 1:
            raise ConfigError(f"--gop: {float(self.gop_s)} s must divide --segment {float(timing.segment_s)} s exactly")
        if (self.gop_s / timing.part_s).denominator != 1:
            raise ConfigError(
                f"--gop: {float(self.gop_s)} s must be a whole number of parts ({float(timing.part_s)} s)"
            )


# RFC 8216bis 4.4.3.8: PART-HOLD-BACK MUST be at least twice PART-TARGET and SHOULD be at least three
# times; we hold to the SHOULD, since at twice hls.js stalls each time a part is late.
MIN_PART_HOLD_BACK_PARTS = Fraction(3)
MAX_CATCHUP_RATE = Fraction(1, 2)  # dash.js's own default range; faster is audible and visibly jerky


@dataclass(frozen=True)
class PlayerTargets:
    """Where players are told to sit behind the live edge, and how fast they may catch up.

    ``part_hold_back_parts``: HLS ``PART-HOLD-BACK`` in multiples of PART-TARGET (hls.js plays at it).
    ``dash_target_parts``: DASH ``ServiceDescription/Latency@target`` in multiples of the part duration.
    ``catchup_rate``: players may play at ``1 +- catchup_rate`` to get back to the target (DASH
    ``ServiceDescription/PlaybackRate``; HLS has no way to say it: hls.js's rate is its page's
    ``maxLiveSyncPlaybackRate``, 1.1 in the shipped page).
    """

    part_hold_back_parts: Fraction = Fraction(3)
    dash_target_parts: Fraction = Fraction(3)
    catchup_rate: Fraction = Fraction(4, 100)

    def __post_init__(self) -> None:
        if self.part_hold_back_parts < MIN_PART_HOLD_BACK_PARTS or self.part_hold_back_parts > 20:
            raise ConfigError(
                f"--part-hold-back: {float(self.part_hold_back_parts)} parts must be in 3..20 "
                "(RFC 8216bis: PART-HOLD-BACK >= 3 x PART-TARGET)"
            )
        if not 1 <= self.dash_target_parts <= 40:
            raise ConfigError(f"--dash-target: {float(self.dash_target_parts)} parts must be in 1..40")
        if not 0 < self.catchup_rate <= MAX_CATCHUP_RATE:
            raise ConfigError(f"--catchup-rate: {float(self.catchup_rate)} must be in (0, 0.5]")


DEFAULT_TARGETS = PlayerTargets()


_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*\Z")


def check_language(tag: object, where: str) -> str:
    """A BCP 47 language tag (``en``, ``deu``, ``pt-BR``, ``und``), or a ConfigError naming ``where``."""
    if not isinstance(tag, str) or not _LANGUAGE.match(tag) or len(tag) > 35:
        raise ConfigError(f"{where}: {tag!r} is not a language tag (e.g. en, deu, pt-BR)")
    return tag


@dataclass(frozen=True)
class StreamConfig:
    """Everything one stream needs: name, ladder, timing, encoding, audio tracks."""

    name: str = "demo"
    ladder: Ladder = field(default_factory=lambda: Ladder.parse(DEFAULT_LADDER))
    timing: Timing = field(default_factory=Timing)
    encoding: Encoding = field(default_factory=Encoding)
    hls_cue_tags: bool = False  # legacy EXT-X-CUE-OUT/IN next to EXT-X-DATERANGE
    cc_language: str = "und"  # the language the input's CEA-608 captions are signalled in
    audio: AudioSelection = field(default_factory=AudioSelection)
    targets: PlayerTargets = field(default_factory=PlayerTargets)  # what manifests tell players about latency

    def __post_init__(self) -> None:
        check_name(self.name, "--stream")
        check_language(self.cc_language, "--cc-language")
        self.encoding.check_timing(self.timing)
