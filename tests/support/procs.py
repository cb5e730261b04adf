"""Real processes for end-to-end tests: the packager, an nginx CDN cache, headless Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
SMALL_LADDER = "480x270@500k,320x180@250k"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str, timeout_s: float = 30.0, proc: subprocess.Popen | None = None, context: ssl.SSLContext | None = None
) -> None:
    """Wait until ``url`` answers 200 (``context``: how to verify an https URL)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was up")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s}s ({last})")


def wait_segments(
    playlist_url: str, count: int, timeout_s: float = 30.0, context: ssl.SSLContext | None = None
) -> None:
    """Wait until a media playlist lists at least ``count`` complete segments."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(playlist_url, timeout=5, context=context) as r:
                if r.read().count(b"#EXTINF") >= count:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{playlist_url} did not reach {count} segments in {timeout_s}s")


def get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 10, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@contextlib.contextmanager
def packager(
    args: list[str],
    *,
    port: int | None = None,
    out: Path,
    ready_path: str = "/live/demo/master.m3u8",
    timeout_s: float = 60.0,
    context: ssl.SSLContext | None = None,
) -> Iterator[tuple[subprocess.Popen, str]]:
    """``packager run ARGS`` on ``port``; ``context`` (a client context trusting its CA): it serves HTTPS."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "packager", "run", *args, "--port", str(port), "--out", str(out)]
    log = open(out.parent / f"packager-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    try:
        wait_http(base + ready_path, timeout_s, proc, context)
        yield proc, base
    finally:
        interrupt(proc)
        log.close()


def package(source: Path, out: Path, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    """``packager package SOURCE --out OUT --fast --quiet ARGS``, its output captured as text."""
    cmd = [sys.executable, "-m", "packager", "package", str(source), "--out", str(out), "--fast", "--quiet", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


def interrupt(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Ctrl-C a packager (it finalizes its streams), killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


NGINX_HEAD = """
{user}
worker_processes 1;
daemon off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections {connections}; }}
http {{
  client_body_temp_path {dir}/tmp-body;
  proxy_temp_path {dir}/tmp-proxy;
  fastcgi_temp_path {dir}/tmp-fcgi;
  uwsgi_temp_path {dir}/tmp-uwsgi;
  scgi_temp_path {dir}/tmp-scgi;
"""

# The cache key leaves out the CMCD= query argument players add (CTA-5004 client data, different on every
# request): one cached copy per object, not one per request. The origin still hears the CMCD of the requests
# that reach it (the misses).
CMCD_FREE_ARGS = """
  map $args $cmcd_free_args {{
    "~^CMCD=[^&]*&?(?<cmcd_after>.*)$" $cmcd_after;
    "~^(?<cmcd_before>.*?)&CMCD=[^&]*(?<cmcd_rest>.*)$" $cmcd_before$cmcd_rest;
    default $args;
  }}
"""

CDN_HTTP = (
    CMCD_FREE_ARGS
    + """
  access_log {dir}/access.log;
  proxy_cache_path {dir}/cache levels=1:2 keys_zone=live:16m max_size=2g inactive=10m use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache live;
      proxy_cache_key $scheme$proxy_host$uri?$cmcd_free_args;
      proxy_cache_lock on;
      proxy_cache_lock_timeout {lock_timeout};
      proxy_cache_lock_age 10s;
      proxy_read_timeout 30s;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
"""
)


# The documented front for LL-HLS on Apple devices: nginx terminating TLS with HTTP/2 to players, caching as
# CDN_HTTP does, and talking HTTPS to the origin with the chain verified against the origin's CA.
TLS_FRONT_HTTP = (
    CMCD_FREE_ARGS
    + """
  access_log {dir}/access.log;
  proxy_cache_path {dir}/cache levels=1:2 keys_zone=live:16m max_size=2g inactive=10m use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass https://origin;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {ca};
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache live;
      proxy_cache_key $scheme$proxy_host$uri?$cmcd_free_args;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_lock_age 10s;
      proxy_read_timeout 30s;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
"""
)


# Signed playback behind a CDN: the edge asks the origin's /auth/playback about every request
# (auth_request, verdicts cached 5 s per stream and token), caches media under its path alone (one copy
# for every viewer, the token left out of the key) and manifests under the full URI (they carry the
# viewer's token in their URIs) less the players' CMCD argument.
EDGE_AUTH_HTTP = (
    CMCD_FREE_ARGS
    + r"""
  access_log {dir}/access.log;
  proxy_cache_path {dir}/cache levels=1:2 keys_zone=live:16m max_size=2g inactive=10m use_temp_path=off;
  proxy_cache_path {dir}/auth keys_zone=auth:4m inactive=1m use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  # an auth subrequest has no query of its own: its key comes from the viewer's $request_uri
  map $request_uri $auth_key {{
    "~^/live/(?<name>[^/?]+)/[^?]*[?](?:.*&)?token=(?<token>[^&]+)" "$name $token";
    default $request_uri;
  }}
  proxy_ssl_verify on;
  proxy_ssl_trusted_certificate {ca};
  proxy_ssl_name localhost;
  proxy_ssl_session_reuse on;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {{
    listen 127.0.0.1:{port};
    location = /_auth {{
      internal;
      proxy_pass https://origin/auth/playback;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_cache auth;
      proxy_cache_key "$auth_key $http_authorization";
      proxy_ignore_headers Cache-Control Expires;
      proxy_cache_valid 204 5s;
      proxy_cache_valid 401 403 1s;
    }}
    location ~ ^/live/.+\.(m4s|mp4)$ {{
      auth_request /_auth;
      proxy_pass https://origin;
      proxy_cache live;
      proxy_cache_key $uri;
      proxy_cache_lock on;
      proxy_read_timeout 30s;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
    location /live/ {{
      auth_request /_auth;
      proxy_pass https://origin;
      proxy_cache live;
      proxy_cache_key $uri?$cmcd_free_args;
      proxy_cache_lock on;
      proxy_read_timeout 30s;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
    location / {{ proxy_pass https://origin; }}
  }}
"""
)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is not None:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def nginx_conf(workdir: Path, http: str, *, connections: int = 16384) -> str:
    """A whole nginx.conf: one worker in the foreground, every path under ``workdir``, ``http`` inside ``http {}``."""
    # As root, nginx workers would drop to 'nobody' and lose access to the private temp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    return NGINX_HEAD.format(user=user, dir=workdir, connections=connections) + http + "}\n"


@contextlib.contextmanager
def run_nginx(
    workdir: Path, conf: str, port: int, ready_path: str, context: ssl.SSLContext | None = None
) -> Iterator[str]:
    """nginx with ``conf`` until the block ends; yields its base URL once ``ready_path`` answers
    (``context``: it listens with TLS, verified with that client context)."""
    nginx = nginx_binary()
    if nginx is None:
        raise FileNotFoundError("nginx is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "nginx.conf").write_text(conf)
    with open(workdir / "stderr.log", "wb") as err:
        cmd = [nginx, "-c", str(workdir / "nginx.conf"), "-p", str(workdir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
        wait_http(f"{base}{ready_path}", 15, proc, context)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def nginx_cdn(origin_port: int, workdir: Path, lock_timeout: str = "10s") -> Iterator[str]:
    """A caching reverse proxy that obeys the origin's headers (no overrides). Requests for an object
    already being fetched wait for that fetch (``proxy_cache_lock``) up to ``lock_timeout``, then go to
    the origin themselves; nginx looks again only every 500 ms (or at the timeout, if sooner)."""
    port = free_port()
    http = CDN_HTTP.format(dir=workdir, origin=origin_port, port=port, lock_timeout=lock_timeout)
    with run_nginx(workdir, nginx_conf(workdir, http), port, "/healthz") as base:
        yield base


def nginx_access_log(workdir: Path) -> str:
    try:
        return (workdir / "access.log").read_text()
    except OSError:
        return ""


def have_browser() -> bool:
    return os.path.exists(CHROMIUM)
