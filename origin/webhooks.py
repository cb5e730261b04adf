"""Webhook delivery: signed POSTs, one queue and worker per endpoint, retries, a dead-letter file.

Each configured endpoint (``[[webhooks]]`` in the TOML config, see
:mod:`packager.settings`) gets the events it asked for as JSON bodies. Every
POST carries::

    Content-Type: application/json
    X-Packager-Event: stream.started
    X-Packager-Delivery: <event id>          (the same on every retry: dedupe on it)
    X-Packager-Timestamp: <unix seconds>     (of this attempt)
    X-Packager-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

The bus hands events to :meth:`Webhooks.offer`, which only appends to the
endpoint's queue, so the media path never waits. A worker task per endpoint
delivers in order through one pooled ``ClientSession``: a slow or dead
endpoint holds only its own worker. 2xx ends a delivery; timeouts, connection
errors, 5xx and 429 are retried with exponential back-off and jitter (a
``Retry-After`` is honoured) up to ``max_attempts``; any other status ends it
(logged). ``Retry-After`` is read strictly (ASCII delta-seconds of at most
ten digits, or an HTTP date); anything else falls back to the back-off.
Events that were never delivered (attempts used up, queue full, shutdown)
are appended to the dead-letter file as JSON lines, fsynced.

Unless an endpoint sets ``allow_private``, it is only ever reached at public
addresses (see :mod:`origin.egress`): a literal loopback/link-local/private
host is refused before connecting, and its name is resolved through
:class:`~origin.egress.PublicOnlyResolver`, so a name that resolves (or is
rebound) only to such addresses is refused too. A refusal is not retried: the
event goes straight to the dead-letter file with ``refused: ...`` as the
error. https endpoints always verify the certificate (against ``ca_file``
when set, else the system CAs).

Each endpoint's queue is bounded per event class (see
:mod:`packager.events`): when noisy events (ingest.rejected, rendition
stall/recovery) pile up behind a slow endpoint the oldest of them are dropped,
counted as ``webhook_deliveries_total{result="dropped"}`` and logged once per
flood, so a wrong-key flood can never push a lifecycle event out or into the
dead letters. Time (attempt timestamps, back-off sleeps) comes from a
:class:`~packager.timebase.Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import re
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from origin.egress import EgressRefused, PublicOnlyResolver, client_tls, is_private_address, parse_address, refusal
from origin.metrics import OriginMetrics
from packager.events import FREQUENT, LIFECYCLE, NOISY, Event, EventQueue, QueueFull
from packager.ratelog import RateLimitedLog
from packager.settings import WebhookSettings
from packager.timebase import SYSTEM_CLOCK, Clock, iso_from_epoch_s

log = logging.getLogger(__name__)

USER_AGENT = "live-packager-webhooks/1"
QUEUE_SIZE = 10_000  # lifecycle (and, separately, segment) events waiting per endpoint
NOISY_QUEUE_SIZE = 100  # noisy events waiting per endpoint; older ones are dropped past it
MAX_RESPONSE_READ = 64 * 1024
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() also takes '²' and '١٢'
MAX_RETRY_AFTER_TEXT = 64  # an HTTP date is 29 characters
drop_log = RateLimitedLog(log)


class SinkRegistry(Protocol):
    """Where the dispatcher registers for events (an :class:`~packager.events.EventBus`)."""

    def add_sink(self, sink: Callable[[Event], None]) -> None: ...

    def remove_sink(self, sink: Callable[[Event], None]) -> None: ...


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Packager-Signature`` value: ``sha256=`` + hex HMAC-SHA256 over ``"<timestamp>.<body>"``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(event: Event, secret: str, body: bytes, timestamp: str, attempt: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Packager-Event": event.type,
        "X-Packager-Delivery": event.id,
        "X-Packager-Timestamp": timestamp,
        "X-Packager-Signature": sign(secret, timestamp, body),
        "X-Packager-Attempt": str(attempt),
    }


def redact(url: str) -> str:
    """``url`` without credentials, query or fragment (tokens live there): safe for logs and files."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{p.port}" if p.port else ""
    return f"{p.scheme}://{host}{port}{p.path}"


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), None if absent/invalid.

    ``now`` is the current UTC time (seconds since 1970) a date is measured from."""
    if not value or len(value) > MAX_RETRY_AFTER_TEXT:
        return None
    value = value.strip(" \t")
    if _DELTA_SECONDS.fullmatch(value):
        return float(int(value))
    if not value.isascii() or not value[:1].isalpha():  # a date starts with the day name (RFC 9110 5.6.7)
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


class DeadLetters:
    """Append-only JSON lines file of undelivered events; each line is fsynced before it counts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self.errors = 0
        self._lock = threading.Lock()

    async def add(self, record: dict[str, Any]) -> None:
        await asyncio.to_thread(self.add_sync, record)

    def add_sync(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                self.written += 1
            except OSError as exc:
                self.errors += 1
                log.error("webhooks: cannot write dead letter to %s: %s", self.path, exc)

    def read(self) -> list[dict[str, Any]]:
        """Every record so far (for operators' tooling and tests)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _endpoint_queue() -> EventQueue:
    return EventQueue({LIFECYCLE: QUEUE_SIZE, FREQUENT: QUEUE_SIZE, NOISY: NOISY_QUEUE_SIZE}, droppable=(NOISY,))


@dataclass
class _Endpoint:
    settings: WebhookSettings
    queue: EventQueue = field(default_factory=_endpoint_queue)
    task: asyncio.Task[None] | None = None
    current: Event | None = None
    attempts: int = 0
    tls: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.tls = client_tls(self.settings.ca_file)

    @property
    def name(self) -> str:
        return redact(self.settings.url)


@dataclass
class _Attempt:
    """What one POST came to: a status (and its Retry-After), or an error; ``refused``: never retry."""

    status: int | None = None
    wait_hint: str | None = None
    error: str = ""
    refused: bool = False


def check_egress(settings: WebhookSettings) -> None:
    """Raise :class:`EgressRefused` if the URL's host is a literal the guard refuses (aiohttp does not
    ask the resolver about literal addresses)."""
    host = urlsplit(settings.url).hostname or ""
    ip = None if settings.allow_private else parse_address(host)  # names go through PublicOnlyResolver
    if ip is not None and is_private_address(ip):
        raise EgressRefused(f"{host} is a private address")


class Webhooks:
    """Delivers bus events to the configured endpoints. Start and close it on the event loop."""

    def __init__(
        self,
        endpoints: Sequence[WebhookSettings],
        bus: SinkRegistry,
        *,
        dead_letter: Path,
        metrics: OriginMetrics | None = None,
        base_delay_s: float = 0.5,
        max_delay_s: float = 60.0,
        max_retry_after_s: float = 600.0,
        rng: Callable[[], float] = random.random,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.endpoints = [_Endpoint(s) for s in endpoints]
        self.bus = bus
        self.dead = DeadLetters(dead_letter)
        self.metrics = metrics or OriginMetrics()
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_retry_after_s = max_retry_after_s
        self._rng = rng
        self._clock = clock
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # by allow_private
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._sessions:
            return
        for allow_private in (False, True):
            resolver = None if allow_private else PublicOnlyResolver()
            connector = aiohttp.TCPConnector(limit=64, limit_per_host=4, resolver=resolver)
            self._sessions[allow_private] = aiohttp.ClientSession(connector=connector)
        for ep in self.endpoints:
            ep.task = asyncio.create_task(self._worker(ep), name=f"webhook {ep.name}")
        self.bus.add_sink(self.offer)
        if self.endpoints:
            log.info("webhooks: %d endpoint(s); dead letters go to %s", len(self.endpoints), self.dead.path)

    def offer(self, event: Event) -> None:
        """Queue ``event`` for every endpoint that wants its type. Never blocks."""
        for ep in self.endpoints:
            if event.type not in ep.settings.events:
                continue
            try:
                evicted = ep.queue.put(event)
            except QueueFull as exc:
                self._spawn(self._dead_letter(ep, event, 0, f"queue full ({exc})"))
                continue
            if evicted is not None:
                self._dropped(ep, evicted)

    def _dropped(self, ep: _Endpoint, event: Event) -> None:
        """A noisy event made room for a newer one: counted and logged once per flood, never dead-lettered."""
        self.metrics.webhook_deliveries.inc(result="dropped")
        drop_log.warning(
            ("webhook-dropped", ep.name),
            "webhooks: %s is behind: dropped %s %s (more than %d noisy events waiting)",
            ep.name,
            event.type,
            event.id,
            NOISY_QUEUE_SIZE,
        )

    async def drained(self) -> None:
        """Wait until every queued event has been delivered or given up on."""
        await asyncio.gather(*(ep.queue.join() for ep in self.endpoints))
        if self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def close(self, drain_s: float = 3.0) -> None:
        """Stop taking events, give queued ones ``drain_s`` to go out, dead-letter the rest."""
        self.bus.remove_sink(self.offer)
        if drain_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(ep.queue.join() for ep in self.endpoints)), drain_s)
        for ep in self.endpoints:
            if ep.task is not None:
                ep.task.cancel()
        for ep in self.endpoints:
            if ep.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await ep.task
            left = [ep.current] if ep.current is not None else []
            while len(ep.queue):
                queued = ep.queue.get_nowait()
                if queued is not None:
                    left.append(queued)
            for event in left:
                attempts = ep.attempts if event is ep.current else 0
                await self._dead_letter(ep, event, attempts, "server shut down before delivery")
            ep.current = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    # -- delivery
    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _worker(self, ep: _Endpoint) -> None:
        while True:
            event = await ep.queue.get()
            if event is None:
                return
            ep.current, ep.attempts = event, 0
            try:
                await self._deliver(ep, event)
            except asyncio.CancelledError:
                raise  # close() dead-letters ep.current
            except Exception as exc:
                log.exception("webhooks: %s: delivery of %s failed", ep.name, event.id)
                await self._dead_letter(ep, event, ep.attempts, f"internal error: {type(exc).__name__}")
            finally:
                ep.queue.task_done()
            ep.current = None

    def backoff_s(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: exponential, capped, with jitter in [half, full]."""
        full = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return full / 2 + self._rng() * full / 2

    async def _post(self, ep: _Endpoint, event: Event, body: bytes, attempt: int) -> _Attempt:
        """One signed POST of ``body``, never raising for what the endpoint or the network did."""
        s = ep.settings
        session = self._sessions[s.allow_private]
        headers = signed_headers(event, s.secret, body, str(int(self._clock.utc_s())), attempt)
        timeout = aiohttp.ClientTimeout(total=s.timeout_s)
        started = self._clock.monotonic_s()
        try:
            check_egress(s)
            async with session.post(
                s.url, data=body, headers=headers, timeout=timeout, allow_redirects=False, ssl=ep.tls
            ) as resp:
                wait_hint = resp.headers.get("Retry-After")
                await resp.content.read(MAX_RESPONSE_READ)
                return _Attempt(resp.status, wait_hint)
        except TimeoutError:
            return _Attempt(error=f"timed out after {s.timeout_s:g} s")
        except (EgressRefused, aiohttp.ClientError) as exc:
            refused = refusal(exc)
            if refused is not None:
                return _Attempt(error=f"refused: {refused}", refused=True)
            return _Attempt(error=f"connection failed: {type(exc).__name__}")
        finally:
            self.metrics.webhook_seconds.observe(self._clock.monotonic_s() - started)

    async def _deliver(self, ep: _Endpoint, event: Event) -> None:
        assert self._sessions
        s = ep.settings
        body = event.json.encode()
        error = ""
        for attempt in range(1, s.max_attempts + 1):
            ep.attempts = attempt
            result = await self._post(ep, event, body, attempt)
            status, wait_hint, error = result.status, result.wait_hint, result.error
            if result.refused:
                await self._dead_letter(ep, event, attempt, error)  # the address will not change on a retry
                return
            if status is not None and 200 <= status < 300:
                self.metrics.webhook_deliveries.inc(result="delivered")
                log.debug("webhooks: %s: %s %s delivered (attempt %d)", ep.name, event.type, event.id, attempt)
                return
            if status is not None:
                error = f"HTTP {status}"
                if status != 429 and status < 500:
                    self.metrics.webhook_deliveries.inc(result="rejected")
                    log.warning(
                        "webhooks: %s refused %s %s with HTTP %d; not retried", ep.name, event.type, event.id, status
                    )
                    return
            if attempt == s.max_attempts:
                break
            self.metrics.webhook_deliveries.inc(result="retried")
            hinted = retry_after_s(wait_hint, self._clock.utc_s()) if status is not None else None
            delay = min(hinted, self.max_retry_after_s) if hinted is not None else self.backoff_s(attempt)
            log.info(
                "webhooks: %s: %s %s attempt %d failed (%s); retrying in %.1f s",
                ep.name,
                event.type,
                event.id,
                attempt,
                error,
                delay,
            )
            await self._clock.sleep(delay)
        await self._dead_letter(ep, event, s.max_attempts, error)

    async def _dead_letter(self, ep: _Endpoint, event: Event, attempts: int, error: str) -> None:
        self.metrics.webhook_deliveries.inc(result="dead_lettered")
        log.warning("webhooks: %s: %s %s not delivered (%s); dead-lettered", ep.name, event.type, event.id, error)
        await self.dead.add(
            {
                "time": iso_from_epoch_s(self._clock.utc_s()),
                "endpoint": ep.name,
                "attempts": attempts,
                "error": error,
                "event": event.as_dict(),
            }
        )
