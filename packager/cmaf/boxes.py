"""Low-level ISO-BMFF writing: boxes, full boxes and big-endian integer packing.

Every multi-byte field in ISO/IEC 14496-12 is big-endian. The packers raise
``ValueError`` (not ``OverflowError`` or ``struct.error``) when a value does
not fit its field, so a bad timestamp fails loudly instead of wrapping.
"""

from __future__ import annotations

HEADER_SIZE = 8
LARGE_HEADER_SIZE = 16
_U32_MAX = 0xFFFFFFFF


def _pack(value: int, size: int, *, signed: bool = False) -> bytes:
    try:
        return value.to_bytes(size, "big", signed=signed)
    except OverflowError:
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"{value} does not fit in a {kind} {size * 8}-bit field") from None


def u8(value: int) -> bytes:
    return _pack(value, 1)


def u16(value: int) -> bytes:
    return _pack(value, 2)


def u24(value: int) -> bytes:
    return _pack(value, 3)


def u32(value: int) -> bytes:
    return _pack(value, 4)


def u64(value: int) -> bytes:
    return _pack(value, 8)


def s16(value: int) -> bytes:
    return _pack(value, 2, signed=True)


def s32(value: int) -> bytes:
    return _pack(value, 4, signed=True)


def fixed16_16(value: int) -> bytes:
    """An integer as a 16.16 fixed-point number (tkhd width/height, sample-entry rate)."""
    return u32(value << 16)


def fourcc(code: bytes) -> bytes:
    if len(code) != 4:
        raise ValueError(f"a four-character code must be 4 bytes, got {code!r}")
    return code


def box(type: bytes, *payload: bytes) -> bytes:
    """A box: size, type, payload. Switches to a 64-bit ``largesize`` header past 4 GiB."""
    body = b"".join(payload)
    size = HEADER_SIZE + len(body)
    if size <= _U32_MAX:
        return u32(size) + fourcc(type) + body
    return u32(1) + fourcc(type) + u64(LARGE_HEADER_SIZE + len(body)) + body


def full_box(type: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A full box: a box whose payload starts with an 8-bit version and 24-bit flags."""
    return box(type, u8(version), u24(flags), *payload)
