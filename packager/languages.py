"""Language tags: what inputs and users say (ISO 639-1, ISO 639-2/B or /T, BCP 47) to what manifests carry.

HLS ``LANGUAGE`` and DASH ``@lang`` are BCP 47 (RFC 5646) tags, whose
primary subtag is the shortest ISO 639 code (``en``, not ``eng``); inputs tag
streams with ISO 639-2 codes, bibliographic (``ger``, Matroska) or
terminological (``deu``). The ``mdhd`` box of an init segment wants the
ISO 639-2/T code. ``und`` is "undetermined" everywhere. The code tables are
pycountry's (ISO 639-3, which holds every 639-1 and 639-2 code).
"""

from __future__ import annotations

import re
from functools import lru_cache

import pycountry

UNDETERMINED = "und"
_TAG = re.compile(r"^([A-Za-z]{2,3})((?:-[A-Za-z0-9]{1,8})*)\Z")


@lru_cache(maxsize=512)
def _language(code: str) -> object | None:
    """The pycountry language with this 2- or 3-letter code (any of 639-1, 639-2/T, 639-2/B, 639-3)."""
    languages = pycountry.languages
    if len(code) == 2:
        return languages.get(alpha_2=code)
    return languages.get(alpha_3=code) or languages.get(bibliographic=code)


def bcp47(code: str) -> str:
    """The BCP 47 tag for ``code``: ``eng`` / ``en`` -> ``en``, ``ger`` / ``deu`` -> ``de``, ``pt-BR`` kept.

    Raises ValueError for what is not a language code; ``""`` and ``und`` are ``und``."""
    text = code.strip()
    if not text or text.lower() == UNDETERMINED:
        return UNDETERMINED
    m = _TAG.match(text)
    if m is None:
        raise ValueError(f"{code!r} is not a language code (examples: en, eng, deu, pt-BR)")
    primary = m.group(1).lower()
    language = _language(primary)
    if language is None:
        raise ValueError(f"{code!r} is not an ISO 639 language code (examples: en, eng, deu, fra)")
    short = getattr(language, "alpha_2", None) or language.alpha_3  # type: ignore[attr-defined]
    return short + _subtags(m.group(2))


def _subtags(rest: str) -> str:
    """Region upper case, script title case, the others lower case (RFC 5646 2.1.1 conventions)."""
    out = ""
    for sub in rest.split("-")[1:]:
        if len(sub) == 2 and sub.isalpha():
            out += "-" + sub.upper()
        elif len(sub) == 4 and sub.isalpha():
            out += "-" + sub.title()
        else:
            out += "-" + sub.lower()
    return out


def bcp47_or_und(code: str | None) -> str:
    """Like :func:`bcp47` for input metadata: anything unusable is ``und``."""
    try:
        return bcp47(code or "")
    except ValueError:
        return UNDETERMINED


def iso639_2t(tag: str) -> str:
    """The ISO 639-2/T (or 639-3) code of a BCP 47 tag's language, as ``mdhd`` packs it: ``de`` -> ``deu``."""
    primary = tag.split("-", 1)[0].lower()
    if primary == UNDETERMINED:
        return UNDETERMINED
    language = _language(primary)
    return language.alpha_3 if language is not None else UNDETERMINED  # type: ignore[attr-defined]


def display_name(tag: str) -> str:
    """The language's English name (``de`` -> ``German``); ``""`` for ``und`` or an unknown code."""
    primary = tag.split("-", 1)[0].lower()
    if primary == UNDETERMINED:
        return ""
    language = _language(primary)
    if language is None:
        return ""
    return str(getattr(language, "common_name", None) or language.name)  # type: ignore[attr-defined]
