"""``testsrc``: a synthetic live source drawn with numpy, for demos and latency checks.

Each frame shows moving colour bars and a bouncing box (so encoders do real
work), a big frame counter and the UTC capture time as digits, and a
machine-readable timecode band across the top: 40 equal blocks, 0 and 39
white, 1 and 38 black, 2..33 the capture time in ms since the epoch mod 2^32
(MSB first, white = 1), 34..37 a checksum (sum of the eight nibbles mod 16).
Band height is H/12, so it survives scaling to 320x180 and compression;
players decode it to show glass-to-glass latency. Audio is a 440 Hz tone with
a 1 kHz beep for the first 50 ms of every UTC second (A/V sync check).
Frames sit on a grid anchored to the Unix epoch: frame n is captured at n/fps.
"""

from __future__ import annotations

import re
import threading
import time
from fractions import Fraction

import av
import numpy as np

from packager.sources.base import AudioStreamInfo, FrameSink, SourceError, SourceInfo
from packager.timebase import AUDIO_TIMESCALE, VIDEO_TIMESCALE

WHITE, BLACK = 235, 16
BLOCKS = 40
AUDIO_CHUNK = 1024

_SPEC = re.compile(r"^testsrc(?::(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?(?:/\d+)?))?$")

_FONT = {
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
    ":": ["00000", "01100", "01100", "00000", "01100", "01100", "00000"],
    ".": ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
    " ": ["00000"] * 7,
}


def parse_testsrc(spec: str) -> tuple[int, int, Fraction]:
    m = _SPEC.match(spec.strip())
    if not m:
        raise SourceError(f"testsrc: {spec!r} is not testsrc[:WIDTHxHEIGHT][@FPS] (e.g. testsrc:640x360@30)")
    width = int(m.group(1) or 1280)
    height = int(m.group(2) or 720)
    fps = Fraction(m.group(3) or 30)
    if not (64 <= width <= 3840 and 64 <= height <= 2160):
        raise SourceError(f"testsrc: size {width}x{height} is outside 64x64..3840x2160")
    if width % 2 or height % 2:
        raise SourceError(f"testsrc: size {width}x{height} must be even")
    if not (1 <= fps <= 120):
        raise SourceError(f"testsrc: frame rate {float(fps)} is outside 1..120")
    return width, height, fps


def timecode_bits(ms: int) -> list[int]:
    """The 40 block values (1 white, 0 black) for a capture time in ms."""
    value = ms % (1 << 32)
    data = [(value >> (31 - i)) & 1 for i in range(32)]
    checksum = sum((value >> (4 * i)) & 0xF for i in range(8)) % 16
    check = [(checksum >> (3 - i)) & 1 for i in range(4)]
    return [1, 0, *data, *check, 0, 1]


def decode_timecode(luma_row: np.ndarray) -> int | None:
    """Inverse of :func:`timecode_bits` on one row of luma across the band (for tests)."""
    width = luma_row.shape[0]
    bits = []
    for i in range(BLOCKS):
        x0, x1 = i * width // BLOCKS, (i + 1) * width // BLOCKS
        q = (x1 - x0) // 4
        bits.append(1 if float(luma_row[x0 + q : x1 - q].mean()) >= 128 else 0)
    if bits[:2] != [1, 0] or bits[38:] != [0, 1]:
        return None
    value = 0
    for b in bits[2:34]:
        value = value << 1 | b
    check = 0
    for b in bits[34:38]:
        check = check << 1 | b
    if sum((value >> (4 * i)) & 0xF for i in range(8)) % 16 != check:
        return None
    return value


class Painter:
    """Draws testsrc frames as yuv420p numpy planes."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.band = max(2, round(height / 12))
        self.band += self.band % 2
        x = np.arange(width * 2)
        bars = np.array([180, 170, 145, 130, 100, 80, 50, 120], dtype=np.uint8)
        self.y_bars = bars[(x * 8 // width) % 8]
        u_bars = np.array([128, 166, 54, 72, 184, 202, 90, 128], dtype=np.uint8)
        v_bars = np.array([128, 16, 146, 34, 222, 110, 240, 128], dtype=np.uint8)
        xc = np.arange(width)  # chroma row spans width/2 but indexes a 2x-wide pattern
        self.u_bars = u_bars[(xc * 16 // width) % 8]
        self.v_bars = v_bars[(xc * 16 // width) % 8]
        self.scale = max(1, height // 90)
        self._glyphs = {
            ch: np.kron(
                np.array([[c == "1" for c in row] for row in rows], dtype=bool),
                np.ones((self.scale, self.scale), dtype=bool),
            )
            for ch, rows in _FONT.items()
        }
        self.buf = np.empty((height * 3 // 2, width), dtype=np.uint8)
        # A scrolling noise texture across the lower middle: detail an encoder must spend bits on,
        # so segment sizes are close to real content at the configured bitrates.
        rng = np.random.default_rng(2024)
        self.noise_h = max(2, height // 4) // 2 * 2
        self.noise = rng.integers(40, 216, size=(self.noise_h, width * 2), dtype=np.uint8)

    def _text(self, y_plane: np.ndarray, uv: np.ndarray, text: str, x: int, y: int) -> None:
        gw, gh = 6 * self.scale, 7 * self.scale
        pad = self.scale
        x0, y0 = max(0, x - pad) // 2 * 2, max(0, y - pad) // 2 * 2
        x1 = min(self.w, x + gw * len(text) + pad)
        y1 = min(self.h, y + gh + pad)
        y_plane[y0:y1, x0:x1] = 24
        half = self.h // 2
        uv[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128
        uv[half + y0 // 2 : half + y1 // 2, x0 // 2 : x1 // 2] = 128
        for i, ch in enumerate(text):
            glyph = self._glyphs.get(ch, self._glyphs[" "])
            gx = x + i * gw
            region = y_plane[y : y + glyph.shape[0], gx : gx + glyph.shape[1]]
            if region.shape == glyph.shape:
                region[glyph] = WHITE

    def draw(self, n: int, t_ms: int) -> np.ndarray:
        w, h, band = self.w, self.h, self.band
        y = self.buf[:h]
        uv = self.buf[h:].reshape(h, w // 2)  # u rows then v rows, each h/2 x w/2
        shift = (n * 4) % w
        y[:] = self.y_bars[shift : shift + w]
        cs = (shift // 2) % (w // 2)
        u_row = np.roll(self.u_bars[: w // 2], -cs)
        v_row = np.roll(self.v_bars[: w // 2], -cs)
        uv[: h // 2] = u_row
        uv[h // 2 :] = v_row
        top = h // 2 - self.noise_h // 2
        nshift = (n * 6) % w
        y[top : top + self.noise_h] = self.noise[:, nshift : nshift + w]
        # a bouncing box with a gradient: motion in both axes
        size = h // 5
        period_x, period_y = max(1, w - size), max(1, h - band - size)
        bx = abs((n * 7) % (2 * period_x) - period_x)
        by = band + abs((n * 5) % (2 * period_y) - period_y)
        y[by : by + size, bx : bx + size] = (np.arange(size, dtype=np.uint16)[None, :] * 200 // size + 30).astype(
            np.uint8
        )
        uv[by // 2 : (by + size) // 2, bx // 2 : (bx + size) // 2] = 200
        uv[h // 2 + by // 2 : h // 2 + (by + size) // 2, bx // 2 : (bx + size) // 2] = 60
        # timecode band
        bits = timecode_bits(t_ms)
        for i, b in enumerate(bits):
            y[:band, i * w // BLOCKS : (i + 1) * w // BLOCKS] = WHITE if b else BLACK
        uv[: band // 2] = 128
        uv[h // 2 : h // 2 + band // 2] = 128
        # digits: frame counter and UTC wall clock of capture
        t = time.gmtime(t_ms // 1000)
        clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{t_ms % 1000:03d}"
        margin = 2 * self.scale
        self._text(y, uv, f"{n % 10_000_000:07d}", margin, band + margin * 2)
        self._text(y, uv, clock, margin, h - 7 * self.scale - margin * 2)
        return self.buf


def tone(start_sample: int, count: int) -> np.ndarray:
    """Stereo float32 (2, count): 440 Hz at -20 dBFS, 1 kHz beep at -6 dBFS for 50 ms each second."""
    s = np.arange(start_sample, start_sample + count, dtype=np.int64) % AUDIO_TIMESCALE
    phase = s.astype(np.float64) / AUDIO_TIMESCALE
    signal = 0.1 * np.sin(2 * np.pi * 440 * phase)
    beep = s < AUDIO_TIMESCALE // 20
    signal[beep] = 0.5 * np.sin(2 * np.pi * 1000 * phase[beep])
    mono = signal.astype(np.float32)
    return np.vstack([mono, mono])


class TestSource:
    """Synthetic live source; frame n is captured at UTC n/fps (paced to the wall clock)."""

    __test__ = False  # not a pytest class

    def __init__(
        self, width: int = 1280, height: int = 720, fps: Fraction = Fraction(30), *, paced: bool = True
    ) -> None:
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.paced = paced
        self.info = SourceInfo(
            f"testsrc {width}x{height}@{float(fps):g}",
            True,
            True,
            width,
            height,
            self.fps,
            live=True,
            audio_streams=(AudioStreamInfo(0, channels=2),),
        )
        self.with_audio = True

    def select_audio(self, streams: tuple[int, ...]) -> None:
        """The one tone is stream 0: selecting no stream turns it off."""
        self.with_audio = 0 in streams

    def probe(self) -> SourceInfo:
        return self.info

    def run(self, sink: FrameSink, stop: threading.Event, duration_s: float | None = None) -> str:
        painter = Painter(self.width, self.height)
        fps = self.fps
        frame_ticks = VIDEO_TIMESCALE / fps
        if frame_ticks.denominator != 1:
            raise SourceError(f"testsrc: {float(fps)} fps is not a whole number of 90 kHz ticks")
        ft = int(frame_ticks)
        n = int(-(-Fraction(time.time()) * fps // 1))  # first frame slot not in the past
        first = n
        audio_sample = int(Fraction(n) / fps * AUDIO_TIMESCALE)
        audio_sample -= audio_sample % AUDIO_CHUNK
        end_frame = None if duration_s is None else first + int(Fraction(duration_s) * fps)
        while not stop.is_set():
            if end_frame is not None and n >= end_frame:
                return "duration reached"
            t_s = Fraction(n) / fps
            if self.paced:
                delay = float(t_s) - time.time()
                if delay > 0 and stop.wait(delay):
                    break
            t_ms = int(t_s * 1000)
            planes = painter.draw(n, t_ms)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            capture = float(t_s)
            # audio up to the end of this video frame
            frame_end_sample = int((t_s + 1 / fps) * AUDIO_TIMESCALE)
            while self.with_audio and audio_sample + AUDIO_CHUNK <= frame_end_sample:
                pcm = tone(audio_sample, AUDIO_CHUNK)
                af = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="stereo")
                af.sample_rate = AUDIO_TIMESCALE
                sink.audio(af, audio_sample, audio_sample / AUDIO_TIMESCALE, 0)
                audio_sample += AUDIO_CHUNK
            sink.video(frame, n * ft, capture)
            n += 1
        return "stopped"
