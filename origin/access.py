"""Who may fetch what: the admin zone, the playback zone, and the public rest (one middleware).

* **admin** (``/api/*``, ``/events``, ``/metrics``, the dashboard): the admin
  token when one is configured (:mod:`origin.admin`). The dashboard answers a
  refused browser with a sign-in form (still 401) that trades the token for a
  session cookie.
* **playback** (``/live/*``): a valid JWT when signed playback is on
  (:mod:`origin.playback`). A token given in the query is carried on into
  every URI of the manifest answered (:mod:`origin.signing`); one given as a
  Bearer header is not (the player sends the header itself).
* **public**: player pages and libraries, ``/time``, ``/healthz``, CORS
  preflights, pushes (their stream key is checked by the ingest gate), and
  ``/auth/playback``, the check an edge cache (nginx ``auth_request``) asks.

Every refusal is ``no-store`` with a one-line reason; no token reaches a log
line, a metric label or an event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from origin import policy
from origin.admin import COOKIE, SESSION_S, AdminGuard, Verdict, bearer
from origin.handlers import KIND, NAME, TOKEN, allow_origin
from origin.playback import PlaybackAuth, Refusal
from origin.policy import Kind
from packager.security import SecuritySettings

ADMIN_PATHS = {"/", "/events", "/metrics", "/players/index.html"}
DASHBOARD_PATHS = {"/", "/players/index.html"}


class Zone(Enum):
    ADMIN = "admin"
    PLAYBACK = "playback"
    PUBLIC = "public"


def zone_of(method: str, path: str) -> Zone:
    if method == "OPTIONS":
        return Zone.PUBLIC
    if path.startswith("/live/"):
        return Zone.PLAYBACK
    if path in ADMIN_PATHS or path.startswith("/api/"):
        return Zone.ADMIN
    return Zone.PUBLIC


@dataclass
class Access:
    admin: AdminGuard | None = None
    playback: PlaybackAuth | None = None
    clock: Callable[[], float] = time.time

    @classmethod
    def of(cls, settings: SecuritySettings, clock: Callable[[], float] = time.time) -> Access:
        return cls(
            admin=AdminGuard(settings.admin_token) if settings.admin_token else None,
            playback=PlaybackAuth(settings.playback, clock) if settings.playback else None,
            clock=clock,
        )


ACCESS = web.AppKey("access", Access)


def refusal(request: web.Request, status: int, reason: str, extra: dict[str, str] | None = None) -> web.Response:
    request[KIND] = Kind.OTHER
    headers = policy.response_headers(Kind.OTHER, status, allow_origin=allow_origin(request))
    headers.update(extra or {})
    headers["Content-Type"] = "text/plain; charset=utf-8"
    return web.Response(status=status, text=f"{status}: {reason}\n", headers=headers)


def _stream_of(path: str) -> str:
    parts = path.split("/")
    return parts[2] if len(parts) > 2 else ""


def playback_token(request: web.Request) -> tuple[str | None, bool]:
    """The request's token and whether it came in the query (``?token=`` wins over the header)."""
    values = request.query.getall("token", [])
    if values:
        return values[0], True
    return bearer(request.headers.get("Authorization")), False


def _check_playback(auth: PlaybackAuth, request: web.Request) -> Refusal | None:
    stream = _stream_of(request.path)
    if not NAME.match(stream):
        return None  # the handler answers 404: no stream has that name
    token, in_query = playback_token(request)
    refused = auth.check(token, stream)
    if refused is None and in_query and token is not None:
        request[TOKEN] = token
    return refused


def _playback_refusal(request: web.Request, refused: Refusal) -> web.Response:
    challenge = {"WWW-Authenticate": 'Bearer realm="playback", error="invalid_token"'} if refused.status == 401 else {}
    return refusal(request, refused.status, refused.reason, challenge)


def _admin_refusal(request: web.Request, verdict: Verdict) -> web.StreamResponse:
    if verdict is Verdict.THROTTLED:
        return refusal(request, 429, "too many refused requests from this address", {"Retry-After": "10"})
    if request.path in DASHBOARD_PATHS and request.method in ("GET", "HEAD"):
        return sign_in_page(request, 401)
    return refusal(request, 401, "an admin token is required", {"WWW-Authenticate": 'Bearer realm="admin"'})


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    access = request.app[ACCESS]
    zone = zone_of(request.method, request.path)
    if zone is Zone.PLAYBACK and access.playback is not None:
        refused = _check_playback(access.playback, request)
        if refused is not None:
            return _playback_refusal(request, refused)
    elif zone is Zone.ADMIN and access.admin is not None:
        verdict = access.admin.check(
            request.remote or "", request.headers.get("Authorization"), request.cookies.get(COOKIE), access.clock()
        )
        if verdict is not Verdict.ALLOWED:
            return _admin_refusal(request, verdict)
    return await handler(request)


SIGN_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Packager: sign in</title>
<link rel="stylesheet" href="/players/player.css"></head>
<body><main><h1>Packager dashboard</h1>
<form method="post" action="/login"><p><label>Admin token
<input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button></p>{message}</form></main></body></html>
"""


def sign_in_page(request: web.Request, status: int, message: str = "") -> web.Response:
    request[KIND] = Kind.PAGE
    body = SIGN_IN.format(message=f"<p role='alert'>{message}</p>" if message else "")
    headers = {"Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="admin"'
    return web.Response(status=status, text=body, headers=headers)


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /login`` (form field ``token``, or a Bearer header): the session cookie and back to ``/``."""
    access = request.app[ACCESS]
    guard_ = access.admin
    if guard_ is None:
        raise web.HTTPNotFound()
    now, peer = access.clock(), request.remote or ""
    if guard_.throttle.blocked(peer, now):
        return refusal(request, 429, "too many refused requests from this address", {"Retry-After": "10"})
    form = await request.post() if request.content_type == "application/x-www-form-urlencoded" else {}
    given = form.get("token") if isinstance(form.get("token"), str) else bearer(request.headers.get("Authorization"))
    if not guard_.token_ok(given):  # type: ignore[arg-type]
        guard_.refused(peer, now)
        return sign_in_page(request, 401, "That token is not right.")
    request[KIND] = Kind.PAGE
    response = web.HTTPSeeOther("/", headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        guard_.session(now),
        max_age=SESSION_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    request[KIND] = Kind.PAGE
    response = web.HTTPSeeOther("/", headers={"Cache-Control": "no-store"})
    response.del_cookie(COOKIE, path="/")
    return response


async def auth_playback(request: web.Request) -> web.StreamResponse:
    """``GET /auth/playback``: an edge cache's question (nginx ``auth_request``) about the request in
    ``X-Original-URI`` (and its ``Authorization``): 204 yes, 401/403 no."""
    access = request.app[ACCESS]
    request[KIND] = Kind.OTHER
    if access.playback is None:
        return web.Response(status=204, headers={"Cache-Control": "no-store"})
    original = urlsplit(request.headers.get("X-Original-URI", ""))
    if not original.path.startswith("/live/"):
        return refusal(request, 403, "X-Original-URI does not name a stream's object")
    tokens = parse_qs(original.query).get("token")
    token = tokens[0] if tokens else bearer(request.headers.get("Authorization"))
    refused = access.playback.check(token, _stream_of(original.path))
    if refused is not None:
        return _playback_refusal(request, refused)
    return web.Response(status=204, headers={"Cache-Control": "no-store"})
