"""The names of the Redis store's keys (see :mod:`packager.redisstore` for what each holds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (``lp:`` unless the target says otherwise)."""

    prefix: str = "lp:"

    @property
    def streams(self) -> str:
        return f"{self.prefix}streams"

    @property
    def ctl(self) -> str:
        return f"{self.prefix}ctl"

    @property
    def boot(self) -> str:
        return f"{self.prefix}boot"

    def log(self, stream: str) -> str:
        return f"{self.prefix}log:{stream}"

    def stream_of_log(self, key: str) -> str:
        return key[len(self.prefix) + 4 :]

    def snap(self, stream: str) -> str:
        return f"{self.prefix}snap:{stream}"

    def lease(self, stream: str) -> str:
        return f"{self.prefix}lease:{stream}"

    def epoch(self, stream: str) -> str:
        return f"{self.prefix}epoch:{stream}"

    def nodes(self, stream: str) -> str:
        return f"{self.prefix}nodes:{stream}"

    def init(self, stream: str, track: str) -> str:
        return f"{self.prefix}init:{stream}:{track}"

    def part(self, stream: str, track: str, msn: int, index: int) -> str:
        return f"{self.prefix}part:{stream}:{track}:{msn}.{index}"

    def seg(self, stream: str, track: str, msn: int) -> str:
        return f"{self.prefix}seg:{stream}:{track}:{msn}"
