"""Origin worker processes: N processes serving one host:port, each with its own socket, loop and replica.

Each worker binds the port itself with ``SO_REUSEPORT`` and the kernel spreads
new connections over the listening ones. The supervisor first *reserves* the
port with a bound but non-listening ``SO_REUSEPORT`` socket (a busy port fails
there, before any worker starts; a socket that never listens receives no
connections), then keeps one process per slot: a worker that exits is started
again after a back-off that doubles while workers keep dying young.
SIGTERM/SIGINT are forwarded to the workers, which are then waited for (and
killed if they outstay the timeout). Workers ask the kernel for SIGTERM when
the supervisor dies (``PR_SET_PDEATHSIG``), so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from packager.timebase import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def reuseport_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT, listening (a worker's) or not (a reservation).

    Raises OSError (EADDRINUSE when another process holds the port without SO_REUSEPORT)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        if listen:
            sock.listen(4096)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def die_with_parent(parent_pid: int) -> None:
    """Ask for SIGTERM when the supervisor goes; exit now if it is already gone."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        raise SystemExit(0)


@dataclass(frozen=True)
class Backoff:
    """Delay before a dead worker starts again: ``first_s`` doubling to ``max_s``; reset after ``stable_s`` alive."""

    first_s: float = 0.25
    max_s: float = 5.0
    stable_s: float = 10.0

    def after(self, previous_s: float | None, lived_s: float) -> float:
        if previous_s is None or lived_s >= self.stable_s:
            return self.first_s
        return min(self.max_s, previous_s * 2)


class WorkerPool:
    """``count`` copies of ``command``, each restarted when it exits, until :meth:`close`. Event-loop only."""

    def __init__(
        self,
        command: Sequence[str],
        count: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        backoff: Backoff = Backoff(),
        cwd: str | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.command = list(command)
        self.count = count
        self.clock = clock
        self.backoff = backoff
        self.cwd = cwd
        self.restarts = 0
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def pids(self) -> list[int | None]:
        """The running workers' pids, by slot (None: between a death and its restart)."""
        return [p.pid if p is not None and p.returncode is None else None for p in self._procs]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep(slot)) for slot in range(self.count)]

    async def _spawn(self, slot: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*self.command, stdin=subprocess.DEVNULL, cwd=self.cwd)
        self._procs[slot] = proc
        return proc

    async def _keep(self, slot: int) -> None:
        delay_s: float | None = None
        while not self._closing:
            started_s = self.clock.monotonic_s()
            proc = await self._spawn(slot)
            code = await proc.wait()
            if self._closing:
                return
            delay_s = self.backoff.after(delay_s, self.clock.monotonic_s() - started_s)
            self.restarts += 1
            log.warning("origin worker %d (pid %d) exited with %s; restarting in %.2f s", slot, proc.pid, code, delay_s)
            await self.clock.sleep(delay_s)

    def send(self, signum: int) -> None:
        """Send ``signum`` to every running worker."""
        for proc in self._procs:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    async def close(self, timeout_s: float = 10.0, signum: int = signal.SIGTERM) -> None:
        """Stop restarting, send ``signum`` to the workers and wait for them (SIGKILL after ``timeout_s``)."""
        self._closing = True
        self.send(signum)
        waits = [p.wait() for p in self._procs if p is not None and p.returncode is None]
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*waits)
        except TimeoutError:
            self.send(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in self._procs if p is not None))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def supervise(command: Sequence[str], count: int, *, cwd: str | None = None) -> int:
    """Run ``count`` workers until SIGTERM/SIGINT, which is forwarded to them (as is SIGHUP, the certificate
    reload); 0 once they are all gone."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    pool = WorkerPool(command, count, cwd=cwd)
    loop.add_signal_handler(signal.SIGHUP, pool.send, signal.SIGHUP)  # each worker reloads its certificate
    await pool.start()
    await stop.wait()
    await pool.close(signum=received[0] if received else signal.SIGTERM)
    return 0
