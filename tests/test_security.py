"""Delivery security settings, the HTTPS transport (certificate reload, redirect port) and the CLI's refusals."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from origin.transport import Transport, location, redirect_app
from packager import serving
from packager.config import ConfigError, StreamConfig
from packager.security import OPEN, security_settings
from packager.settings import load
from packager.tls import ServerTls, TlsError, TlsFiles
from tests.support.procs import REPO, free_port

SECRET = "s" * 40


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- settings


def test_cors_origins_parse_and_refuse_what_is_not_an_origin():
    s = security_settings({}, {}, {"cors_origin": "https://a.example,https://B.example:8443"})
    assert s.cors_origins == ("https://a.example", "https://b.example:8443")
    assert security_settings({"cors_origin": ["https://a.example"]}, {}, {}).cors_origins == ("https://a.example",)
    assert OPEN.cors_origins == ("*",)
    for bad in ("https://a.example/path", "a.example", "*,https://a.example", "ftp://a.example", "", []):
        with pytest.raises(ConfigError):
            security_settings({"cors_origin": bad}, {}, {})


def test_admin_token_and_playback_keys(tmp_path):
    token_file = _write(tmp_path, "admin", "a-token-of-20-chars!\n")
    s = security_settings({}, {}, {"admin_token_file": token_file})
    assert s.admin_token == "a-token-of-20-chars!" and "a-token" not in repr(s)
    with pytest.raises(ConfigError, match="admin_token"):
        security_settings({"admin_token": "short"}, {}, {})
    with pytest.raises(ConfigError, match="admin-token-file"):
        security_settings({}, {}, {"admin_token_file": str(tmp_path / "missing")})
    assert security_settings({}, {"secret": SECRET}, {}).playback.secret == SECRET  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="32"):
        security_settings({}, {"secret": "x" * 20}, {})  # shorter than HS256's hash: RFC 7518 3.2
    with pytest.raises(ConfigError, match="one of"):
        security_settings({}, {"secret": SECRET, "jwks": "x.json"}, {})
    with pytest.raises(ConfigError, match="PEM public key"):
        security_settings({}, {"public_key": _write(tmp_path, "k.pem", "not a key")}, {})
    with pytest.raises(ConfigError, match="JWK Set"):
        security_settings({}, {"jwks": _write(tmp_path, "k.json", '{"nokeys": 1}')}, {})
    with pytest.raises(ConfigError, match="unknown"):
        security_settings({}, {"algorithm": "none"}, {})


def test_tls_needs_both_files_and_redirect_needs_tls():
    with pytest.raises(ConfigError, match="give both"):
        security_settings({"tls_cert": "c.pem"}, {}, {})
    with pytest.raises(ConfigError, match="needs tls_cert"):
        security_settings({"http_redirect_port": 8081}, {}, {})
    with pytest.raises(ConfigError, match="port"):
        security_settings({"http_redirect_port": 70000, "tls_cert": "c", "tls_key": "k"}, {}, {})


def test_config_file_sections(tmp_path, certs):
    path = tmp_path / "c.toml"
    path.write_text(
        f'[server]\ntls_cert = "{certs.server.cert}"\ntls_key = "{certs.server.key}"\n'
        f'admin_token = "{SECRET}"\ncors_origin = ["https://p.example"]\nrtmps_port = 1936\n'
        f'[playback]\nsecret = "{SECRET}"\n'
    )
    base = StreamConfig()
    s = load(path, base, [])
    assert s.security.tls == TlsFiles(certs.server.cert, certs.server.key) and s.rtmps_port == 1936
    assert s.security.admin_token == SECRET and s.security.playback is not None
    flags = {"cors_origin": "https://q.example", "tls_cert": None}
    assert load(path, base, [], security_flags=flags).security.cors_origins == ("https://q.example",)
    path.write_text("[server]\nrtmps_port = 1936\n")
    with pytest.raises(ConfigError, match="RTMPS needs"):
        load(path, base, [])
    path.write_text("[playback]\nsecret = 1\n")
    with pytest.raises(ConfigError, match="playback"):
        load(path, base, [])


def test_exposed_warning_names_what_is_open():
    warning = OPEN.exposed_warning("0.0.0.0")
    assert warning and "/api/streams" in warning and "/events" in warning and "/metrics" in warning
    assert OPEN.exposed_warning("127.0.0.1") is None
    assert security_settings({"admin_token": SECRET}, {}, {}).exposed_warning("0.0.0.0") is None


def test_workers_get_the_settings_through_the_environment(tmp_path, certs):
    s = security_settings(
        {"tls_cert": str(certs.server.cert), "tls_key": str(certs.server.key), "admin_token": SECRET},
        {"secret": SECRET},
        {"cors_origin": "https://a.example"},
    )
    assert serving.from_env(serving.to_env(s)) == s
    assert SECRET not in " ".join(json.loads(serving.to_env(s)).keys())


# ---------------------------------------------------------------- transport


def test_redirect_location_keeps_the_host_and_path_and_drops_junk():
    assert location("example.com:8080", "0.0.0.0", 8443, "/live/a?x=1") == "https://example.com:8443/live/a?x=1"
    assert location("example.com", "0.0.0.0", 443, "/") == "https://example.com/"
    assert location("[::1]:80", "::", 8443, "/p") == "https://[::1]:8443/p"
    assert location("evil.com/@x", "10.0.0.1", 8443, "/p") == "https://10.0.0.1:8443/p"
    assert location(None, "::1", 8443, "/p") == "https://[::1]:8443/p"
    assert location("a b", "h", 8443, "//evil.com") == "https://h:8443//evil.com"  # host is ours: no escape


async def test_redirect_port_answers_308(aiohttp_client):
    client = await aiohttp_client(redirect_app("127.0.0.1", 8443))
    for method in ("GET", "POST", "PUT"):
        r = await client.request(method, "/live/demo/master.m3u8?token=t", allow_redirects=False)
        assert r.status == 308 and r.headers["Cache-Control"] == "no-store"
        assert r.headers["Location"].startswith("https://127.0.0.1:8443/live/demo/master.m3u8?token=t")


def _serial(port: int, ca: ssl.SSLContext) -> int:
    import socket

    from cryptography import x509

    with socket.create_connection(("127.0.0.1", port)) as raw, ca.wrap_socket(raw, server_hostname="localhost") as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number  # type: ignore[arg-type]


async def test_certificate_reload_serves_the_new_certificate_without_dropping_a_connection(tmp_path, certs):
    first = certs.ca.issue(tmp_path, "live")
    tls = ServerTls(TlsFiles(first.cert, first.key))
    app = web.Application()
    app.router.add_get("/", lambda _r: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.context).start()
    client_ctx = certs.ca.client_context()
    try:
        assert await asyncio.to_thread(_serial, port, client_ctx) == first.serial
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx, limit=1)) as session:
            assert (await (await session.get(f"https://localhost:{port}/")).text()) == "ok"  # kept alive
            renewed = certs.ca.issue(tmp_path, "live")  # overwrites the files, as a renewal does
            (tmp_path / "live.key").write_text("half-written")
            assert tls.reload() is False  # a broken pair never reaches the live context
            assert await asyncio.to_thread(_serial, port, client_ctx) == first.serial
            renewed = certs.ca.issue(tmp_path, "live", key=renewed.private_key)
            assert tls.reload() is True
            assert await asyncio.to_thread(_serial, port, client_ctx) == renewed.serial
            assert (await (await session.get(f"https://localhost:{port}/")).text()) == "ok"  # same connection
    finally:
        await runner.cleanup()


def test_server_tls_refuses_unusable_files(tmp_path, certs):
    with pytest.raises(TlsError, match="no such file"):
        ServerTls(TlsFiles(tmp_path / "none.pem", tmp_path / "none.key"))
    other = certs.ca.issue(tmp_path, "other")
    with pytest.raises(TlsError, match="not a usable"):
        ServerTls(TlsFiles(certs.server.cert, other.key))  # a key that does not match


def test_transport_scheme():
    assert Transport().scheme == "http" and Transport().ssl_context is None


def test_cli_refuses_a_bad_certificate_with_one_line(tmp_path):
    (tmp_path / "c.pem").write_text("nope")
    cmd = [sys.executable, "-m", "packager", "origin", "--root", str(tmp_path), "--port", str(free_port())]
    cmd += ["--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "c.pem")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "not a usable certificate" in done.stderr


def test_cli_warns_when_exposed_without_an_admin_token(tmp_path):
    cmd = [sys.executable, "-m", "packager", "origin", "--root", str(tmp_path), "--host", "0.0.0.0"]
    cmd += ["--port", str(free_port())]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)
    assert "warning" in line and "admin" in line and "/metrics" in line
