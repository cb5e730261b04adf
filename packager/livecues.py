"""Live subtitle cues from an operator, a stenographer or a speech-to-text service (the subtitle API).

A request carries a language and up to :data:`MAX_CUES` cues, each a text,
an optional start (media seconds; the live media clock is UTC, so it is a
UNIX time) and a duration. :func:`parse_cues` validates it strictly against
"now" and returns the language tag and cues on the media clock in
milliseconds; :class:`CueError` says what is wrong, in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from packager.languages import UNDETERMINED, bcp47
from packager.webvtt import WEBVTT_TIMESCALE, Cue, clean_text

MAX_CUES = 50
MAX_TEXT = 500  # characters of one cue
MAX_LINES = 4
MAX_DURATION_S = 30.0
MAX_PAST_S = 30.0  # a cue may start this long before now (its segment may already be out: then it is dropped)
MAX_AHEAD_S = 300.0  # and this long after
MAX_LANGUAGE = 35
_KEYS = frozenset({"cues", "language"})
_CUE_KEYS = frozenset({"text", "start_s", "duration_s"})


class CueError(ValueError):
    """A subtitle request that cannot be used; the message is the reason."""


@dataclass(frozen=True)
class CueRequest:
    language: str  # BCP 47
    cues: tuple[Cue, ...]  # media milliseconds


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CueError(f"{what} must be a finite number of seconds")
    return float(value)


def _language(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_LANGUAGE:
        raise CueError(f"language must be a language tag of 1-{MAX_LANGUAGE} characters (en, deu, pt-BR)")
    try:
        tag = bcp47(value)
    except ValueError as exc:
        raise CueError(str(exc)) from None
    if tag == UNDETERMINED:
        raise CueError("language must name a language, not 'und'")
    return tag


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CueError(f"{where}: text must be a string")
    if len(value) > MAX_TEXT:
        raise CueError(f"{where}: text is at most {MAX_TEXT} characters")
    if any(not (c.isprintable() or c in "\n\t") for c in value):
        raise CueError(f"{where}: text holds control characters")
    text = clean_text(value)
    if not text:
        raise CueError(f"{where}: text is empty")
    if text.count("\n") >= MAX_LINES:
        raise CueError(f"{where}: text is at most {MAX_LINES} lines")
    return text


def _cue(item: Any, where: str, now_s: float) -> Cue:
    if not isinstance(item, dict):
        raise CueError(f"{where} must be an object")
    unknown = sorted(set(item) - _CUE_KEYS)
    if unknown:
        raise CueError(f"{where}: unknown field {unknown[0]!r}")
    text = _text(item.get("text"), where)
    duration = _number(item.get("duration_s"), f"{where}: duration_s")
    if not 0 < duration <= MAX_DURATION_S:
        raise CueError(f"{where}: duration_s must be within 0..{MAX_DURATION_S:g} s (and above 0)")
    start = now_s if item.get("start_s") is None else _number(item["start_s"], f"{where}: start_s")
    if not now_s - MAX_PAST_S <= start <= now_s + MAX_AHEAD_S:
        raise CueError(f"{where}: start_s must be within {MAX_PAST_S:g} s before and {MAX_AHEAD_S:g} s after now")
    begin = round(start * WEBVTT_TIMESCALE)
    return Cue(begin, begin + max(1, round(duration * WEBVTT_TIMESCALE)), text)


def parse_cues(body: object, now_s: float) -> CueRequest:
    """The cues a request body asks for, on the media clock (``now_s``: media seconds now)."""
    if not isinstance(body, dict):
        raise CueError("the body must be a JSON object")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise CueError(f"unknown field {unknown[0]!r}")
    language = _language(body.get("language"))
    cues = body.get("cues")
    if not isinstance(cues, list) or not 0 < len(cues) <= MAX_CUES:
        raise CueError(f"cues must be a list of 1-{MAX_CUES} cues")
    return CueRequest(language, tuple(_cue(c, f"cues[{i}]", now_s) for i, c in enumerate(cues)))
