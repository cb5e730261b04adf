"""ISO-BMFF reading for tests and validation: box walking, init and fragment summaries.

The reader trusts nothing: every size is checked against the bytes that hold
it, so truncated or malformed input raises ``ValueError`` with the offending
box and offset in the message, and a walk always advances (no endless loops).
It reads what this package writes and the common variants other muxers use
(64-bit ``largesize``, size-0 "to the end", ``tfhd``/``trun`` defaults, ``uuid``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from packager.cmaf.aac import SAMPLE_RATES
from packager.cmaf.boxes import HEADER_SIZE, LARGE_HEADER_SIZE
from packager.cmaf.fragment import (
    TFHD_DEFAULT_SAMPLE_DURATION,
    TFHD_DEFAULT_SAMPLE_FLAGS,
    TFHD_DEFAULT_SAMPLE_SIZE,
    TFHD_SAMPLE_DESCRIPTION_INDEX,
    TRUN_DATA_OFFSET,
    TRUN_FIRST_SAMPLE_FLAGS,
    TRUN_SAMPLE_CTO,
    TRUN_SAMPLE_DURATION,
    TRUN_SAMPLE_FLAGS,
    TRUN_SAMPLE_SIZE,
    Prft,
    utc_from_ntp,
)

# boxes whose children start after fixed fields, not right after the header
_CHILD_OFFSETS = {
    "stsd": 8,  # version/flags + entry_count
    "dref": 8,
    "avc1": 78,  # VisualSampleEntry fields
    "avc3": 78,
    "encv": 78,
    "mp4a": 28,  # AudioSampleEntry (version 0) fields
    "enca": 28,
}


@dataclass(frozen=True)
class Box:
    """Where one box sits in a buffer."""

    type: str
    offset: int  # of the box header
    size: int  # header included
    header_size: int  # 8, 16 with a largesize, +16 for a uuid type

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size

    def payload(self, data: bytes) -> bytes:
        return data[self.payload_offset : self.end]


def iter_boxes(data: bytes, offset: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes laid end to end in ``data[offset:end]``."""
    limit = len(data) if end is None else end
    if not 0 <= offset <= limit <= len(data):
        raise ValueError(f"box range {offset}..{limit} is outside the {len(data)}-byte buffer")
    pos = offset
    while pos < limit:
        if limit - pos < HEADER_SIZE:
            raise ValueError(f"truncated box header at offset {pos}: {limit - pos} bytes left")
        size, raw_type = struct.unpack_from(">I4s", data, pos)
        kind = raw_type.decode("latin-1")
        header = HEADER_SIZE
        if size == 1:
            if limit - pos < LARGE_HEADER_SIZE:
                raise ValueError(f"truncated largesize header of {kind!r} at offset {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + HEADER_SIZE)
            header = LARGE_HEADER_SIZE
        elif size == 0:
            size = limit - pos
        if kind == "uuid":
            header += 16
        if size < header:
            raise ValueError(f"box {kind!r} at offset {pos} has size {size}, smaller than its header")
        if size > limit - pos:
            raise ValueError(f"box {kind!r} at offset {pos} claims {size} bytes but only {limit - pos} remain")
        yield Box(kind, pos, size, header)
        pos += size


def _children(data: bytes, parent: Box) -> Iterator[Box]:
    start = parent.payload_offset + _CHILD_OFFSETS.get(parent.type, 0)
    if start > parent.end:
        raise ValueError(f"box {parent.type!r} at offset {parent.offset} is too short for its fields")
    return iter_boxes(data, start, parent.end)


def find(data: bytes, path: str) -> list[Box]:
    """Every box at ``path`` ("moov/trak/mdia/mdhd"), searching all matches at each level."""
    names = [p for p in path.split("/") if p]
    if not names:
        raise ValueError("empty box path")
    found = [b for b in iter_boxes(data) if b.type == names[0]]
    for name in names[1:]:
        found = [child for parent in found for child in _children(data, parent) if child.type == name]
    return found


def find_one(data: bytes, path: str) -> Box:
    boxes = find(data, path)
    if len(boxes) != 1:
        raise ValueError(f"expected one {path!r} box, found {len(boxes)}")
    return boxes[0]


class _Fields:
    """Sequential big-endian reads from one box's payload, bounds-checked."""

    def __init__(self, data: bytes, b: Box) -> None:
        self._data = data
        self._box = b
        self._pos = b.payload_offset

    def read(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(">" + fmt)
        if self._pos + size > self._box.end:
            raise ValueError(f"box {self._box.type!r} at offset {self._box.offset} is truncated")
        values = struct.unpack_from(">" + fmt, self._data, self._pos)
        self._pos += size
        return values

    def one(self, fmt: str) -> int:
        return self.read(fmt)[0]

    def full_header(self) -> tuple[int, int]:
        word = self.one("I")
        return word >> 24, word & 0xFFFFFF

    def skip(self, n: int) -> None:
        if self._pos + n > self._box.end:
            raise ValueError(f"box {self._box.type!r} at offset {self._box.offset} is truncated")
        self._pos += n

    def rest(self) -> bytes:
        return self._data[self._pos : self._box.end]


@dataclass(frozen=True)
class FragmentInfo:
    """One movie fragment (one ``moof`` + its ``traf``) as read back."""

    sequence_number: int
    track_id: int
    base_decode_time: int
    sample_durations: tuple[int, ...]
    sample_sizes: tuple[int, ...]
    sample_flags: tuple[int, ...]
    composition_offsets: tuple[int, ...]
    prft: Prft | None = None
    tfhd_flags: int = 0  # tf_flags as written (ISO/IEC 14496-12 8.8.7.1)
    sample_description_index: int | None = None  # None: not in the tfhd (the trex default applies)

    @property
    def duration(self) -> int:
        return sum(self.sample_durations)


def _parse_prft(data: bytes, b: Box) -> Prft:
    f = _Fields(data, b)
    version, _flags = f.full_header()
    f.one("I")  # reference_track_ID
    ntp = f.one("Q")
    media_time = f.one("Q" if version == 1 else "I")
    return Prft(ntp_utc_s=utc_from_ntp(ntp), media_time=media_time)


def _parse_traf(data: bytes, traf: Box, sequence_number: int, prft: Prft | None) -> FragmentInfo:
    kids = list(_children(data, traf))
    tfhds = [b for b in kids if b.type == "tfhd"]
    if len(tfhds) != 1:
        raise ValueError(f"traf at offset {traf.offset} has {len(tfhds)} tfhd boxes")
    f = _Fields(data, tfhds[0])
    _version, flags = f.full_header()
    track_id = f.one("I")
    tfhd_flags = flags
    if flags & 0x01:
        f.one("Q")  # base_data_offset
    description = f.one("I") if flags & TFHD_SAMPLE_DESCRIPTION_INDEX else None
    default_duration = f.one("I") if flags & TFHD_DEFAULT_SAMPLE_DURATION else None
    default_size = f.one("I") if flags & TFHD_DEFAULT_SAMPLE_SIZE else None
    default_flags = f.one("I") if flags & TFHD_DEFAULT_SAMPLE_FLAGS else None

    base_decode_time = 0
    tfdts = [b for b in kids if b.type == "tfdt"]
    if tfdts:
        f = _Fields(data, tfdts[0])
        version, _ = f.full_header()
        base_decode_time = f.one("Q" if version == 1 else "I")

    durations: list[int] = []
    sizes: list[int] = []
    sample_flags: list[int] = []
    offsets: list[int] = []
    for trun in (b for b in kids if b.type == "trun"):
        f = _Fields(data, trun)
        version, flags = f.full_header()
        count = f.one("I")
        if flags & TRUN_DATA_OFFSET:
            f.one("i")
        first_flags = f.one("I") if flags & TRUN_FIRST_SAMPLE_FLAGS else None
        per_sample = "".join(
            code
            for bit, code in (
                (TRUN_SAMPLE_DURATION, "I"),
                (TRUN_SAMPLE_SIZE, "I"),
                (TRUN_SAMPLE_FLAGS, "I"),
                (TRUN_SAMPLE_CTO, "i" if version == 1 else "I"),
            )
            if flags & bit
        )
        # with every field defaulted a row is 0 bytes: bound the count by the buffer instead
        if count * struct.calcsize(">" + per_sample) > trun.end - trun.payload_offset or count > len(data):
            raise ValueError(f"trun at offset {trun.offset} claims {count} samples, more than it holds")
        for i in range(count):
            row = list(f.read(per_sample))
            d = row.pop(0) if flags & TRUN_SAMPLE_DURATION else default_duration
            s = row.pop(0) if flags & TRUN_SAMPLE_SIZE else default_size
            fl = row.pop(0) if flags & TRUN_SAMPLE_FLAGS else default_flags
            if i == 0 and first_flags is not None:
                fl = first_flags
            if d is None or s is None or fl is None:
                raise ValueError(f"trun at offset {trun.offset}: no sample duration/size/flags or default")
            durations.append(d)
            sizes.append(s)
            sample_flags.append(fl)
            offsets.append(row.pop(0) if flags & TRUN_SAMPLE_CTO else 0)
    return FragmentInfo(
        sequence_number=sequence_number,
        track_id=track_id,
        base_decode_time=base_decode_time,
        sample_durations=tuple(durations),
        sample_sizes=tuple(sizes),
        sample_flags=tuple(sample_flags),
        composition_offsets=tuple(offsets),
        prft=prft,
        tfhd_flags=tfhd_flags,
        sample_description_index=description,
    )


def parse_fragments(data: bytes) -> list[FragmentInfo]:
    """Every track fragment in ``data`` (a chunk, or a segment: styp + moof/mdat pairs).

    A ``prft`` applies to the ``moof`` that follows it. Each ``moof`` must be
    followed by an ``mdat`` big enough for the sample sizes it lists.
    """
    out: list[FragmentInfo] = []
    boxes = list(iter_boxes(data))
    pending_prft: Prft | None = None
    for i, b in enumerate(boxes):
        if b.type == "prft":
            pending_prft = _parse_prft(data, b)
        elif b.type == "moof":
            kids = list(_children(data, b))
            mfhds = [k for k in kids if k.type == "mfhd"]
            if len(mfhds) != 1:
                raise ValueError(f"moof at offset {b.offset} has {len(mfhds)} mfhd boxes")
            f = _Fields(data, mfhds[0])
            f.full_header()
            sequence_number = f.one("I")
            trafs = [_parse_traf(data, k, sequence_number, pending_prft) for k in kids if k.type == "traf"]
            if not trafs:
                raise ValueError(f"moof at offset {b.offset} has no traf")
            mdat = boxes[i + 1] if i + 1 < len(boxes) else None
            if mdat is None or mdat.type != "mdat":
                raise ValueError(f"moof at offset {b.offset} is not followed by an mdat")
            needed = sum(sum(t.sample_sizes) for t in trafs)
            if needed > mdat.size - mdat.header_size:
                raise ValueError(f"mdat at offset {mdat.offset} is smaller than its samples ({needed} bytes)")
            out += trafs
            pending_prft = None
    return out


@dataclass(frozen=True)
class InitInfo:
    """The single track an init segment describes."""

    handler: str  # "vide", "soun" or "text" (WebVTT)
    timescale: int
    track_id: int
    codec: str  # RFC 6381, from avcC or esds
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    es_id: int | None = None  # the esds ES_Descriptor's ES_ID (audio only)


def _avc_codec(data: bytes, entry: Box) -> str:
    record = _find_child(data, entry, "avcC").payload(data)
    if len(record) < 4 or record[0] != 1:
        raise ValueError("malformed avcC record")
    return f"{entry.type}.{record[1]:02x}{record[2]:02x}{record[3]:02x}"


def _find_child(data: bytes, parent: Box, kind: str) -> Box:
    matches = [b for b in _children(data, parent) if b.type == kind]
    if len(matches) != 1:
        raise ValueError(f"{parent.type!r} at offset {parent.offset} has {len(matches)} {kind!r} boxes")
    return matches[0]


def _read_descriptor(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, payload start, payload end) of the MPEG-4 descriptor at ``pos``."""
    if pos >= len(buf):
        raise ValueError("truncated esds descriptor")
    tag = buf[pos]
    pos += 1
    size = 0
    for _ in range(4):
        if pos >= len(buf):
            raise ValueError("truncated esds descriptor size")
        byte = buf[pos]
        pos += 1
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if pos + size > len(buf):
        raise ValueError(f"esds descriptor tag {tag} is truncated")
    return tag, pos, pos + size


def _descriptors(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, body, stop = _read_descriptor(buf[:end], pos)
        yield tag, body, stop
        pos = stop


def _esds_codec(data: bytes, entry: Box) -> tuple[str, bytes, int]:
    """(codec string, AudioSpecificConfig, ES_ID) from an mp4a entry's esds."""
    esds = _find_child(data, entry, "esds").payload(data)[4:]
    tag, body, end = _read_descriptor(esds, 0)
    if tag != 0x03 or end - body < 3:
        raise ValueError("esds does not start with an ES_Descriptor")
    es_id = int.from_bytes(esds[body : body + 2], "big")
    es_flags = esds[body + 2]
    pos = body + 3
    if es_flags & 0x80:
        pos += 2  # dependsOn_ES_ID
    if es_flags & 0x40:
        if pos >= end:
            raise ValueError("truncated ES_Descriptor URL")
        pos += 1 + esds[pos]
    if es_flags & 0x20:
        pos += 2  # OCR_ES_Id
    for dtag, dbody, dend in _descriptors(esds, pos, end):
        if dtag != 0x04:
            continue
        if dend - dbody < 13:
            raise ValueError("DecoderConfigDescriptor is truncated")
        oti = esds[dbody]
        asc = b""
        for stag, sbody, send in _descriptors(esds, dbody + 13, dend):
            if stag == 0x05:
                asc = esds[sbody:send]
        if oti != 0x40 or not asc:
            return f"mp4a.{oti:02x}", asc, es_id
        aot = asc[0] >> 3
        if aot == 31:
            if len(asc) < 2:
                raise ValueError("truncated AudioSpecificConfig")
            aot = 32 + (((asc[0] & 0x07) << 3) | (asc[1] >> 5))
        return f"mp4a.40.{aot}", asc, es_id
    raise ValueError("esds has no DecoderConfigDescriptor")


def parse_init(data: bytes) -> InitInfo:
    """Summarise a single-track init segment (``ftyp`` + ``moov``)."""
    if not find(data, "moov/mvex"):
        raise ValueError("init segment has no mvex: not fragmented")
    tkhd = find_one(data, "moov/trak/tkhd")
    f = _Fields(data, tkhd)
    version, _ = f.full_header()
    f.skip(16 if version == 1 else 8)  # creation_time, modification_time
    track_id = f.one("I")

    f = _Fields(data, find_one(data, "moov/trak/mdia/mdhd"))
    version, _ = f.full_header()
    f.skip(16 if version == 1 else 8)
    timescale = f.one("I")

    f = _Fields(data, find_one(data, "moov/trak/mdia/hdlr"))
    f.full_header()
    f.one("I")  # pre_defined
    handler = bytes(f.read("4B")).decode("latin-1")

    stsd = find_one(data, "moov/trak/mdia/minf/stbl/stsd")
    entries = list(_children(data, stsd))
    if len(entries) != 1:
        raise ValueError(f"stsd has {len(entries)} sample entries, expected 1")
    entry = entries[0]
    f = _Fields(data, entry)
    f.skip(8)  # reserved, data_reference_index
    if handler == "vide":
        if entry.type not in ("avc1", "avc3"):
            raise ValueError(f"unsupported video sample entry {entry.type!r}")
        f.skip(16)
        width, height = f.read("HH")
        return InitInfo(handler, timescale, track_id, _avc_codec(data, entry), width=width, height=height)
    if handler == "soun":
        if entry.type != "mp4a":
            raise ValueError(f"unsupported audio sample entry {entry.type!r}")
        f.skip(8)
        channels, _sample_size, _pre, _res, rate = f.read("HHHHI")
        codec, asc, es_id = _esds_codec(data, entry)
        sample_rate = rate >> 16 or _asc_sample_rate(asc)
        return InitInfo(handler, timescale, track_id, codec, sample_rate=sample_rate, channels=channels, es_id=es_id)
    if handler == "text" and entry.type == "wvtt":
        return InitInfo(handler, timescale, track_id, entry.type)
    raise ValueError(f"unsupported handler {handler!r}")


def _asc_sample_rate(asc: bytes) -> int:
    """The sample rate an AudioSpecificConfig with a table index names (0 if it has none)."""
    if len(asc) < 2 or asc[0] >> 3 == 31:
        return 0
    index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    return SAMPLE_RATES[index] if index < len(SAMPLE_RATES) else 0
