"""What a pushed byte stream must be before it is packaged: a known container and a picture within limits.

A push (HTTP, RTMP, SRT) is untrusted bytes. FFmpeg's demuxers include ones
that open other files, URLs and sockets (concat lists, HLS playlists, SDP,
image sequences, MP4 data references), so a push is never handed to format
probing: :func:`sniff` recognises one of four live containers from its first
bytes and :func:`demuxer_options` pins that demuxer with options under which
it cannot open anything else. :class:`InputLimits` refuses a picture or frame
rate no encoder or slate should ever be sized from. Pure (no codecs), so the
settings can hold the limits without importing PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

TS_PACKET = 188
SNIFF_BYTES = 2 * TS_PACKET + 1  # enough to see three TS sync bytes; every other signature is shorter
PUSH_FORMATS = {"mpegts": "MPEG-TS", "flv": "FLV", "matroska": "Matroska/WebM", "mov": "fragmented MP4"}
SUPPORTED_TEXT = "MPEG-TS, FLV, Matroska/WebM or fragmented MP4"
_EBML = b"\x1a\x45\xdf\xa3"
_BMFF_BOXES = (b"ftyp", b"styp", b"moof")


class UnsupportedPush(ValueError):
    """The pushed bytes are not one of the accepted containers; the message is one line for the peer."""


def sniff(head: bytes) -> str:
    """The demuxer for a push starting with ``head`` (at least ``SNIFF_BYTES`` unless the push is shorter).

    Raises :class:`UnsupportedPush` with a one-line reason for anything else."""
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == _EBML:
        return "matroska"
    if head[4:8] in _BMFF_BOXES:
        return "mov"
    if len(head) >= SNIFF_BYTES and all(head[i] == 0x47 for i in range(0, SNIFF_BYTES, TS_PACKET)):
        return "mpegts"
    if not head:
        raise UnsupportedPush("empty push: no media received")
    if len(head) < SNIFF_BYTES and head[0] == 0x47:
        raise UnsupportedPush(f"push too short to be MPEG-TS ({len(head)} bytes)")
    if _looks_like_text(head):
        raise UnsupportedPush(
            f"push is text, not media (playlists, SDP, concat lists are refused); send {SUPPORTED_TEXT}"
        )
    raise UnsupportedPush(f"unrecognised push format; send {SUPPORTED_TEXT}")


def _looks_like_text(head: bytes) -> bool:
    sample = head[:SNIFF_BYTES]
    printable = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 13))
    return printable >= 0.95 * len(sample)


def demuxer_options(fmt: str) -> dict[str, str]:
    """Options that pin demuxer ``fmt`` and forbid it to open any other file, URL or socket."""
    if fmt not in PUSH_FORMATS:
        raise ValueError(f"{fmt!r} is not a push format ({', '.join(PUSH_FORMATS)})")
    options = {
        "format_whitelist": fmt,
        # the pushed bytes come in through our own reader; any nested open (a data reference,
        # a playlist entry) would need a protocol, and no protocol is named "none"
        "protocol_whitelist": "none",
    }
    if fmt == "mov":
        options |= {"enable_drefs": "0", "use_absolute_path": "0"}  # never follow external data references
    return options


@dataclass(frozen=True)
class InputLimits:
    """The largest input picture and frame rate a push may have."""

    max_width: int = 4096
    max_height: int = 4096
    max_pixels: int = 4096 * 2176  # about 8.9 Mpixel: DCI 4K, UHD and portrait UHD fit
    max_fps: Fraction = Fraction(120)

    def problem(self, width: int, height: int, fps: Fraction | None) -> str | None:
        """Which limit ``width`` x ``height`` at ``fps`` breaks (one line), or None when within them."""
        if width > self.max_width or height > self.max_height:
            return f"input picture {width}x{height} is over the limit of {self.max_width}x{self.max_height}"
        if width * height > self.max_pixels:
            return f"input picture {width}x{height} ({width * height} pixels) is over the limit of {self.max_pixels}"
        if fps is not None and fps > self.max_fps:
            return f"input frame rate {float(fps):.3g} fps is over the limit of {self.max_fps} fps"
        return None
