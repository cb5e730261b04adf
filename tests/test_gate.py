"""The ingest gate's limits: admission budgets, the per-peer refusal throttle, running bitrate sums (no media)."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestServer

from origin.app import create_app
from packager.config import ConfigError, StreamConfig
from packager.ingest.gate import THROTTLED, WINDOW_S, IngestGate, Refusal, Ticket
from packager.ingest.manager import IngestManager
from packager.ingest.throttle import MAX_PEERS, RefusalThrottle
from packager.peer import peer_address
from packager.settings import IngestSettings, StreamSettings
from packager.store import Store


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def stream(name: str, max_kbps: int | None = None, takeover: bool = False) -> StreamSettings:
    return StreamSettings(StreamConfig(name=name), f"key-for-{name}-123", takeover=takeover, max_kbps=max_kbps)


def make_gate(*streams: StreamSettings, clock: Clock, **kw: object) -> tuple[IngestGate, list[Refusal]]:
    gate = IngestGate(IngestSettings(streams={s.name: s for s in streams}, **kw), clock=clock)  # type: ignore[arg-type]
    seen: list[Refusal] = []
    gate.refusal_listeners.append(seen.append)
    return gate, seen


def push(gate: IngestGate, ticket: Ticket, kbps: float, clock: Clock, seconds: float, step_s: float = 0.1) -> int:
    """Account ``kbps`` for ``seconds`` in ``step_s`` chunks; the first non-200 status (200 if none)."""
    for _ in range(round(seconds / step_s)):
        clock.t += step_s
        verdict = gate.account(ticket, round(kbps * 1000 / 8 * step_s))
        if not verdict.ok:
            return verdict.status
    return 200


def live(gate: IngestGate, name: str, peer: str = "10.0.0.1") -> Ticket:
    verdict = gate.check(name, f"key-for-{name}-123", protocol="http", peer=peer)
    assert verdict.ok, verdict
    return gate.begin(name, "http", peer)


# --------------------------------------------------------------------------- total ingest limit


def test_a_heavy_publisher_is_cut_never_the_small_one_beside_it():
    clock = Clock()
    gate, seen = make_gate(stream("small", 500), stream("big"), clock=clock, max_ingest_kbps=3000, publisher_kbps=2500)
    small = live(gate, "small")
    assert push(gate, small, 310, clock, 6) == 200
    big = live(gate, "big")  # 2500 reserved beside small's 500: exactly the total
    for _ in range(100):  # both push side by side; big at 3.2 Mb/s is over its own 2.5 Mb/s budget
        clock.t += 0.1
        assert gate.account(small, round(310 * 100 / 8)).ok
        verdict = gate.account(big, round(3200 * 100 / 8))
        if not verdict.ok:
            break
    assert verdict.status == 429 and "2500 kb/s" in verdict.reason
    assert [(r.stream, r.status) for r in seen] == [("big", 429)]
    gate.end(big)
    assert push(gate, small, 310, clock, 10) == 200


def test_a_publisher_that_would_exceed_the_total_is_refused_at_admission():
    clock = Clock()
    gate, seen = make_gate(stream("a", 2000), stream("b", 1500), stream("c"), clock=clock, max_ingest_kbps=3000)
    a = live(gate, "a")
    verdict = gate.check("b", "key-for-b-123", protocol="rtmp", peer="10.0.0.2")
    assert verdict.status == 503 and "2000 of 3000 kb/s committed" in verdict.reason and "1500" in verdict.reason
    assert seen[-1].stream == "b" and seen[-1].status == 503
    assert gate.budget_kbps("c") == 3000 // 8
    c = live(gate, "c")  # a small default budget still fits
    assert c.budget_kbps == 375
    gate.end(a)
    assert gate.check("b", "key-for-b-123").ok  # a's budget is free again
    assert push(gate, c, 300, clock, 8) == 200


def test_a_takeover_frees_the_replaced_publishers_budget():
    clock = Clock()
    gate, _ = make_gate(stream("a", 2000, takeover=True), clock=clock, max_ingest_kbps=3000)
    first = live(gate, "a")
    assert push(gate, first, 1900, clock, 6) == 200
    second = live(gate, "a")
    assert gate.account(first, 10).status == 409
    gate.end(first)
    assert push(gate, second, 1900, clock, 6) == 200


def test_a_measured_burst_over_the_reservations_holds_admission():
    clock = Clock()
    gate, _ = make_gate(stream("a", 1000), stream("b", 1000), clock=clock, max_ingest_kbps=3000)
    a = live(gate, "a")
    assert push(gate, a, 3000, clock, 4) == 200  # the start-up burst may go over the budget
    assert gate.ingest_kbps == pytest.approx(3000 * 4 / WINDOW_S)
    verdict = gate.check("b", "key-for-b-123")
    assert verdict.status == 503 and "2400 of 3000" in verdict.reason
    gate.end(a)
    assert gate.ingest_kbps == 0 and gate.check("b", "key-for-b-123").ok


def test_budgets_must_fit_the_total():
    with pytest.raises(ConfigError, match=r"\[streams.a\].max_kbps: 5000 is over max_ingest_kbps"):
        IngestSettings(streams={"a": stream("a", 5000)}, max_ingest_kbps=4000)
    with pytest.raises(ConfigError, match="publisher_kbps"):
        IngestSettings(max_ingest_kbps=4000, publisher_kbps=4001)
    with pytest.raises(ConfigError, match="refusal_limit"):
        IngestSettings(refusal_limit=0)
    with pytest.raises(ConfigError, match="refusal_window"):
        IngestSettings(refusal_window_s=0.5)


# --------------------------------------------------------------------------- per-peer refusal throttle


def test_a_wrong_key_flood_from_one_peer_is_answered_429_and_reported_once():
    clock = Clock()
    gate, seen = make_gate(stream("a"), clock=clock)
    statuses = []
    for i in range(11_000):  # 11,000 attempts in 2.3 s, each on a new source port
        clock.t += 2.3 / 11_000
        statuses.append(
            gate.check("a", "wrong-key-1234", protocol="http", peer=f"203.0.113.7:{1024 + i % 60000}").status
        )
    assert statuses[:20] == [403] * 20 and set(statuses[20:]) == {429}
    assert gate.refused == 11_000
    assert [(r.status, r.count) for r in seen] == [(403, 1)] * 20 + [(429, 1)]
    assert seen[-1].reason == THROTTLED and seen[-1].peer.startswith("203.0.113.7")
    # the right key from the throttled address is not even compared; another address is unaffected
    assert gate.check("a", "key-for-a-123", peer="203.0.113.7").status == 429
    assert gate.check("a", "key-for-a-123", peer="198.51.100.1").ok


def test_a_throttled_peer_gets_back_in_after_the_window_and_the_flood_is_counted():
    clock = Clock()
    gate, seen = make_gate(stream("a"), clock=clock, refusal_limit=3, refusal_window_s=10)
    for _ in range(100):
        clock.t += 0.01
        gate.check("a", "wrong-key-1234", peer="::1")
    assert len(seen) == 4  # three refusals, then one throttled report
    clock.t += 10
    assert gate.check("a", "key-for-a-123", peer="[::1]:4000").ok  # blocked attempts did not extend the block
    for _ in range(4):
        gate.check("a", "wrong-key-1234", peer="::1")
    assert [(r.status, r.count) for r in seen[4:]] == [(403, 1)] * 3 + [(429, 97)]  # 96 swallowed + this one


def test_peers_without_an_address_are_never_throttled_together():
    clock = Clock()
    gate, _ = make_gate(stream("a"), clock=clock, refusal_limit=1)
    for peer in ("srt", "srt", "?", ""):
        assert gate.check("a", "wrong-key-1234", peer=peer).status == 403
    assert gate.check("a", "key-for-a-123", peer="srt").ok


def test_peer_tracking_is_bounded():
    throttle = RefusalThrottle(limit=2, window_s=10)
    for address in ("192.0.2.9", "192.0.2.9", "192.0.2.10"):
        throttle.refused(address, 0.0)
    throttle.refused("192.0.2.10", 0.0)
    assert throttle.blocked("192.0.2.9", 0.0) and throttle.blocked("192.0.2.10", 0.0)
    for i in range(3 * MAX_PEERS - 1):  # one refusal each from many addresses
        throttle.refused(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.0)
        if i % (MAX_PEERS // 2) == 0:
            throttle.refused("192.0.2.10", 0.0)  # refused again and again: kept as recent
    assert len(throttle) == MAX_PEERS
    assert not throttle.blocked("192.0.2.9", 0.0)  # forgotten: refused longest ago
    assert throttle.blocked("192.0.2.10", 0.0)


@pytest.mark.parametrize(
    "peer,address",
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:1935", "192.0.2.1"),
        ("[2001:db8::1]:9000", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("srt", None),
        ("?", None),
        ("", None),
        ("host.example:80", None),
    ],
)
def test_peer_address(peer, address):
    assert peer_address(peer) == address


async def test_over_http_a_flooding_peer_gets_429_and_a_newcomer_over_the_total_503(aiohttp_client):
    clock = Clock()
    settings = IngestSettings(
        streams={s.name: s for s in (stream("a", 2000), stream("b", 1500))},
        rtmp_port=0,
        srt_port=0,
        max_ingest_kbps=3000,
    )
    store = Store()
    manager = IngestManager(settings, store)
    gate = IngestGate(settings, clock=clock)
    client = await aiohttp_client(TestServer(create_app(store, ingest=(gate, manager))))
    try:
        answers = []
        for _ in range(25):
            clock.t += 0.01
            async with client.put("/ingest/a?key=wrong-key-1234", data=b"x") as r:
                answers.append((r.status, await r.text()))
        assert [s for s, _ in answers] == [403] * 20 + [429] * 5
        assert THROTTLED in answers[-1][1]
        async with client.put("/ingest/a?key=key-for-a-123", data=b"x") as r:
            assert r.status == 429  # the loopback address is throttled, whatever the key
        clock.t += 10
        gate.begin("a", "http", "192.0.2.1")  # a holds 2000 of the 3000 kb/s
        async with client.put("/ingest/b?key=key-for-b-123", data=b"x") as r:
            assert r.status == 503 and "total ingest limit" in await r.text()
    finally:
        await manager.shutdown()


# --------------------------------------------------------------------------- running sums


@dataclass
class RefTicket:
    """The reference: every sample ever, summed over the window by bisection on prefix sums."""

    ticket: Ticket
    budget: int
    times: list[float] = field(default_factory=list)
    prefix: list[int] = field(default_factory=lambda: [0])
    open: bool = True
    kicked: bool = False

    def add(self, t: float, n: int) -> None:
        self.times.append(t)
        self.prefix.append(self.prefix[-1] + n)

    def window(self, now: float) -> int:
        return self.prefix[-1] - self.prefix[bisect.bisect_left(self.times, now - WINDOW_S)]


def expected_status(ref: RefTicket, now: float) -> int:
    if ref.kicked:
        return 409
    if now - ref.ticket.started < WINDOW_S:
        return 200
    return 429 if ref.window(now) * 8 / WINDOW_S / 1000 > ref.budget else 200


def replace(gate: IngestGate, refs: dict[str, RefTicket], name: str, rng: random.Random) -> None:
    """End ``name``'s publisher (or take it over, leaving the old one sending) and admit a new one."""
    old = refs[name]
    if rng.random() < 0.5:
        gate.end(old.ticket)
        old.open = False
    else:
        old.kicked = True
        refs[f"{name}-old-{rng.random()}"] = old
    refs[name] = RefTicket(gate.begin(name, "http", "10.0.0.1"), gate.budget_kbps(name))


def test_running_sums_match_a_reference_over_100k_chunks():
    rng = random.Random(10)
    clock = Clock()
    names = ["a", "b", "c", "d"]
    budgets = [800, 1500, None, 3000]
    gate, _ = make_gate(
        *(stream(n, b, takeover=True) for n, b in zip(names, budgets, strict=True)), clock=clock, max_ingest_kbps=8000
    )
    refs = {n: RefTicket(gate.begin(n, "http", "10.0.0.1"), gate.budget_kbps(n)) for n in names}
    for _ in range(100_000):
        clock.t += rng.random() * 0.004
        if rng.random() < 0.0005:
            replace(gate, refs, rng.choice(names), rng)
        ref = rng.choice([r for r in refs.values() if r.open])
        n = rng.randrange(0, 2000)
        verdict = gate.account(ref.ticket, n)
        ref.add(clock.t, n)
        assert verdict.status == expected_status(ref, clock.t)
        assert ref.ticket.window_bytes == ref.window(clock.t)
        if ref.kicked and rng.random() < 0.05:
            gate.end(ref.ticket)
            ref.open = False
        total = sum(r.window(clock.t) for r in refs.values() if r.open)
        assert gate.ingest_kbps == total * 8 / WINDOW_S / 1000


def test_peers_are_formatted_so_their_host_reads_back() -> None:
    from packager.peer import format_peer, peer_host

    assert format_peer(("1.2.3.4", 5678)) == "1.2.3.4:5678"
    assert format_peer(("2001:db8::1", 443, 0, 0)) == "[2001:db8::1]:443"
    for addr in (("1.2.3.4", 5678), ("2001:db8::1", 443, 0, 0), ("::1", 5)):
        assert peer_address(format_peer(addr)) == addr[0]
        assert peer_host(format_peer(addr)) == addr[0]
