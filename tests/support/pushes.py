"""A broadcaster for ingest tests: ffmpeg pushing a clip as FLV to an RTMP or RTMPS URL, in real time."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

FFMPEG = shutil.which("ffmpeg")


async def push(url: str, clip: Path, timeout: float = 30.0) -> tuple[int, str]:
    """ffmpeg ``-re`` pushes ``clip`` to ``url``; its exit code and error output."""
    assert FFMPEG is not None, "ffmpeg is missing: run scripts/setup"
    args = ["-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy", "-f", "flv", url]
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")
