"""CEA-608/708 captions in H.264: the ATSC A/53 ``GA94`` SEI that carries ``cc_data`` triplets.

The decoder hands each picture's ``cc_data`` (FFmpeg's ``A53_CC`` frame side
data: ``cc_count`` triplets of ``marker/cc_valid/cc_type, cc_data_1,
cc_data_2``); :func:`sei_nal` wraps them back into a
``user_data_registered_itu_t_t35`` SEI (H.264 D.1.6; ATSC A/53 Part 4 6.2.3,
country 0xB5, provider 0x0031, ``GA94``, user_data_type_code 3) and
:func:`with_sei` puts it in an access unit before its first slice (H.264
7.4.1.2.3: SEI precedes the primary coded picture). :func:`cc_data` reads it
back from an MP4 sample (players do the same; the tests too).
"""

from __future__ import annotations

from packager.cmaf.avc import NAL_LENGTH_SIZE, escape_rbsp, nal_type, unescape_rbsp
from packager.cmaf.boxes import u32

NAL_SEI = 6
_SLICES = frozenset({1, 5})
SEI_T35 = 4  # user_data_registered_itu_t_t35
_A53_HEAD = b"\xb5\x00\x31GA94\x03"  # country US, provider ATSC, user identifier, cc_data()
MAX_CC_COUNT = 31  # cc_count is 5 bits


def sei_nal(triplets: bytes) -> bytes:
    """The SEI NAL unit (header byte first, escaped) carrying ``triplets`` (at most 31 of 3 bytes)."""
    count = len(triplets) // 3
    if count == 0 or len(triplets) % 3 or count > MAX_CC_COUNT:
        raise ValueError(f"cc_data must be 1..{MAX_CC_COUNT} triplets, got {len(triplets)} bytes")
    # process_cc_data_flag=1, additional_data_flag=0, cc_count; em_data; the triplets; marker_bits
    payload = _A53_HEAD + bytes([0x40 | count, 0xFF]) + triplets + b"\xff"
    size = len(payload)
    message = bytes([SEI_T35]) + b"\xff" * (size // 255) + bytes([size % 255]) + payload
    return bytes([NAL_SEI]) + escape_rbsp(message + b"\x80")  # rbsp_trailing_bits


def _nals(sample: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each 4-byte length-prefixed NAL unit of an MP4 sample."""
    out = []
    pos = 0
    while pos + NAL_LENGTH_SIZE <= len(sample):
        length = int.from_bytes(sample[pos : pos + NAL_LENGTH_SIZE], "big")
        if length == 0 or pos + NAL_LENGTH_SIZE + length > len(sample):
            raise ValueError("truncated NAL unit in sample")
        out.append((pos + NAL_LENGTH_SIZE, length))
        pos += NAL_LENGTH_SIZE + length
    return out


def with_sei(sample: bytes, nal: bytes) -> bytes:
    """``sample`` (length-prefixed NAL units) with ``nal`` inserted before its first slice."""
    for offset, _length in _nals(sample):
        if nal_type(sample[offset : offset + 1]) in _SLICES:
            at = offset - NAL_LENGTH_SIZE
            return sample[:at] + u32(len(nal)) + nal + sample[at:]
    return sample + u32(len(nal)) + nal


def cc_data(sample: bytes) -> bytes:
    """The cc_data triplets of every A/53 SEI in an MP4 sample, in order (b"" when there is none)."""
    out = bytearray()
    for offset, length in _nals(sample):
        nal = sample[offset : offset + length]
        if nal_type(nal) == NAL_SEI:
            out += _sei_cc(unescape_rbsp(nal[1:]))
    return bytes(out)


def _sei_cc(rbsp: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(rbsp) and rbsp[pos] != 0x80:
        kind = size = 0
        while rbsp[pos] == 0xFF:
            kind, pos = kind + 255, pos + 1
        kind, pos = kind + rbsp[pos], pos + 1
        while rbsp[pos] == 0xFF:
            size, pos = size + 255, pos + 1
        size, pos = size + rbsp[pos], pos + 1
        body = rbsp[pos : pos + size]
        pos += size
        if kind == SEI_T35 and body.startswith(_A53_HEAD) and len(body) > len(_A53_HEAD) + 1:
            count = body[len(_A53_HEAD)] & 0x1F
            start = len(_A53_HEAD) + 2
            out += body[start : start + 3 * count]
    return bytes(out)
