"""Where the Redis store lives: the ``--store redis://HOST:PORT/DB`` target and its client."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from packager.config import ConfigError

DEFAULT_PORT = 6379
TIMEOUT_S = 1.0  # connect and read timeout: a dead Redis is noticed within a second
HEALTH_CHECK_S = 5


def _fail(text: str, why: str) -> ConfigError:
    return ConfigError(f"--store: {text!r} {why} (expected redis://HOST[:PORT][/DB])")


@dataclass(frozen=True)
class RedisTarget:
    """One Redis database and the key prefix the store's keys share."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    prefix: str = "lp:"

    @classmethod
    def parse(cls, text: str, prefix: str = "lp:") -> RedisTarget:
        """``redis://HOST[:PORT][/DB]`` -> a target; anything else raises :class:`ConfigError`."""
        try:
            url = urlsplit(text.strip())
            port = url.port
        except ValueError:
            raise _fail(text, "is not a URL") from None
        if url.scheme != "redis":
            raise _fail(text, "is not a redis:// URL")
        if not url.hostname:
            raise _fail(text, "names no host")
        if url.query or url.fragment or url.username or url.password:
            raise _fail(text, "has parts the store does not use")
        path = url.path.strip("/")
        if path and not (path.isascii() and path.isdigit()):
            raise _fail(text, "has a database that is not a number")
        db = int(path) if path else 0
        if db > 15:
            raise _fail(text, "has a database outside 0..15")
        return cls(url.hostname, DEFAULT_PORT if port is None else port, db, prefix)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"

    def client(self, *, read_timeout_s: float = TIMEOUT_S) -> redis.Redis:
        """A client with short timeouts and no hidden retries: callers own their back-off."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            socket_timeout=read_timeout_s,
            socket_connect_timeout=TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
