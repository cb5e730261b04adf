"""A clip with two audio languages, each a different tone, made by the ffmpeg CLI (lavfi sources)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TONES = {"eng": 440, "deu": 880}  # input language tag -> sine frequency (Hz)


def two_language_clip(path: Path, seconds: int = 6, *, german_described: bool = False) -> Path:
    """testsrc2 video at 25 fps, then one sine per language of ``TONES``, tagged with that language.

    ``german_described``: the German stream is titled and flagged as an audio description."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is missing: run scripts/setup")
    args = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"]
    for freq in TONES.values():
        args += ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=48000"]
    args += ["-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]
    for i, lang in enumerate(TONES):
        args += [f"-metadata:s:a:{i}", f"language={lang}"]
    if german_described:
        args += ["-metadata:s:a:1", "title=Hörfilm", "-disposition:a:1", "visual_impaired"]
    subprocess.run([*args, "-t", str(seconds), str(path)], check=True, timeout=60)
    return path
