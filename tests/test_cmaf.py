"""Tests for packager.cmaf: H.264/AAC signalling, init and chunk writing, the box reader.

The bitstream tests use SPS/PPS from real libx264 encodes through PyAV; the
end-to-end tests package real H.264 and AAC and let FFmpeg (PyAV) demux and
decode the result.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from packager.cmaf import (
    Prft,
    aac,
    audio_init,
    avc,
    box,
    chunk,
    find,
    full_box,
    iter_boxes,
    parse_fragments,
    parse_init,
    parse_sps,
    styp,
    video_init,
)
from packager.cmaf.fragment import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    TFHD_DEFAULT_BASE_IS_MOOF,
    TFHD_SAMPLE_DESCRIPTION_INDEX,
    TRUN_SAMPLE_DURATION,
    TRUN_SAMPLE_FLAGS,
    TRUN_SAMPLE_SIZE,
    ntp_timestamp,
    utc_from_ntp,
)
from packager.model import Sample

BIG_TICKS = 160_000_000_000_000  # ~56 years at 90 kHz: UTC-anchored media time, beyond 32 bits
VIDEO_TS = 90_000
# libx264 (PyAV 18.1, preset ultrafast) at 320x180: 00 00 03 escapes, 180 = 192 - 12 cropped rows
X264_SPS_320X180 = bytes.fromhex("6742c00dda05067e7840000003004000000f23c50aa8")
X264_PPS_320X180 = bytes.fromhex("68ce0fc8")
AUDIO_TS = 48_000


# --------------------------------------------------------------------------- helpers


def encode_video(
    width: int,
    height: int,
    *,
    pix_fmt: str = "yuv420p",
    frames: int = 1,
    base: int = 0,
    options: dict[str, str] | None = None,
) -> list[av.Packet]:
    """Encode ``frames`` frames (grey level 4*i) with libx264; pts = base + i * 3000 (30 fps).

    ``options`` are added to preset ultrafast; without them the tune is zerolatency.
    """
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = pix_fmt
    ctx.time_base = Fraction(1, VIDEO_TS)
    ctx.framerate = Fraction(30)
    ctx.gop_size = 30
    ctx.options = {"preset": "ultrafast", **(options if options is not None else {"tune": "zerolatency"})}
    ctx.open()
    packets: list[av.Packet] = []
    for i in range(frames):
        rgb = np.full((height, width, 3), (i * 4) % 256, np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        frame.pts = base + i * 3000
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return packets


def video_samples(packets: list[av.Packet]) -> list[Sample]:
    return [
        Sample(data=avc.annexb_to_mp4(bytes(p)), dts=p.dts, pts=p.pts, duration=3000, keyframe=p.is_keyframe)
        for p in packets
    ]


class BitWriter:
    """MSB-first bit writer with exp-Golomb codes, to build SPS payloads by hand."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit, then zero alignment
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def synthetic_samples(count: int, *, base: int, with_cto: bool) -> list[Sample]:
    """Samples in decode order; with_cto gives an IBBP-like pattern with negative offsets too."""
    out = []
    for i in range(count):
        cto = ((-1000, 6000, 0)[i % 3] if with_cto else 0) if i else 0
        out.append(
            Sample(
                data=bytes([i % 251]) * (100 + i),
                dts=base + i * 3000,
                pts=base + i * 3000 + cto,
                duration=3000,
                keyframe=i == 0,
            )
        )
    return out


# --------------------------------------------------------------------------- H.264


@pytest.mark.media
@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "options", "profile"),
    [
        (320, 180, "yuv420p", {}, 66),
        (852, 478, "yuv420p", {}, 66),  # 853x479 made even for 4:2:0: crops 12 columns, 2 rows
        (1280, 720, "yuv420p", {}, 66),
        (1280, 720, "yuv420p", {"preset": "veryfast"}, 100),
        (853, 479, "yuv444p", {}, 244),  # 4:4:4: odd sizes, 1-sample crop units
        (320, 180, "yuv422p10le", {}, 122),  # 4:2:2 10-bit
        (320, 180, "yuv420p", {"x264-params": "interlaced=1"}, 77),  # frame_mbs_only = 0
    ],
)
def test_sps_from_libx264(width: int, height: int, pix_fmt: str, options: dict[str, str], profile: int) -> None:
    packets = encode_video(width, height, pix_fmt=pix_fmt, options=options)
    assert packets[0].is_keyframe
    sps, pps = avc.parameter_sets(bytes(packets[0]))
    assert len(sps) == 1 and len(pps) == 1
    info = parse_sps(sps[0])
    assert (info.width, info.height) == (width, height)
    assert info.profile_idc == profile
    assert info.frame_mbs_only == ("interlaced" not in options.get("x264-params", ""))
    pcl = f"{info.profile_idc:02x}{info.constraint_flags:02x}{info.level_idc:02x}"
    assert avc.codec_string(sps[0]) == f"avc1.{pcl}"
    record = avc.avcc(sps, pps)
    assert record[:4] == b"\x01" + sps[0][1:4]
    assert record[4] == 0xFF  # 4-byte NAL lengths
    if profile in (100, 122):  # chroma / bit-depth trailer
        chroma, luma_depth, chroma_depth = info.chroma_format_idc, info.bit_depth_luma, info.bit_depth_chroma
        assert record[-4:] == bytes([0xFC | chroma, 0xF8 | (luma_depth - 8), 0xF8 | (chroma_depth - 8), 0])
    else:
        assert len(record) == 7 + 2 + len(sps[0]) + 2 + len(pps[0])


@pytest.mark.media
def test_codec_strings_of_known_encodes() -> None:
    sps, _ = avc.parameter_sets(bytes(encode_video(320, 180)[0]))
    assert avc.codec_string(sps[0]) == "avc1.42c00d"
    sps, _ = avc.parameter_sets(bytes(encode_video(1280, 720, options={"preset": "veryfast"})[0]))
    assert avc.codec_string(sps[0]) == "avc1.64001f"


def test_parse_sps_scaling_lists_poc_type_1_fields_and_emulation_prevention() -> None:
    w = BitWriter()
    w.u(8, 100)  # profile_idc: High
    w.u(8, 0)
    w.u(8, 40)
    w.ue(0)  # seq_parameter_set_id
    w.ue(1)  # chroma_format_idc 4:2:0
    w.ue(0)
    w.ue(0)
    w.u(1, 0)
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    w.u(1, 1)  # list 0: explicit 4x4 list
    for _ in range(16):
        w.se(1)
    w.u(1, 1)  # list 1: delta to 0 = "use default", one code only
    w.se(-8)
    for _ in range(4):  # lists 2-5 absent
        w.u(1, 0)
    w.u(1, 1)  # list 6: explicit 8x8 list
    for _ in range(64):
        w.se(0)
    w.u(1, 0)  # list 7 absent
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1)  # pic_order_cnt_type 1
    w.u(1, 0)
    w.se(-(2**30))  # offset_for_non_ref_pic: a 31-zero prefix, forces emulation prevention
    w.se(2)
    w.ue(2)
    w.se(5)
    w.se(-7)
    w.ue(3)  # max_num_ref_frames
    w.u(1, 0)
    w.ue(119)  # 120 MBs = 1920
    w.ue(33)  # 34 map units (field pairs) = 1088
    w.u(1, 0)  # frame_mbs_only_flag 0
    w.u(1, 1)
    w.u(1, 1)
    w.u(1, 1)  # frame_cropping_flag
    for v in (0, 0, 0, 2):  # bottom 2 units of 4 rows (4:2:0, fields)
        w.ue(v)
    w.u(1, 0)  # vui_parameters_present_flag
    rbsp = w.rbsp()
    nal = b"\x67" + avc.escape_rbsp(rbsp)
    assert len(nal) > len(rbsp) + 1  # emulation-prevention bytes were needed
    info = parse_sps(nal)
    assert (info.width, info.height) == (1920, 1080)
    assert (info.profile_idc, info.level_idc, info.frame_mbs_only) == (100, 40, False)
    with pytest.raises(ValueError, match="truncated"):
        parse_sps(nal[:20])
    with pytest.raises(ValueError, match="not an SPS"):
        parse_sps(b"\x68\xee\x3c\x80")


def test_parse_sps_of_stored_libx264_sps() -> None:
    info = parse_sps(X264_SPS_320X180)
    assert (info.profile_idc, info.constraint_flags, info.level_idc) == (66, 0xC0, 13)
    assert (info.width, info.height, info.chroma_format_idc, info.frame_mbs_only) == (320, 180, 1, True)
    assert avc.codec_string(X264_SPS_320X180) == "avc1.42c00d"


def test_split_annexb_start_codes_and_conversion() -> None:
    aud, sps, pps = b"\x09\xf0", b"\x67\x42\xc0\x1e\xaa", b"\x68\xce\x38\x80"
    sei, idr = b"\x06\x05\x01\x80", b"\x65\x88\x84\x00\x00\x03\x00\x21"
    data = (
        b"\x00\x00\x00\x01"
        + aud
        + b"\x00\x00\x01"
        + sps
        + b"\x00\x00\x00\x01"
        + pps
        + b"\x00\x00\x01"
        + sei
        + b"\x00\x00\x00\x01"
        + idr
        + b"\x00\x00"  # trailing_zero_8bits
    )
    assert avc.split_annexb(data) == [aud, sps, pps, sei, idr]
    assert avc.parameter_sets(data + b"\x00\x00\x01" + sps) == ([sps], [pps])
    mp4 = avc.annexb_to_mp4(data)
    assert mp4 == struct.pack(">I", len(sei)) + sei + struct.pack(">I", len(idr)) + idr
    with pytest.raises(ValueError, match="Annex B"):
        avc.split_annexb(mp4)
    with pytest.raises(ValueError):
        avc.avcc([], [pps])


# --------------------------------------------------------------------------- AAC


@pytest.mark.media
def test_audio_specific_config_matches_ffmpeg_aac() -> None:
    ctx = av.CodecContext.create("aac", "w")
    ctx.sample_rate = 48_000
    ctx.layout = "stereo"
    ctx.format = "fltp"
    ctx.open()
    assert ctx.extradata is not None
    # FFmpeg appends an explicit "no SBR" sync extension after the 2 core bytes
    assert bytes(ctx.extradata)[:2] == aac.audio_specific_config(48_000, 2) == b"\x11\x90"


def test_audio_specific_config_values_and_errors() -> None:
    assert aac.audio_specific_config(44_100, 1) == b"\x12\x08"
    assert aac.audio_specific_config(48_000, 6) == b"\x11\xb0"
    assert aac.codec_string() == "mp4a.40.2"
    for rate, channels in ((50_000, 2), (48_000, 7), (48_000, 0)):
        with pytest.raises(ValueError, match="unsupported"):
            aac.audio_specific_config(rate, channels)
    with pytest.raises(ValueError):
        aac.audio_specific_config(48_000, 2, object_type=5)


# --------------------------------------------------------------------------- init segments


@pytest.mark.media
def test_video_init_round_trip() -> None:
    sps, pps = avc.parameter_sets(bytes(encode_video(320, 180, options={"preset": "veryfast"})[0]))
    data = video_init(track_id=3, timescale=VIDEO_TS, width=320, height=180, sps=sps, pps=pps, bitrate=800_000)
    assert [b.type for b in iter_boxes(data)] == ["ftyp", "moov"]
    ftyp = find(data, "ftyp")[0].payload(data)
    assert ftyp[:4] == b"iso6"
    assert {ftyp[i : i + 4] for i in range(8, len(ftyp), 4)} >= {b"iso6", b"cmfc", b"dash", b"mp41"}
    info = parse_init(data)
    assert (info.handler, info.timescale, info.track_id) == ("vide", VIDEO_TS, 3)
    assert (info.width, info.height) == (320, 180)
    assert info.codec == avc.codec_string(sps[0]) == "avc1.64000d"
    avcc_box = find(data, "moov/trak/mdia/minf/stbl/stsd/avc1/avcC")[0]
    assert avcc_box.payload(data) == avc.avcc(sps, pps)
    btrt = find(data, "moov/trak/mdia/minf/stbl/stsd/avc1/btrt")[0].payload(data)
    assert struct.unpack(">III", btrt) == (0, 800_000, 800_000)
    tkhd = find(data, "moov/trak/tkhd")[0].payload(data)
    assert tkhd[1:4] == b"\x00\x00\x03"
    assert struct.unpack(">II", tkhd[-8:]) == (320 << 16, 180 << 16)
    mdhd = find(data, "moov/trak/mdia/mdhd")[0].payload(data)
    assert struct.unpack(">IIH", mdhd[12:22]) == (VIDEO_TS, 0, 0x55C4)  # timescale, duration, 'und'
    assert find(data, "moov/trak/edts") == []
    assert len(find(data, "moov/mvex/trex")) == 1
    for table in ("stts", "stsc", "stsz", "stco"):
        assert len(find(data, f"moov/trak/mdia/minf/stbl/{table}")) == 1
    assert find(data, "moov/trak/mdia/minf/dinf/dref/url ")[0].payload(data) == b"\x00\x00\x00\x01"


def test_video_init_without_bitrate_has_no_btrt() -> None:
    data = video_init(
        track_id=1, timescale=VIDEO_TS, width=320, height=180, sps=[X264_SPS_320X180], pps=[X264_PPS_320X180]
    )
    assert find(data, "moov/trak/mdia/minf/stbl/stsd/avc1/btrt") == []
    info = parse_init(data)
    assert (info.codec, info.width, info.height) == ("avc1.42c00d", 320, 180)


def test_audio_init_round_trip() -> None:
    asc = aac.audio_specific_config(48_000, 2)
    data = audio_init(track_id=2, timescale=AUDIO_TS, sample_rate=48_000, channels=2, asc=asc, bitrate=128_000)
    info = parse_init(data)
    assert (info.handler, info.timescale, info.track_id, info.codec) == ("soun", AUDIO_TS, 2, "mp4a.40.2")
    assert (info.sample_rate, info.channels, info.width, info.height) == (48_000, 2, 0, 0)
    esds = find(data, "moov/trak/mdia/minf/stbl/stsd/mp4a/esds")[0].payload(data)
    assert asc in esds
    assert b"\x40\x15" in esds  # objectTypeIndication 0x40, streamType 5
    assert esds.endswith(b"\x06\x80\x80\x80\x01\x02")  # SLConfigDescriptor predefined 2
    assert len(find(data, "moov/trak/mdia/minf/smhd")) == 1
    assert len(find(data, "moov/trak/mdia/minf/stbl/stsd/mp4a/btrt")) == 1
    # 96 kHz does not fit the 16.16 samplerate field: the reader falls back to the esds
    hi_res = audio_init(
        track_id=1, timescale=96_000, sample_rate=96_000, channels=1, asc=aac.audio_specific_config(96_000, 1)
    )
    assert (parse_init(hi_res).sample_rate, parse_init(hi_res).channels) == (96_000, 1)
    assert find(hi_res, "moov/trak/mdia/minf/stbl/stsd/mp4a/btrt") == []


# --------------------------------------------------------------------------- chunks


@pytest.mark.parametrize("with_cto", [False, True])
def test_chunk_round_trip(with_cto: bool) -> None:
    samples = synthetic_samples(10, base=BIG_TICKS, with_cto=with_cto)
    prft = Prft(ntp_utc_s=1_767_225_600.123456, media_time=BIG_TICKS)
    data = chunk(sequence_number=7, track_id=2, samples=samples, prft=prft)
    assert [b.type for b in iter_boxes(data)] == ["prft", "moof", "mdat"]
    (frag,) = parse_fragments(data)
    assert (frag.sequence_number, frag.track_id, frag.base_decode_time) == (7, 2, BIG_TICKS)
    assert frag.sample_durations == (3000,) * 10
    assert frag.sample_sizes == tuple(len(s.data) for s in samples)
    assert frag.sample_flags == (SYNC_SAMPLE_FLAGS,) + (NON_SYNC_SAMPLE_FLAGS,) * 9
    assert frag.composition_offsets == tuple(s.pts - s.dts for s in samples)
    assert frag.prft is not None
    assert frag.prft.media_time == BIG_TICKS
    assert frag.prft.ntp_utc_s == pytest.approx(prft.ntp_utc_s, abs=1e-6)
    trun = find(data, "moof/traf/trun")[0].payload(data)
    assert trun[0] == (1 if with_cto else 0)
    assert find(data, "moof/traf/tfdt")[0].payload(data)[0] == 1
    tfhd = find(data, "moof/traf/tfhd")[0].payload(data)
    assert tfhd[:4] == b"\x00\x02\x00\x02"  # default-base-is-moof | sample-description-index-present
    # data_offset points from the moof start at the first sample byte
    moof = find(data, "moof")[0]
    (data_offset,) = struct.unpack(">i", trun[8:12])
    assert data[moof.offset + data_offset :] == b"".join(s.data for s in samples)
    prft_payload = find(data, "prft")[0].payload(data)
    assert prft_payload[:4] == b"\x01\x00\x00\x18"  # version 1, flags 24 (captured)


@pytest.mark.parametrize("with_cto", [False, True])
def test_every_tfhd_carries_the_cmaf_defaults(with_cto: bool) -> None:
    # ISO/IEC 23000-19 7.7.3: a chunk's own tfhd/trun hold the values the samples need, the
    # sample_description_index included (DASH-IF's checker: "'sample_description_index' not
    # found"); 7.5.16: default-base-is-moof set, base-data-offset absent, track_ID of the header
    samples = synthetic_samples(4, base=BIG_TICKS, with_cto=with_cto)
    segment = styp() + b"".join(
        chunk(sequence_number=n, track_id=3, samples=samples[n * 2 : n * 2 + 2]) for n in range(2)
    )
    frags = parse_fragments(segment)
    assert len(frags) == 2
    for frag in frags:
        assert frag.sample_description_index == 1
        assert frag.tfhd_flags & TFHD_SAMPLE_DESCRIPTION_INDEX
        assert frag.tfhd_flags & TFHD_DEFAULT_BASE_IS_MOOF
        assert not frag.tfhd_flags & 0x000001  # base-data-offset-present
        assert frag.track_id == 3
    for tfhd in find(segment, "moof/traf/tfhd"):
        assert tfhd.payload(segment) == struct.pack(">III", 0x020002, 3, 1)
    for trun in find(segment, "moof/traf/trun"):
        # no trex or tfhd default is relied on: every sample has its duration, size and flags
        flags = int.from_bytes(trun.payload(segment)[1:4], "big")
        assert flags & (TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS) == 0x000700


def test_reader_reports_a_missing_sample_description_index() -> None:
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1))
    trun = full_box(b"trun", 0, 0x000700, struct.pack(">IIII", 1, 1024, 4, SYNC_SAMPLE_FLAGS))
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", 1)), box(b"traf", tfhd, trun))
    (frag,) = parse_fragments(moof + box(b"mdat", bytes(4)))
    assert (frag.sample_description_index, frag.tfhd_flags) == (None, 0x020000)


def test_aac_es_descriptor_has_es_id_zero() -> None:
    # ISO/IEC 23000-19 10.3.4.2.3: "fields of the ES_Descriptor SHALL be set to ... ES_ID = 0",
    # whatever the track_ID
    asc = aac.audio_specific_config(48_000, 2)
    for track_id in (1, 2, 7):
        data = audio_init(track_id=track_id, timescale=AUDIO_TS, sample_rate=48_000, channels=2, asc=asc)
        info = parse_init(data)
        assert (info.track_id, info.es_id) == (track_id, 0)
        esds = find(data, "moov/trak/mdia/minf/stbl/stsd/mp4a/esds")[0].payload(data)
        assert esds[4] == 0x03 and esds[9:12] == b"\x00\x00\x00"  # ES_Descriptor: ES_ID 0, no flags


def test_chunk_durations_follow_decode_times() -> None:
    samples = [
        Sample(b"a", dts=0, pts=0, duration=1024, keyframe=True),
        Sample(b"b", dts=1024, pts=1024, duration=1024, keyframe=True),
        Sample(b"c", dts=3072, pts=3072, duration=1024, keyframe=True),  # a gap before it
    ]
    (frag,) = parse_fragments(chunk(sequence_number=1, track_id=1, samples=samples))
    assert frag.sample_durations == (1024, 2048, 1024)
    assert frag.composition_offsets == (0, 0, 0)
    assert frag.prft is None


def test_segment_of_several_chunks() -> None:
    samples = synthetic_samples(12, base=BIG_TICKS, with_cto=True)
    parts = [
        chunk(
            sequence_number=n + 1,
            track_id=1,
            samples=samples[n * 4 : n * 4 + 4],
            prft=Prft(1_700_000_000.5 + n, samples[n * 4].pts) if n != 1 else None,
        )
        for n in range(3)
    ]
    segment = styp() + b"".join(parts)
    styp_payload = find(segment, "styp")[0].payload(segment)
    assert styp_payload[:4] == b"msdh" and b"cmfs" in styp_payload[8:]
    frags = parse_fragments(segment)
    assert [f.sequence_number for f in frags] == [1, 2, 3]
    assert [f.base_decode_time for f in frags] == [BIG_TICKS + n * 12000 for n in range(3)]
    assert frags[1].prft is None
    assert frags[2].prft is not None and frags[2].prft.ntp_utc_s == pytest.approx(1_700_000_002.5)
    assert sum(f.duration for f in frags) == 12 * 3000


def test_chunk_rejects_bad_samples() -> None:
    with pytest.raises(ValueError, match="at least one"):
        chunk(sequence_number=1, track_id=1, samples=[])
    a = Sample(b"a", dts=3000, pts=3000, duration=3000, keyframe=True)
    for dts in (0, 3000):
        b = Sample(b"b", dts=dts, pts=dts, duration=3000, keyframe=False)
        with pytest.raises(ValueError, match="increase"):
            chunk(sequence_number=1, track_id=1, samples=[a, b])
    with pytest.raises(ValueError, match="non-negative"):
        chunk(sequence_number=1, track_id=1, samples=[Sample(b"a", -1, 0, 1, True)])
    with pytest.raises(ValueError, match="signed 32-bit"):
        chunk(sequence_number=1, track_id=1, samples=[Sample(b"a", 0, 1 << 31, 1, True)])


def test_ntp_conversion() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(1.5) == ((2_208_988_800 + 1) << 32) | (1 << 31)
    for utc in (0.0, 1_767_225_600.25, 2_085_978_496.0 + 10.75):  # the last is in NTP era 1 (2036+)
        assert utc_from_ntp(ntp_timestamp(utc)) == pytest.approx(utc, abs=1e-6)


# --------------------------------------------------------------------------- reader robustness


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x00", "truncated box header"),
        (b"\x00\x00\x00\x04free", "smaller than its header"),
        (b"\x00\x00\x00\x10moov\x00\x00", "claims 16 bytes"),
        (b"\xff\xff\xff\xffmdat" + bytes(8), "claims 4294967295"),
        (b"\x00\x00\x00\x01mdat" + struct.pack(">Q", 1 << 62), "claims"),
        (b"\x00\x00\x00\x01mdat" + struct.pack(">Q", 8), "smaller than its header"),
        (b"\x00\x00\x00\x01mdat\x00\x00", "truncated largesize"),
        (b"\x00\x00\x00\x08free\x00\x00\x00", "truncated box header"),
    ],
)
def test_iter_boxes_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(iter_boxes(data))


def test_iter_boxes_sizes() -> None:
    payload = b"x" * 20
    data = box(b"free", b"abc") + b"\x00\x00\x00\x01wide" + struct.pack(">Q", 16 + 5) + b"hello"
    data += b"\x00\x00\x00\x00mdat" + payload  # size 0: to the end
    boxes = list(iter_boxes(data))
    assert [(b.type, b.size, b.header_size) for b in boxes] == [
        ("free", 11, 8),
        ("wide", 21, 16),
        ("mdat", 28, 8),
    ]
    assert [b.payload(data) for b in boxes] == [b"abc", b"hello", payload]
    nested = box(b"moov", full_box(b"mvhd", 0, 0, b"\x00" * 4), b"\x00\x00\x00\x50trak")
    with pytest.raises(ValueError, match="'trak'"):
        find(nested, "moov/trak")
    with pytest.raises(ValueError, match="outside"):
        list(iter_boxes(data, 5, 1000))


def test_parse_fragments_rejects_inconsistent_fragments() -> None:
    good = chunk(sequence_number=1, track_id=1, samples=synthetic_samples(3, base=0, with_cto=False))
    moof, _mdat = list(iter_boxes(good))
    with pytest.raises(ValueError, match="not followed by an mdat"):
        parse_fragments(good[: moof.end])
    with pytest.raises(ValueError, match="smaller than its samples"):
        parse_fragments(good[: moof.end] + box(b"mdat", b"x"))
    trun = find(good, "moof/traf/trun")[0]
    huge = bytearray(good)
    huge[trun.payload_offset + 4 : trun.payload_offset + 8] = struct.pack(">I", 0xFFFFFFFF)
    with pytest.raises(ValueError, match="more than it holds"):
        parse_fragments(bytes(huge))


def test_parse_fragments_reads_tfhd_defaults_and_bounds_the_count() -> None:
    # another muxer's style: durations, sizes and flags only as tfhd defaults
    defaults = struct.pack(">IIII", 1, 1024, 4, SYNC_SAMPLE_FLAGS)  # track_ID, duration, size, flags
    tfhd = full_box(b"tfhd", 0, 0x020000 | 0x08 | 0x10 | 0x20, defaults)

    def fragment(count: int) -> bytes:
        trun = full_box(b"trun", 0, 0, struct.pack(">I", count))
        moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", 9)), box(b"traf", tfhd, trun))
        return moof + box(b"mdat", bytes(12))

    (frag,) = parse_fragments(fragment(3))
    assert (frag.sequence_number, frag.base_decode_time) == (9, 0)
    assert (frag.sample_durations, frag.sample_sizes) == ((1024,) * 3, (4,) * 3)
    with pytest.raises(ValueError, match="more than it holds"):
        parse_fragments(fragment(0xFFFFFFFF))


def test_reader_fuzz_only_raises_value_error() -> None:
    asc = aac.audio_specific_config(48_000, 2)
    init = audio_init(track_id=1, timescale=AUDIO_TS, sample_rate=48_000, channels=2, asc=asc, bitrate=96_000)
    segment = styp() + chunk(
        sequence_number=1,
        track_id=1,
        samples=synthetic_samples(6, base=BIG_TICKS, with_cto=True),
        prft=Prft(1_700_000_000.0, BIG_TICKS),
    )
    rng = random.Random(1234)
    cases: list[tuple[bytes, Callable[[bytes], object]]] = [(init, parse_init), (segment, parse_fragments)]
    for original, parser in cases:
        for _ in range(400):
            data = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                del data[rng.randrange(len(data)) :]
            try:
                parser(bytes(data))
            except ValueError:
                pass


# --------------------------------------------------------------------------- end to end through FFmpeg


@pytest.mark.media
@pytest.mark.parametrize(
    ("options", "reordered"),
    [({"tune": "zerolatency"}, False), ({"x264-params": "bframes=2:scenecut=0"}, True)],
)
def test_video_end_to_end_decodes(tmp_path: Path, options: dict[str, str], reordered: bool) -> None:
    packets = encode_video(320, 180, frames=60, base=BIG_TICKS, options=options)
    assert len(packets) == 60 and packets[0].is_keyframe
    sps, pps = avc.parameter_sets(bytes(packets[0]))
    samples = video_samples(packets)
    assert any(s.pts != s.dts for s in samples) == reordered
    init = video_init(track_id=1, timescale=VIDEO_TS, width=320, height=180, sps=sps, pps=pps, bitrate=300_000)
    prft = Prft(1_700_000_000.0, samples[0].pts)
    chunks = [
        chunk(sequence_number=1, track_id=1, samples=samples[:30], prft=prft),
        chunk(sequence_number=2, track_id=1, samples=samples[30:]),
    ]
    (tmp_path / "init.mp4").write_bytes(init)
    (tmp_path / "0.m4s").write_bytes(styp() + b"".join(chunks))
    frags = parse_fragments((tmp_path / "0.m4s").read_bytes())
    assert [f.base_decode_time for f in frags] == [samples[0].dts, samples[30].dts]
    joined = tmp_path / "joined.mp4"
    joined.write_bytes((tmp_path / "init.mp4").read_bytes() + (tmp_path / "0.m4s").read_bytes())

    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, VIDEO_TS)
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
        decoded = [(f.pts, float(f.to_ndarray(format="gray").mean())) for f in container.decode(stream)]
    assert [pts for pts, _ in decoded] == [BIG_TICKS + i * 3000 for i in range(60)]
    # frames come out in presentation order with the content encoded for that time
    for i, (_, mean) in enumerate(decoded):
        assert abs(mean - (i * 4) % 256) < 4, (i, mean)


@pytest.mark.media
def test_audio_end_to_end_decodes(tmp_path: Path) -> None:
    ctx = av.CodecContext.create("aac", "w")
    ctx.sample_rate = AUDIO_TS
    ctx.layout = "stereo"
    ctx.format = "fltp"
    ctx.bit_rate = 128_000
    ctx.time_base = Fraction(1, AUDIO_TS)
    ctx.open()
    packets: list[av.Packet] = []
    for n in range(94):  # ~2 s
        t = (np.arange(1024) + n * 1024) / AUDIO_TS
        pcm = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_TS
        frame.pts = BIG_TICKS + n * 1024
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    samples = [Sample(data=bytes(p), dts=p.dts, pts=p.pts, duration=p.duration or 1024, keyframe=True) for p in packets]
    assert ctx.extradata is not None
    init = audio_init(
        track_id=1,
        timescale=AUDIO_TS,
        sample_rate=AUDIO_TS,
        channels=2,
        asc=bytes(ctx.extradata),
        bitrate=128_000,
    )
    half = len(samples) // 2
    segment = styp() + b"".join(
        chunk(sequence_number=n + 1, track_id=1, samples=part, prft=Prft(1_700_000_000.0 + n, part[0].pts))
        for n, part in enumerate((samples[:half], samples[half:]))
    )
    (tmp_path / "init.mp4").write_bytes(init)
    (tmp_path / "0.m4s").write_bytes(segment)
    info = parse_init(init)
    assert (info.codec, info.sample_rate, info.channels) == ("mp4a.40.2", AUDIO_TS, 2)

    with av.open(io.BytesIO(init + segment)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == AUDIO_TS
        assert stream.codec_context.layout.nb_channels == 2
        decoded = [(f.pts, f.samples) for f in container.decode(stream)]
    assert [pts for pts, _ in decoded] == [s.pts for s in samples]
    assert all(n == 1024 for _, n in decoded)
