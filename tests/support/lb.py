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
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.procs import free_port, nginx_conf, run_nginx

LB_HTTP = """
  access_log {dir}/access.log;
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
"""


def lb_conf(upstream_ports: Sequence[int], port: int, workdir: Path) -> str:
    # max_fails=1 fail_timeout=2s: a dead origin is skipped for 2 s after one failure, then tried again
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstream_ports)
    return nginx_conf(workdir, LB_HTTP.format(dir=workdir, servers=servers, port=port), connections=4096)


@contextlib.contextmanager
def nginx_lb(upstream_ports: Sequence[int], workdir: Path, ready_path: str = "/healthz") -> Iterator[str]:
    """A round-robin balancer over ``upstream_ports`` on 127.0.0.1; yields its base URL."""
    port = free_port()
    with run_nginx(workdir, lb_conf(upstream_ports, port, workdir), port, ready_path) as base:
        yield base
