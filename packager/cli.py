"""The ``packager`` command: run | package | origin.

``run`` packages a live source and serves it; ``package`` turns a file or URL
into HLS + DASH on disk (``--fast`` for VOD at machine speed); ``origin``
serves an existing output folder. Usage errors exit with code 2 and one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import socket
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from packager import serving
from packager.audiotracks import parse_audio
from packager.config import (
    DEFAULT_LADDER,
    DEFAULT_MAX_AUDIO,
    DEFAULT_TARGETS,
    ConfigError,
    Encoding,
    Ladder,
    StreamConfig,
    Timing,
    check_name,
    parse_seconds,
)
from packager.latency import DEFAULT_PROFILE, PROFILES, TUNABLES, Tuning, tune
from packager.ports import ListenError, Ports, bind_tcp, listen

if TYPE_CHECKING:
    from packager.shared import SharedStore

log = logging.getLogger("packager")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_stream_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stream")
    g.add_argument("--stream", default="demo", help="stream name used in URLs and folders (default: %(default)s)")
    g.add_argument(
        "--ladder",
        default=DEFAULT_LADDER,
        help="video renditions WIDTHxHEIGHT@BITRATE, comma separated; rungs above the source "
        "are dropped (default: %(default)s)",
    )
    g.add_argument(
        "--audio-bitrate", default="128k", help="AAC-LC bitrate shared by all variants (default: %(default)s)"
    )
    g.add_argument(
        "--audio",
        default="",
        metavar="SPEC",
        help="input audio streams to package, each its own AAC track: INDEX[:LANG[:NAME[:default]"
        "[:description]]], comma separated; INDEX 0 is the input's first audio stream; "
        "an empty LANG or NAME keeps the input's; 'default' = the track players start with; 'description' "
        "= an audio description of the video. E.g. 0:eng:English,1:deu:Deutsch:default "
        "(default: every audio stream, with the input's language and title)",
    )
    g.add_argument(
        "--max-audio",
        type=int,
        metavar="N",
        default=DEFAULT_MAX_AUDIO,
        help="most audio tracks taken from an input when --audio picks none (default: %(default)s)",
    )
    g.add_argument(
        "--latency",
        default=None,
        choices=list(PROFILES),
        help="latency profile: the segment, part, GOP, hold-back, DASH target, catch-up and x264 settings "
        "below, chosen together; "
        + "; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values())
        + f" (default: {DEFAULT_PROFILE}; each setting below overrides the profile's)",
    )
    g.add_argument("--segment", default=None, help="segment duration in seconds (normal: 2)")
    g.add_argument(
        "--part", default=None, help="part (CMAF chunk) duration in seconds; must divide --segment (normal: 0.5)"
    )
    g.add_argument("--gop", default=None, help="seconds between IDRs; must divide --segment (default: one per segment)")
    g.add_argument(
        "--part-hold-back",
        default=None,
        metavar="PARTS",
        help="HLS PART-HOLD-BACK in parts (x PART-TARGET), at least 3 (normal: 3)",
    )
    g.add_argument(
        "--dash-target",
        default=None,
        metavar="PARTS",
        help="DASH ServiceDescription latency target in parts (normal: 3)",
    )
    g.add_argument(
        "--catchup-rate",
        default=None,
        metavar="R",
        help="players may play at 1 +- R to hold the latency target (normal: 0.04)",
    )
    g.add_argument("--window", default="60", help="seconds kept in live manifests (default: %(default)s)")
    g.add_argument("--preset", default=None, help="x264 preset (normal: veryfast)")
    g.add_argument(
        "--cc-language",
        default="und",
        metavar="LANG",
        help="language of the input's CEA-608 captions, as manifests signal them (default: %(default)s)",
    )
    g.add_argument(
        "--hls-cue-tags",
        action="store_true",
        help="also mark ad breaks with EXT-X-CUE-OUT/EXT-X-CUE-IN for older ad servers (EXT-X-DATERANGE always)",
    )
    g.add_argument(
        "--fps", default=None, help="output frame rate, e.g. 30 or 30000/1001 (default: the source's, 30 for testsrc)"
    )
    g.add_argument("--loop", action="store_true", help="repeat a file forever as one continuous live feed")
    g.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds of media (default: until the input ends or Ctrl-C)",
    )
    g.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging detail (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="packager",
        description="Live packager: one feed in, an ABR ladder of CMAF out as HLS, LL-HLS, DASH and LL-DASH.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="package a live source and serve it over HTTP",
        description="Package a live source (default: the synthetic testsrc) and serve "
        "players, manifests and media on http://HOST:PORT/.",
    )
    run.add_argument(
        "source",
        nargs="?",
        default=None,
        help="testsrc[:WxH[@FPS]], a file, or a URL PyAV opens (default: testsrc, or none when ingest "
        "streams are configured)",
    )
    ing = run.add_argument_group("ingest (broadcasters push with RTMP or HTTP)")
    ing.add_argument(
        "--config",
        default=None,
        help="TOML file with [server], [defaults], [streams.NAME] (keys), [[webhooks]] and [events]",
    )
    ing.add_argument(
        "--stream-key",
        action="append",
        default=[],
        metavar="NAME=KEY",
        help="accept pushes to stream NAME with KEY (repeatable)",
    )
    ing.add_argument("--rtmp-port", type=int, default=None, help="RTMP listen port, 0 = off (default: 1935)")
    ing.add_argument(
        "--rtmps-port",
        type=int,
        default=None,
        help="RTMPS (RTMP over TLS, needs --tls-cert/--tls-key) listen port, 0 = off (default: 0)",
    )
    ing.add_argument("--srt-port", type=int, default=None, help="SRT listen port (UDP), 0 = off (default: 9000)")
    ing.add_argument(
        "--reconnect-window",
        type=float,
        default=None,
        help="seconds a dropped feed may take to come back before the stream ends (default: 30)",
    )
    ing.add_argument("--keep", type=float, default=None, help="seconds an ended stream stays served (default: 3600)")
    ing.add_argument("--max-publishers", type=int, default=None, help="pushes at once, all streams (default: 8)")
    ing.add_argument("--max-ingest-kbps", type=int, default=None, help="total ingest bitrate (default: 100000)")
    run.add_argument("--out", default="./live-out", help="folder the live output is mirrored to (default: %(default)s)")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    run.add_argument("--port", type=int, default=8080, help="HTTP port (default: %(default)s)")
    run.add_argument("--no-serve", action="store_true", help="only write the output folder, start no HTTP server")
    shared = run.add_argument_group("shared store (several encoders and origins on one Redis)")
    shared.add_argument(
        "--store",
        default=None,
        metavar="redis://HOST:PORT/DB",
        help="also publish every stream into this Redis, for `packager origin --store` processes to serve",
    )
    shared.add_argument(
        "--node-id", default=None, help="this encoder's name in the stream leases (default: HOSTNAME-PID)"
    )
    shared.add_argument(
        "--standby",
        action="store_true",
        help="redundant encoder: encode the stream in hot standby and publish it only while this node holds "
        "its lease (run the same command on two nodes; either takes over from the other within a segment)",
    )
    shared.add_argument(
        "--failover-after-slate",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="with --standby: hand the stream to a standby whose input is live once this node's input has "
        "been on the slate this long (default: %(default)s)",
    )
    shared.add_argument(
        "--origin-workers",
        type=int,
        default=0,
        metavar="N",
        help="serve --port with N origin processes reading the store (needs --store) instead of in-process",
    )
    serving.add_flags(run)
    _add_stream_flags(run)

    pkg = sub.add_parser(
        "package",
        help="package a file or URL into a folder",
        description="Package SOURCE into OUT/{stream}/ (master.m3u8, manifest.mpd, renditions). "
        "Without --fast a file is paced at 1x like a live feed.",
    )
    pkg.add_argument("source", help="a file, a URL PyAV opens, or testsrc[:WxH[@FPS]] (with --duration)")
    pkg.add_argument("--out", required=True, help="output folder")
    pkg.add_argument("--fast", action="store_true", help="process as fast as the machine allows (file -> VOD)")
    pkg.add_argument(
        "--quiet", action="store_true", help="no progress (default: a bar on a terminal, a line every 10 s otherwise)"
    )
    _add_stream_flags(pkg)

    org = sub.add_parser(
        "origin",
        help="serve an output folder, or the streams of a shared store",
        description="Serve OUT folders written by `packager run`/`package` (manifests read from disk), or, "
        "with --store, every stream `packager run --store` publishes into Redis (stateless: run as many as needed).",
    )
    org.add_argument("--root", default=None, help="output folder to serve")
    org.add_argument("--store", default=None, metavar="redis://HOST:PORT/DB", help="shared store to serve")
    org.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="with --store: N processes share the port (SO_REUSEPORT), restarted if they die (default: 1)",
    )
    org.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    org.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    org.add_argument("--port", type=int, default=8080, help="HTTP port (default: %(default)s)")
    org.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serving.add_flags(org)
    return parser


def stream_config(args: argparse.Namespace) -> StreamConfig:
    fps = None
    if args.fps is not None:
        try:
            fps = Fraction(args.fps)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"--fps: {args.fps!r} is not a frame rate (e.g. 30 or 30000/1001)") from None
    if args.duration is not None and not (0 < args.duration <= 7 * 24 * 3600):
        raise ConfigError(f"--duration: {args.duration} must be > 0 seconds")
    base = Tuning(Timing(window_s=parse_seconds(args.window, "--window")), Encoding(fps=fps), DEFAULT_TARGETS)
    flags = {key: getattr(args, key) for key in TUNABLES}
    tuning = tune(base, {"latency": args.latency or DEFAULT_PROFILE, **flags}, lambda key: "--" + key.replace("_", "-"))
    return StreamConfig(
        name=check_name(args.stream, "--stream"),
        ladder=Ladder.parse(args.ladder, args.audio_bitrate),
        timing=tuning.timing,
        encoding=tuning.encoding,
        targets=tuning.targets,
        hls_cue_tags=args.hls_cue_tags,
        cc_language=args.cc_language,
        audio=parse_audio(args.audio, args.max_audio),
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _run_async(coro) -> int:  # type: ignore[no-untyped-def]
    """Run on uvloop when it is installed (faster HTTP serving), else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        if args.command == "origin":
            return _origin(args)
        config = stream_config(args)
        if args.command == "package":
            return _run_async(_package(args, config))
        return _run_async(_run(args, config))
    except ConfigError as exc:
        print(f"packager: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _prepare_out(path: str, stream: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {path} exists and is not a folder")
    try:
        (out / stream).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot create {path}: {exc.strerror}") from None
    return out


def _open_source(args: argparse.Namespace, config: StreamConfig, *, paced: bool):  # type: ignore[no-untyped-def]
    """The source named on the command line (nothing is opened yet); ConfigError when it cannot be."""
    from packager.sources import SourceError, open_source

    try:
        return open_source(args.source, paced=paced, loop=args.loop, fps=config.encoding.fps)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None


def _new_store(out: Path):  # type: ignore[no-untyped-def]
    """The in-memory store and its disk mirror (media first, then the manifests naming it) under ``out``."""
    from packager.mirror import DiskMirror
    from packager.store import Store

    store = Store()
    return store, DiskMirror(store, out).attach()


async def _start_pipeline(args: argparse.Namespace, config: StreamConfig, source: object, store: object):
    """Start the stream's pipeline; None (after one line on stderr) when its source fails to open."""
    from packager.pipeline import Pipeline
    from packager.sources import SourceError

    pipeline = Pipeline(config, source, store, fast=args.command == "package" and args.fast, duration_s=args.duration)
    try:
        await pipeline.start()
    except SourceError as exc:
        print(f"packager: error: {exc}", file=sys.stderr)
        return None
    return pipeline


def _install_signals(pipeline: object) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, pipeline.stop)  # type: ignore[attr-defined]
        except (NotImplementedError, RuntimeError):
            pass


async def _package(args: argparse.Namespace, config: StreamConfig) -> int:
    out = _prepare_out(args.out, config.name)
    is_testsrc = args.source.startswith("testsrc")
    if is_testsrc and args.duration is None and args.fast:
        raise ConfigError("package testsrc --fast needs --duration (the test source never ends)")
    source = _open_source(args, config, paced=not args.fast)
    store, mirror = _new_store(out)
    pipeline = await _start_pipeline(args, config, source, store)
    if pipeline is None:
        mirror.close()
        return 1
    _install_signals(pipeline)
    from packager.readout import readout

    async with readout(config.name, pipeline.progress.now, quiet=args.quiet):
        reason = await pipeline.wait()
    await _finalize(mirror)
    ok = not reason.startswith(("source error",)) and "failed" not in reason
    print(f"packager: {config.name}: {reason}; output in {out / config.name}", file=sys.stderr)
    return 0 if ok else 1


async def _finalize(mirror: object) -> None:
    """Wait (off the loop) until everything queued for disk, final manifests included, is written."""
    await asyncio.to_thread(mirror.close)  # type: ignore[attr-defined]


def _ingest_settings(args: argparse.Namespace, config: StreamConfig):  # type: ignore[no-untyped-def]
    from packager import settings as settings_mod

    return settings_mod.load(
        Path(args.config) if args.config else None,
        config,
        args.stream_key,
        security_flags=serving.flags_of(args),
        rtmp_port=args.rtmp_port,
        rtmps_port=args.rtmps_port,
        srt_port=args.srt_port,
        reconnect_window=args.reconnect_window,
        keep=args.keep,
        max_publishers=args.max_publishers,
        max_ingest_kbps=args.max_ingest_kbps,
    )


def _shared_store(args, config, store, target, pipelines):  # type: ignore[no-untyped-def]
    """This node's side of ``--store`` (None without one); with ``--standby``, a redundant encoder."""
    from packager.shared import SharedStore, default_node_id

    if target is None:
        return None
    node_id = args.node_id or default_node_id()
    if args.standby:
        return SharedStore.redundant(store, target, node_id, config, args, pipelines)
    return SharedStore(store, target, node_id)


def _ingest_control(ingest, store, pipelines, bus, claims=None, stage=None):  # type: ignore[no-untyped-def]
    """The ingest gate (keys, limits) and manager (one pipeline per pushed stream); (None, None) without streams.

    ``claims``: with a shared store, the stream leases a push must take before its pipeline starts."""
    if not ingest.streams:  # type: ignore[attr-defined]
        return None, None
    from packager.events import ingest_rejected
    from packager.ingest.gate import IngestGate
    from packager.ingest.manager import IngestManager

    gate = IngestGate(ingest)  # type: ignore[arg-type]
    gate.refusal_listeners.append(functools.partial(ingest_rejected, bus))
    return gate, IngestManager(ingest, store, pipelines, claims=claims, stage=stage)  # type: ignore[arg-type]


async def _run(args: argparse.Namespace, config: StreamConfig) -> int:
    from packager.events import EventBus
    from packager.shared import check_shared

    target = check_shared(args)
    ingest = _ingest_settings(args, config)
    if args.source is None and not ingest.streams:
        args.source = "testsrc"
    out = _prepare_out(args.out, config.name)
    source = _open_source(args, config, paced=True) if args.source is not None else None
    store, mirror = _new_store(out)
    pipelines: dict[str, object] = {}
    shared = _shared_store(args, config, store, target, pipelines)
    if shared is None:  # with a shared store the window lives in Redis
        await _recover(mirror, [config, *(s.config for s in ingest.streams.values())])
    bus = EventBus(
        backlog=ingest.event_backlog, rejection_interval_s=ingest.rejection_interval_s
    )  # stream events: /events, webhooks
    redundancy = shared.redundancy if shared is not None else None
    stage = redundancy.staging if redundancy is not None else None
    claims = shared.claims if shared is not None else None
    gate, manager = _ingest_control(ingest, store, pipelines, bus, claims=claims, stage=stage)
    if gate is not None and shared is not None and redundancy is None:
        gate.owner_elsewhere = shared.owners.elsewhere
    serving.warn_if_exposed(ingest.security, args.host)
    if args.origin_workers:
        serving.hand_to_workers(ingest.security, args.origin_workers)
    # every port is bound before any pipeline starts: a busy one stops the start with one line
    transport = serving.transport_or_exit(ingest.security, args.host, args.port)
    try:
        if transport is None:
            raise ListenError("")
        ports = await listen(args, ingest, gate, manager, tls=transport.tls)
    except ListenError as exc:
        mirror.close()
        if str(exc):
            print(f"packager: {exc}", file=sys.stderr)
        return 1
    ports.transport = transport
    failure = await _start_shared(args, config, shared, source)
    if failure is not None:
        await ports.close()
        mirror.close()
        print(f"packager: {failure}", file=sys.stderr)
        return 1
    if args.origin_workers or args.no_serve:  # no origin in this process to hook SIGHUP: do it here
        _reload_on_sighup(transport.tls, shared.pool if shared is not None else None)
    control = (gate, manager, bus, ingest, pipelines)
    return await _serve_until_stopped(args, config, (source, store, mirror, out), ports, control, shared)


def _reload_on_sighup(tls: object, pool: object) -> None:
    """SIGHUP: reload this process's certificate (RTMPS) and pass the signal on to the origin workers."""

    def reload() -> None:
        if tls is not None:
            tls.reload()  # type: ignore[attr-defined]
        if pool is not None:
            pool.send(signal.SIGHUP)  # type: ignore[attr-defined]

    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


async def _recover(mirror: object, configs: list[StreamConfig]) -> None:
    """Let the streams about to open adopt the live window a killed run of this folder left on disk."""
    segment_s = min(c.timing.segment_s for c in configs)
    window_s = max(c.timing.window_s for c in configs)
    await mirror.recover(segment_s=segment_s, window_s=window_s)  # type: ignore[attr-defined]


async def _start_shared(
    args: argparse.Namespace, config: StreamConfig, shared: SharedStore | None, source: object
) -> str | None:
    """Claim the command line's stream and start publishing; the line to print when this node may not."""
    if shared is None:
        return None
    if source is not None and shared.redundancy is None:  # a redundant node's lease is its controller's
        failure = await shared.claim_source(config.name)
        if failure is not None:
            await shared.publisher.client.aclose()
            return failure
    await shared.start(args)
    return None


async def _serve_until_stopped(args, config, media, ports, control, shared):  # type: ignore[no-untyped-def]
    """Run the command line's pipeline (if any) and the origin until a signal or the source's end."""
    source, store, mirror, out = media
    gate, manager, bus, ingest, pipelines = control
    stop = asyncio.Event()
    pipeline = None
    if source is not None:
        stage = shared.redundancy.staging if shared is not None and shared.redundancy is not None else store
        pipeline = await _start_pipeline(args, config, source, stage)
        if pipeline is None:
            await ports.close()
            mirror.close()
            if shared is not None:
                await shared.close()
            return 1
        pipelines[config.name] = pipeline
        if not ingest.streams:
            asyncio.get_running_loop().create_task(_stop_when_done(pipeline, stop))
    _stop_on_signals(stop)
    async with contextlib.AsyncExitStack() as services:
        if args.no_serve and ingest.webhooks:  # no origin to run them: webhooks still go out
            from origin.app import DEAD_LETTER_NAME, event_services

            await services.enter_async_context(
                event_services(
                    store,
                    bus,
                    files=mirror,
                    webhooks=ingest.webhooks,
                    dead_letter=ingest.dead_letter or out / DEAD_LETTER_NAME,
                )
            )
        runner = await _serve(args, ports, (store, mirror), pipelines, gate, manager, bus, ingest)
        if runner is not None and shared is not None:
            from origin.cluster import publisher_gauges
            from origin.handlers import STATE

            publisher_gauges(runner.app[STATE].metrics, shared.publisher)
        await stop.wait()
        if shared is not None and shared.redundancy is not None:
            await shared.redundancy.stand_down()  # an active stream goes to a live standby, not to its end
        if pipeline is not None:
            pipeline.stop()
            reason = await pipeline.wait()
            print(f"packager: {config.name}: {reason}; VOD in {out / config.name}", file=sys.stderr)
        await _shutdown(ports, manager, (store, mirror), runner, shared)
    return 0


async def _serve(args, ports, stores, pipelines, gate, manager, bus, ingest):  # type: ignore[no-untyped-def]
    """The origin on the socket bound for it (None with --no-serve)."""
    if ports.http is None:
        return None
    from origin.app import serve_store

    store, mirror = stores
    runner = await serve_store(
        store,
        sock=ports.http,
        files=mirror,
        dead_letter_dir=mirror.root,
        security=ingest.security,
        transport=ports.transport,
        pipelines=pipelines,
        ingest=(gate, manager) if gate is not None and manager is not None else None,
        events=bus,
        webhooks=ingest.webhooks,
        dead_letter=ingest.dead_letter,
    )
    ports.http = None  # the origin owns it now
    print(f"packager: serving {ports.transport.scheme}://{args.host}:{args.port}/; Ctrl-C to stop", file=sys.stderr)
    return runner


async def _shutdown(
    ports: Ports, manager: object, stores: tuple[object, object], runner: object, shared: SharedStore | None
) -> None:
    await ports.close()
    if manager is not None:
        await manager.shutdown()  # type: ignore[attr-defined]
    store, mirror = stores
    for stream in store:  # type: ignore[attr-defined]
        if not stream.ended:
            stream.on_end("stopped")
    await _finalize(mirror)
    if runner is not None:
        await runner.cleanup()  # type: ignore[attr-defined]
    if shared is not None:
        await shared.close()  # the ends are published, then the leases released


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass


async def _stop_when_done(pipeline: object, stop: asyncio.Event) -> None:
    await pipeline.wait()  # type: ignore[attr-defined]
    stop.set()


def _origin(args: argparse.Namespace) -> int:
    if (args.root is None) == (args.store is None):
        raise ConfigError("origin: give exactly one of --root DIR or --store redis://HOST:PORT/DB")
    if args.store is not None:
        return _origin_store(args)
    if args.workers != 1:
        raise ConfigError("--workers needs --store (a folder is served by one process)")
    from origin.app import serve_folder

    root = Path(args.root)
    if not root.is_dir():
        print(f"packager: error: --root: {args.root} is not a folder", file=sys.stderr)
        return 2
    security = serving.origin_settings(args)
    serving.warn_if_exposed(security, args.host)
    try:
        sock = bind_tcp(args.host, args.port)
    except ListenError as exc:
        print(f"packager: {exc}", file=sys.stderr)
        return 1
    transport = serving.transport_or_exit(security, args.host, args.port)
    if transport is None:
        sock.close()
        return 1
    return serve_folder(root, sock=sock, host=args.host, port=args.port, security=security, transport=transport)


def _origin_store(args: argparse.Namespace) -> int:
    """A stateless origin over the shared store: in-process (one worker) or a supervisor of ``--workers``."""
    from origin.cluster import serve_replica
    from origin.workers import die_with_parent, supervise
    from packager.redisstore import RedisTarget

    target = RedisTarget.parse(args.store)
    if not 1 <= args.workers <= 256:
        raise ConfigError(f"--workers: {args.workers} must be between 1 and 256")
    if args.worker_of is not None:
        die_with_parent(args.worker_of)
    security = serving.origin_settings(args)
    if args.worker_of is None:
        serving.warn_if_exposed(security, args.host)
    try:
        sock = _origin_socket(args)
    except ListenError as exc:
        print(f"packager: {exc}", file=sys.stderr)
        return 1
    if args.workers > 1 and args.worker_of is None:
        from packager.shared import worker_command

        serving.hand_to_workers(security, args.workers)
        command = worker_command(target.url, args.host, args.port, args.log_level)
        scheme = "https" if security.tls else "http"
        print(f"packager: {args.workers} origin workers for {target.url} on {scheme}://{args.host}:{args.port}/")
        with sock:  # the reservation: held (never listening) while the workers serve
            return _run_async(supervise(command, args.workers))
    transport = serving.transport_or_exit(security, args.host, args.port)
    if transport is None:
        sock.close()
        return 1
    return _run_async(
        serve_replica(target, sock=sock, host=args.host, port=args.port, security=security, transport=transport)
    )


def _origin_socket(args: argparse.Namespace) -> socket.socket:
    """A worker's shared listening socket, a supervisor's reservation, or one process's own socket."""
    from origin.workers import reuseport_socket

    if args.worker_of is None and args.workers == 1:
        return bind_tcp(args.host, args.port)
    try:
        return reuseport_socket(args.host, args.port, listen=args.worker_of is not None)
    except OSError as exc:
        raise ListenError.of(args.host, args.port, exc) from None
