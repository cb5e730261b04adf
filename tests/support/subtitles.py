"""A clip with two SubRip subtitle tracks (English, German), made by the ffmpeg CLI from SRT text written here."""

from __future__ import annotations

import subprocess
from pathlib import Path

Cues = tuple[tuple[float, float, str], ...]  # (start s, end s, text), on the clip's own timeline

EN_CUES = ((1.0, 2.5, "Hello <i>there</i>\nsecond line"), (4.2, 5.0, "Bye --> now"))
DE_CUES = ((1.5, 3.0, "Hallo"), (6.0, 7.5, "Tschüss & servus"))


def _srt_time(s: float) -> str:
    ms = round(s * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_srt(path: Path, cues: Cues) -> Path:
    blocks = [f"{i}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def two_subtitle_clip(out: Path, seconds: int = 8, en_cues: Cues = EN_CUES, de_cues: Cues = DE_CUES) -> Path:
    """An MKV: 320x180 25 fps H.264, an AAC tone, SubRip English ("eng", titled) and German ("deu")."""
    en = write_srt(out.with_name("en.srt"), en_cues)
    de = write_srt(out.with_name("de.srt"), de_cues)
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-i", str(en), "-i", str(de)]
    cmd += ["-map", "0", "-map", "1", "-map", "2", "-map", "3", "-c:v", "libx264", "-preset", "ultrafast"]
    cmd += ["-g", "50", "-c:a", "aac", "-c:s", "srt", "-metadata:s:s:0", "language=eng"]
    cmd += ["-metadata:s:s:0", "title=English", "-metadata:s:s:1", "language=deu", "-t", str(seconds), str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return out
