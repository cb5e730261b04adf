"""Latency profiles: named sets of timing, hold-back, catch-up and x264 settings, chosen by measurement.

A profile bundles every setting that trades latency against robustness and
request rate, so a user picks one by name (``--latency normal|low|ultra``)
and may still set any value of it on its own. The figures each profile was
chosen by are in README's performance table (``bench/latency.py``).

What the players are told is a :class:`packager.config.PlayerTargets`: it travels with the
stream's timing to every renderer (origins, the disk mirror), since every
manifest of a stream must say the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

from packager.config import ConfigError, Encoding, PlayerTargets, Timing, parse_seconds


@dataclass(frozen=True)
class LatencyProfile:
    """One named trade-off. ``gop_s`` divides ``segment_s`` (None: one GOP per segment);
    ``slice_threads``: x264 splits each picture between its threads (no frame of delay) instead of
    encoding several pictures at once (libx264 frame threading holds back two frames, 67 ms at 30 fps,
    on 2 cores)."""

    name: str
    summary: str
    segment_s: Fraction
    part_s: Fraction
    gop_s: Fraction | None
    preset: str
    slice_threads: bool
    targets: PlayerTargets


PROFILES: dict[str, LatencyProfile] = {
    p.name: p
    for p in (
        LatencyProfile(
            name="normal",
            summary="2 s segments, 0.5 s parts: about 1.6 s glass to glass",
            segment_s=Fraction(2),
            part_s=Fraction(1, 2),
            gop_s=None,
            preset="veryfast",
            slice_threads=False,
            targets=PlayerTargets(Fraction(3), Fraction(3), Fraction(4, 100)),
        ),
        LatencyProfile(
            name="low",
            summary="2 s segments, 1/3 s parts, no encoder frame delay: about 1.05 s glass to glass",
            segment_s=Fraction(2),
            part_s=Fraction(1, 3),
            gop_s=None,
            preset="veryfast",
            slice_threads=True,
            targets=PlayerTargets(Fraction(3), Fraction(3), Fraction(8, 100)),
        ),
        LatencyProfile(
            name="ultra",
            summary="1 s segments, 0.2 s parts, no encoder frame delay: 0.75-1 s glass to glass",
            segment_s=Fraction(1),
            part_s=Fraction(1, 5),
            gop_s=None,
            preset="veryfast",
            slice_threads=True,
            # 3.5 parts: at 3 a 0.45 s hiccup anywhere (encoder, origin, the player's own machine) stalls
            targets=PlayerTargets(Fraction(7, 2), Fraction(7, 2), Fraction(1, 10)),
        ),
    )
}
DEFAULT_PROFILE = "normal"


def profile(name: object, where: str = "--latency") -> LatencyProfile:
    """The profile called ``name``, or a ConfigError naming ``where`` and the choices."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ConfigError(f"{where}: {name!r} is not a latency profile ({', '.join(PROFILES)})")
    return PROFILES[name]


# The settings a profile decides; each may also be given on its own (flag or config key of this name).
TUNABLES = ("segment", "part", "gop", "preset", "part_hold_back", "dash_target", "catchup_rate")


@dataclass(frozen=True)
class Tuning:
    """The latency-related part of a stream's configuration."""

    timing: Timing
    encoding: Encoding
    targets: PlayerTargets


def tune(base: Tuning, values: Mapping[str, object], label: Callable[[str], str]) -> Tuning:
    """``base`` with ``values`` applied: ``latency`` (a profile name) first, then any of :data:`TUNABLES`.

    A profile replaces every setting it decides (the window and frame rate stay ``base``'s); a value
    given on its own wins over the profile's. ``label(key)`` names a setting in error messages (its flag
    or config key).
    """
    timing, encoding, targets = base.timing, base.encoding, base.targets
    if values.get("latency") is not None:
        p = profile(values["latency"], label("latency"))
        timing = replace(timing, segment_s=p.segment_s, part_s=p.part_s)
        encoding = replace(encoding, preset=p.preset, gop_s=p.gop_s, slice_threads=p.slice_threads)
        targets = p.targets

    def seconds(key: str, default: Fraction) -> Fraction:
        value = values.get(key)
        return default if value is None else parse_seconds(value, label(key))  # type: ignore[arg-type]

    timing = Timing(seconds("segment", timing.segment_s), seconds("part", timing.part_s), timing.window_s)
    gop = values.get("gop")
    encoding = replace(
        encoding,
        preset=str(values.get("preset") or encoding.preset),
        gop_s=encoding.gop_s if gop is None else parse_seconds(gop, label("gop")),  # type: ignore[arg-type]
    )
    targets = PlayerTargets(
        seconds("part_hold_back", targets.part_hold_back_parts),
        seconds("dash_target", targets.dash_target_parts),
        seconds("catchup_rate", targets.catchup_rate),
    )
    encoding.check_timing(timing)
    return Tuning(timing, encoding, targets)
