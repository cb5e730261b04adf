"""The aiohttp application: routes, middleware, lifecycle.

``create_app(store=...)`` serves a live store from memory (``packager run``);
``create_app(root=...)`` serves an output folder from disk (``packager
origin``). Background work (event-loop lag watcher; with an event bus the
stream-event emitters, rendition watchdog and webhook workers) lives in
``cleanup_ctx``; ``on_shutdown`` ends the open ``/events`` feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from origin import access, charts, cmcd, folder, handlers, players, policy, splices, sse, subtitles
from origin.access import ACCESS, Access
from origin.cors import CorsPolicy
from origin.handlers import KIND, SENT, STATE, OriginState, allow_origin
from origin.metrics import OriginMetrics
from origin.policy import Kind
from origin.serverlog import ServerLog
from origin.transport import PLAIN, Transport
from origin.webhooks import Webhooks
from packager.events import EventBus
from packager.lifecycle import FinalNotices, StreamEvents
from packager.reader import StoreReader
from packager.security import OPEN, SecuritySettings
from packager.settings import WebhookSettings
from packager.store import Store

log = logging.getLogger(__name__)

MAX_LINE = 8190
MAX_FIELD = 8190


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    st: OriginState = request.app[STATE]
    st.metrics.in_flight.inc(1)
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        request.setdefault(KIND, Kind.OTHER)
        headers = policy.response_headers(Kind.OTHER, exc.status, allow_origin=allow_origin(request))
        if exc.status == 405:
            headers["Allow"] = policy.ALLOWED_METHODS
        reason = exc.reason if exc.status != 404 else "no such resource"
        return web.Response(
            status=exc.status,
            text=f"{exc.status}: {reason}\n",
            headers={**headers, "Content-Type": "text/plain; charset=utf-8"},
        )
    except (asyncio.CancelledError, ConnectionResetError):
        status = 499
        raise
    except Exception:
        log.exception("unhandled error on %s", request.path)
        headers = policy.response_headers(Kind.OTHER, 500, allow_origin=allow_origin(request))
        return web.Response(
            status=500, text="500: internal error\n", headers={**headers, "Content-Type": "text/plain; charset=utf-8"}
        )
    finally:
        st.metrics.in_flight.inc(-1)
        kind = request.get(KIND, Kind.OTHER).value
        st.metrics.requests.inc(kind=kind, status=str(status))
        # bytes counted here rather than in a response-prepare signal: that hook cost ~10% of a request
        size = (response.content_length if response is not None else None) or request.get(SENT, 0)
        if size:
            st.metrics.bytes_sent.inc(size, kind=kind)
        stream = request.match_info.get("stream") if request.path.startswith("/live/") else None
        if stream is not None and st.store.get(stream) is not None:  # only existing streams: bounded labels
            st.rates.hit(stream)
            st.metrics.stream_requests.inc(stream=stream)
            report = _cmcd(request) if status < 400 else None  # a refused request's report is not counted
            st.viewers.record(stream, report)
            if report is not None:
                st.metrics.observe_cmcd(stream, report)


def _cmcd(request: web.Request) -> cmcd.CmcdReport | None:
    """The CMCD the request carries (query argument and/or headers), if any is readable."""
    query = request.query.get(cmcd.QUERY_KEY) if "CMCD=" in request.query_string else None
    return cmcd.from_request(query, request.headers)


def create_app(
    store: StoreReader | None = None,
    *,
    root: Path | None = None,
    files: FinalNotices | None = None,
    dead_letter_dir: Path | None = None,
    security: SecuritySettings = OPEN,
    players_dir: Path | None = None,
    pipelines: dict[str, Any] | None = None,
    ingest: tuple[Any, Any] | None = None,
    events: EventBus | None = None,
    webhooks: Sequence[WebhookSettings] = (),
    dead_letter: Path | None = None,
) -> web.Application:
    """``events``: publish stream events (``/events``, webhooks) for ``store`` (a publishing :class:`Store`);
    ``files``: its disk mirror (``vod.ready`` waits for the final manifests); ``dead_letter_dir``: where the
    webhooks' dead-letter file goes by default; ``security``: CORS origins, the admin token, signed playback."""
    if (store is None) == (root is None):
        raise ValueError("create_app needs exactly one of store or root")
    app = web.Application(
        middlewares=[observe, access.guard],
        client_max_size=1024 * 1024,
        # logger: a malformed request is one rate-limited line, not a traceback per request
        handler_args={"max_line_size": MAX_LINE, "max_field_size": MAX_FIELD, "logger": ServerLog()},
    )
    state = OriginState(store=store or Store(), cors=CorsPolicy(security.cors_origins), pipelines=pipelines or {})
    app[ACCESS] = Access.of(security)
    if events is not None and local_store(state.store) is not None:
        state.events = events
    app[STATE] = state
    app[players.PLAYERS] = players.PlayerFiles(players_dir) if players_dir is not None else players.PlayerFiles()
    r = app.router
    r.add_get("/", players.index)
    r.add_get("/players/lib/{name}", players.player_library)
    r.add_get("/players/{name}", players.player_file)
    r.add_get("/time", handlers.time_now)
    r.add_get("/healthz", handlers.healthz)
    r.add_get("/metrics", handlers.metrics)
    r.add_get("/auth/playback", access.auth_playback)
    if security.admin_token:
        r.add_post("/login", access.login)
        r.add_post("/logout", access.logout)
    if root is not None:
        app[folder.ROOT] = root
        r.add_get("/api/streams", folder.folder_api_streams)
        r.add_get("/live/{stream}/{tail:.+}", folder.folder_object)
    else:
        r.add_get("/api/streams", handlers.api_streams)
        r.add_get("/api/streams/{stream}/series", charts.stream_series)
        r.add_post("/api/streams/{stream}/splice", splices.post_splice)
        r.add_post("/api/streams/{stream}/subtitles", subtitles.post_subtitles)
        r.add_get("/live/{stream}/master.m3u8", handlers.master)
        r.add_get("/live/{stream}/manifest.mpd", handlers.mpd)
        r.add_get("/live/{stream}/{track}/{name}", handlers.media_object)
        if ingest is not None:
            state.ingest = ingest
            r.add_put("/ingest/{stream}", handlers.push)
            r.add_post("/ingest/{stream}", handlers.push)
        _wire_store_metrics(state)
        if state.events is not None:
            r.add_get("/events", sse.events)
            app.on_shutdown.append(sse.close_feeds)
            dead = dead_letter or _dead_letter(dead_letter_dir)
            app.cleanup_ctx.append(_event_services(state, files, webhooks, dead))
    r.add_route("OPTIONS", "/{tail:.*}", handlers.preflight)
    r.add_get("/{tail:.*}", handlers.not_found)
    app.cleanup_ctx.append(_background)
    return app


def local_store(reader: StoreReader) -> Store | None:
    """The store whose publications this process hears: the store itself, or a replica's local copy of one
    (its stream events and metrics then cover every node's streams)."""
    if isinstance(reader, Store):
        return reader
    local = getattr(reader, "store", None)
    return local if isinstance(local, Store) else None


def _timescale(store: StoreReader) -> Callable[[str, str], int | None]:
    def lookup(stream: str, track: str) -> int | None:
        reader = store.get(stream)
        view = reader.view().track(track) if reader is not None else None
        return view.info.timescale if view is not None else None

    return lookup


def _wire_store_metrics(state: OriginState) -> None:
    m = state.metrics
    local = local_store(state.store)
    if local is not None:
        state.publishing.timescale = _timescale(local)
        state.publishing.on_latency = lambda stream, track, seconds: m.publish_latency.observe(
            seconds, stream=stream, rendition=track
        )
        local.subscribe(state.publishing)
    m.cmcd_sessions.read = lambda: [({"stream": name}, float(n)) for name, n in state.viewers.active_sessions()]

    def encoder_speed():  # type: ignore[no-untyped-def]
        for name, pipeline in state.pipelines.items():
            for worker, stats in pipeline.encoder_stats().items():
                yield {"stream": name, "encoder": worker}, stats.realtime_factor

    def dropped():  # type: ignore[no-untyped-def]
        for name, pipeline in state.pipelines.items():
            for worker, stats in pipeline.encoder_stats().items():
                yield {"stream": name, "encoder": worker}, float(stats.frames_dropped)

    def waiters():  # type: ignore[no-untyped-def]
        for stream in state.store:
            for track in stream.view().tracks:
                name = track.info.name
                yield {"stream": stream.name, "rendition": name}, float(stream.waiting_positions(name))

    m.registry.gauge("packager_encoder_realtime_factor", "Media seconds encoded per busy second", encoder_speed)
    m.registry.gauge("packager_frames_dropped_total", "Frames an encoder could not take in time", dropped)
    m.registry.gauge("origin_blocking_positions", "Distinct positions requests are waiting for", waiters)


def _dead_letter(folder: Path | None) -> Path:
    return (folder or Path()) / DEAD_LETTER_NAME


def _event_services(
    state: OriginState, files: FinalNotices | None, webhooks: Sequence[WebhookSettings], dead_letter: Path
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        local = local_store(state.store)
        assert state.events is not None and local is not None
        async with event_services(
            local, state.events, files=files, webhooks=webhooks, dead_letter=dead_letter, metrics=state.metrics
        ) as lifecycle:
            state.lifecycle = lifecycle
            yield
            state.lifecycle = None

    return ctx


DEAD_LETTER_NAME = "webhooks-dead-letter.jsonl"


@contextlib.asynccontextmanager
async def event_services(
    store: Store,
    bus: EventBus,
    *,
    files: FinalNotices | None = None,
    webhooks: Sequence[WebhookSettings] = (),
    dead_letter: Path | None = None,
    metrics: OriginMetrics | None = None,
) -> AsyncIterator[StreamEvents]:
    """Stream events and the rendition watchdog for ``store``, plus the webhook workers, while inside.

    ``dead_letter`` defaults to ``webhooks-dead-letter.jsonl`` in the current folder."""
    lifecycle = StreamEvents(bus, store, files=files)
    lifecycle.attach()
    hooks = None
    try:
        if webhooks:
            hooks = Webhooks(webhooks, bus, dead_letter=dead_letter or _dead_letter(None), metrics=metrics)
            await hooks.start()
        yield lifecycle
    finally:
        lifecycle.close()
        if hooks is not None:
            await hooks.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    lag = asyncio.create_task(state.metrics.watch_loop_lag())
    yield
    lag.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await lag


async def serve_store(
    store: StoreReader,
    *,
    sock: socket.socket,
    files: FinalNotices | None = None,
    dead_letter_dir: Path | None = None,
    security: SecuritySettings = OPEN,
    transport: Transport = PLAIN,
    pipelines: dict[str, Any] | None = None,
    ingest: tuple[Any, Any] | None = None,
    events: EventBus | None = None,
    webhooks: Sequence[WebhookSettings] = (),
    dead_letter: Path | None = None,
) -> web.AppRunner:
    app = create_app(
        store,
        files=files,
        dead_letter_dir=dead_letter_dir,
        security=security,
        pipelines=pipelines,
        ingest=ingest,
        events=events,
        webhooks=webhooks,
        dead_letter=dead_letter,
    )
    transport.install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    # bound by the caller before any pipeline starts
    site = web.SockSite(runner, sock, backlog=4096, ssl_context=transport.ssl_context)
    await site.start()
    state = app[STATE]
    state.metrics.connections.read = lambda: [({}, float(len(runner.server.connections)))] if runner.server else []
    return runner


def serve_folder(
    root: Path,
    *,
    sock: socket.socket,
    host: str,
    port: int,
    security: SecuritySettings = OPEN,
    transport: Transport = PLAIN,
) -> int:
    """Serve ``root`` on ``sock`` (already listening on ``host:port``) until interrupted."""
    app = create_app(root=root, security=security)
    transport.install(app)
    print(f"packager: serving {root} on {transport.scheme}://{host}:{port}/", flush=True)
    web.run_app(app, sock=sock, access_log=None, print=None, backlog=4096, ssl_context=transport.ssl_context)
    return 0
