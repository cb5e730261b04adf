"""Rate-limited log lines: first through, repeats counted, then one line with the count."""

from __future__ import annotations

import logging

from packager.ratelog import RateLimitedLog


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_repeats_become_one_line_with_count(caplog) -> None:
    clock = _Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog"), interval_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.ratelog"):
        assert rl.warning("k", "refused %s", "a")
        for _ in range(500):
            assert not rl.warning("k", "refused %s", "a")
        clock.t = 10.5
        assert rl.warning("k", "refused %s", "a")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused a", "refused a (+500 similar in the last 10 s)"]


def test_keys_are_independent_and_bounded(caplog) -> None:
    clock = _Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog2"), interval_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.ratelog2"):
        for i in range(5000):
            rl.info(("peer", i), "x")
    assert len(caplog.records) == 5000
    assert len(rl._windows) <= 4096
