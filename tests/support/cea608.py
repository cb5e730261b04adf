"""A captioned test clip made in code: CEA-608 pop-on captions in A/53 SEI, as a broadcaster's encoder sends.

:func:`caption_pairs` encodes pop-on captions for channel CC1 (field 1) as the
byte pair each frame carries (CEA-608 control codes sent twice, as encoders
do; null pairs between); :func:`make_captioned_clip` encodes a test picture
with libx264 into MPEG-TS and puts each frame's pair into an A/53 SEI before
its slice, so FFmpeg's decoder exposes it as ``A53_CC`` side data.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from packager.cmaf.avc import split_annexb
from packager.cmaf.captions import sei_nal

RCL = (0x14, 0x20)  # resume caption loading (pop-on)
ENM = (0x14, 0x2E)  # erase non-displayed memory
EOC = (0x14, 0x2F)  # end of caption: show what was loaded
EDM = (0x14, 0x2C)  # erase displayed memory
PAC_ROW15 = (0x14, 0x70)  # preamble: row 15, white, indent 0
NULL = (0x00, 0x00)


def _odd(byte: int) -> int:
    return byte | 0x80 if bin(byte).count("1") % 2 == 0 else byte


def _pair(a: int, b: int) -> bytes:
    return bytes([0xFC, _odd(a), _odd(b)])  # marker bits, cc_valid, cc_type 0 (608 field 1)


def _text_pairs(text: str) -> list[tuple[int, int]]:
    codes = [ord(c) for c in text]
    if len(codes) % 2:
        codes.append(0)
    return list(zip(codes[::2], codes[1::2], strict=True))


def caption_pairs(captions: list[tuple[float, str]], fps: int, seconds: float) -> list[bytes]:
    """One cc_data triplet per frame: each caption (start second, text) loaded, then shown at its start."""
    frames = [_pair(*NULL)] * int(seconds * fps)
    for start_s, text in captions:
        codes = [RCL, RCL, ENM, ENM, PAC_ROW15, PAC_ROW15, *_text_pairs(text)]
        show = int(start_s * fps)
        first = show - len(codes)
        if first < 0:
            raise ValueError(f"caption at {start_s} s starts too early to be loaded")
        for i, pair in enumerate(codes):
            frames[first + i] = _pair(*pair)
        frames[show] = _pair(*EOC)
        frames[show + 1] = _pair(*EOC)
    return frames


def make_captioned_clip(path: Path, captions: list[tuple[float, str]], *, seconds: float, fps: int = 30) -> Path:
    """An MPEG-TS clip (320x180 video, a tone) whose every frame carries a CC1 byte pair in an A/53 SEI."""
    pairs = caption_pairs(captions, fps, seconds)
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        video.options = {"preset": "ultrafast", "bframes": "0", "a53cc": "0"}
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        tone = _Tone(out, audio)
        waiting = list(pairs)  # no B-frames: packets come out in picture order, some pictures later
        for i in range(len(pairs)):
            picture = np.full((180, 320, 3), (i * 4) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(_with_caption(packet, waiting.pop(0)))
            tone.until((i + 1) / fps)  # interleaved, as a live feed is
        for packet in video.encode(None):
            out.mux(_with_caption(packet, waiting.pop(0)))
        tone.finish()
    return path


def _with_caption(packet: av.Packet, pair: bytes) -> av.Packet:
    nals = split_annexb(bytes(packet))
    sei = sei_nal(pair)
    at = next(i for i, n in enumerate(nals) if n[0] & 0x1F in (1, 5))
    data = b"".join(b"\x00\x00\x00\x01" + n for n in [*nals[:at], sei, *nals[at:]])
    new = av.Packet(data)
    new.pts, new.dts, new.time_base, new.stream = packet.pts, packet.dts, packet.time_base, packet.stream
    new.is_keyframe = packet.is_keyframe
    return new


class _Tone:
    """A 440 Hz stereo tone, encoded up to a given time at each call."""

    RATE = 48_000

    def __init__(self, out: av.container.OutputContainer, stream: av.AudioStream) -> None:
        self.out, self.stream, self.next = out, stream, 0

    def until(self, seconds: float) -> None:
        while self.next + 1024 <= seconds * self.RATE:
            t = (self.next + np.arange(1024)) / self.RATE
            wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = self.RATE, self.next
            self.next += 1024
            for packet in self.stream.encode(frame):
                self.out.mux(packet)

    def finish(self) -> None:
        for packet in self.stream.encode(None):
            self.out.mux(packet)
