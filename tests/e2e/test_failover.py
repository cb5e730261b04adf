"""Redundant encoders with real parts: two ``run --standby`` nodes, one Redis, one origin, hls.js and dash.js.

Both nodes encode ``testsrc`` (drawn from UTC: the same picture) with the same
small ladder; one holds the lease and publishes. The tests kill the active
node (-9) at a random point of a segment while both players play from the
origin and a poller fetches everything the manifests name; pause the active
node (SIGSTOP) past its lease and check it writes nothing after it lost it;
restart a killed node and fail back to it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from packager.publication import PartPublished, SegmentClosed
from packager.redisstore.codec import decode
from tests.e2e.playback import open_player, wait_ready
from tests.e2e.test_scaleout import Poller, _playing, _sample
from tests.support import redis as redis_support
from tests.support.failover import Pair, media_gap_s, owner_changes
from tests.support.procs import REPO, SMALL_LADDER, free_port, have_browser, interrupt, wait_http, wait_segments
from tests.support.redis import RedisServer, redis_server
from tests.support.xsd import validate_mpd

pytestmark = [pytest.mark.browser, pytest.mark.media]
__all__ = ["redis_server"]  # the fixture

if not redis_support.available():
    pytest.skip(f"{redis_support.REDIS_SERVER} is not installed", allow_module_level=True)
if not have_browser():
    pytest.skip("chromium is not installed", allow_module_level=True)

STREAM = "/live/demo"
SEGMENT_S = 2.0
PART_S = 0.5
NOTICEABLE_STALL_S = 0.1  # three frames at 30 fps


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("failover")
    port = free_port()
    log = open(workdir / "origin.log", "ab")  # noqa: SIM115
    cmd = [sys.executable, "-m", "packager", "origin", "--store", redis_server.url, "--port", str(port)]
    origin = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    p = Pair(redis_server, workdir, f"http://127.0.0.1:{port}")
    try:
        wait_http(f"{p.origin}/healthz", 30, origin)
        p.start("a")
        p.wait_active()  # a claims the fresh stream first
        p.start("b")
        wait_segments(f"{p.origin}{STREAM}/270p/index.m3u8", 3, timeout_s=60)
        p.wait_roles({"a": "active", "b": "standby"})
        yield p
    finally:
        for proc in p.nodes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            interrupt(proc, 15)
        interrupt(origin, 10)


def _parts_by_node(entries: list[tuple[str, dict[bytes, bytes]]]) -> dict[tuple[str, int, int], set[str]]:
    seen: dict[tuple[str, int, int], set[str]] = {}
    for _, fields in entries:
        if fields.get(b"t") == b"p":
            event = decode(fields)
            assert isinstance(event, PartPublished)
            key = (event.part.track, event.part.msn, event.part.index)
            seen.setdefault(key, set()).add(fields[b"nd"].decode())
    return seen


def _cut_segments(entries: list[tuple[str, dict[bytes, bytes]]]) -> list[tuple[str, int]]:
    closed = [decode(f) for _, f in entries if f.get(b"t") == b"c"]
    return [(e.segment.track, e.segment.msn) for e in closed if isinstance(e, SegmentClosed) and e.segment.cut]


def _check_log(entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
    """At most one node per part position; epochs never go back along the log."""
    doubles = {k: v for k, v in _parts_by_node(entries).items() if len(v) > 1}
    assert not doubles, list(doubles.items())[:5]
    epochs = [int(f.get(b"ep", b"0")) for _, f in entries if b"ep" in f]
    assert epochs == sorted(epochs)


def _open_players(browser, origin: str, contexts: list, names: tuple[str, ...] = ("hls", "dash")) -> list:  # type: ignore[no-untyped-def,type-arg]
    """The players ``names`` playing the stream from ``origin``, ready; their browser contexts go to ``contexts``."""
    players = []
    for name, src in (("hls", "master.m3u8"), ("dash", "manifest.mpd")):
        if name not in names:
            continue
        context, page, pb = open_player(browser, f"{origin}/players/{name}.html?src={STREAM}/{src}")
        contexts.append(context)
        wait_ready(page, pb, timeout_s=30)
        players.append((page, pb))
    return players


def test_a_killed_active_node_is_replaced_within_a_segment_and_players_keep_playing(pair: Pair, browser) -> None:  # type: ignore[no-untyped-def]
    poller = Poller(pair.origin)
    poller.start()
    contexts: list = []  # type: ignore[type-arg]
    try:
        players = _open_players(browser, pair.origin, contexts)
        _sample(players, 6)
        old = pair.active()
        assert old == "a"
        time.sleep(random.uniform(0, SEGMENT_S))  # a random point of a segment
        poller.phase = "active killed"
        pair.nodes[old].kill()
        pair.nodes[old].wait()
        killed = time.monotonic()
        new = pair.wait_active(not_node=old)
        print(f"failover: lease taken by {new} {time.monotonic() - killed:.2f} s after the kill")
        since = time.monotonic()
        _sample(players, 14)
        _playing(players, since, "after the active node was killed", 0.7)
        for _, pb in players:
            stats = pb.last
            print(f"{stats.get('player')}: stalls {stats.get('stallLog')} ({stats.get('stallTime', 0):.2f} s)")
            # The new owner fills the segment the dead one left from the part after its last one: no media is
            # lost, and the players wait at most for the lease to move (two parts). At most one stall, under a
            # second; a wait under NOTICEABLE_STALL_S holds the picture for at most three frames: not counted.
            noticeable = [s for s in stats.get("stallLog", []) if s["s"] >= NOTICEABLE_STALL_S]
            assert len(noticeable) <= 1, stats
            assert all(s["s"] < 1.0 for s in noticeable), stats
            assert not [e for e in pb.media_errors if not e.startswith("503 ")], pb.media_errors
    finally:
        poller.stopped.set()
        poller.join(15)
        for context in contexts:
            context.close()
    entries = pair.log()
    changes = owner_changes(entries)
    assert changes, "no OwnerChanged in the log"
    change_id, change = changes[-1]
    assert (change.from_node, change.to_node, change.reason) == ("a", "b", "lease expired")
    gap = media_gap_s(entries, change_id)
    print(f"failover: media gap {gap:.3f} s (OwnerChanged gap_s {change.gap_s})")
    assert abs(gap) < 0.05 and change.gap_s < 0.05  # filled: nothing lost (a frame of grid offset at most)
    assert not any(_cut_segments(entries)), "a filled take-over leaves no cut segment"
    _check_log(entries)
    assert poller.checked > 50 and poller.failures == [], poller.failures[:20]


def test_a_paused_active_node_writes_nothing_after_it_lost_its_lease(pair: Pair) -> None:
    pair.start("a")  # the killed node comes back as standby
    pair.wait_roles({"a": "standby", "b": "active"})
    time.sleep(random.uniform(0, SEGMENT_S))
    pair.nodes["b"].send_signal(signal.SIGSTOP)
    try:
        assert pair.wait_active(not_node="b") == "a"  # fail back
        time.sleep(3 * 2 * PART_S)  # three lease periods
    finally:
        pair.nodes["b"].send_signal(signal.SIGCONT)
    pair.wait_roles({"a": "active", "b": "standby"})
    time.sleep(2)
    entries = pair.log()
    change_id, change = owner_changes(entries)[-1]
    assert (change.from_node, change.to_node) == ("b", "a")
    late = [i for i, f in entries if i > change_id and f.get(b"nd") == b"b"]
    assert late == [], f"the paused node wrote {len(late)} entries after it lost the lease"
    _check_log(entries)
    _, _, playlist = _get(f"{pair.origin}{STREAM}/270p/index.m3u8")
    assert f"{change.resume_msn}.m4s".encode() in playlist  # numbering continued


def _periods(mpd: bytes) -> list[tuple[str, list[int]]]:
    """(Period id, the 270p segment numbers it lists) per Period."""
    root = validate_mpd(mpd)
    ns = {"d": root.nsmap[None]}
    out = []
    for period in root.iterfind("d:Period", ns):
        rep = period.find(".//d:Representation[@id='270p']", ns)
        template = rep.find("d:SegmentTemplate", ns)
        first = int(template.get("startNumber"))
        count = sum(1 + int(e.get("r", "0")) for e in template.iterfind("d:SegmentTimeline/d:S", ns))
        out.append((period.get("id"), list(range(first, first + count))))
    return out


def test_hls_js_rides_through_an_outage_of_every_encoder_and_both_runs_stay_listed(pair: Pair, browser) -> None:  # type: ignore[no-untyped-def]
    poller = Poller(pair.origin)
    poller.start()
    contexts: list = []  # type: ignore[type-arg]
    try:
        players = _open_players(browser, pair.origin, contexts, ("hls",))  # dash.js: see README, Known limits
        _sample(players, 4)
        poller.phase = "every encoder down"
        poller.unproduced_allowed = True
        for proc in pair.nodes.values():
            proc.kill()
            proc.wait()
        time.sleep(5)  # seconds of media nobody produces
        pair.start("a")
        pair.wait_active(timeout_s=30)
        poller.phase = "back"
        _sample(players, 8)  # the players find the new media
        since = time.monotonic()
        _sample(players, 10)
        _playing(players, since, "after every encoder was down for 5 s", 0.7)
        for _, pb in players:
            print(f"{pb.last.get('player')}: stalls {pb.last.get('stallLog')} ({pb.last.get('stallTime', 0):.2f} s)")
    finally:
        poller.stopped.set()
        poller.join(15)
        for context in contexts:
            context.close()
    assert poller.checked > 50 and poller.failures == [], poller.failures[:20]
    # DASH: the run from before the outage in its Period, the new one in the next, a hole between
    _, _, mpd = _get(f"{pair.origin}{STREAM}/manifest.mpd")
    (old_id, old), (new_id, new) = _periods(mpd)[-2:]
    assert int(old_id) <= old[0] and new[0] == int(new_id) and new[0] > old[-1] + 1, (old_id, old, new_id, new)
    # HLS: one numbering, the outage listed as EXT-X-GAP
    _, _, playlist = _get(f"{pair.origin}{STREAM}/270p/index.m3u8")
    lines = playlist.decode().splitlines()
    assert all(lines[lines.index(f"{m}.m4s") - 1] == "#EXT-X-GAP" for m in range(old[-1] + 2, new[0]))
    pair.start("b")  # the standby again
    pair.wait_roles({"a": "active", "b": "standby"})


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    from tests.support.procs import get

    return get(url, timeout=10)


def _push(port: int, key: str) -> subprocess.Popen[bytes]:
    """A broadcaster pushing the same generated feed over RTMP (x264 with a 2 s GOP, AAC)."""
    source = ["-re", "-f", "lavfi", "-i", "testsrc2=size=480x270:rate=30", "-f", "lavfi", "-i", "sine=f=440:r=48000"]
    codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-c:a", "aac"]
    url = f"rtmp://127.0.0.1:{port}/live/demo?key={key}"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", *source, *codecs, "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_push_that_stops_on_the_active_node_fails_over_to_the_standby_with_live_input(
    pair: Pair,
    tmp_path: Path,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    for proc in pair.nodes.values():  # the testsrc nodes are done; the same Redis serves a pushed stream
        interrupt(proc, 15)
    pair.client().delete("lp:nodes:demo")
    key = "push-failover-key"
    rtmp = {"a": free_port(), "b": free_port()}
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    pushes: dict[str, subprocess.Popen[bytes]] = {}
    for node in ("a", "b"):
        cmd = [sys.executable, "-m", "packager", "run", "--stream-key", f"demo={key}", "--rtmp-port", str(rtmp[node])]
        cmd += ["--srt-port", "0", "--ladder", SMALL_LADDER, "--preset", "ultrafast", "--store", pair.redis.url]
        cmd += ["--standby", "--node-id", f"push-{node}", "--no-serve", "--out", str(tmp_path / node)]
        with open(tmp_path / f"{node}.log", "wb") as log:
            nodes[node] = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        pushes["a"] = _push(rtmp["a"], key)
        pair.wait_active(timeout_s=30)
        pushes["b"] = _push(rtmp["b"], key)
        wait_segments(f"{pair.origin}{STREAM}/270p/index.m3u8", 3, timeout_s=60)
        pair.wait_roles({"push-a": "active", "push-b": "standby"})
        context, page, pb = open_player(browser, f"{pair.origin}/players/hls.html?src={STREAM}/master.m3u8")
        try:
            wait_ready(page, pb, timeout_s=30)
            pushes["a"].kill()  # the broadcaster's path to node a is gone: a shows the slate
            assert pair.wait_active(not_node="push-a", timeout_s=20) == "push-b"
            since = time.monotonic()
            _sample([(page, pb)], 8)
            _playing([(page, pb)], since, "after the push failover", 0.6)
        finally:
            context.close()
        _, change = owner_changes(pair.log())[-1]
        assert (change.from_node, change.to_node, change.reason) == ("push-a", "push-b", "input")
        assert change.gap_s == 0.0  # handed over on a segment boundary
    finally:
        for proc in pushes.values():
            proc.kill()
        for proc in nodes.values():
            interrupt(proc, 15)
