"""Webhooks against real aiohttp receivers that verify signatures with the README's own code."""

import asyncio
import json
import ssl
import time
from email.utils import formatdate
from pathlib import Path

import pytest
from aiohttp import web

import origin.webhooks as webhooks_mod
from origin.metrics import OriginMetrics
from origin.webhooks import DeadLetters, Webhooks, redact, retry_after_s, sign, signed_headers
from packager.config import ConfigError, StreamConfig
from packager.events import DEFAULT_TYPES, EventBus, ingest_rejected
from packager.ingest.gate import Refusal
from packager.settings import WebhookSettings, load, webhook_settings
from tests.support.certs import make_ca
from tests.support.clock import ManualClock, until
from tests.support.procs import free_port
from tests.support.readme import readme_receiver

SECRET = "a-long-random-shared-secret"
README = readme_receiver()
verify = README["verify"]


class Receiver:
    """A webhook endpoint following a plan per attempt: a status, (status, headers), or "hang"."""

    def __init__(self, plan, secret: str = SECRET) -> None:
        self.plan = plan
        self.secret = secret.encode()
        self.attempts: list[tuple[dict, bytes, bool]] = []
        self.accepted: list[dict] = []
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(self.secret, request.headers, body)
        self.attempts.append((dict(request.headers), body, ok))
        self.got.set()
        step = self.plan[min(len(self.attempts) - 1, len(self.plan) - 1)]
        if step == "hang":
            await asyncio.Event().wait()
        status, headers = step if isinstance(step, tuple) else (step, {})
        if not ok:
            return web.Response(status=401)
        if 200 <= status < 300:
            self.accepted.append(json.loads(body))
        return web.Response(status=status, headers=headers)


async def serve(aiohttp_server, receiver: Receiver) -> str:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook"))


class JumpClock(ManualClock):
    """Sleeps return at once, recording the delay and moving monotonic time on; UTC stays the real time
    (receivers check signature timestamps against their own clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def utc_s(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


def endpoint(url: str, events=("stream.started",), **kw) -> WebhookSettings:
    kw.setdefault("allow_private", True)  # the receivers listen on 127.0.0.1
    return WebhookSettings(url, kw.pop("secret", SECRET), frozenset(events), **kw)


async def started(endpoints, tmp_path, **kw) -> tuple[EventBus, Webhooks]:
    bus = EventBus()
    hooks = Webhooks(endpoints, bus, dead_letter=tmp_path / "dead.jsonl", metrics=OriginMetrics(), **kw)
    await hooks.start()
    return bus, hooks


def counts(hooks: Webhooks) -> dict[str, float]:
    return {dict(k)["result"]: v for k, v in hooks.metrics.webhook_deliveries.values.items()}


# ---------------------------------------------------------------- signatures


def test_readme_verify_accepts_our_signature_and_refuses_tampering():
    bus = EventBus()
    event = bus.publish("stream.started", "demo", {"renditions": []})
    body = event.json.encode()
    key = SECRET.encode()
    now = str(int(time.time()))
    headers = signed_headers(event, SECRET, body, now, 1)
    assert headers["X-Packager-Signature"] == sign(SECRET, now, body)
    assert verify(key, headers, body)
    assert not verify(key, headers, body.replace(b"demo", b"dem0"))  # tampered body
    assert not verify(b"another-secret-entirely", headers, body)
    stale = str(int(time.time()) - 301)
    assert not verify(
        key, {**headers, "X-Packager-Timestamp": stale, "X-Packager-Signature": sign(SECRET, stale, body)}, body
    )
    future = str(int(time.time()) + 301)
    assert not verify(
        key, {**headers, "X-Packager-Timestamp": future, "X-Packager-Signature": sign(SECRET, future, body)}, body
    )
    assert not verify(key, {**headers, "X-Packager-Timestamp": str(int(now) - 1)}, body)  # signed for another time
    assert not verify(key, {k: v for k, v in headers.items() if k != "X-Packager-Signature"}, body)
    assert not verify(key, {**headers, "X-Packager-Timestamp": "-5"}, body)


# ---------------------------------------------------------------- delivery


async def test_fails_twice_then_succeeds_one_accepted_delivery_same_id(aiohttp_server, tmp_path):
    rx = Receiver([500, 503, 204])
    clock = JumpClock()
    bus, hooks = await started([endpoint(await serve(aiohttp_server, rx))], tmp_path, clock=clock)
    event = bus.publish("stream.started", "demo", {"renditions": []})
    await asyncio.wait_for(hooks.drained(), 5)
    assert len(rx.accepted) == 1 and rx.accepted[0]["id"] == event.id
    assert [ok for _, _, ok in rx.attempts] == [True, True, True]
    assert {h["X-Packager-Delivery"] for h, _, _ in rx.attempts} == {event.id}
    assert [h["X-Packager-Attempt"] for h, _, _ in rx.attempts] == ["1", "2", "3"]
    headers, body, _ = rx.attempts[0]
    assert headers["Content-Type"] == "application/json" and headers["X-Packager-Event"] == "stream.started"
    assert json.loads(body) == event.as_dict()
    assert 0.25 <= clock.delays[0] <= 0.5 and 0.5 <= clock.delays[1] <= 1.0  # exponential, jittered
    assert counts(hooks) == {"delivered": 1, "retried": 2}
    await hooks.close()
    assert not (tmp_path / "dead.jsonl").exists()
    text = hooks.metrics.registry.render()
    assert 'webhook_deliveries_total{result="delivered"} 1' in text
    assert "webhook_delivery_seconds_count 3" in text


async def test_429_retry_after_is_honoured(aiohttp_server, tmp_path):
    later = formatdate(time.time() + 30, usegmt=True)
    rx = Receiver([(429, {"Retry-After": "7"}), (503, {"Retry-After": later}), (429, {"Retry-After": "99999"}), 200])
    clock = JumpClock()
    bus, hooks = await started([endpoint(await serve(aiohttp_server, rx))], tmp_path, clock=clock)
    bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    assert clock.delays[0] == 7.0
    assert 25 <= clock.delays[1] <= 30
    assert clock.delays[2] == hooks.max_retry_after_s
    assert len(rx.accepted) == 1
    await hooks.close()


async def test_always_failing_endpoint_ends_in_the_dead_letter_file(aiohttp_server, tmp_path):
    rx = Receiver([500])
    url = await serve(aiohttp_server, rx)
    bus, hooks = await started([endpoint(url + "?token=abc", max_attempts=3)], tmp_path, clock=JumpClock())
    event = bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    assert len(rx.attempts) == 3 and rx.accepted == []
    await hooks.close()
    # a restart: a new process reads what the old one wrote, and appends to it
    records = DeadLetters(tmp_path / "dead.jsonl").read()
    assert len(records) == 1
    r = records[0]
    assert r["event"] == event.as_dict() and r["attempts"] == 3 and r["error"] == "HTTP 500"
    assert r["endpoint"] == url and "token" not in r["endpoint"]
    bus2, hooks2 = await started([endpoint(url, max_attempts=1)], tmp_path, clock=JumpClock())
    bus2.publish("stream.started", "demo")
    await asyncio.wait_for(hooks2.drained(), 5)
    await hooks2.close()
    assert [x["attempts"] for x in DeadLetters(tmp_path / "dead.jsonl").read()] == [3, 1]
    assert counts(hooks)["dead_lettered"] == 1


async def test_other_4xx_ends_delivery_without_retry(aiohttp_server, tmp_path):
    rx = Receiver([410])
    bus, hooks = await started([endpoint(await serve(aiohttp_server, rx))], tmp_path, clock=JumpClock())
    bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    assert len(rx.attempts) == 1 and counts(hooks) == {"rejected": 1}
    await hooks.close()
    assert not (tmp_path / "dead.jsonl").exists()


async def test_a_hanging_receiver_does_not_delay_a_healthy_one(aiohttp_server, tmp_path):
    stuck, healthy = Receiver(["hang"]), Receiver([204])
    stuck_url, healthy_url = await serve(aiohttp_server, stuck), await serve(aiohttp_server, healthy)
    bus, hooks = await started([endpoint(stuck_url, timeout_s=30), endpoint(healthy_url)], tmp_path)
    first = bus.publish("stream.started", "demo")
    second = bus.publish("stream.started", "other")
    await asyncio.wait_for(stuck.got.wait(), 5)
    await until(lambda: len(healthy.accepted) == 2)  # while the stuck one still holds its first attempt
    assert len(stuck.attempts) == 1 and stuck.accepted == []
    await hooks.close(drain_s=0)  # the stuck delivery (and the one queued behind it) go to the dead letters
    records = DeadLetters(tmp_path / "dead.jsonl").read()
    assert [r["event"]["id"] for r in records] == [first.id, second.id]
    assert all(r["error"] == "server shut down before delivery" for r in records)
    assert records[0]["attempts"] == 1 and records[1]["attempts"] == 0


async def test_timeouts_and_connection_errors_are_retried(aiohttp_server, tmp_path):
    slow = Receiver(["hang"])
    dead_url = f"http://127.0.0.1:{free_port()}/hook"
    bus, hooks = await started(
        [
            endpoint(await serve(aiohttp_server, slow), timeout_s=0.2, max_attempts=2),
            endpoint(dead_url, max_attempts=2),
        ],
        tmp_path,
        clock=JumpClock(),
    )
    bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    await hooks.close()
    errors = sorted(r["error"] for r in DeadLetters(tmp_path / "dead.jsonl").read())
    assert errors == ["connection failed: ClientConnectorError", "timed out after 0.2 s"]
    assert len(slow.attempts) == 2 and counts(hooks) == {"retried": 2, "dead_lettered": 2}


async def test_endpoints_get_only_their_event_types(aiohttp_server, tmp_path):
    some, everything = Receiver([200]), Receiver([200])
    bus, hooks = await started(
        [
            endpoint(await serve(aiohttp_server, some), events=("stream.stopped",)),
            endpoint(await serve(aiohttp_server, everything), events=("stream.started", "stream.stopped")),
        ],
        tmp_path,
    )
    for kind in ("stream.started", "segment.published", "stream.stopped"):
        bus.publish(kind, "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    await hooks.close()
    assert [e["type"] for e in some.accepted] == ["stream.stopped"]
    assert [e["type"] for e in everything.accepted] == ["stream.started", "stream.stopped"]


async def test_a_full_queue_dead_letters_instead_of_blocking(aiohttp_server, tmp_path, monkeypatch):
    monkeypatch.setattr(webhooks_mod, "QUEUE_SIZE", 2)
    stuck = Receiver(["hang"])
    bus, hooks = await started([endpoint(await serve(aiohttp_server, stuck), timeout_s=30)], tmp_path)
    events = [bus.publish("stream.started", "s0")]
    await asyncio.wait_for(stuck.got.wait(), 5)  # in flight
    events += [bus.publish("stream.started", f"s{i}") for i in (1, 2, 3)]  # 2 queued, 1 too many
    await until(lambda: hooks.dead.written >= 1)
    overflow = DeadLetters(tmp_path / "dead.jsonl").read()
    assert [r["event"]["id"] for r in overflow] == [events[3].id] and "queue full" in overflow[0]["error"]
    await hooks.close(drain_s=0)


async def test_the_readme_receiver_itself(aiohttp_server, tmp_path, capsys):
    server = await aiohttp_server(README["app"])
    url = str(server.make_url("/hooks/packager"))
    secret = README["SECRET"].decode()
    bus, hooks = await started([endpoint(url, secret=secret), endpoint(url, secret="not-the-right-secret")], tmp_path)
    bus.publish("stream.started", "demo", {"renditions": []})
    await asyncio.wait_for(hooks.drained(), 5)
    await hooks.close()
    assert counts(hooks) == {"delivered": 1, "rejected": 1}  # the wrong secret got a 401
    assert "stream.started demo" in capsys.readouterr().out


def test_helpers():
    assert redact("https://user:pw@hooks.example.com:8443/p/a?token=x#f") == "https://hooks.example.com:8443/p/a"
    assert retry_after_s("12", 0.0) == 12.0 and retry_after_s(" 3\t", 0.0) == 3.0 and retry_after_s("0", 0.0) == 0.0
    assert retry_after_s(formatdate(1000.0, usegmt=True), now=990.0) == 10.0
    assert retry_after_s(formatdate(1000.0, usegmt=True), now=2000.0) == 0.0
    assert retry_after_s("Sunday, 06-Nov-94 08:49:37 GMT", now=784111767.0) == 10.0  # RFC 850 form


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "\u00b2",  # superscript two: str.isdigit() is true, int() fails
        "\u0661\u0662",  # Arabic-Indic twelve: int() would take it
        "1\u00b2",
        "-5",
        "+5",
        "1.5",
        "1e3",
        "99999999999",  # more than ten digits
        "9" * 5000,  # past Python's int() digit limit
        "Wed, 21 Oct 2015 07:28:00",  # a date without its zone
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Wed, 21 Oct 2015 07:28:00 GMT" + " " * 100,
        "Wed, \u0662\u0661 Oct 2015 07:28:00 GMT",
    ],
)
def test_retry_after_is_parsed_strictly(value):
    assert retry_after_s(value, 1_000_000.0) is None


async def test_an_unreadable_retry_after_falls_back_to_the_back_off(aiohttp_server, tmp_path):
    plan = [(503, {"Retry-After": v}) for v in ("\u00b2", "\u0661\u0662", "9" * 5000, "-1")] + [204]
    rx = Receiver(plan)
    clock = JumpClock()
    bus, hooks = await started(
        [endpoint(await serve(aiohttp_server, rx), max_attempts=6)], tmp_path, clock=clock, rng=lambda: 1.0
    )
    bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    assert clock.delays == [0.5, 1.0, 2.0, 4.0]  # the normal exponential back-off each time
    assert len(rx.accepted) == 1 and counts(hooks) == {"retried": 4, "delivered": 1}
    await hooks.close()


async def test_a_wrong_key_flood_never_costs_a_lifecycle_delivery(aiohttp_server, tmp_path):
    rx = Receiver([204])
    bus, hooks = await started([endpoint(await serve(aiohttp_server, rx), events=DEFAULT_TYPES)], tmp_path)
    started_event = bus.publish("stream.started", "cam")
    for i in range(11_000):  # refusals from 11,000 addresses: none coalesce with another
        ingest_rejected(
            bus,
            Refusal(None, 403, "unknown stream or wrong key", "http", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"),
        )
    stopped = bus.publish("stream.stopped", "cam", {"reason": "done"})
    ready = bus.publish("vod.ready", "cam")
    await asyncio.wait_for(hooks.drained(), 30)
    await hooks.close()
    lifecycle = [e["id"] for e in rx.accepted if e["type"] != "ingest.rejected"]
    assert lifecycle == [started_event.id, stopped.id, ready.id]
    rejected = [e for e in rx.accepted if e["type"] == "ingest.rejected"]
    assert len(rejected) == webhooks_mod.NOISY_QUEUE_SIZE  # the newest ones; older ones made room
    assert rejected[-1]["data"]["peer"] == "10.0.42.247"
    assert not (tmp_path / "dead.jsonl").exists() and hooks.dead.written == 0
    assert counts(hooks) == {
        "delivered": 3 + webhooks_mod.NOISY_QUEUE_SIZE,
        "dropped": 11_000 - webhooks_mod.NOISY_QUEUE_SIZE,
    }
    bus.close()


# ---------------------------------------------------------------- egress guard and TLS


async def test_a_name_resolving_to_loopback_is_refused_without_retry(aiohttp_server, tmp_path):
    rx = Receiver([204])
    port = (await aiohttp_server(_app(rx))).port
    url = f"http://localhost:{port}/hook"  # built directly: the load-time check would refuse "localhost"
    bus, hooks = await started([endpoint(url, max_attempts=3, allow_private=False)], tmp_path, clock=JumpClock())
    event = bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    await hooks.close()
    assert rx.attempts == []
    (record,) = DeadLetters(tmp_path / "dead.jsonl").read()
    assert record["event"]["id"] == event.id and record["attempts"] == 1
    assert record["error"].startswith("refused: localhost resolves only to private addresses (")
    assert "127.0.0.1" in record["error"]
    assert counts(hooks) == {"dead_lettered": 1}
    bus2, hooks2 = await started([endpoint(url, allow_private=True)], tmp_path / "2")
    bus2.publish("stream.started", "demo")
    await asyncio.wait_for(hooks2.drained(), 5)
    await hooks2.close()
    assert len(rx.accepted) == 1 and counts(hooks2) == {"delivered": 1}


async def test_a_literal_private_address_is_refused_at_send_time(aiohttp_server, tmp_path):
    rx = Receiver([204])
    url = await serve(aiohttp_server, rx)  # http://127.0.0.1:PORT/hook
    bus, hooks = await started([endpoint(url, max_attempts=3, allow_private=False)], tmp_path, clock=JumpClock())
    bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    await hooks.close()
    assert rx.attempts == []
    (record,) = DeadLetters(tmp_path / "dead.jsonl").read()
    assert record["error"] == "refused: 127.0.0.1 is a private address" and record["attempts"] == 1


def _app(rx: Receiver) -> web.Application:
    app = web.Application()
    app.router.add_post("/hook", rx.handle)
    return app


async def test_https_endpoints_verify_the_certificate(aiohttp_server, tmp_path):
    ca = make_ca(tmp_path / "ca")
    issued = ca.issue(tmp_path / "ca")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(issued.cert, issued.key)
    rx = Receiver([204])
    url = str((await aiohttp_server(_app(rx), ssl=tls)).make_url("/hook"))
    assert url.startswith("https://127.0.0.1:")
    bus, hooks = await started([endpoint(url, max_attempts=1)], tmp_path / "untrusted")
    bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    await hooks.close()
    (record,) = hooks.dead.read()
    assert record["error"].startswith("connection failed: ClientConnectorCertificateError")
    assert rx.attempts == [] and counts(hooks) == {"dead_lettered": 1}
    bus, hooks = await started([endpoint(url, ca_file=ca.path)], tmp_path / "trusted")
    bus.publish("stream.started", "demo")
    await asyncio.wait_for(hooks.drained(), 5)
    await hooks.close()
    assert len(rx.accepted) == 1 and counts(hooks) == {"delivered": 1}


def test_private_urls_and_ca_files_in_the_config(tmp_path):
    ca = make_ca(tmp_path)
    base = {"secret": SECRET, "events": ["stream.started"]}
    where = "[[webhooks]] #1"
    private = ["http://127.0.0.1:8080/x", "https://[::1]/x", "http://[::ffff:127.0.0.1]/", "http://localhost/x"]
    private += ["http://169.254.169.254/latest", "http://10.1.2.3/", "http://[fe80::1]/", "http://0.0.0.0/"]
    private += ["http://100.64.0.1/", "http://[fc00::1]/", "http://127.1/", "http://2130706433/"]
    for url in private:
        with pytest.raises(ConfigError) as err:
            webhook_settings({"url": url, **base}, where)
        assert "[[webhooks]] #1.url" in str(err.value) and "allow_private = true" in str(err.value), url
        assert webhook_settings({"url": url, "allow_private": True, **base}, where).allow_private
    public = webhook_settings({"url": "https://8.8.8.8/x", "ca_file": str(ca.path), **base}, where)
    assert public.ca_file == ca.path and not public.allow_private
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    for bad in (str(tmp_path / "missing.pem"), str(not_pem), "", 5):
        with pytest.raises(ConfigError, match=r"\[\[webhooks\]\] #1\.ca_file"):
            webhook_settings({"url": "https://cms.example.com/x", "ca_file": bad, **base}, where)
    with pytest.raises(ConfigError, match=r"#1\.ca_file only applies to an https"):
        webhook_settings({"url": "http://cms.example.com/x", "ca_file": str(ca.path), **base}, where)
    with pytest.raises(ConfigError, match=r"#1\.allow_private must be true or false"):
        webhook_settings({"url": "http://cms.example.com/x", "allow_private": "yes", **base}, where)


def test_a_private_url_in_the_file_names_the_field(tmp_path):
    text = '[[webhooks]]\nurl = "http://192.168.0.9/h"\nsecret = "sixteen-chars-ok"\nevents = ["*"]\n'
    with pytest.raises(ConfigError, match=r"\[\[webhooks\]\] #1\.url.*set allow_private = true"):
        load(write(tmp_path, text), StreamConfig(), [])
    (hook,) = load(write(tmp_path, text + "allow_private = true\n"), StreamConfig(), []).webhooks
    assert hook.allow_private


# ---------------------------------------------------------------- configuration


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "packager.toml"
    p.write_text(text)
    return p


def test_webhooks_from_the_config_file(tmp_path):
    s = load(
        write(
            tmp_path,
            """
[events]
dead_letter = "/tmp/dead.jsonl"
backlog = 50
rejection_interval = 2.5

[[webhooks]]
url = "https://cms.example.com/hooks"
secret = "sixteen-chars-ok"
events = ["stream.started", "vod.ready"]
timeout_s = 2.5
max_attempts = 3

[[webhooks]]
url = "http://10.0.0.5:9000/x"
secret = "another-long-secret"
events = ["*", "segment.published"]
allow_private = true
""",
        ),
        StreamConfig(),
        [],
    )
    a, b = s.webhooks
    assert a.url == "https://cms.example.com/hooks" and a.events == {"stream.started", "vod.ready"}
    assert a.timeout_s == 2.5 and a.max_attempts == 3 and not a.allow_private and a.ca_file is None
    assert b.allow_private
    assert "segment.published" in b.events and "ingest.rejected" in b.events and b.max_attempts == 6
    assert s.dead_letter == Path("/tmp/dead.jsonl") and s.event_backlog == 50 and s.rejection_interval_s == 2.5
    assert load(None, StreamConfig(), []).rejection_interval_s == 10.0
    for bad in ("0", "true", '"10"', "99999"):
        with pytest.raises(ConfigError, match="rejection_interval"):
            load(write(tmp_path, f"[events]\nrejection_interval = {bad}\n"), StreamConfig(), [])
    assert load(None, StreamConfig(), []).webhooks == ()


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"url": "ftp://example.com/x"}, "#1.url"),
        ({"url": "http://"}, "#1.url"),
        ({"url": "https:///path-only"}, "#1.url"),
        ({"url": "example.com/hook"}, "#1.url"),
        ({"url": "http://example.com:99999/x"}, "#1.url"),
        ({"url": "http://exa mple.com/"}, "#1.url"),
        ({"url": 42}, "#1.url"),
        ({"secret": "short"}, "#1.secret"),
        ({"events": ["stream.exploded"]}, "#1.events"),
        ({"events": "stream.started"}, "#1.events"),
        ({"events": []}, "#1.events"),
        ({"timeout_s": 0}, "#1.timeout_s"),
        ({"timeout_s": "10"}, "#1.timeout_s"),
        ({"max_attempts": 0}, "#1.max_attempts"),
        ({"max_attempts": True}, "#1.max_attempts"),
        ({"retries": 3}, "unknown field(s) retries"),
        ({"url": None}, "#1.url is required"),
    ],
)
def test_bad_webhook_config_names_the_field(table, field):
    values = {"url": "https://example.com/hook", "secret": SECRET, "events": ["stream.started"], **table}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        webhook_settings(values, "[[webhooks]] #1")
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("webhooks = 5", "webhooks must be"),
        ('[[webhooks]]\nurl = "gopher://x"\nsecret = "sixteen-chars-ok"\nevents = ["*"]', "[[webhooks]] #1.url"),
        ("[events]\nbacklog = 1", "[events].backlog"),
        ("[events]\ndead_letter = 3", "[events].dead_letter"),
        ("[events]\nsomething = 3", "[events] has unknown"),
    ],
)
def test_bad_event_sections_in_the_file(tmp_path, text, field):
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text), StreamConfig(), [])
    assert field in str(err.value)
