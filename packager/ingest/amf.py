"""AMF0 encoding and decoding: the value format of RTMP commands and FLV script data.

Python values map to AMF0 as follows (decoding gives the left-hand types):

| AMF0 marker | Python |
|---|---|
| number (0x00) | ``float`` (``int`` encodes as a number too) |
| boolean (0x01) | ``bool`` |
| string (0x02) / long string (0x0C) | ``str`` (strings over 65535 UTF-8 bytes encode as long strings) |
| object (0x03) ... object end (0x09) | ``dict[str, value]`` |
| null (0x05) | ``None`` |
| undefined (0x06) | ``UNDEFINED`` |
| ECMA array (0x08) | ``EcmaArray`` (a ``dict`` subclass) |
| strict array (0x0A) | ``list`` (``tuple`` encodes as a strict array too) |
| date (0x0B) | ``AmfDate`` |

The decoder is strict: truncated data, unknown markers, a misplaced object-end
marker, invalid UTF-8, nesting deeper than ``max_depth`` or more than
``max_items`` values raise ``AmfError`` (a ``ValueError``) with the offset. It
always consumes input as it goes, so it cannot loop forever.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TypeAlias

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
NULL = 0x05
UNDEFINED_MARKER = 0x06
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_ITEMS = 100_000

_NAMES = {
    NUMBER: "number",
    BOOLEAN: "boolean",
    STRING: "string",
    OBJECT: "object",
    0x04: "movieclip",
    NULL: "null",
    UNDEFINED_MARKER: "undefined",
    0x07: "reference",
    ECMA_ARRAY: "ECMA array",
    OBJECT_END: "object end",
    STRICT_ARRAY: "strict array",
    DATE: "date",
    LONG_STRING: "long string",
    0x0D: "unsupported",
    0x0E: "recordset",
    0x0F: "XML document",
    0x10: "typed object",
    0x11: "AVM+ (AMF3) switch",
}


class AmfError(ValueError):
    """Malformed or unsupported AMF0 data; the message says what and where."""


class Undefined(enum.Enum):
    """The AMF0 ``undefined`` value (distinct from ``null``/``None``)."""

    UNDEFINED = "undefined"


UNDEFINED = Undefined.UNDEFINED


class EcmaArray(dict[str, "AmfValue"]):
    """An AMF0 ECMA (associative) array: a ``dict`` that encodes with marker 0x08."""


@dataclass(frozen=True)
class AmfDate:
    """An AMF0 date: milliseconds since the Unix epoch and a (reserved) time-zone field."""

    ms: float
    timezone: int = 0


AmfValue: TypeAlias = "float | int | bool | str | Undefined | AmfDate | dict[str, AmfValue] | list[AmfValue] | None"

_DOUBLE = struct.Struct(">d")
_DATE = struct.Struct(">dh")


# ---------------------------------------------------------------- encoding


def encode(*values: AmfValue, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode ``values`` back to back as AMF0."""
    out = bytearray()
    for value in values:
        _encode(out, value, 0, max_depth)
    return bytes(out)


def _encode_key(out: bytearray, key: object) -> None:
    if not isinstance(key, str):
        raise AmfError(f"object keys must be str, not {type(key).__name__}")
    raw = key.encode("utf-8")
    if not raw:
        raise AmfError("object keys must not be empty (an empty key marks the object end)")
    if len(raw) > 0xFFFF:
        raise AmfError(f"object key of {len(raw)} bytes exceeds 65535")
    out += len(raw).to_bytes(2, "big") + raw


def _encode_properties(out: bytearray, mapping: dict[str, AmfValue], depth: int, max_depth: int) -> None:
    for key, item in mapping.items():
        _encode_key(out, key)
        _encode(out, item, depth + 1, max_depth)
    out += b"\x00\x00\x09"


def _encode(out: bytearray, value: AmfValue, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise AmfError(f"nesting deeper than {max_depth} levels")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += len(raw).to_bytes(2, "big")
        elif len(raw) <= 0xFFFFFFFF:
            out.append(LONG_STRING)
            out += len(raw).to_bytes(4, "big")
        else:
            raise AmfError(f"string of {len(raw)} bytes is too long for AMF0")
        out += raw
    elif isinstance(value, AmfDate):
        out.append(DATE)
        out += _DATE.pack(value.ms, value.timezone)
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += len(value).to_bytes(4, "big")
        _encode_properties(out, value, depth, max_depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth, max_depth)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += len(value).to_bytes(4, "big")
        for item in value:
            _encode(out, item, depth + 1, max_depth)
    else:
        raise AmfError(f"cannot encode {type(value).__name__} as AMF0")


# ---------------------------------------------------------------- decoding


class _Reader:
    """A cursor over AMF0 bytes with depth and item budgets."""

    def __init__(self, data: bytes, offset: int, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = offset
        self.max_depth = max_depth
        self.items_left = max_items

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise AmfError(f"truncated {what} at offset {self.pos}: needs {n} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def text(self, size_bytes: int, what: str) -> str:
        start = self.pos
        length = int.from_bytes(self.take(size_bytes, f"{what} length"), "big")
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AmfError(f"invalid UTF-8 in {what} at offset {start}") from exc

    def value(self, depth: int) -> AmfValue:
        if depth > self.max_depth:
            raise AmfError(f"nesting deeper than {self.max_depth} levels at offset {self.pos}")
        self.items_left -= 1
        if self.items_left < 0:
            raise AmfError(f"more values than allowed at offset {self.pos}")
        start = self.pos
        marker = self.take(1, "type marker")[0]
        if marker == NUMBER:
            return _DOUBLE.unpack(self.take(8, "number"))[0]
        if marker == BOOLEAN:
            return self.take(1, "boolean")[0] != 0
        if marker == STRING:
            return self.text(2, "string")
        if marker == LONG_STRING:
            return self.text(4, "long string")
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == OBJECT:
            result: dict[str, AmfValue] = {}
            self.properties(result, depth)
            return result
        if marker == ECMA_ARRAY:
            self.take(4, "ECMA array count")  # a hint only; encoders often get it wrong
            array = EcmaArray()
            self.properties(array, depth)
            return array
        if marker == STRICT_ARRAY:
            count = int.from_bytes(self.take(4, "strict array count"), "big")
            left = len(self.data) - self.pos
            if count > left:
                raise AmfError(f"strict array at offset {start} claims {count} values but only {left} bytes remain")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == DATE:
            ms, tz = _DATE.unpack(self.take(10, "date"))
            return AmfDate(ms, tz)
        if marker == OBJECT_END:
            raise AmfError(f"object-end marker outside an object at offset {start}")
        name = _NAMES.get(marker, "unknown")
        raise AmfError(f"unsupported AMF0 type 0x{marker:02x} ({name}) at offset {start}")

    def properties(self, target: dict[str, AmfValue], depth: int) -> None:
        while True:
            key_at = self.pos
            key = self.text(2, "property name")
            if not key:
                end = self.take(1, "object-end marker")[0]
                if end != OBJECT_END:
                    raise AmfError(f"empty property name not followed by object end at offset {key_at}")
                return
            target[key] = self.value(depth + 1)


def decode_one(
    data: bytes, offset: int = 0, *, max_depth: int = DEFAULT_MAX_DEPTH, max_items: int = DEFAULT_MAX_ITEMS
) -> tuple[AmfValue, int]:
    """Decode the AMF0 value at ``offset``; returns it and the offset just after it."""
    reader = _Reader(bytes(data), offset, max_depth, max_items)
    value = reader.value(0)
    return value, reader.pos


def decode(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, max_items: int = DEFAULT_MAX_ITEMS) -> list[AmfValue]:
    """Decode every AMF0 value in ``data`` (back to back, as in an RTMP command)."""
    reader = _Reader(bytes(data), 0, max_depth, max_items)
    values: list[AmfValue] = []
    while reader.pos < len(reader.data):
        values.append(reader.value(0))
    return values
