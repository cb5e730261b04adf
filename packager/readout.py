"""Shows how far ``packager package`` has got: a bar on a terminal, a log line now and then otherwise.

On a TTY (stderr) a ``rich`` progress bar: media time done / total, speed (x
realtime), time left and the renditions, redrawn twice a second. Not on a
TTY (a CI log, a file): one plain line every ``line_interval_s``. ``--quiet``:
nothing. :func:`progress_line` is the pure text of a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import TextIO

from packager.progress import Progress

LINE_INTERVAL_S = 10.0
BAR_INTERVAL_S = 0.5


def clock_text(seconds: float | None) -> str:
    """H:MM:SS (``--:--`` when unknown)."""
    if seconds is None:
        return "--:--"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def progress_line(stream: str, p: Progress) -> str:
    done = f"{clock_text(p.done_s)} / {clock_text(p.total_s)}"
    if p.fraction is not None:
        done += f" ({p.fraction:.0%})"
    eta = f", {clock_text(p.eta_s)} left" if p.eta_s is not None else ""
    return f"packager: {stream}: {done}, {p.speed:.1f}x realtime{eta}; {', '.join(p.renditions)}"


async def show_lines(
    stream: str, read: Callable[[], Progress], out: TextIO, interval_s: float = LINE_INTERVAL_S
) -> None:
    """Print a progress line every ``interval_s`` until cancelled, and a last one then."""
    try:
        while True:
            await asyncio.sleep(interval_s)
            print(progress_line(stream, read()), file=out, flush=True)
    except asyncio.CancelledError:
        print(progress_line(stream, read()), file=out, flush=True)
        raise


async def show_bar(stream: str, read: Callable[[], Progress], out: TextIO) -> None:
    """A rich progress bar on ``out`` until cancelled."""
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[media]}"),
        TextColumn("{task.fields[speed]}"),
        TextColumn("{task.fields[left]}"),
        TextColumn("[dim]{task.fields[renditions]}"),
    )
    with Bar(*columns, console=Console(file=out), transient=False) as bar:
        task = bar.add_task(stream, total=None, media="", speed="", left="", renditions="")
        try:
            while True:
                _update(bar, task, read())
                await asyncio.sleep(BAR_INTERVAL_S)
        except asyncio.CancelledError:
            _update(bar, task, read())
            raise


def _update(bar, task, p: Progress) -> None:  # type: ignore[no-untyped-def]
    bar.update(
        task,
        completed=p.done_s,
        total=p.total_s,
        media=f"{clock_text(p.done_s)} / {clock_text(p.total_s)}",
        speed=f"{p.speed:.1f}x",
        left=f"{clock_text(p.eta_s)} left" if p.eta_s is not None else "",
        renditions=", ".join(p.renditions),
    )


@contextlib.asynccontextmanager
async def readout(stream: str, read: Callable[[], Progress], *, quiet: bool, out: TextIO | None = None):  # type: ignore[no-untyped-def]
    """Show progress while inside: a bar on a terminal, lines otherwise, nothing when ``quiet``."""
    out = out or sys.stderr
    task = None
    if not quiet:
        show = show_bar(stream, read, out) if out.isatty() else show_lines(stream, read, out)
        task = asyncio.get_running_loop().create_task(show)
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
