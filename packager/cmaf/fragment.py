"""CMAF chunks (``moof`` + ``mdat``), the segment-type box and producer reference times.

A chunk is one movie fragment of one track: ``mfhd`` numbers it, ``tfhd`` sets
default-base-is-moof (so data offsets count from the ``moof`` and a chunk
stands alone wherever it is stored) and names sample description 1, ``tfdt``
gives the 64-bit decode time of its first sample and one ``trun`` lists every
sample's duration, size and flags (plus signed composition offsets when
presentation and decode order differ). An optional ``prft`` before the ``moof`` ties a media time to UTC for
latency measurement (LL-DASH ``ProducerReferenceTime``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from packager.cmaf.boxes import HEADER_SIZE, LARGE_HEADER_SIZE, box, full_box, u32, u64
from packager.model import Sample

# sample_flags (ISO/IEC 14496-12 8.8.3.1): sample_depends_on=2 (no other sample), sync
SYNC_SAMPLE_FLAGS = 0x02000000
# sample_depends_on=1 (depends on others) | sample_is_non_sync_sample
NON_SYNC_SAMPLE_FLAGS = 0x01010000

TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
TFHD_DEFAULT_SAMPLE_DURATION = 0x000008
TFHD_DEFAULT_SAMPLE_SIZE = 0x000010
TFHD_DEFAULT_SAMPLE_FLAGS = 0x000020
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
# ISO/IEC 23000-19 7.7.3: the defaults a chunk needs are stored in its own tfhd/trun, never
# only in the init segment's trex. Duration, size and flags travel per sample in the trun;
# the sample description (the single stsd entry) is named in the tfhd. 7.5.16: the tfhd
# sets default-base-is-moof and never base-data-offset.
TFHD_FLAGS = TFHD_DEFAULT_BASE_IS_MOOF | TFHD_SAMPLE_DESCRIPTION_INDEX
SAMPLE_DESCRIPTION_INDEX = 1
TRUN_DATA_OFFSET = 0x000001
TRUN_FIRST_SAMPLE_FLAGS = 0x000004
TRUN_SAMPLE_DURATION = 0x000100
TRUN_SAMPLE_SIZE = 0x000200
TRUN_SAMPLE_FLAGS = 0x000400
TRUN_SAMPLE_CTO = 0x000800

# prft flags 24 (ISO/IEC 14496-12:2022 8.16.5.3): the UTC time has a consistent, small
# (ideally zero) offset from the real time of the experience depicted at media_time, i.e.
# the capture time. It is what DASH ProducerReferenceTime@type="captured" signals.
PRFT_FLAGS_CAPTURED = 24

NTP_UNIX_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
_NTP_ERA = 1 << 32
_U32_MAX = 0xFFFFFFFF
_S32_MIN, _S32_MAX = -(1 << 31), (1 << 31) - 1


def styp() -> bytes:
    """The segment type box that leads every segment.

    ``msdh``: a DASH media segment (ISO/IEC 23009-1 6.3.4.2); ``cmfs``: a CMAF
    segment (ISO/IEC 23000-19 7.3.1). ``msix`` is left out on purpose: it
    promises a ``sidx`` index that live segments do not carry.
    """
    return box(b"styp", b"msdh", u32(0), b"msdh", b"cmfs")


def ntp_timestamp(utc_s: float) -> int:
    """Unix UTC seconds as a 64-bit NTP timestamp (32.32 fixed point from 1900, era-wrapped)."""
    if utc_s < -NTP_UNIX_OFFSET_S:
        raise ValueError(f"{utc_s} is before the NTP epoch (1900)")
    # scaling a float by 2**32 is exact; only the final rounding loses (sub-nanosecond) precision
    return round((utc_s + NTP_UNIX_OFFSET_S) * _NTP_ERA) % (1 << 64)


def utc_from_ntp(ntp: int) -> float:
    """A 64-bit NTP timestamp as Unix UTC seconds.

    Seconds with the top bit clear are read as NTP era 1 (2036-02-07 onward),
    as RFC 4330 section 3 suggests, so 1968 to 2104 round-trips.
    """
    seconds, fraction = ntp >> 32, ntp & _U32_MAX
    if not seconds & 0x80000000:
        seconds += _NTP_ERA
    return seconds - NTP_UNIX_OFFSET_S + fraction / _NTP_ERA


@dataclass(frozen=True)
class Prft:
    """A producer reference time: UTC ``ntp_utc_s`` (Unix seconds) is when ``media_time`` was captured."""

    ntp_utc_s: float
    media_time: int  # track ticks, presentation time of the referenced sample


def prft_box(prft: Prft, track_id: int) -> bytes:
    """``prft`` version 1 (64-bit media_time), flags :data:`PRFT_FLAGS_CAPTURED`."""
    if prft.media_time < 0:
        raise ValueError(f"prft media_time must be non-negative, got {prft.media_time}")
    return full_box(
        b"prft",
        1,
        PRFT_FLAGS_CAPTURED,
        u32(track_id),
        u64(ntp_timestamp(prft.ntp_utc_s)),
        u64(prft.media_time),
    )


def sample_flags(keyframe: bool) -> int:
    return SYNC_SAMPLE_FLAGS if keyframe else NON_SYNC_SAMPLE_FLAGS


def _durations(samples: Sequence[Sample]) -> list[int]:
    """Per-sample durations: dts deltas, and the last sample's own duration.

    The deltas (not ``Sample.duration``) make the fragment's timeline reproduce
    every sample's decode time exactly, even around jitter or a small gap.
    """
    if samples[0].dts < 0:
        raise ValueError(f"decode times must be non-negative, got {samples[0].dts}")
    durations: list[int] = []
    for prev, cur in pairwise(samples):
        if cur.dts <= prev.dts:
            raise ValueError(f"decode times must increase: {prev.dts} then {cur.dts}")
        durations.append(cur.dts - prev.dts)
    durations.append(samples[-1].duration)
    for d in durations:
        if not 0 <= d <= _U32_MAX:
            raise ValueError(f"sample duration {d} does not fit trun's unsigned 32-bit field")
    return durations


def _trun(samples: Sequence[Sample], durations: list[int], data_offset: int) -> bytes:
    offsets = [s.pts - s.dts for s in samples]
    with_cto = any(offsets)
    flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS
    fields: list[int] = []
    if with_cto:
        flags |= TRUN_SAMPLE_CTO
        for s, d, cto in zip(samples, durations, offsets, strict=True):
            if not _S32_MIN <= cto <= _S32_MAX:
                raise ValueError(f"composition offset {cto} does not fit a signed 32-bit field")
            fields += (d, len(s.data), sample_flags(s.keyframe), cto)
        table = struct.pack(">" + "IIIi" * len(samples), *fields)
    else:
        for s, d in zip(samples, durations, strict=True):
            fields += (d, len(s.data), sample_flags(s.keyframe))
        table = struct.pack(">" + "III" * len(samples), *fields)
    # version 1: signed composition offsets (version 0 has none here, so either reads the same)
    return full_box(
        b"trun",
        1 if with_cto else 0,
        flags,
        u32(len(samples)),
        struct.pack(">i", data_offset),
        table,
    )


def chunk(
    *,
    sequence_number: int,
    track_id: int,
    samples: Sequence[Sample],
    prft: Prft | None = None,
    events: Sequence[bytes] = (),
) -> bytes:
    """One CMAF chunk: ``[prft] [emsg...] moof mdat`` holding ``samples`` (already in MP4 form) in order;
    ``events`` are whole ``emsg`` boxes (:mod:`packager.cmaf.emsg`)."""
    if not samples:
        raise ValueError("a chunk needs at least one sample")
    if track_id <= 0:
        raise ValueError("track_id must be positive")
    durations = _durations(samples)
    payload = b"".join(s.data for s in samples)
    mdat_header = HEADER_SIZE if HEADER_SIZE + len(payload) <= _U32_MAX else LARGE_HEADER_SIZE
    mfhd = full_box(b"mfhd", 0, 0, u32(sequence_number))
    tfhd = full_box(b"tfhd", 0, TFHD_FLAGS, u32(track_id), u32(SAMPLE_DESCRIPTION_INDEX))
    tfdt = full_box(b"tfdt", 1, 0, u64(samples[0].dts))

    def moof(data_offset: int) -> bytes:
        return box(b"moof", mfhd, box(b"traf", tfhd, tfdt, _trun(samples, durations, data_offset)))

    # the data offset does not change the moof's size: measure once, then write it for real
    data_offset = len(moof(0)) + mdat_header
    if data_offset > _S32_MAX:
        raise ValueError("too many samples in one chunk")
    head = prft_box(prft, track_id) if prft is not None else b""
    return head + b"".join(events) + moof(data_offset) + box(b"mdat", payload)
