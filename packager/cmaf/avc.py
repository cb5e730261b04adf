"""H.264 bitstream handling for MP4: Annex B to length-prefixed NAL units, SPS parsing, avcC.

Encoders driven through PyAV (libx264) emit Annex B: NAL units separated by
``00 00 01`` / ``00 00 00 01`` start codes, with SPS and PPS in-band on
keyframes. MP4 wants each NAL unit prefixed by its 4-byte length and the
parameter sets out of band, in the ``avcC`` record (ISO/IEC 14496-15 5.3.3).
The SPS parser (ITU-T H.264 7.3.2.1.1) reads just far enough to know the
profile, level, chroma format, bit depth and the real, cropped picture size.
"""

from __future__ import annotations

from dataclasses import dataclass

from packager.cmaf.boxes import u8, u16, u32

NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_LENGTH_SIZE = 4

# profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (H.264 7.3.2.1.1)
_HIGH_SPS_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# profiles whose avcC record carries the chroma/bit-depth trailer (ISO/IEC 14496-15 5.3.3.1.2)
_AVCC_EXT_PROFILES = frozenset({100, 110, 122, 144})
_OUT_OF_BAND = frozenset({NAL_SPS, NAL_PPS, NAL_AUD})


def nal_type(nal: bytes) -> int:
    if not nal:
        raise ValueError("empty NAL unit")
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without start codes or trailing zero bytes."""
    if data.startswith(b"\x00\x00\x01"):
        pos = 3
    elif data.startswith(b"\x00\x00\x00\x01"):
        pos = 4
    else:
        raise ValueError("not an Annex B stream: no start code at offset 0 (already length-prefixed?)")
    nals: list[bytes] = []
    while True:
        nxt = data.find(b"\x00\x00\x01", pos)
        end = len(data) if nxt < 0 else nxt
        # a NAL unit never ends in 0x00 (H.264 7.4.1): zeros before a start code are
        # trailing_zero_8bits or the first byte of a 4-byte start code
        nal = data[pos:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
        if nxt < 0:
            return nals
        pos = nxt + 3


def annexb_to_mp4(data: bytes) -> bytes:
    """An Annex B access unit as 4-byte length-prefixed NAL units, minus AUD, SPS and PPS."""
    out = bytearray()
    for nal in split_annexb(data):
        if nal_type(nal) in _OUT_OF_BAND:
            continue
        out += u32(len(nal))
        out += nal
    return bytes(out)


def parameter_sets(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """The distinct SPS and PPS NAL units found in Annex B data, in stream order."""
    sps: list[bytes] = []
    pps: list[bytes] = []
    for nal in split_annexb(data):
        kind = nal_type(nal)
        if kind == NAL_SPS and nal not in sps:
            sps.append(nal)
        elif kind == NAL_PPS and nal not in pps:
            pps.append(nal)
    return sps, pps


def escape_rbsp(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (H.264 7.4.1): ``00 00`` followed by 00..03 gets a 03 between."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes: every ``00 00 03`` becomes ``00 00``."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _BitReader:
    """MSB-first bit reader with the exp-Golomb codes of H.264 9.1."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._pos = 0

    def u(self, n: int) -> int:
        if self._pos + n > self._bits:
            raise ValueError("SPS is truncated")
        self._pos += n
        return (self._value >> (self._bits - self._pos)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.u(1) == 1

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("SPS has an exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


@dataclass(frozen=True)
class SpsInfo:
    """What a packager needs from a sequence parameter set."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    width: int  # cropped, displayed luma width
    height: int  # cropped, displayed luma height
    chroma_format_idc: int = 1  # 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8
    frame_mbs_only: bool = True  # False: the stream may code fields (interlaced)


def _skip_scaling_list(r: _BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se()) % 256
        last = nxt or last


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse an SPS NAL unit (header byte included, no start code)."""
    if not nal or nal_type(nal) != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    r = _BitReader(unescape_rbsp(nal[1:]))
    profile_idc = r.u(8)
    constraint_flags = r.u(8)
    level_idc = r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = False
    bit_depth_luma = bit_depth_chroma = 8
    if profile_idc in _HIGH_SPS_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise ValueError(f"SPS has an invalid chroma_format_idc {chroma_format_idc}")
        if chroma_format_idc == 3:
            separate_colour_plane = r.flag()
        bit_depth_luma = 8 + r.ue()
        bit_depth_chroma = 8 + r.ue()
        if bit_depth_luma > 14 or bit_depth_chroma > 14:
            raise ValueError(f"SPS has an invalid bit depth {bit_depth_luma}/{bit_depth_chroma}")
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue()):  # num_ref_frames_in_pic_order_cnt_cycle
            r.se()
    elif poc_type != 2:
        raise ValueError(f"SPS has an invalid pic_order_cnt_type {poc_type}")
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if r.flag():  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = r.ue(), r.ue(), r.ue(), r.ue()

    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    field_factor = 1 if frame_mbs_only else 2
    if chroma_array_type == 0:
        crop_unit_x, crop_unit_y = 1, field_factor
    else:
        sub_width_c = 1 if chroma_format_idc == 3 else 2
        sub_height_c = 2 if chroma_format_idc == 1 else 1
        crop_unit_x, crop_unit_y = sub_width_c, sub_height_c * field_factor
    width = width_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = field_factor * height_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise ValueError(f"SPS cropping leaves no picture ({width}x{height})")
    return SpsInfo(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        width=width,
        height=height,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=bit_depth_luma,
        bit_depth_chroma=bit_depth_chroma,
        frame_mbs_only=frame_mbs_only,
    )


def codec_string(sps: bytes) -> str:
    """The RFC 6381 codec string of an SPS NAL unit: ``avc1.PPCCLL`` in lower-case hex."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


def avcc(sps_list: list[bytes], pps_list: list[bytes]) -> bytes:
    """The AVCDecoderConfigurationRecord (the payload of an ``avcC`` box), 4-byte NAL lengths."""
    if not sps_list or not pps_list:
        raise ValueError("avcC needs at least one SPS and one PPS")
    if len(sps_list) > 31 or len(pps_list) > 255:
        raise ValueError("too many parameter sets for avcC")
    for nal in sps_list:
        if len(nal) < 4 or nal_type(nal) != NAL_SPS:
            raise ValueError("sps_list holds a NAL unit that is not an SPS")
    for nal in pps_list:
        if nal_type(nal) != NAL_PPS:
            raise ValueError("pps_list holds a NAL unit that is not a PPS")
    first = sps_list[0]
    out = bytearray(
        u8(1)  # configurationVersion
        + first[1:4]  # AVCProfileIndication, profile_compatibility, AVCLevelIndication
        + u8(0xFC | (NAL_LENGTH_SIZE - 1))
        + u8(0xE0 | len(sps_list))
    )
    for nal in sps_list:
        out += u16(len(nal)) + nal
    out += u8(len(pps_list))
    for nal in pps_list:
        out += u16(len(nal)) + nal
    if first[1] in _AVCC_EXT_PROFILES:
        info = parse_sps(first)
        out += u8(0xFC | info.chroma_format_idc)
        out += u8(0xF8 | (info.bit_depth_luma - 8))
        out += u8(0xF8 | (info.bit_depth_chroma - 8))
        out += u8(0)  # numOfSequenceParameterSetExt
    return bytes(out)
