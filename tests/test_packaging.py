"""What a user installs: the wheel carries the pages and the pinned players; the origin serves only those.

The wheel test builds with the documented command (``bash scripts/build``),
installs the wheel into a fresh venv outside the checkout and runs the
installed ``packager run`` from an unrelated folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from origin.app import create_app
from origin.players import PAGES, library_paths
from players import FOLDER
from tests.support import xsd
from tests.support.procs import REPO, free_port, interrupt, wait_http

LIBRARIES = ("hls.min.js", "dash.all.min.js")


def _npm_copies() -> dict[str, Path]:
    mapping = json.loads((FOLDER / "libs.json").read_text())
    return {name: FOLDER / rel for name, rel in mapping.items()}


# --------------------------------------------------------------------------- what the origin serves


async def test_only_the_files_the_pages_use_are_served(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(root=REPO))
    for path in ["/", *(f"/players/{name}" for name in PAGES)]:
        r = await client.get(path)
        assert r.status == 200, path
    for name in ("package.json", "package-lock.json", "README.md", "libs.json", "__init__.py", "node_modules"):
        r = await client.get(f"/players/{name}")
        assert r.status == 404, name
        assert b"dependencies" not in await r.read()
    for path in (
        "/players/node_modules/hls.js/dist/hls.min.js",
        "/players/node_modules/hls.js/package.json",
        "/players/vendor/hls.min.js",
        "/players/lib/libs.json",
        "/players/lib/package.json",
        "/players/lib/hls.js",
    ):
        r = await client.get(path)
        assert r.status == 404, path


def test_libraries_come_from_libs_json_and_stay_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.js").write_text("a")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "b.js").write_text("vendored b")
    mapping = {"a.js": "lib/a.js", "b.js": "lib/missing-b.js", "x.js": "../outside.js", "sub/c.js": "lib/a.js"}
    (tmp_path / "libs.json").write_text(json.dumps(mapping))
    # outside the folder ("x.js") or not a plain name ("sub/c.js"): never served
    assert library_paths(tmp_path) == {
        "a.js": (tmp_path / "lib" / "a.js").resolve(),
        "b.js": (tmp_path / "vendor" / "b.js").resolve(),  # the wheel's copy wins
    }
    (tmp_path / "libs.json").write_text("[1, 2]")
    assert library_paths(tmp_path) == {}


def test_the_mpd_schema_ships_with_the_tests() -> None:
    assert xsd.SCHEMA_PATH.is_relative_to(REPO)
    for path in xsd.LOCAL_COPIES.values():
        assert path.is_file() and path.is_relative_to(REPO)
    assert (xsd.SCHEMA_DIR / "LICENSE").is_file() and (xsd.SCHEMA_DIR / "SOURCES.md").is_file()
    xsd.mpd_schema()  # compiles offline from the copies


# --------------------------------------------------------------------------- the wheel


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A venv outside the checkout with the wheel installed (no deps); the deps come from this venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    # only now (so pip never sees this venv's distributions): the project's dependencies by path,
    # without its .pth files, so the checkout itself stays unimportable
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.media
@pytest.mark.packaging
def test_wheel_serves_pages_and_pinned_players(tmp_path: Path) -> None:
    npm = _npm_copies()
    if not all(p.is_file() for p in npm.values()):
        pytest.skip("hls.js / dash.js are not installed in players/node_modules (run bash scripts/setup)")
    dist = tmp_path / "dist"
    subprocess.run(["bash", str(REPO / "scripts" / "build"), str(dist)], check=True, capture_output=True)
    (wheel,) = dist.glob("live_packager-*.whl")
    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import packager, players; print(players.FOLDER, packager.__file__)"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where

    port = free_port()
    args = ["run", "testsrc:320x180", "--ladder", "320x180@200k", "--preset", "ultrafast", "--port", str(port)]
    log = tmp_path / "packager.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(venv / "bin" / "packager"), *args, "--out", str(work / "out")],
            cwd=work,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout_s=30, proc=proc)
        for path in (
            "/",
            "/players/hls.html",
            "/players/dash.html",
            "/players/common.js",
            "/players/charts.js",
            "/players/player.css",
        ):
            status, _body = _fetch(base + path)
            assert status == 200, path
        for name in LIBRARIES:
            status, body = _fetch(f"{base}/players/lib/{name}")
            assert (status, body) == (200, npm[name].read_bytes()), name
        assert _fetch(f"{base}/players/package.json")[0] == 404
    finally:
        interrupt(proc)
    assert proc.returncode == 0, log.read_text()


# --------------------------------------------------------------------------- without the pinned players

SERVE_FOLDER = """
import sys
from pathlib import Path
from aiohttp import web
from origin.app import create_app

web.run_app(create_app(root=Path(sys.argv[1]), players_dir=Path(sys.argv[2])), host="127.0.0.1",
            port=int(sys.argv[3]), print=None)
"""


@pytest.mark.browser
@pytest.mark.parametrize(
    ("page", "name", "library", "global_name"),
    [("hls", "hls.js", "hls.min.js", "Hls"), ("dash", "dash.js", "dash.all.min.js", "dashjs")],
)
def test_pages_say_when_they_fall_back_to_the_cdn(
    tmp_path: Path, page: str, name: str, library: str, global_name: str
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.support.procs import CHROMIUM, CHROMIUM_ARGS, have_browser

    npm = _npm_copies()
    if not have_browser() or not all(p.is_file() for p in npm.values()):
        pytest.skip("needs Chromium and the pinned players (run bash scripts/setup)")
    bare = tmp_path / "players"  # the pages as a wheel built without the libraries carries them
    bare.mkdir()
    for file in (*PAGES, "libs.json"):
        (bare / file).write_bytes((FOLDER / file).read_bytes())
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVE_FOLDER, str(tmp_path), str(bare), str(port)], cwd=REPO)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=server)
        assert _fetch(f"http://127.0.0.1:{port}/players/lib/{library}")[0] == 404
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context()
                # the public CDN answers with the same pinned build (no network needed for the test)
                context.route(
                    "https://cdn.jsdelivr.net/**",
                    lambda route: route.fulfill(
                        body=npm[route.request.url.rsplit("/", 1)[1]].read_bytes(), content_type="text/javascript"
                    ),
                )
                tab = context.new_page()
                tab.goto(f"http://127.0.0.1:{port}/players/{page}.html?src=/live/none/master.m3u8")
                tab.wait_for_function(f"window.__stats && window.__stats.library === 'cdn' && !!window.{global_name}")
                notice = tab.locator(".library-notice")
                assert notice.is_visible()
                text = notice.inner_text()
                assert name in text and "public CDN" in text and "cdn.jsdelivr.net" in text
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(10)
