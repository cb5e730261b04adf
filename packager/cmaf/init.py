"""CMAF headers (init segments): ``ftyp`` + ``moov`` for one fragmented video, audio or WebVTT text track.

The ``moov`` describes one track and holds no samples: its sample tables are
empty, every duration is 0 (unknown, the media is fragmented) and ``mvex``
announces movie fragments. There is no edit list: the track's presentation
times are used as they are, which is what lets live media time be UTC.

Brands: the major brand is ``iso6`` (ISO/IEC 14496-12 with ``tfdt``,
default-base-is-moof, ``trun`` version 1), listed again as compatible together
with ``cmfc`` (CMAF), ``iso5``, ``dash`` and ``mp41``. MSE in Chrome, Firefox
and Safari ignores ``ftyp`` brands beyond parsing the box; ``iso6``/``iso5``
majors are what Shaka Packager and FFmpeg's DASH/HLS muxers emit, and what
hls.js, dash.js and Safari's native HLS player are tested against.
"""

from __future__ import annotations

from packager.cmaf.avc import avcc
from packager.cmaf.boxes import box, fixed16_16, fourcc, full_box, s16, u8, u16, u24, u32

MAJOR_BRAND = b"iso6"
COMPATIBLE_BRANDS: tuple[bytes, ...] = (b"iso6", b"cmfc", b"iso5", b"dash", b"mp41")

_UNITY_MATRIX = b"".join(u32(v) for v in (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000))


def ftyp() -> bytes:
    return box(b"ftyp", MAJOR_BRAND, u32(0), *COMPATIBLE_BRANDS)


def _language(code: str) -> bytes:
    """ISO 639-2/T language as mdhd packs it: a pad bit and three 5-bit letters (offset 0x60)."""
    if len(code) != 3 or not code.isascii() or not code.islower():
        raise ValueError(f"language must be 3 lower-case ASCII letters, got {code!r}")
    packed = 0
    for ch in code:
        packed = (packed << 5) | (ord(ch) - 0x60)
    return u16(packed)


def _mvhd(timescale: int, next_track_id: int) -> bytes:
    return full_box(
        b"mvhd",
        0,
        0,
        u32(0),
        u32(0),  # creation_time, modification_time
        u32(timescale),
        u32(0),  # timescale, duration (unknown: fragmented)
        u32(0x00010000),
        u16(0x0100),
        bytes(10),  # rate 1.0, volume 1.0, reserved
        _UNITY_MATRIX,
        bytes(24),  # matrix, pre_defined
        u32(next_track_id),
    )


def _tkhd(track_id: int, *, volume: int, width: int, height: int) -> bytes:
    return full_box(
        b"tkhd",
        0,
        0x000003,  # track_enabled | track_in_movie
        u32(0),
        u32(0),
        u32(track_id),
        u32(0),
        u32(0),  # times, track_ID, reserved, duration
        bytes(8),
        s16(0),
        s16(0),
        u16(volume),
        u16(0),  # reserved, layer, alternate_group
        _UNITY_MATRIX,
        fixed16_16(width),
        fixed16_16(height),
    )


def _mdhd(timescale: int, language: str) -> bytes:
    return full_box(b"mdhd", 0, 0, u32(0), u32(0), u32(timescale), u32(0), _language(language), u16(0))


def _hdlr(handler: bytes, name: str) -> bytes:
    return full_box(b"hdlr", 0, 0, u32(0), fourcc(handler), bytes(12), name.encode() + b"\x00")


def _dinf() -> bytes:
    url = full_box(b"url ", 0, 0x000001)  # media data is in the same file
    return box(b"dinf", full_box(b"dref", 0, 0, u32(1), url))


def _stbl(sample_entry: bytes) -> bytes:
    return box(
        b"stbl",
        full_box(b"stsd", 0, 0, u32(1), sample_entry),
        full_box(b"stts", 0, 0, u32(0)),
        full_box(b"stsc", 0, 0, u32(0)),
        full_box(b"stsz", 0, 0, u32(0), u32(0)),
        full_box(b"stco", 0, 0, u32(0)),
    )


def _btrt(bitrate: int) -> bytes:
    # bufferSizeDB is unknown for a live encoder: 0; max is the configured target too
    return box(b"btrt", u32(0), u32(bitrate), u32(bitrate))


def _trex(track_id: int) -> bytes:
    # no defaults: every trun carries duration, size and flags per sample
    return full_box(b"trex", 0, 0, u32(track_id), u32(1), u32(0), u32(0), u32(0))


def _init(
    *,
    track_id: int,
    timescale: int,
    tkhd: bytes,
    handler: bytes,
    handler_name: str,
    media_header: bytes,
    sample_entry: bytes,
    language: str,
) -> bytes:
    if track_id <= 0:
        raise ValueError("track_id must be positive")
    if timescale <= 0:
        raise ValueError("timescale must be positive")
    minf = box(b"minf", media_header, _dinf(), _stbl(sample_entry))
    mdia = box(b"mdia", _mdhd(timescale, language), _hdlr(handler, handler_name), minf)
    trak = box(b"trak", tkhd, mdia)
    mvex = box(b"mvex", _trex(track_id))
    return ftyp() + box(b"moov", _mvhd(timescale, track_id + 1), trak, mvex)


def video_init(
    *,
    track_id: int,
    timescale: int,
    width: int,
    height: int,
    sps: list[bytes],
    pps: list[bytes],
    bitrate: int = 0,
    language: str = "und",
) -> bytes:
    """The init segment of an H.264 track (``avc1``: parameter sets only in ``avcC``).

    ``width``/``height`` are the displayed size written to ``tkhd`` and the sample
    entry. ``btrt`` is written when ``bitrate`` (bits per second) is known.
    """
    if not (0 < width < 0x10000 and 0 < height < 0x10000):
        raise ValueError(f"invalid video size {width}x{height}")
    entry = box(
        b"avc1",
        bytes(6),
        u16(1),  # reserved, data_reference_index
        u16(0),
        u16(0),
        bytes(12),  # pre_defined, reserved, pre_defined
        u16(width),
        u16(height),
        u32(0x00480000),
        u32(0x00480000),  # 72 dpi
        u32(0),
        u16(1),  # reserved, frame_count
        bytes(32),  # compressorname: an empty Pascal string
        u16(0x0018),
        s16(-1),  # depth: colour, no alpha; pre_defined
        box(b"avcC", avcc(sps, pps)),
        _btrt(bitrate) if bitrate > 0 else b"",
    )
    return _init(
        track_id=track_id,
        timescale=timescale,
        tkhd=_tkhd(track_id, volume=0, width=width, height=height),
        handler=b"vide",
        handler_name="VideoHandler",
        media_header=full_box(b"vmhd", 0, 0x000001, u16(0), u16(0), u16(0), u16(0)),
        sample_entry=entry,
        language=language,
    )


def _descriptor(tag: int, *payload: bytes) -> bytes:
    """An MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3) with a 4-byte expandable size, as FFmpeg writes."""
    body = b"".join(payload)
    size = len(body)
    if size >= 1 << 28:
        raise ValueError("descriptor too large")
    encoded = bytes(((size >> shift) & 0x7F) | (0x80 if shift else 0) for shift in (21, 14, 7, 0))
    return u8(tag) + encoded + body


# ES_Descriptor ES_ID (ISO/IEC 23000-19 10.3.4.2.3: "ES_ID = 0"): the track is found by its
# track_ID, the ES_ID of the MPEG-4 systems layer is not used in CMAF
CMAF_ES_ID = 0


def esds(asc: bytes, *, bitrate: int = 0) -> bytes:
    """The ``esds`` box of an MPEG-4 Audio track carrying ``asc`` (an AudioSpecificConfig)."""
    if not asc:
        raise ValueError("empty AudioSpecificConfig")
    decoder_config = _descriptor(
        0x04,  # DecoderConfigDescriptor
        u8(0x40),  # objectTypeIndication: MPEG-4 Audio (ISO/IEC 14496-3)
        u8((0x05 << 2) | 0x01),  # streamType AudioStream, upStream 0, reserved 1
        u24(0),
        u32(bitrate),
        u32(bitrate),  # bufferSizeDB, maxBitrate, avgBitrate
        _descriptor(0x05, asc),  # DecoderSpecificInfo
    )
    es = _descriptor(
        0x03,  # ES_Descriptor
        u16(CMAF_ES_ID),
        u8(0),  # no dependsOn / URL / OCR stream, priority 0
        decoder_config,
        _descriptor(0x06, u8(0x02)),  # SLConfigDescriptor, predefined 2 (MP4 files)
    )
    return full_box(b"esds", 0, 0, es)


def audio_init(
    *,
    track_id: int,
    timescale: int,
    sample_rate: int,
    channels: int,
    asc: bytes,
    bitrate: int = 0,
    language: str = "und",
) -> bytes:
    """The init segment of an AAC track (``mp4a`` + ``esds``; ``btrt`` when ``bitrate`` is known)."""
    if sample_rate <= 0 or not 0 < channels < 0x10000:
        raise ValueError(f"invalid audio format {sample_rate} Hz, {channels} channels")
    # the 16.16 samplerate field cannot hold rates above 65535 Hz: 0 then, the esds has it
    rate_field = fixed16_16(sample_rate) if sample_rate < 0x10000 else u32(0)
    entry = box(
        b"mp4a",
        bytes(6),
        u16(1),  # reserved, data_reference_index
        bytes(8),  # reserved (version 0 AudioSampleEntry)
        u16(channels),
        u16(16),
        u16(0),
        u16(0),  # channelcount, samplesize, pre_defined, reserved
        rate_field,
        esds(asc, bitrate=bitrate),
        _btrt(bitrate) if bitrate > 0 else b"",
    )
    return _init(
        track_id=track_id,
        timescale=timescale,
        tkhd=_tkhd(track_id, volume=0x0100, width=0, height=0),
        handler=b"soun",
        handler_name="SoundHandler",
        media_header=full_box(b"smhd", 0, 0, s16(0), u16(0)),
        sample_entry=entry,
        language=language,
    )


WEBVTT_CONFIG = b"WEBVTT"  # the header every sample's cues are read under (no styles, no regions)


def text_init(*, track_id: int, timescale: int, language: str = "und") -> bytes:
    """The init segment of a WebVTT track (ISO/IEC 14496-30 7.5): ``text`` handler, null media header,
    ``wvtt`` sample entry with its ``vttC`` configuration (the file header)."""
    entry = box(b"wvtt", bytes(6), u16(1), box(b"vttC", WEBVTT_CONFIG))  # reserved, data_reference_index
    return _init(
        track_id=track_id,
        timescale=timescale,
        tkhd=_tkhd(track_id, volume=0, width=0, height=0),
        handler=b"text",
        handler_name="TextHandler",
        media_header=full_box(b"nmhd", 0, 0),
        sample_entry=entry,
        language=language,
    )
