"""Session fixtures for end-to-end tests: one live packager, one nginx CDN, one Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.procs import CHROMIUM, CHROMIUM_ARGS, SMALL_LADDER, have_browser, nginx_cdn, packager, wait_segments


@pytest.fixture(scope="session")
def live_origin(tmp_path_factory) -> Iterator[str]:
    out = tmp_path_factory.mktemp("live") / "out"
    args = ["testsrc:480x270@30", "--ladder", SMALL_LADDER, "--preset", "ultrafast", "--window", "30"]
    with packager(args, out=out) as (_proc, base):
        wait_segments(f"{base}/live/demo/270p/index.m3u8", 3)
        yield base


@pytest.fixture(scope="session")
def cdn(live_origin, tmp_path_factory) -> Iterator[tuple[str, object]]:
    port = int(live_origin.rsplit(":", 1)[1])
    workdir = tmp_path_factory.mktemp("nginx")
    with nginx_cdn(port, workdir) as base:
        yield base, workdir


@pytest.fixture(scope="module")
def browser():
    if not have_browser():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
