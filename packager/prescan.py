"""The picture size a pushed stream declares, read from its first bytes before any decoder runs.

FFmpeg's probe of an MPEG-TS or FLV stream learns the picture size by
decoding its first pictures, and a decoder allocates frames of whatever size
the stream declares: an 8K push cost about 200 MiB before it could be refused.
Both containers carry the H.264 sequence parameter set near their start (TS:
in the first video PES, Annex B; FLV: in the AVC sequence header, ``avcC``),
so :func:`declared_size` finds it in the buffered bytes and our own SPS parser
reads the size. Pure: bytes in, a size or None out. Anything else (HEVC, no
SPS yet, other containers, whose headers already declare their streams) is
None, and the probe decides as before.
"""

from __future__ import annotations

from packager.cmaf.avc import NAL_SPS, nal_type, parse_sps, split_annexb

TS_PACKET = 188
_PES_VIDEO = range(0xE0, 0xF0)  # PES stream_id of video streams (ISO/IEC 13818-1 Table 2-22)
_FLV_VIDEO, _FLV_AVC, _AVC_SEQUENCE_HEADER = 9, 7, 0


def declared_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """The (width, height) of the first H.264 SPS in the start ``data`` of a ``fmt`` push, or None."""
    if fmt == "mpegts":
        sps = next(_ts_sps(data), None)
    elif fmt == "flv":
        sps = _flv_sps(data)
    else:
        return None
    if sps is None:
        return None
    try:
        info = parse_sps(sps)
    except (ValueError, IndexError):
        return None
    return info.width, info.height


def _ts_video_payloads(data: bytes) -> dict[int, bytearray]:
    """Each PID's payload bytes in order, for PIDs whose payload opens with a video PES."""
    payloads: dict[int, bytearray] = {}
    for pos in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        packet = data[pos : pos + TS_PACKET]
        if packet[0] != 0x47:
            break  # lost sync: the probe will cope, we only read clean starts
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        control = (packet[3] >> 4) & 0x3
        start = 4 + (1 + packet[4] if control & 0x2 else 0)
        if not control & 0x1 or start >= TS_PACKET:
            continue
        payload = packet[start:]
        if pid not in payloads:
            if not (packet[1] & 0x40 and payload[:3] == b"\x00\x00\x01" and len(payload) > 3):
                continue  # a PID is read from its first PES start on
            if payload[3] not in _PES_VIDEO:
                continue
            payloads[pid] = bytearray()
        payloads[pid] += payload
    return payloads


def _ts_sps(data: bytes):  # type: ignore[no-untyped-def]
    """SPS NAL units that are followed by another start code (so certainly whole)."""
    for payload in _ts_video_payloads(data).values():
        nals = split_annexb(bytes(payload))
        for nal in nals[:-1]:  # the last one may be cut off by the end of what is buffered
            if nal_type(nal) == NAL_SPS:
                yield nal


def _flv_sps(data: bytes) -> bytes | None:
    """The SPS of the first AVC sequence header tag (FLV 10.1 E.4.3.1, ISO/IEC 14496-15 5.3.3.1)."""
    if data[:3] != b"FLV" or len(data) < 9:
        return None
    pos = int.from_bytes(data[5:9], "big") + 4  # header, then PreviousTagSize0
    while pos + 11 <= len(data):
        kind, size = data[pos] & 0x1F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        body = data[pos + 11 : pos + 11 + size]
        if len(body) < size:
            return None
        if kind == _FLV_VIDEO and len(body) > 13 and body[0] & 0x0F == _FLV_AVC and body[1] == _AVC_SEQUENCE_HEADER:
            avcc = body[5:]
            length = int.from_bytes(avcc[6:8], "big")
            sps = avcc[8 : 8 + length]
            return sps if avcc[5] & 0x1F and len(sps) == length and sps else None
        pos += 11 + size + 4
    return None
