"""Benchmark: what nginx's cache lock costs viewers who ask for the same object at once.

A small-ladder ``packager run`` at ``--latency`` (default ``ultra``) behind the
tested nginx CDN, once per ``--lock-timeout`` value. Each round sends
``--viewers`` identical requests through nginx at once, twice:

* blocking: the audio playlist's next state (``_HLS_msn``/``_HLS_part`` of the
  part after the newest), which the origin answers when that part exists;
* part: the part the playlist lists newest, already on the origin.

Per kind it prints when the first answer came (from the round's start), how
long after it the others came (median / max), and how many of the requests
reached the origin (MISS at nginx). With ``proxy_cache_lock on`` the requests
after the first wait for its answer, but nginx only looks again every 500 ms
(or at the lock timeout, if sooner): a long timeout collapses every request
into one but answers the rest up to 0.5 s late; a short one answers them
within the timeout, and sends to the origin those whose object is not in the
cache by then.

    .venv/bin/python bench/cdn_lock.py [--lock-timeout 10s,50ms] [--viewers 5] [--rounds 6]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.procs import SMALL_LADDER, get, nginx_cdn, packager, wait_segments  # noqa: E402

LADDER = ["testsrc:480x270@30", "--ladder", SMALL_LADDER, "--preset", "ultrafast"]
_PARTS = re.compile(r'#EXT-X-PART:[^\n]*URI="(\d+)\.(\d+)\.m4s"')


def together(url: str, viewers: int) -> list[tuple[float, str]]:
    """(seconds from the first request's start, nginx cache status) of ``viewers`` requests for ``url``."""
    out: list[tuple[float, str]] = [(float("nan"), "-")] * viewers
    start = time.monotonic()

    def one(i: int) -> None:
        _status, headers, _body = get(url)
        out[i] = (time.monotonic() - start, headers.get("X-Cache-Status", "-"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(viewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def round_urls(origin: str, cdn: str) -> dict[str, str]:
    """The next blocking state of the audio playlist and its newest listed part, as URLs through ``cdn``."""
    _status, _headers, body = get(f"{origin}/live/demo/audio/index.m3u8")
    msn, part = _PARTS.findall(body.decode())[-1]
    return {
        "blocking": f"{cdn}/live/demo/audio/index.m3u8?_HLS_msn={msn}&_HLS_part={int(part) + 1}",
        "part": f"{cdn}/live/demo/audio/{msn}.{part}.m4s",
    }


def report(timeout: str, kind: str, rounds: list[list[tuple[float, str]]]) -> None:
    first = [min(t for t, _ in r) for r in rounds]
    later = [t - min(u for u, _ in r) for r in rounds for t in sorted(x for x, _ in r)[1:]]
    misses = [sum(s == "MISS" for _, s in r) for r in rounds]
    print(
        f"{timeout:>8} {kind:8} first {statistics.median(first):5.3f} s | others +{statistics.median(later):5.3f} s "
        f"median, +{max(later):5.3f} s max | to the origin {statistics.median(misses):.0f} of {len(rounds[0])} "
        f"median, {max(misses)} max"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lock-timeout", default="10s,50ms", help="nginx proxy_cache_lock_timeout values, comma separated")
    ap.add_argument("--viewers", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--latency", default="ultra")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp_s,
        packager([*LADDER, "--latency", args.latency], out=Path(tmp_s) / "out") as (_p, base),
    ):
        wait_segments(f"{base}/live/demo/audio/index.m3u8", 3, 60)
        for timeout in args.lock_timeout.split(","):
            rounds: dict[str, list[list[tuple[float, str]]]] = {"blocking": [], "part": []}
            with nginx_cdn(int(base.rsplit(":", 1)[1]), Path(tmp_s) / f"cdn-{timeout}", lock_timeout=timeout) as cdn:
                for _ in range(args.rounds):
                    for kind, url in round_urls(base, cdn).items():
                        rounds[kind].append(together(url, args.viewers))
                    time.sleep(0.3)
            for kind, found in rounds.items():
                report(timeout, kind, found)


if __name__ == "__main__":
    main()
