"""Serving an output folder from disk (``packager origin --root DIR``).

What a second origin behind a load balancer runs: manifests and media are
read from the folder the packager mirrors to. Paths are checked component by
component and resolved inside the root: a link leading out, a dangling link or
a symlink loop is "no such object" (404), for media and for ``/api/streams``
alike. Disk access runs on worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from aiohttp import web

from origin import policy
from origin.handlers import NAME, STATE, _fail, _headers, _state, manifest
from origin.policy import Kind
from origin.responses import Body

# \Z, not $: "$" also matches before a final newline
FILE = re.compile(
    r"^(?:master\.m3u8|manifest\.mpd|index\.m3u8|init\.mp4|[0-9]{1,18}\.m4s|[0-9]{1,18}\.[0-9]{1,6}\.m4s|[0-9]{1,18}\.vtt)\Z"
)

ROOT = web.AppKey("folder_root", Path)


def _real_root(root: Path) -> Path | None:
    try:
        return root.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


def _inside(real_root: Path, path: Path) -> Path | None:
    """``path`` with every link followed, if that exists and stays inside ``real_root``; else None."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # a symlink loop raises RuntimeError before Python 3.13, OSError after
        return None
    return real if real.is_relative_to(real_root) else None


def _valid(parts: list[str]) -> bool:
    return 0 < len(parts) <= 3 and all(NAME.match(p) for p in parts[:-1]) and FILE.match(parts[-1]) is not None


def resolve_inside(root: Path, parts: list[str]) -> Path | None:
    """The file named by ``parts`` under ``root``, or None if it is missing, not a file or would leave the root."""
    real_root = _real_root(root) if _valid(parts) else None
    real = _inside(real_root, root.joinpath(*parts)) if real_root is not None else None
    try:
        return real if real is not None and real.is_file() else None
    except OSError:
        return None


def _load(root: Path, parts: list[str]) -> tuple[Path, bytes, float] | None:
    """Find and read one object (blocking: runs on a worker thread)."""
    path = resolve_inside(root, parts)
    if path is None:
        return None
    try:
        return path, path.read_bytes(), path.stat().st_mtime
    except OSError:
        return None


async def folder_object(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"]
    parts = [request.match_info["stream"], *tail.split("/")]
    found = await asyncio.to_thread(_load, request.app[ROOT], parts)
    if found is None:
        return _fail(request, 404, "no such object")
    path, data, mtime = found
    kind, _ctype = policy.content_type_for_name(path.name)
    body = Body.of(data, mtime, compressible=kind in policy.MANIFEST_KINDS)
    headers = _headers(request, kind)
    ended = (kind is Kind.MPD and b'type="static"' in data[:400]) or (
        kind in policy.MANIFEST_KINDS and data.find(b"#EXT-X-ENDLIST") >= 0
    )
    if ended:
        headers["Cache-Control"] = policy.cache_control(kind, 200, ended=True)
    return manifest(request, body, kind, headers)


def _subdirs(real_root: Path, directory: Path) -> list[str]:
    """Names of the entries of ``directory`` that are stream/rendition folders inside the root."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [e.name for e in entries if NAME.match(e.name) and _is_dir(_inside(real_root, e))]


def _is_dir(path: Path | None) -> bool:
    try:
        return path is not None and path.is_dir()
    except OSError:
        return False


def _stream_entry(root: Path, real_root: Path, name: str) -> dict | None:
    if resolve_inside(root, [name, "master.m3u8"]) is None:
        return None
    renditions = [r for r in _subdirs(real_root, root / name) if resolve_inside(root, [name, r, "init.mp4"])]
    index = next((p for r in renditions if (p := resolve_inside(root, [name, r, "index.m3u8"]))), None)
    try:
        ended = index is not None and b"#EXT-X-ENDLIST" in index.read_bytes()
    except OSError:
        ended = False
    return {
        "name": name,
        "live": not ended,
        "hls": f"/live/{name}/master.m3u8",
        "dash": f"/live/{name}/manifest.mpd",
        "renditions": [{"name": r} for r in renditions],
    }


def folder_streams(root: Path) -> dict:
    """The streams under ``root`` (blocking); links leading out of the root, loops and dangling links are skipped."""
    real_root = _real_root(root)
    if real_root is None:
        return {"streams": []}
    entries = (_stream_entry(root, real_root, name) for name in _subdirs(real_root, root))
    return {"streams": [e for e in entries if e is not None]}


async def folder_api_streams(request: web.Request) -> web.StreamResponse:
    data = await asyncio.to_thread(folder_streams, request.app[ROOT])
    return web.Response(text=json.dumps(data), headers=_headers(request, Kind.API))


__all__ = ["ROOT", "STATE", "_state", "folder_api_streams", "folder_object", "folder_streams", "resolve_inside"]
