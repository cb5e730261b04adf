"""Secure delivery end to end: HTTPS origin, nginx TLS + HTTP/2 in front, signed playback, the admin surface.

One ``packager run`` serves HTTPS with a certificate from a CA made in the
test, a plain-HTTP redirect port, an admin token and signed playback (HMAC).
Chromium trusts exactly that server key (``--ignore-certificate-errors-spki-list``);
curl and Python verify the chain against the CA.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from tests.e2e.playback import Playback, open_player, progress_ratio, sample, wait_ready
from tests.support.certs import CertAuthority, Issued
from tests.support.procs import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EDGE_AUTH_HTTP,
    SMALL_LADDER,
    TLS_FRONT_HTTP,
    free_port,
    get,
    have_browser,
    nginx_conf,
    packager,
    run_nginx,
    wait_segments,
)

pytestmark = [pytest.mark.media, pytest.mark.browser, pytest.mark.cdn]

SECRET = "e2e-playback-secret-0123456789-abcdefghij"
ADMIN = "e2e-admin-token-0123456789"


def token(stream: str = "demo", exp_in: float = 600) -> str:
    return jwt.encode({"stream": stream, "exp": int(time.time() + exp_in)}, SECRET, algorithm="HS256")


@dataclass
class Secure:
    base: str  # https://127.0.0.1:PORT
    port: int
    redirect_port: int
    proc: subprocess.Popen
    ca: CertAuthority
    server: Issued
    folder: Path

    @property
    def client(self) -> ssl.SSLContext:
        return self.ca.client_context()


@pytest.fixture(scope="module")
def secure(tmp_path_factory, certs) -> Iterator[Secure]:
    folder = tmp_path_factory.mktemp("secure")
    server = certs.ca.issue(folder, "origin")  # its own files: the reload test renews them in place
    (folder / "admin").write_text(ADMIN)
    (folder / "secret").write_text(SECRET)
    port, redirect = free_port(), free_port()
    args = ["testsrc:480x270@30", "--ladder", SMALL_LADDER, "--preset", "ultrafast", "--window", "30"]
    args += ["--rtmp-port", "0", "--srt-port", "0", "--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    args += ["--http-redirect-port", str(redirect), "--admin-token-file", str(folder / "admin")]
    args += ["--playback-secret-file", str(folder / "secret")]
    context = certs.ca.client_context()
    with packager(args, port=port, out=folder / "out", ready_path="/healthz", context=context) as (proc, base):
        wait_segments(f"{base}/live/demo/270p/index.m3u8?token={token()}", 3, context=context)
        yield Secure(base, port, redirect, proc, certs.ca, server, folder)


@pytest.fixture(scope="module")
def tls_browser(secure):
    if not have_browser():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup")
    from playwright.sync_api import sync_playwright

    pin = f"--ignore-certificate-errors-spki-list={secure.server.spki_hash}"  # this one key, nothing else
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, pin])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def tls_front(secure, tmp_path_factory) -> Iterator[str]:
    """nginx terminating TLS with HTTP/2 in front of the HTTPS origin (the chain verified upstream)."""
    workdir = tmp_path_factory.mktemp("nginx-tls")
    port = free_port()
    http = TLS_FRONT_HTTP.format(
        dir=workdir, origin=secure.port, port=port, cert=secure.server.cert, key=secure.server.key, ca=secure.ca.path
    )
    with run_nginx(workdir, nginx_conf(workdir, http), port, "/healthz", secure.client) as base:
        yield base


def _page(base: str, player: str, t: str | None) -> str:
    src = "/live/demo/master.m3u8" if player == "hls" else "/live/demo/manifest.mpd"
    if t is not None:
        src += f"?token={t}"
    return f"{base}/players/{player}.html?src={urllib.parse.quote(src, safe='/')}"


def _curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", *args], capture_output=True, text=True, timeout=30)


# ---------------------------------------------------------------- TLS


def test_curl_verifies_the_chain_and_plain_http_is_redirected(secure):
    if shutil.which("curl") is None:
        pytest.fail("curl is missing: run scripts/setup")
    done = _curl("--cacert", str(secure.ca.path), "-w", "%{http_code} %{ssl_verify_result}", f"{secure.base}/healthz")
    assert done.returncode == 0 and done.stdout == "200 0", done.stderr
    assert _curl(f"{secure.base}/healthz").returncode == 60  # unknown CA: curl refuses the chain
    url = f"http://127.0.0.1:{secure.redirect_port}/live/demo/master.m3u8?token=x"
    done = _curl("-w", "%{http_code} %{redirect_url}", url)
    expected = f"308 https://127.0.0.1:{secure.port}/live/demo/master.m3u8?token=x"
    assert done.stdout == expected, done.stdout


def _play(browser, url: str, seconds: float) -> tuple[object, Playback, float]:  # type: ignore[no-untyped-def]
    context, page, pb = open_player(browser, url)
    wait_ready(page, pb, timeout_s=30)
    start = pb.last["_wall"]
    sample(page, pb, seconds)
    return context, pb, start


def _assert_played(pb: Playback, start: float, what: str) -> None:
    assert not pb.last.get("fatal"), (what, pb.last.get("errors"), pb.console[-10:])
    assert pb.media_errors == [], (what, pb.media_errors[:5])
    assert progress_ratio(pb, start) >= 0.8, (what, progress_ratio(pb, start))
    assert pb.last["lowLatency"] is True, what
    latency = [x for x in pb.last["latencySamples"] if x is not None]
    assert latency and sorted(latency)[len(latency) // 2] < 3.5, (what, latency[-10:])


@pytest.mark.parametrize("player", ["hls", "dash"])
def test_signed_low_latency_playback_over_https_for_20_s(secure, tls_browser, player):
    context, pb, start = _play(tls_browser, _page(secure.base, player, token()), 20)
    try:
        _assert_played(pb, start, f"{player} over HTTPS")
    finally:
        context.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("player", ["hls", "dash"])
def test_players_through_nginx_with_tls_and_http2(secure, tls_front, tls_browser, player):
    context, page, pb = open_player(tls_browser, _page(tls_front, player, token()))
    try:
        wait_ready(page, pb, timeout_s=30)
        start = pb.last["_wall"]
        sample(page, pb, 10)
        _assert_played(pb, start, f"{player} through nginx")
        protocols = page.evaluate(
            "[...new Set(performance.getEntriesByType('resource')"
            ".filter(e => /[.](m4s|m3u8|mpd)/.test(e.name)).map(e => e.nextHopProtocol))]"
        )
        assert protocols == ["h2"], protocols
    finally:
        context.close()
    done = _curl("--cacert", str(secure.ca.path), "--http2", "-w", "%{http_version}", f"{tls_front}/healthz")
    assert done.stdout == "2", done.stderr


def _serial(port: int, client: ssl.SSLContext) -> int:
    import socket

    from cryptography import x509

    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number  # type: ignore[arg-type]


def test_sighup_reloads_the_certificate_while_a_player_keeps_playing(secure, tls_browser):
    context, page, pb = open_player(tls_browser, _page(secure.base, "hls", token()))
    try:
        wait_ready(page, pb, timeout_s=30)
        assert _serial(secure.port, secure.client) == secure.server.serial
        renewed = secure.ca.issue(secure.folder, "origin", key=secure.server.private_key)  # same key: same pin
        secure.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _serial(secure.port, secure.client) != renewed.serial and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _serial(secure.port, secure.client) == renewed.serial
        start = pb.last["_wall"]
        sample(page, pb, 8)
        _assert_played(pb, start, "hls across a certificate reload")
        assert secure.proc.poll() is None
    finally:
        context.close()


# ---------------------------------------------------------------- signed playback


def test_refused_tokens_get_401_or_403_on_manifests_and_media(secure):
    ctx = secure.client
    _, _, body = get(f"{secure.base}/live/demo/270p/index.m3u8?token={token()}", context=ctx)
    media = next(line for line in body.decode().splitlines() if line and not line.startswith("#"))
    media_path = "/live/demo/270p/" + media.split("?")[0]
    tampered = token()[:-2] + ("xx" if not token().endswith("xx") else "yy")
    cases = [(None, 401), (token(exp_in=-10), 401), (token("other"), 403), (tampered, 401)]
    for path in ("/live/demo/master.m3u8", "/live/demo/manifest.mpd", media_path):
        for value, status in cases:
            url = f"{secure.base}{path}" + (f"?token={value}" if value else "")
            code, headers, text = get(url, context=ctx)
            assert code == status and headers["Cache-Control"] == "no-store", (path, value, code)
            assert text.count(b"\n") == 1
        assert get(f"{secure.base}{path}?token={token()}", context=ctx)[0] == 200


@pytest.mark.parametrize("player", ["hls", "dash"])
def test_a_token_expiring_during_playback_ends_playback(secure, tls_browser, player):
    expires_in = 12.0
    context, page, pb = open_player(tls_browser, _page(secure.base, player, token(exp_in=expires_in)))
    expires_at = time.monotonic() + expires_in - 0.5  # exp has a 1 s resolution
    try:
        wait_ready(page, pb, timeout_s=10)
        sample(page, pb, max(0.0, expires_at - time.monotonic()))
        assert not pb.last.get("fatal"), pb.last.get("errors")
        sample(page, pb, 12)
        refused = [e for e in pb.media_errors if e.startswith(("401", "403"))]
        assert refused, pb.media_errors
        stopped_from = expires_at + 6  # a refresh is due within a part or two, then the buffer runs dry
        assert progress_ratio(pb, stopped_from) < 0.1, (player, progress_ratio(pb, stopped_from))
        if player == "hls":
            assert pb.last.get("fatal") and "access refused" in json.dumps(pb.last.get("errors"))
    finally:
        context.close()


def test_edge_cache_validates_at_the_origin_and_keeps_one_copy_of_each_media_object(secure, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nginx-edge")
    port = free_port()
    http = EDGE_AUTH_HTTP.format(dir=workdir, origin=secure.port, port=port, ca=secure.ca.path)
    with run_nginx(workdir, nginx_conf(workdir, http), port, "/healthz") as edge:
        first, second = token(), token(exp_in=300)
        code, _, body = get(f"{edge}/live/demo/270p/index.m3u8?token={first}")
        assert code == 200 and f"?token={first}" in body.decode()
        uri = next(x for x in body.decode().splitlines() if x and not x.startswith("#") and x.endswith(first))
        media = f"{edge}/live/demo/270p/{uri.split('?')[0]}"
        code, headers, _ = get(f"{media}?token={first}")
        assert code == 200 and headers["X-Cache-Status"] in ("MISS", "HIT")
        code, headers, _ = get(f"{media}?token={second}")  # another viewer: the same cached copy
        assert code == 200 and headers["X-Cache-Status"] == "HIT"
        assert get(media)[0] == 401  # cached, yet not served without a token
        assert get(f"{media}?token={token('other')}")[0] == 403
        assert get(f"{media}?token={token(exp_in=-10)}")[0] == 401
        assert get(media, {"Authorization": f"Bearer {first}"})[0] == 200


# ---------------------------------------------------------------- admin


ADMIN_ROUTES = ("/api/streams", "/metrics", "/events", "/")


def test_admin_routes_over_https(secure):
    for path in ADMIN_ROUTES:
        for headers in ({}, {"Authorization": "Bearer not-the-token-000000"}):
            assert get(f"{secure.base}{path}", headers, context=secure.client)[0] == 401, (path, headers)
    for path in ("/api/streams", "/metrics", "/"):
        code, _, _ = get(f"{secure.base}{path}", {"Authorization": f"Bearer {ADMIN}"}, context=secure.client)
        assert code == 200, path
    assert get(f"{secure.base}/players/hls.html", context=secure.client)[0] == 200  # pages stay public


def test_dashboard_signs_in_with_the_token_and_shows_the_stream(secure, tls_browser):
    context = tls_browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{secure.base}/")
        page.fill("input[name=token]", ADMIN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{secure.base}/")
        page.wait_for_function("document.body.innerText.includes('demo')", timeout=15000)
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["lp_admin"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
        assert page.evaluate("fetch('/api/streams').then(r => r.status)") == 200
        assert page.evaluate("document.cookie") == ""  # the page's scripts never see the session
    finally:
        context.close()
