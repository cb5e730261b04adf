"""Scale-out roles from the command line: origin workers sharing a port, stream leases, usage errors.

Everything runs against a real redis-server; the workers are real processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from origin.workers import Backoff, reuseport_socket
from tests.support.procs import REPO, free_port, get, wait_http
from tests.support.redis import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture

LADDER = ["--ladder", "320x180@200k", "--preset", "ultrafast"]


def packager(args: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "packager", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )


@contextmanager
def background(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "packager", *args], cwd=REPO, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def worker_pid(base: str) -> int | None:
    """The pid of the worker that answered a fresh connection (None: reset by a worker killed meanwhile)."""
    try:
        status, _, body = get(f"{base}/metrics", timeout=5)
    except OSError:
        return None
    assert status == 200
    return int(re.search(rb"^origin_worker_pid (\d+)$", body, re.M).group(1))


def pids_answering(base: str, want: int, timeout_s: float = 20) -> set[int]:
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < want and time.monotonic() < deadline:
        pid = worker_pid(base)
        if pid is not None:
            seen.add(pid)
    return seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def wait_gone(pids: set[int], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), pids


# ---------------------------------------------------------------- usage errors (no Redis needed)


@pytest.mark.parametrize(
    "args,line",
    [
        (["origin"], "packager: error: origin: give exactly one of --root DIR or --store redis://HOST:PORT/DB\n"),
        (
            ["origin", "--root", ".", "--store", "redis://127.0.0.1/0"],
            "packager: error: origin: give exactly one of --root DIR or --store redis://HOST:PORT/DB\n",
        ),
        (
            ["origin", "--store", "http://127.0.0.1/0"],
            "packager: error: --store: 'http://127.0.0.1/0' is not a redis:// URL (expected redis://HOST[:PORT][/DB])\n",
        ),
        (
            ["origin", "--root", ".", "--workers", "2"],
            "packager: error: --workers needs --store (a folder is served by one process)\n",
        ),
        (
            ["origin", "--store", "redis://127.0.0.1/0", "--workers", "0"],
            "packager: error: --workers: 0 must be between 1 and 256\n",
        ),
        (
            ["run", "--origin-workers", "2"],
            "packager: error: --origin-workers needs --store (the workers serve what the store holds)\n",
        ),
        (
            ["run", "--store", "redis://127.0.0.1/0", "--origin-workers", "2", "--no-serve"],
            "packager: error: --origin-workers serves --port: it cannot go with --no-serve\n",
        ),
        (
            ["run", "--store", "redis://127.0.0.1:99999/0"],
            "packager: error: --store: 'redis://127.0.0.1:99999/0' is not a URL (expected redis://HOST[:PORT][/DB])\n",
        ),
        (
            ["run", "--node-id", "a"],
            "packager: error: --node-id needs --store (it names this node in the store's leases)\n",
        ),
        (
            ["run", "--standby"],
            "packager: error: --standby needs --store (the redundant encoders share its stream leases)\n",
        ),
        (
            ["run", "--store", "redis://127.0.0.1/0", "--standby", "--failover-after-slate", "0"],
            "packager: error: --failover-after-slate: 0 must be between 0.5 and 3600 s\n",
        ),
        (
            ["run", "--store", "redis://127.0.0.1/0", "--standby", "--failover-after-slate", "nan"],
            "packager: error: --failover-after-slate: nan must be between 0.5 and 3600 s\n",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], line: str, tmp_path: Path) -> None:
    if args[0] == "run":
        args = [*args, "--out", str(tmp_path / "out")]
    done = packager(args)
    assert (done.returncode, done.stderr, done.stdout) == (2, line, "")
    assert not (tmp_path / "out").exists(), "a usage error starts nothing"


def test_backoff_doubles_while_workers_die_young_and_resets_after_a_stable_run() -> None:
    b = Backoff(first_s=0.25, max_s=1.0, stable_s=10.0)
    delays = [b.after(None, 0.1)]
    for _ in range(4):
        delays.append(b.after(delays[-1], 0.1))
    assert delays == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert b.after(1.0, 10.0) == 0.25


def test_a_reservation_receives_no_connections_and_workers_share_the_port() -> None:
    port = free_port()
    reserved = reuseport_socket("127.0.0.1", port, listen=False)
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        a = reuseport_socket("127.0.0.1", port, listen=True)
        b = reuseport_socket("127.0.0.1", port, listen=True)
        a.close(), b.close()
    finally:
        reserved.close()


def test_a_busy_port_stops_a_supervisor_with_one_line() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = packager(["origin", "--store", "redis://127.0.0.1/0", "--workers", "2", "--port", str(port)])
    assert (done.returncode, done.stderr) == (
        1,
        f"packager: cannot listen on 127.0.0.1:{port}: address already in use\n",
    )


# ---------------------------------------------------------------- with a real Redis


def test_two_workers_answer_on_one_port_and_a_killed_one_is_restarted(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["origin", "--store", redis_server.url, "--workers", "2", "--port", str(port)]
    with background(args, tmp_path / "origin.log") as supervisor:
        wait_http(f"{base}/healthz", 30, supervisor)
        first = pids_answering(base, 2)
        assert len(first) == 2, first
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        now: set[int] = set()
        while time.monotonic() < deadline:
            now = pids_answering(base, 2, timeout_s=2)
            if len(now) == 2 and victim not in now:
                break
        assert len(now) == 2 and victim not in now, (first, now)
        assert "exited with -9; restarting" in (tmp_path / "origin.log").read_text()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(15) == 0
    wait_gone(now)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_stream_leased_by_another_node_stops_the_encoder_with_one_line(
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    client = redis.Redis(port=redis_server.port)
    client.set("lp:lease:demo", "studio-b", px=60_000)
    try:
        done = packager(
            ["run", "testsrc:320x180", *LADDER, "--store", redis_server.url, "--no-serve", "--out", str(tmp_path)]
        )
    finally:
        client.delete("lp:lease:demo")
        client.close()
    assert (done.returncode, done.stderr, done.stdout) == (
        1,
        "packager: error: stream 'demo' is live on node studio-b\n",
        "",
    )
    assert not any((tmp_path / "demo").iterdir()), "no pipeline may have started"


def test_an_unreachable_store_stops_the_encoder_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    done = packager(
        [
            "run",
            "testsrc:320x180",
            *LADDER,
            "--store",
            f"redis://127.0.0.1:{port}/0",
            "--no-serve",
            "--out",
            str(tmp_path),
        ]
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"packager: error: --store: cannot reach redis://127.0.0.1:{port}/0: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_run_with_origin_workers_serves_its_stream_and_stops_them(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        "run",
        "testsrc:320x180",
        *LADDER,
        "--store",
        redis_server.url,
        "--origin-workers",
        "2",
        "--port",
        str(port),
    ]
    with background([*args, "--node-id", "enc-1", "--out", str(tmp_path / "out")], tmp_path / "run.log") as encoder:
        wait_http(f"{base}/live/demo/master.m3u8", 60, encoder)
        workers = pids_answering(base, 2)
        assert len(workers) == 2 and encoder.pid not in workers, workers
        status, _, body = get(f"{base}/api/streams")
        assert status == 200 and b"demo" in body
        assert redis.Redis(port=redis_server.port).get("lp:lease:demo") == b"enc-1"
        encoder.send_signal(signal.SIGINT)
        assert encoder.wait(30) == 0, (tmp_path / "run.log").read_text()
    wait_gone(workers)
    assert redis.Redis(port=redis_server.port).get("lp:lease:demo") is None, "the lease is released on exit"


def _served_serial(port: int, context) -> int:  # type: ignore[no-untyped-def]
    from cryptography import x509

    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


def test_workers_serve_https_with_the_admin_token_and_reload_on_sighup(
    redis_server: RedisServer, tmp_path: Path, certs
) -> None:  # type: ignore[no-untyped-def]
    issued = certs.ca.issue(tmp_path, "workers")
    (tmp_path / "admin").write_text("workers-admin-token-0123")
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    args = ["origin", "--store", redis_server.url, "--workers", "2", "--port", str(port)]
    args += [
        "--tls-cert",
        str(issued.cert),
        "--tls-key",
        str(issued.key),
        "--admin-token-file",
        str(tmp_path / "admin"),
    ]
    ctx = certs.ca.client_context()
    with background(args, tmp_path / "origin.log") as supervisor:
        wait_http(f"{base}/healthz", 30, supervisor, ctx)
        assert get(f"{base}/metrics", context=ctx)[0] == 401
        assert "workers-admin-token" not in " ".join(Path(f"/proc/{supervisor.pid}/cmdline").read_text().split("\0"))
        seen = set()
        for _ in range(20):  # both workers: each got the settings from the supervisor
            status, _, body = get(f"{base}/metrics", {"Authorization": "Bearer workers-admin-token-0123"}, context=ctx)
            assert status == 200
            seen.add(re.search(rb"^origin_worker_pid (\d+)$", body, re.M).group(1))  # type: ignore[union-attr]
        assert len(seen) == 2, seen
        renewed = certs.ca.issue(tmp_path, "workers")
        supervisor.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if {_served_serial(port, ctx) for _ in range(8)} == {renewed.serial}:
                break
            time.sleep(0.2)
        assert {_served_serial(port, ctx) for _ in range(8)} == {renewed.serial}
        assert supervisor.poll() is None  # SIGHUP is a reload, not a hang-up
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(15) == 0
