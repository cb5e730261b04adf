"""Player pages, the live dashboard and the player libraries, served from the ``players`` package.

Only an explicit allowlist is reachable: the pages, their script and style
sheet, and the pinned hls.js / dash.js builds named in ``libs.json``. The rest
of the folder (``package.json``, the lock file, ``README.md``, ``libs.json``
itself, ``node_modules/``) answers 404, like any name that is not listed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from origin import policy
from origin.handlers import KIND, allow_origin
from origin.policy import Kind
from origin.responses import Body, error, send
from players import FOLDER

HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"

# every file the pages load (by relative or /players/ URL), and nothing else
PAGES = {
    "index.html": HTML,
    "hls.html": HTML,
    "dash.html": HTML,
    "timecode-test.html": HTML,
    "common.js": JS,
    "charts.js": JS,
    "player.css": CSS,
}
# libs.json maps each library URL name to its npm dist path; a wheel carries the copy in vendor/
LIBS_FILE = "libs.json"
VENDOR = "vendor"
MISSING_LIBRARY = "player library not installed (run the set-up); pages fall back to a public CDN"


def library_paths(folder: Path) -> dict[str, Path]:
    """Library URL name -> the file to serve: ``vendor/NAME`` when present, else the npm dist path."""
    try:
        mapping = json.loads((folder / LIBS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(mapping, dict):
        return {}
    root = folder.resolve()
    out: dict[str, Path] = {}
    for name, rel in mapping.items():
        if not isinstance(name, str) or not isinstance(rel, str) or "/" in name:
            continue
        vendored = folder / VENDOR / name
        path = vendored.resolve() if vendored.is_file() else (folder / rel).resolve()
        if path.is_relative_to(root):
            out[name] = path
    return out


@dataclass
class PlayerFiles:
    """The players folder and the bytes already read from it (re-read when a file changes)."""

    folder: Path = FOLDER
    cache: dict[Path, tuple[float, Body]] = field(default_factory=dict)
    libraries: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.libraries = library_paths(self.folder)

    async def body(self, path: Path, ctype: str) -> Body | None:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        hit = self.cache.get(path)
        if hit is None or hit[0] != mtime:
            data = await asyncio.to_thread(path.read_bytes)
            hit = (mtime, Body.of(data, mtime, compressible=ctype.startswith("text/")))
            self.cache[path] = hit
        return hit[1]


PLAYERS = web.AppKey("players", PlayerFiles)


def _headers(request: web.Request, kind: Kind, status: int = 200) -> dict[str, str]:
    request[KIND] = kind
    return policy.response_headers(kind, status, None, allow_origin=allow_origin(request))


async def _static(request: web.Request, path: Path, kind: Kind, ctype: str) -> web.StreamResponse:
    body = await request.app[PLAYERS].body(path, ctype)
    if body is None:
        return error(404, "no such file", _headers(request, kind, 404))
    headers = _headers(request, kind)
    headers["Content-Type"] = ctype
    return send(request, body, headers)


async def index(request: web.Request) -> web.StreamResponse:
    return await _static(request, request.app[PLAYERS].folder / "index.html", Kind.PAGE, HTML)


async def player_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    ctype = PAGES.get(name)
    if ctype is None:
        return error(404, "no such file", _headers(request, Kind.PAGE, 404))
    return await _static(request, request.app[PLAYERS].folder / name, Kind.PAGE, ctype)


async def player_library(request: web.Request) -> web.StreamResponse:
    path = request.app[PLAYERS].libraries.get(request.match_info["name"])
    if path is None:
        return error(404, MISSING_LIBRARY, _headers(request, Kind.LIBRARY, 404))
    return await _static(request, path, Kind.LIBRARY, JS)
