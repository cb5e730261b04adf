"""nginx as a round-robin load balancer over several origins, for scale-out tests.

No cache: every request reaches an origin. A request is retried on the next
origin only when the first could not be reached or answered 502
(``proxy_next_upstream error timeout http_502``): a 503 from an origin that is
catching up with the store is an answer the player must see, not a failure.
Buffering is off so chunked LL-DASH segments flow through as they are written;
upstream connections are HTTP/1.1 keep-alive; a dead origin is noticed within
``proxy_connect_timeout`` (refused connections at once).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.procs import free_port, wait_http

LB_CONF = """
{user}
worker_processes 1;
daemon off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/tmp-body;
  proxy_temp_path {dir}/tmp-proxy;
  fastcgi_temp_path {dir}/tmp-fcgi;
  uwsgi_temp_path {dir}/tmp-uwsgi;
  scgi_temp_path {dir}/tmp-scgi;
  upstream origins {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://origins;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_connect_timeout 1s;
      proxy_read_timeout 30s;
      proxy_next_upstream error timeout http_502;
      proxy_next_upstream_tries 0;
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
"""


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is not None:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def lb_conf(upstream_ports: Sequence[int], port: int, workdir: Path) -> str:
    # max_fails=1 fail_timeout=2s: a dead origin is skipped for 2 s after one failure, then tried again
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstream_ports)
    user = "user root;" if os.geteuid() == 0 else ""  # as root, workers would drop to 'nobody'
    return LB_CONF.format(dir=workdir, servers=servers, port=port, user=user)


@contextlib.contextmanager
def nginx_lb(upstream_ports: Sequence[int], workdir: Path, ready_path: str = "/healthz") -> Iterator[str]:
    """A round-robin balancer over ``upstream_ports`` on 127.0.0.1; yields its base URL."""
    nginx = nginx_binary()
    if nginx is None:
        raise FileNotFoundError("nginx is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(lb_conf(upstream_ports, port, workdir))
    with open(workdir / "stderr.log", "wb") as err:
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", 15, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
