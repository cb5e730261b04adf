"""CMCD (CTA-5004, Common Media Client Data): what a player says about itself with each request, parsed.

hls.js and dash.js send it as one ``CMCD=`` query argument or split over four
headers (``CMCD-Request``, ``CMCD-Object``, ``CMCD-Status``, ``CMCD-Session``);
either way the payload is a Structured Field dictionary (RFC 8941), e.g.
``bl=21300,br=3200,bs,cid="faec",d=4004,mtp=48100,ot=v,sf=h,sid="6e2f",su``.
A bare key is ``true``; CMCD v2 may wrap a number in an inner list
(``br=(3200 1500)``): the first member counts, as a v1 reader would see it.

:func:`parse_fields` reads that syntax tolerantly and within bounds: a member
it cannot read is skipped up to the next comma, a payload longer than
:data:`MAX_CHARS` is not read at all, reading stops after :data:`MAX_MEMBERS`
members, and nothing raises. :func:`report_of` keeps the keys the origin
aggregates, each checked for its type and range and turned into SI units
(seconds, bits per second); a value of the wrong type or out of range is
dropped, never guessed. Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_CHARS = 4096  # a longer payload is ignored whole (a real one is a few hundred characters)
MAX_MEMBERS = 64  # dictionary members read; CMCD defines fewer than 40 keys
MAX_LIST = 16  # inner-list members kept
HEADERS = ("CMCD-Request", "CMCD-Object", "CMCD-Status", "CMCD-Session")
QUERY_KEY = "CMCD"

Item = int | float | str | bool
Value = Item | tuple[Item, ...]

KEY = re.compile(r"[A-Za-z*][A-Za-z0-9_.*-]{0,63}")
NUMBER = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,3})?")
STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]*")
BYTES = re.compile(r":[A-Za-z0-9+/=]*:")
ESCAPE = re.compile(r"\\([\"\\])")
# the common member (a key and one plain item, no parameters) in one match; anything else takes the long way
SIMPLE = re.compile(
    r"[ \t]*([A-Za-z*][A-Za-z0-9_.*-]{0,63})"
    r'(?:=(?:"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"|(-?[0-9]{1,15}(?:\.[0-9]{1,3})?)|\?([01])'
    r"|([A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]*)))?[ \t]*(?:,|\Z)"
)
SPACE = " \t"

# tokens CTA-5004 defines; any other value is dropped (these become dictionary keys downstream)
OBJECT_TYPES = frozenset({"m", "a", "v", "av", "i", "c", "tt", "k", "o"})
FORMATS = frozenset({"d", "h", "s", "o"})
STREAM_TYPES = frozenset({"v", "l", "ll"})
VIDEO_OBJECTS = frozenset({"v", "av", None})  # ot of a request whose br is a video rendition's (None: not said)
PLAYER_STATES = frozenset({"s", "p", "a", "w", "r", "f", "e", "q", "d"})
DAY_S = 86_400.0
MAX_BPS = 1e11  # 100 Gb/s


@dataclass(frozen=True)
class CmcdReport:
    """The CMCD keys the origin uses, validated, in SI units (None: absent or not acceptable)."""

    sid: str | None = None  # session id: one player instance
    cid: str | None = None  # content id
    object_type: str | None = None  # ot: m manifest, a audio, v video, av muxed, i init, tt text, ...
    format: str | None = None  # sf: d DASH, h HLS, s Smooth, o other
    stream_type: str | None = None  # st: v VOD, l live, ll low-latency live (v2)
    state: str | None = None  # sta (v2): s starting, p playing, r rebuffering, ...
    buffer_s: float | None = None  # bl
    bitrate_bps: float | None = None  # br: encoded bitrate of the object requested
    throughput_bps: float | None = None  # mtp: throughput the player measured
    top_bitrate_bps: float | None = None  # tb
    requested_throughput_bps: float | None = None  # rtp
    duration_s: float | None = None  # d: media duration of the object
    deadline_s: float | None = None  # dl: until the buffer runs dry at the playback rate
    playback_rate: float | None = None  # pr (absent: 1)
    starved: bool = False  # bs: the buffer ran dry since the previous request
    startup: bool = False  # su: needed urgently (start, seek, recovery)
    next_object: str | None = None  # nor
    next_range: str | None = None  # nrr
    version: int = 1  # v


NOTHING = CmcdReport()


def parse_fields(text: str) -> dict[str, Value]:
    """The members of a CMCD payload that read as Structured Field items or inner lists (last one wins)."""
    fields: dict[str, Value] = {}
    if len(text) > MAX_CHARS:
        return fields
    i, n = 0, len(text)
    for _ in range(MAX_MEMBERS):
        if i >= n:
            break
        m = SIMPLE.match(text, i)
        if m is not None:
            fields[m.group(1)] = _simple(m)
            i = m.end()
            continue
        key, value, end = _member(text, _skip(text, i))
        end = _skip(text, end)
        if key is not None and value is not None and (end >= n or text[end] == ","):
            fields[key] = value
        comma = text.find(",", end)
        i = n if comma < 0 else comma + 1
    return fields


def _simple(m: re.Match[str]) -> Item:
    string, number, boolean, token = m.group(2, 3, 4, 5)
    if string is not None:
        return ESCAPE.sub(r"\1", string) if "\\" in string else string
    if number is not None:
        return float(number) if "." in number else int(number)
    if boolean is not None:
        return boolean == "1"
    return token if token is not None else True


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in SPACE:
        i += 1
    return i


def _member(text: str, i: int) -> tuple[str | None, Value | None, int]:
    m = KEY.match(text, i)
    if m is None:
        return None, None, i
    key, i = m.group(), m.end()
    value: Value | None = True
    if text.startswith("=", i):
        if text.startswith("(", i + 1):
            value, i = _inner_list(text, i + 2)
        else:
            value, i = _item(text, i + 1)
    if value is None:
        return None, None, i
    return key, value, _params(text, i)


def _item(text: str, i: int) -> tuple[Item | None, int]:
    """A bare item at ``i`` and where it ends (None: none there, or a byte sequence, which CMCD never uses)."""
    c = text[i : i + 1]
    if c == '"':
        m = STRING.match(text, i)
        return (ESCAPE.sub(r"\1", m.group(1)), m.end()) if m else (None, i)
    if c == "?":
        return (text[i + 1] == "1", i + 2) if text[i + 1 : i + 2] in ("0", "1") else (None, i)
    if c == ":":
        m = BYTES.match(text, i)
        return None, m.end() if m else i
    if c and c in "-0123456789":
        m = NUMBER.match(text, i)
        if m is None:
            return None, i
        s = m.group()
        return (float(s) if "." in s else int(s)), m.end()
    m = TOKEN.match(text, i)
    return (m.group(), m.end()) if m else (None, i)


def _inner_list(text: str, i: int) -> tuple[tuple[Item, ...] | None, int]:
    items: list[Item] = []
    while True:
        i = _skip(text, i)
        if text.startswith(")", i):
            return tuple(items[:MAX_LIST]), i + 1
        item, end = _item(text, i)
        if item is None or end == i:
            return None, i
        if len(items) < MAX_LIST:
            items.append(item)
        i = _params(text, end)
        if not text.startswith((" ", ")"), i):
            return None, i


def _params(text: str, i: int) -> int:
    """Past the parameters (``;key[=item]``) after an item; they carry nothing the origin reads."""
    while text.startswith(";", i):
        m = KEY.match(text, _skip(text, i + 1))
        if m is None:
            return i
        i = m.end()
        if text.startswith("=", i):
            item, end = _item(text, i + 1)
            if item is None:
                return i
            i = end
    return i


def _number(value: Value | None, high: float, scale: float = 1.0) -> float | None:
    if isinstance(value, tuple):
        value = value[0] if value else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    scaled = value * scale
    return float(scaled) if 0 <= scaled <= high else None


def _text(value: Value | None, longest: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= longest else None


def _token(value: Value | None, allowed: frozenset[str]) -> str | None:
    return value if isinstance(value, str) and value in allowed else None


def report_of(fields: Mapping[str, Value]) -> CmcdReport:
    """The validated report of parsed CMCD ``fields`` (unknown keys, custom keys and bad values dropped)."""
    g = fields.get
    version = g("v")
    return CmcdReport(
        sid=_text(g("sid"), 64),
        cid=_text(g("cid"), 128),
        object_type=_token(g("ot"), OBJECT_TYPES),
        format=_token(g("sf"), FORMATS),
        stream_type=_token(g("st"), STREAM_TYPES),
        state=_token(g("sta"), PLAYER_STATES),
        buffer_s=_number(g("bl"), DAY_S, 1e-3),
        bitrate_bps=_number(g("br"), MAX_BPS, 1e3),
        throughput_bps=_number(g("mtp"), MAX_BPS, 1e3),
        top_bitrate_bps=_number(g("tb"), MAX_BPS, 1e3),
        requested_throughput_bps=_number(g("rtp"), MAX_BPS, 1e3),
        duration_s=_number(g("d"), DAY_S, 1e-3),
        deadline_s=_number(g("dl"), DAY_S, 1e-3),
        playback_rate=_number(g("pr"), 100.0),
        starved=g("bs") is True,
        startup=g("su") is True,
        next_object=_text(g("nor"), 1024),
        next_range=_text(g("nrr"), 64),
        version=version if isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= 99 else 1,
    )


def from_request(query: str | None, headers: Mapping[str, str]) -> CmcdReport | None:
    """The report a request carries in its ``CMCD`` query argument and/or its CMCD headers (None: no CMCD,
    or nothing in it the origin uses). Header values are read after the query's; a key given twice keeps
    the last."""
    texts = [query, *(headers.get(name) for name in HEADERS)]
    fields: dict[str, Value] = {}
    for text in texts:
        if text:
            fields.update(parse_fields(text))
    report = report_of(fields) if fields else NOTHING
    return None if report == NOTHING else report
