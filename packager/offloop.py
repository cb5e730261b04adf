"""Blocking calls off the event loop, each on its own short-lived thread, never in the default executor.

The loop's default executor has a handful of threads and serves every file
read of the origin. A call that blocks for as long as a peer decides (opening
and probing a pushed stream) must not hold one of them: :func:`call_in_thread`
runs one call on a fresh daemon thread and hands its result or exception back
with ``loop.call_soon_threadsafe``. A caller that stops waiting (a timeout)
cancels the future; a result that still arrives then goes to ``on_abandoned``
so it can be released.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def call_in_thread(
    fn: Callable[[], T], *, name: str, on_abandoned: Callable[[T], None] | None = None
) -> asyncio.Future[T]:
    """Run ``fn()`` on a new thread called ``name``; the returned future (of the running loop) gets its outcome."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:  # on the loop
        if fut.cancelled():
            if exc is None and on_abandoned is not None:
                on_abandoned(result)  # type: ignore[arg-type]
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, exc = fn(), None
        except BaseException as error:  # handed to the awaiting coroutine, which decides
            result, exc = None, error
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut
