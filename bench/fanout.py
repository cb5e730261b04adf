"""Benchmark: LL-HLS blocking-reload fan-out, direct to the origin and through an nginx CDN.

Direct: ``--clients`` (default 2,000) concurrent blocking playlist requests
(``_HLS_msn``/``_HLS_part`` of the next part, as hls.js sends them), spread
over several client processes. Reports the origin's publish-to-response time
(server side, from its ``origin_blocking_release_seconds`` histogram), the
client-side spread (time from the first client's answer to each client's
answer for the same part), and origin CPU per released request.

CDN: ``--cdn-clients`` (default 10,000) players' blocking requests go through
nginx (cache keyed on the full URL, ``proxy_cache_lock on``); reports origin
requests per playlist state and the client p99.

Both phases run against the single process (``packager run``) and, with
``--store redis``, against one encoder plus ``--workers`` origin processes
over a real Redis (``both``, the default, runs the two in one go); the Redis
mode also reports publish-to-servable on the origins
(``origin_publish_to_servable_seconds``, summed over the workers).

    .venv/bin/python bench/fanout.py [--store both|memory|redis] [--clients 2000] [--cdn-clients 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cluster import cluster, cpu_seconds  # noqa: E402
from tests.support.procs import get, nginx_cdn, packager, wait_segments  # noqa: E402

HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"')


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_process(url: str, connections: int, seconds: float, out: mp.Queue) -> None:
    raise_nofile()
    import aiohttp

    async def one(session: aiohttp.ClientSession, stop: float, recs: list) -> None:
        msn, part = None, None
        while time.time() < stop:
            q = f"?_HLS_msn={msn}&_HLS_part={part}" if msn is not None else ""
            try:
                async with session.get(url + q) as r:
                    body = await r.read()
                    t = time.time()
                    if r.status != 200:
                        recs.append(("err", r.status, t))
                        await asyncio.sleep(0.1)
                        continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                recs.append(("err", type(exc).__name__, time.time()))
                await asyncio.sleep(0.1)
                continue
            m = HINT.search(body)
            if not m:
                break
            if msn is not None:
                recs.append((f"{msn}.{part}", r.headers.get("X-Cache-Status", ""), t))
            msn, part = int(m.group(1)), int(m.group(2))

    async def main() -> list:
        recs: list = []
        conn = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            stop = time.time() + seconds
            await asyncio.gather(*(one(session, stop, recs) for _ in range(connections)))
        return recs

    out.put(asyncio.run(main()))


def run_clients(url: str, total: int, procs: int, seconds: float) -> list:
    q: mp.Queue = mp.Queue()
    per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    ps = [mp.Process(target=client_process, args=(url, n, seconds, q)) for n in per]
    for p in ps:
        p.start()
    recs = []
    for _ in ps:
        recs.extend(q.get(timeout=seconds + 120))
    for p in ps:
        p.join()
    return recs


def spread(recs: list) -> tuple[list[float], int, int]:
    by_key: dict[str, list[float]] = {}
    errors = 0
    for key, _status, t in recs:
        if key == "err":
            errors += 1
            continue
        by_key.setdefault(key, []).append(t)
    out = []
    for times in by_key.values():
        first = min(times)
        out.extend(t - first for t in times)
    return out, len(by_key), errors


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def metric_text(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape_workers(base: str, workers: int) -> list[str]:
    """One /metrics text per origin worker (several share the port: scrape until each has answered)."""
    seen: dict[str, str] = {}
    for _ in range(20 * workers):
        text = get(f"{base}/metrics")[2].decode()
        m = re.search(r"^origin_process_id (\S+)", text, re.M)
        seen[m.group(1) if m else "?"] = text
        if len(seen) >= workers:
            break
    return list(seen.values())


def histogram(texts: list[str], name: str) -> dict[str, float]:
    """A histogram's buckets summed over workers."""
    sums: dict[float, float] = {}
    for text in texts:
        for m in re.finditer(rf'{name}_bucket\{{(?:[^}}]*,)?le="([^"]+)"\}} (\S+)', text):
            le = float(m.group(1)) if m.group(1) != "+Inf" else float("inf")
            sums[le] = sums.get(le, 0.0) + float(m.group(2))
    buckets = sorted(sums.items())
    return {"count": buckets[-1][1] if buckets else 0.0, "buckets": buckets}  # type: ignore[dict-item]


def release_quantiles(base: str, workers: int = 1) -> dict[str, float]:
    return histogram(scrape_workers(base, workers), "origin_blocking_release_seconds")


def quantile_from(before: dict, after: dict, q: float) -> float:
    b = dict(before["buckets"])
    pairs = [(le, n - b.get(le, 0.0)) for le, n in after["buckets"]]
    total = pairs[-1][1] if pairs else 0
    for le, n in pairs:
        if total and n >= q * total:
            return le
    return float("nan")


def direct_phase(base: str, pids: list[int], workers: int, args: argparse.Namespace) -> dict[str, float]:
    url = f"{base}/live/demo/270p/index.m3u8"
    before, cpu0 = release_quantiles(base, workers), cpu_seconds(pids)
    recs = run_clients(url, args.clients, args.procs, args.seconds)
    after, cpu1 = release_quantiles(base, workers), cpu_seconds(pids)
    sp, states, errors = spread(recs)
    released = after["count"] - before["count"]
    return {
        "clients": args.clients,
        "responses": len(sp),
        "states": states,
        "errors": errors,
        "server_p50_ms": quantile_from(before, after, 0.5) * 1000,
        "server_p99_ms": quantile_from(before, after, 0.99) * 1000,
        "client_spread_p50_ms": pct(sp, 0.5) * 1000,
        "client_spread_p99_ms": pct(sp, 0.99) * 1000,
        "origin_cpu_ms_per_release": (cpu1 - cpu0) * 1000 / max(1.0, released),
    }


def cdn_phase(base: str, workdir: Path, workers: int, args: argparse.Namespace) -> dict[str, float]:
    port = int(base.rsplit(":", 1)[1])

    def blocking() -> float:
        texts = scrape_workers(base, workers)
        return sum(metric_text(t, "origin_requests_total", 'kind="playlist_blocking"') for t in texts)

    with nginx_cdn(port, workdir) as cdn:
        blocking0 = blocking()
        recs = run_clients(f"{cdn}/live/demo/270p/index.m3u8", args.cdn_clients, args.procs, args.seconds)
        blocking1 = blocking()
    sp, states, errors = spread(recs)
    return {
        "clients": args.cdn_clients,
        "responses": len(sp),
        "states": states,
        "errors": errors,
        "origin_blocking_requests": blocking1 - blocking0,
        "origin_requests_per_state": (blocking1 - blocking0) / max(1, states),
        "client_spread_p50_ms": pct(sp, 0.5) * 1000,
        "client_spread_p99_ms": pct(sp, 0.99) * 1000,
    }


def servable(base: str, workers: int) -> dict[str, float]:
    return histogram(scrape_workers(base, workers), "origin_publish_to_servable_seconds")


def servable_quantiles(before: dict, after: dict) -> dict[str, float]:
    return {
        "parts": after["count"] - before["count"],
        "p50_ms": quantile_from(before, after, 0.5) * 1000,
        "p99_ms": quantile_from(before, after, 0.99) * 1000,
    }


def phases(base: str, pids: list[int], workers: int, workdir: Path, args: argparse.Namespace) -> dict:
    wait_segments(f"{base}/live/demo/270p/index.m3u8", 2, 60)
    out: dict[str, object] = {}
    if args.clients:
        out["direct"] = direct_phase(base, pids, workers, args)
    if args.cdn_clients:
        out["cdn"] = cdn_phase(base, workdir / "nginx", workers, args)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--cdn-clients", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--ladder", default="480x270@500k,320x180@250k")
    ap.add_argument("--store", choices=["memory", "redis", "both"], default="both")
    ap.add_argument("--workers", type=int, default=2, help="origin worker processes in the redis mode")
    args = ap.parse_args()
    raise_nofile()
    report = {}
    source = ["testsrc:480x270@30", "--ladder", args.ladder, "--preset", "ultrafast"]
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        if args.store in ("memory", "both"):
            (tmp / "memory").mkdir()
            with packager(source, out=tmp / "memory" / "out") as (proc, base):
                report["single process"] = phases(base, [proc.pid], 1, tmp / "memory", args)
        if args.store in ("redis", "both"):
            (tmp / "redis").mkdir()
            with cluster(source, tmp / "redis", workers=args.workers, ready_path="/live/demo/270p/index.m3u8") as c:
                label = f"redis, {args.workers} origin workers"
                wait_segments(f"{c.base}/live/demo/270p/index.m3u8", 2, 60)
                start = servable(c.base, args.workers)
                time.sleep(args.seconds)  # no HTTP load: the encoder transcodes, the origins follow the store
                quiet = servable(c.base, args.workers)
                report[label] = phases(c.base, c.worker_pids(), args.workers, tmp / "redis", args)
                loaded = servable(c.base, args.workers)
                report[label]["publish_to_servable_no_load"] = servable_quantiles(start, quiet)
                report[label]["publish_to_servable_under_load"] = servable_quantiles(quiet, loaded)
    print(
        f"machine: {os.cpu_count()} cores; encoder transcoding {args.ladder}; {args.procs} client processes; "
        f"{args.seconds:.0f} s per phase"
    )
    print(json.dumps(report, indent=2, default=lambda x: round(x, 2)))


if __name__ == "__main__":
    main()
