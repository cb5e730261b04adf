"""Serving an output folder from disk (``packager origin --root DIR``).

What a second origin behind a load balancer runs: manifests and media are
read from the folder the packager mirrors to. Paths are checked component by
component and resolved inside the root; symlinks leading out are refused.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from aiohttp import web

from origin import policy
from origin.handlers import NAME, STATE, _fail, _headers, _state
from origin.policy import Kind
from origin.responses import Body, send

FILE = re.compile(r"^(?:master\.m3u8|manifest\.mpd|index\.m3u8|init\.mp4|\d{1,18}\.m4s|\d{1,18}\.\d{1,6}\.m4s)$")

ROOT = web.AppKey("folder_root", Path)


def resolve_inside(root: Path, parts: list[str]) -> Path | None:
    """The file named by ``parts`` under ``root``, or None if it would leave the root."""
    if not parts or len(parts) > 3:
        return None
    for p in parts[:-1]:
        if not NAME.match(p):
            return None
    if not FILE.match(parts[-1]):
        return None
    real_root = root.resolve()
    path = (root.joinpath(*parts)).resolve()
    if not path.is_relative_to(real_root) or not path.is_file():
        return None
    return path


async def folder_object(request: web.Request) -> web.StreamResponse:
    root = request.app[ROOT]
    tail = request.match_info["tail"]
    parts = [request.match_info["stream"], *tail.split("/")]
    path = resolve_inside(root, parts)
    if path is None:
        return _fail(request, 404, "no such object")
    kind, _ctype = policy.content_type_for_name(path.name)
    try:
        data = await asyncio.to_thread(path.read_bytes)
        mtime = path.stat().st_mtime
    except OSError:
        return _fail(request, 404, "no such object")
    body = Body.of(data, mtime, compressible=kind in policy.MANIFEST_KINDS)
    headers = _headers(request, kind)
    if (kind in policy.MANIFEST_KINDS and data.find(b"#EXT-X-ENDLIST") >= 0) or b'type="static"' in data[:400]:
        headers["Cache-Control"] = policy.cache_control(kind, 200, ended=True)
    return send(request, body, headers)


def folder_streams(root: Path) -> dict:
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir() and NAME.match(d.name) and (d / "master.m3u8").is_file():
            ended = b"#EXT-X-ENDLIST" in next((p.read_bytes() for p in d.glob("*/index.m3u8")), b"")
            out.append(
                {
                    "name": d.name,
                    "live": not ended,
                    "hls": f"/live/{d.name}/master.m3u8",
                    "dash": f"/live/{d.name}/manifest.mpd",
                    "renditions": [
                        {"name": r.name} for r in sorted(d.iterdir()) if r.is_dir() and (r / "init.mp4").exists()
                    ],
                }
            )
    return {"streams": out}


async def folder_api_streams(request: web.Request) -> web.StreamResponse:
    data = await asyncio.to_thread(folder_streams, request.app[ROOT])
    return web.Response(text=json.dumps(data), headers=_headers(request, Kind.API))


__all__ = ["ROOT", "STATE", "_state", "folder_api_streams", "folder_object", "resolve_inside"]
