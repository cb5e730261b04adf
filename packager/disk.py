"""The disk writer: one thread that writes and deletes files in order, each write atomic.

Who calls what: the event loop queues jobs (never blocking); the writer
thread runs them in submission order, writing through a temp file and
``os.replace``, so a file named by a manifest queued after it is whole on disk
before the manifest is.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class DiskWriter:
    """One thread that writes and deletes files in submission order, atomically.

    Who calls what: ``write``, ``delete``, ``remove_tree`` and ``notify`` only put a job on the
    thread-safe queue and never block (the event loop calls them); ``flush`` and ``close`` block, so
    they are called off the loop or at shutdown. Jobs run on the writer thread, which alone writes
    ``errors``; ``_closing``, ``_stopped`` and ``_at_exit`` are shared and stay behind ``_lock``.
    """

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[str, Path, bytes] | Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closing = False
        self._stopped = False
        self._at_exit: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._run, name="disk-writer", daemon=True)
        self._thread.start()
        self.errors = 0

    def write(self, path: Path, data: bytes) -> None:
        self._q.put(("write", path, data))

    def delete(self, path: Path) -> None:
        self._q.put(("delete", path, b""))

    def remove_tree(self, path: Path) -> None:
        """Delete the folder ``path`` and all in it, after every job queued so far. Never blocks."""
        self._q.put(("rmtree", path, b""))

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything queued so far is on disk; False if ``timeout`` s passed first.

        Call it off the loop, or at shutdown."""
        done = threading.Event()
        self.notify(done.set)
        return done.wait(timeout)

    def notify(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the writer thread once everything queued so far is on disk. Never blocks.

        After :meth:`close` it runs when the writer has finished (or at once if it already has)."""
        with self._lock:
            if not self._closing:
                self._q.put(callback)
                return
            if not self._stopped:
                self._at_exit.append(callback)
                return
        _call(callback)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._q.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                with self._lock:
                    self._stopped = True
                    at_exit, self._at_exit = self._at_exit, []
                for callback in at_exit:
                    _call(callback)
                return
            if callable(item):
                _call(item)
                continue
            op, path, data = item
            try:
                _apply(op, path, data)
            except OSError as exc:
                self.errors += 1
                log.error("disk: %s %s failed: %s", op, path, exc)


def _apply(op: str, path: Path, data: bytes) -> None:
    """One job of the writer thread."""
    if op == "write":
        atomic_write(path, data)
    elif op == "delete":
        path.unlink(missing_ok=True)
    elif op == "rmtree" and path.exists():
        shutil.rmtree(path)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("disk: notify callback failed")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so no reader ever sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
