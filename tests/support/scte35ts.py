"""MPEG-TS with an SCTE-35 PID, made from an ffmpeg-muxed TS: what a broadcaster's playout sends.

ffmpeg cannot write SCTE-35 sections, so :func:`with_cues` rewrites a
transport stream it made: the PMT gains the ``CUEI`` registration descriptor
and a stream of type 0x86 (SCTE 35 section 8.1), and each cue's
``splice_info_section`` goes out on that PID ahead of the first video PES
whose PTS reaches the cue's insertion time.
"""

from __future__ import annotations

from threefive.crc import crc32  # CRC-32/MPEG-2, as PSI sections use

PACKET = 188
SCTE35_PID = 0x1F5
_CUEI = b"\x05\x04CUEI"


def _pid(pkt: bytes) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def _payload_at(pkt: bytes) -> int:
    afc = (pkt[3] >> 4) & 3
    return 5 + pkt[4] if afc == 3 else 4


def _pmt_pid(packets: list[bytes]) -> int:
    for pkt in packets:
        if _pid(pkt) == 0 and pkt[1] & 0x40:
            at = _payload_at(pkt)
            section = pkt[at + 1 + pkt[at] :]
            return ((section[10] & 0x1F) << 8) | section[11]
    raise ValueError("no PAT")


def _with_scte35_stream(pkt: bytes) -> bytes:
    """The PMT packet with the CUEI program descriptor and the SCTE-35 stream (one-packet PMTs only)."""
    at = _payload_at(pkt)
    start = at + 1 + pkt[at]
    length = ((pkt[start + 1] & 0x0F) << 8) | pkt[start + 2]
    section = bytearray(pkt[start : start + 3 + length - 4])  # without the CRC
    info_len = ((section[10] & 0x0F) << 8) | section[11]
    section[12 + info_len : 12 + info_len] = _CUEI
    info_len += len(_CUEI)
    section[10], section[11] = 0xF0 | (info_len >> 8), info_len & 0xFF
    section += bytes([0x86, 0xE0 | (SCTE35_PID >> 8), SCTE35_PID & 0xFF, 0xF0, 0x00])
    new_length = len(section) - 3 + 4
    section[1], section[2] = 0xB0 | (new_length >> 8), new_length & 0xFF
    section += crc32(bytes(section)).to_bytes(4, "big")
    out = pkt[:start] + bytes(section)
    return out + b"\xff" * (PACKET - len(out))


def _pes_pts_s(pkt: bytes) -> float | None:
    if not pkt[1] & 0x40:
        return None
    at = _payload_at(pkt)
    pes = pkt[at:]
    if pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80:
        return None
    p = pes[9:14]
    ticks = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
    return ticks / 90_000


def _section_packet(section: bytes, cc: int) -> bytes:
    if len(section) > PACKET - 5:
        raise ValueError("a cue longer than one TS packet")
    head = bytes([0x47, 0x40 | (SCTE35_PID >> 8), SCTE35_PID & 0xFF, 0x10 | (cc & 0x0F), 0x00])
    return head + section + b"\xff" * (PACKET - 5 - len(section))


def with_cues(ts: bytes, cues: list[tuple[float, bytes]], video_pid: int = 0x100) -> bytes:
    """``ts`` with each ``(insert_at_pts_s, splice_info_section)`` sent on the SCTE-35 PID."""
    packets = [ts[i : i + PACKET] for i in range(0, len(ts) - PACKET + 1, PACKET)]
    pmt = _pmt_pid(packets)
    pending = sorted(cues)
    out: list[bytes] = []
    cc = 0
    for pkt in packets:
        pid = _pid(pkt)
        if pid == pmt and pkt[1] & 0x40:
            pkt = _with_scte35_stream(pkt)
        elif pid == video_pid and pending:
            pts_s = _pes_pts_s(pkt)
            while pending and pts_s is not None and pts_s >= pending[0][0]:
                out.append(_section_packet(pending.pop(0)[1], cc))
                cc += 1
        out.append(pkt)
    return b"".join(out)
