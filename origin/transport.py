"""How the origin's port is reached: plain HTTP, or HTTPS with a reloadable certificate and a redirect port.

A :class:`Transport` is handed to the serving functions: its TLS context goes
to the listening site, SIGHUP reloads the certificate into it (open
connections keep theirs), and the optional plain-HTTP port answers every
request 308 to the same URL over HTTPS.

308 (RFC 9110 §15.4.9) keeps the method and body, so a push or a POST
redirected by mistake is not turned into a GET. The host is the request's
own ``Host`` (without its port) when it is a plain host name or address, the
listening host otherwise; the port is the HTTPS one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from packager.tls import ServerTls

HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])\Z")


def location(host_header: str | None, fallback_host: str, https_port: int, path_qs: str) -> str:
    """The HTTPS URL a request for ``path_qs`` with ``Host: host_header`` is sent to."""
    host = (host_header or "").strip()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else ""
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not HOST.match(host):
        host = f"[{fallback_host}]" if ":" in fallback_host else fallback_host
    port = "" if https_port == 443 else f":{https_port}"
    return f"https://{host}{port}{path_qs if path_qs.startswith('/') else '/'}"


def redirect_app(fallback_host: str, https_port: int) -> web.Application:
    async def to_https(request: web.Request) -> web.StreamResponse:
        target = location(request.headers.get("Host"), fallback_host, https_port, request.path_qs)
        return web.Response(status=308, headers={"Location": target, "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", to_https)
    return app


def redirect_ctx(
    sock: socket.socket, fallback_host: str, https_port: int
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry serving the redirect on ``sock`` (bound by the caller) while the origin runs."""

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(redirect_app(fallback_host, https_port), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await runner.cleanup()

    return ctx


@dataclass(frozen=True)
class Transport:
    """The origin port's TLS (None: plain HTTP) and its redirect port's socket (bound by the caller)."""

    tls: ServerTls | None = None
    redirect: socket.socket | None = None
    host: str = "127.0.0.1"
    port: int = 0  # the HTTPS port redirects point at

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.context if self.tls is not None else None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def install(self, app: web.Application) -> None:
        """Hook SIGHUP (certificate reload) and the redirect port into ``app``'s lifetime."""
        if self.tls is not None:
            app.on_startup.append(self._on_sighup)
        if self.redirect is not None:
            app.cleanup_ctx.append(redirect_ctx(self.redirect, self.host, self.port))

    async def _on_sighup(self, _app: web.Application) -> None:
        assert self.tls is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: no signals
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.tls.reload)


PLAIN = Transport()
