"""Prometheus text exposition: counters, gauges and histograms with labels.

Small on purpose: the origin's own counters (requests by kind and status,
bytes, publish latency, event-loop lag, webhook deliveries, SSE clients) plus
gauges read at scrape time from the pipelines (encoder realtime factor,
dropped frames, waiters), and what players report through CMCD, per stream
(:meth:`OriginMetrics.observe_cmcd`). :class:`RequestRates` keeps each
stream's recent request rate for the dashboard.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable

from origin.cmcd import VIDEO_OBJECTS, CmcdReport

LabelKey = tuple[tuple[str, str], ...]


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = (*key, *extra)
    if not items:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Counter:
    def __init__(self, name: str, help_: str) -> None:
        self.name, self.help = name, help_
        self.values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(labels.items())  # hot path: label order is normalised at render time
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        merged: dict[LabelKey, float] = {}
        for key, value in self.values.items():
            norm = tuple(sorted(key))
            merged[norm] = merged.get(norm, 0.0) + value
        for key, value in sorted(merged.items()):
            yield f"{self.name}{_labels(key)} {_fmt(value)}"


class Gauge:
    def __init__(
        self, name: str, help_: str, read: Callable[[], Iterable[tuple[dict[str, str], float]]] | None = None
    ) -> None:
        self.name, self.help = name, help_
        self.values: dict[LabelKey, float] = {}
        self.read = read

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        values = dict(self.values)
        if self.read is not None:
            for labels, value in self.read():
                values[tuple(sorted(labels.items()))] = value
        for key, value in sorted(values.items()):
            yield f"{self.name}{_labels(key)} {_fmt(value)}"


class Histogram:
    def __init__(self, name: str, help_: str, buckets: Iterable[float]) -> None:
        self.name, self.help = name, help_
        self.buckets = sorted(buckets)
        self.series: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts, sums = self.series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        sums[0] += value

    def quantile(self, q: float, **labels: str) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (for logs and tests)."""
        series = self.series.get(tuple(sorted(labels.items())))
        if not series:
            return None
        counts = series[0]
        total = sum(counts)
        target, seen = q * total, 0
        for i, c in enumerate(counts):
            seen += c
            if seen >= target:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for key, (counts, sums) in sorted(self.series.items()):
            cumulative = 0
            for bound, c in zip([*self.buckets, float("inf")], counts, strict=True):
                cumulative += c
                yield f"{self.name}_bucket{_labels(key, (('le', _fmt(bound)),))} {cumulative}"
            yield f"{self.name}_sum{_labels(key)} {_fmt(sums[0])}"
            yield f"{self.name}_count{_labels(key)} {cumulative}"


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Counter | Gauge | Histogram] = []

    def counter(self, name: str, help_: str) -> Counter:
        m = Counter(name, help_)
        self.metrics.append(m)
        return m

    def gauge(
        self, name: str, help_: str, read: Callable[[], Iterable[tuple[dict[str, str], float]]] | None = None
    ) -> Gauge:
        m = Gauge(name, help_, read)
        self.metrics.append(m)
        return m

    def histogram(self, name: str, help_: str, buckets: Iterable[float]) -> Histogram:
        m = Histogram(name, help_, buckets)
        self.metrics.append(m)
        return m

    def render(self) -> str:
        lines: list[str] = []
        for m in self.metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


class RequestRates:
    """Requests per second per key (a stream) over the last ``window_s`` seconds, in 1-second buckets."""

    def __init__(self, window_s: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._buckets: dict[str, deque[list[int]]] = {}

    def hit(self, key: str) -> None:
        now = int(self._clock())
        q = self._buckets.setdefault(key, deque())
        if q and q[-1][0] == now:
            q[-1][1] += 1
        else:
            q.append([now, 1])
            self._trim(q, now)

    def rate(self, key: str) -> float:
        q = self._buckets.get(key)
        if not q:
            return 0.0
        self._trim(q, int(self._clock()))
        return sum(c for _, c in q) / self.window_s

    def forget_except(self, keys: Collection[str]) -> None:
        for key in [k for k in self._buckets if k not in keys]:
            del self._buckets[key]

    def _trim(self, q: deque[list[int]], now: int) -> None:
        while q and q[0][0] <= now - self.window_s:
            q.popleft()


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
BUFFER_BUCKETS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
BITRATE_BUCKETS = (1e5, 2.5e5, 5e5, 1e6, 2e6, 3e6, 5e6, 8e6, 12e6, 20e6, 50e6, 1e8)


class OriginMetrics:
    """The origin's metric set."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.counter("origin_requests_total", "HTTP requests by object kind and status")
        self.bytes_sent = r.counter("origin_bytes_sent_total", "Response body bytes by object kind")
        self.publish_latency = r.histogram(
            "packager_publish_latency_seconds", "Capture to part published, per rendition", LATENCY_BUCKETS
        )
        self.loop_lag = r.histogram("origin_event_loop_lag_seconds", "Event-loop scheduling lag", LAG_BUCKETS)
        self.loop_lag_last = r.gauge("origin_event_loop_lag_last_seconds", "Last measured event-loop lag")
        self.release = r.histogram(
            "origin_blocking_release_seconds",
            "Part published to blocking playlist response handed to the transport",
            (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0),
        )
        self.servable = r.histogram(
            "origin_publish_to_servable_seconds",
            "Part published by the encoder to servable on this origin (through the shared store)",
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
        )
        # which worker answered this scrape (several origin workers share one port)
        self.process = r.gauge("origin_process_id", "Process id of the origin worker", lambda: [({}, os.getpid())])
        self.lag_p99 = r.gauge(
            "origin_event_loop_lag_p99_seconds",
            "p99 event-loop lag over the last minute",
            lambda: [({}, self.recent_lag_p99())],
        )
        self.in_flight = r.gauge("origin_requests_in_flight", "Requests being handled (incl. held blocking requests)")
        self.connections = r.gauge("origin_open_connections", "Open HTTP connections")
        self.stream_requests = r.counter(
            "origin_stream_requests_total", "Requests for a stream's manifests and media, per stream"
        )
        self.webhook_deliveries = r.counter(
            "webhook_deliveries_total",
            "Webhook outcomes: delivered (2xx), retried (a failed attempt), rejected (other 4xx), dead_lettered",
        )
        self.webhook_seconds = r.histogram(
            "webhook_delivery_seconds",
            "Duration of one webhook POST attempt",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.sse_clients = r.gauge("sse_clients", "Connected server-sent-event (/events) clients")
        self.cmcd_requests = r.counter("cmcd_requests_total", "Requests that carried readable CMCD, per stream")
        self.cmcd_starvations = r.counter(
            "cmcd_buffer_starvations_total", "CMCD requests flagged bs (the player's buffer ran dry), per stream"
        )
        self.cmcd_startups = r.counter(
            "cmcd_startup_requests_total", "CMCD requests flagged su (startup, seek or recovery), per stream"
        )
        self.cmcd_buffer = r.histogram(
            "cmcd_buffer_length_seconds", "Buffer length players reported (CMCD bl), per stream", BUFFER_BUCKETS
        )
        self.cmcd_throughput = r.histogram(
            "cmcd_measured_throughput_bits_per_second",
            "Throughput players measured (CMCD mtp), per stream",
            BITRATE_BUCKETS,
        )
        self.cmcd_bitrate = r.histogram(
            "cmcd_requested_bitrate_bits_per_second",
            "Encoded bitrate of the video players requested (CMCD br), per stream",
            BITRATE_BUCKETS,
        )
        self.cmcd_sessions = r.gauge("cmcd_sessions", "Player sessions (CMCD sid) seen in the last 30 s, per stream")
        self.lag_samples: list[float] = []

    def observe_cmcd(self, stream: str, report: CmcdReport) -> None:
        """One request's CMCD for ``stream`` (an existing stream: labels stay bounded)."""
        self.cmcd_requests.inc(stream=stream)
        if report.starved:
            self.cmcd_starvations.inc(stream=stream)
        if report.startup:
            self.cmcd_startups.inc(stream=stream)
        if report.buffer_s is not None:
            self.cmcd_buffer.observe(report.buffer_s, stream=stream)
        if report.throughput_bps is not None:
            self.cmcd_throughput.observe(report.throughput_bps, stream=stream)
        if report.bitrate_bps is not None and report.object_type in VIDEO_OBJECTS:
            self.cmcd_bitrate.observe(report.bitrate_bps, stream=stream)

    def recent_lag_p99(self, window: int = 600) -> float:
        recent = sorted(self.lag_samples[-window:])
        return recent[min(len(recent) - 1, int(len(recent) * 0.99))] if recent else 0.0

    async def watch_loop_lag(self, interval_s: float = 0.1) -> None:
        """Measure how late the loop wakes a sleeping task: the loop-lag metric."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval_s)
            lag = max(0.0, loop.time() - start - interval_s)
            self.loop_lag.observe(lag)
            self.loop_lag_last.set(lag)
            self.lag_samples.append(lag)
            if len(self.lag_samples) > 10_000:
                del self.lag_samples[:5_000]
