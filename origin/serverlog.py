"""The HTTP server's connection log: a malformed request is one short, rate-limited line, not a traceback.

aiohttp reports every request it cannot parse (a bad request line, bad header
bytes, an over-long line, a broken chunked body) through the request
handler's ``logger`` with the exception attached, so anyone who can open a
socket can print a full traceback per request. :class:`ServerLog` is that
logger (passed through the documented ``handler_args``): parse errors become
``bad request from PEER: REASON`` through :class:`RateLimitedLog`, keyed by
peer; the reason names the kind of error and never echoes the request's bytes
(they may carry a stream key). Everything else passes through unchanged, so a
real bug in a handler still logs its traceback.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from packager.ratelog import DEFAULT_INTERVAL_S, RateLimitedLog

_WORDS = re.compile(r"[A-Za-z][A-Za-z0-9 ,()-]*")
MAX_REASON = 60


def short_reason(exc: HttpProcessingError) -> str:
    """The kind of parse error in a few words: the message up to the first quote, colon or line end."""
    first = str(exc.message).split("\n", 1)[0].split(":", 1)[0]
    words = _WORDS.match(first.split("'", 1)[0].split('"', 1)[0])
    text = words.group(0).strip() if words else ""
    return text[:MAX_REASON] or type(exc).__name__


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's request-handler logger, with malformed requests reduced to one rate-limited line each."""

    def __init__(
        self,
        logger: logging.Logger = server_logger,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.limited = RateLimitedLog(logger, interval_s=interval_s, clock=clock)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if not isinstance(exc, HttpProcessingError):
            super().log(level, msg, *args, **kwargs)
            return
        # A client error, not ours: at most a warning, whatever level aiohttp chose.
        level = min(level, logging.WARNING)
        peer = str(args[0]) if args else "unknown peer"
        self.limited.log(level, ("bad-request", peer, level), "bad request from %s: %s", peer, short_reason(exc))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs
