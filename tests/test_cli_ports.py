"""A busy port stops ``packager run`` / ``packager origin`` with one line and exit code 1.

Every listening socket (HTTP origin, RTMP, SRT) is bound before any pipeline
starts, so nothing else runs and nothing else is printed.
"""

from __future__ import annotations

import ctypes.util
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.procs import REPO, free_port

KEY = "cam=abcdefgh12345"


@contextmanager
def occupied(kind: int) -> Iterator[int]:
    """A port on 127.0.0.1 held by a socket of ``kind`` (TCP listening, or UDP bound) while inside."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        yield sock.getsockname()[1]


def packager(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "packager", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    ladder = ["--ladder", "320x180@200k", "--preset", "ultrafast"]
    return ["run", "testsrc:320x180", *ladder, "--out", str(tmp_path), *extra]


def busy_line(port: int) -> str:
    return f"packager: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_busy_http_port(tmp_path: Path) -> None:
    with occupied(socket.SOCK_STREAM) as port:
        done = packager(run_args(tmp_path, "--port", str(port)))
    assert (done.returncode, done.stderr, done.stdout) == (1, busy_line(port), "")
    assert not any((tmp_path / "demo").iterdir()), "no pipeline may have started"


def test_busy_rtmp_port(tmp_path: Path) -> None:
    with occupied(socket.SOCK_STREAM) as port:
        args = run_args(tmp_path, "--port", str(free_port()), "--stream-key", KEY, "--rtmp-port", str(port))
        done = packager([*args, "--srt-port", "0"])
    assert (done.returncode, done.stderr, done.stdout) == (1, busy_line(port), "")


@pytest.mark.skipif(ctypes.util.find_library("srt") is None, reason="libsrt is not installed")
def test_busy_srt_port(tmp_path: Path) -> None:
    with occupied(socket.SOCK_DGRAM) as port:
        args = run_args(tmp_path, "--port", str(free_port()), "--stream-key", KEY, "--srt-port", str(port))
        done = packager([*args, "--rtmp-port", "0"])
    assert (done.returncode, done.stderr, done.stdout) == (1, busy_line(port), "")


def test_busy_origin_port(tmp_path: Path) -> None:
    with occupied(socket.SOCK_STREAM) as port:
        done = packager(["origin", "--root", str(tmp_path), "--port", str(port)])
    assert (done.returncode, done.stderr, done.stdout) == (1, busy_line(port), "")
