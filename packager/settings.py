"""Server settings: streams, keys and limits from a TOML file (``--config``) and flags.

Example::

    [server]
    rtmp_port = 1935          # 0 turns RTMP off
    srt_port = 9000           # 0 turns SRT off
    reconnect_window = 30     # seconds a dropped feed may take to come back
    keep = 3600               # seconds an ended stream stays served as VOD
    max_publishers = 8        # pushes at once, all streams
    max_ingest_kbps = 100000  # all pushes together
    rtmp_publish_timeout = 10  # seconds from an RTMP accept until its publish must be authorised
    rtmp_max_per_peer = 16     # RTMP connections one address may hold
    rtmp_max_unauthenticated = 32  # RTMP connections not yet authorised, all addresses (of 64 slots)
    publisher_kbps = 12500    # budget reserved per publisher whose stream sets no max_kbps
                              # (default: max_ingest_kbps / max_publishers)
    refusal_limit = 20        # refused attempts from one address within refusal_window ...
    refusal_window = 10       # ... after which it is answered 429 until the window passes
    push_idle_timeout = 5     # seconds without a byte before a push is ended (the slate takes over)
    max_input_width = 4096    # larger pushed pictures (or frame rates) are refused with 422
    max_input_height = 4096
    max_input_pixels = 8912896
    max_input_fps = 120
    rtmps_port = 1936         # RTMP over TLS with the certificate below (default 0: off)
    tls_cert = "/etc/packager/cert.pem"   # HTTPS origin (and RTMPS): PEM chain, leaf first; SIGHUP reloads it
    tls_key = "/etc/packager/key.pem"
    http_redirect_port = 8081  # plain HTTP port answering 308 to the HTTPS origin (default 0: off)
    admin_token = "at-least-16-characters"  # Bearer token for /api, /events, /metrics, the dashboard
    cors_origin = ["https://player.example.com"]  # or "*" (the default)

    [playback]                # signed playback (off unless one of these is set)
    secret = "an-hmac-secret-of-at-least-32-characters"   # HS256/384/512 tokens; or:
    # public_key = "/etc/packager/playback.pub.pem"   # RS256/ES256 tokens; or:
    # jwks = "/etc/packager/playback.jwks.json"

    [defaults]                # any stream flag: ladder, audio_bitrate, latency, segment, part, gop, part_hold_back,
                              # dash_target, catchup_rate, window, preset, audio, max_audio
    ladder = "1280x720@3000k,854x480@1400k,640x360@800k"
    max_audio = 8             # most audio tracks taken from an input (when audio picks none)

    [streams.studio1]
    key = "change-me"
    ladder = "854x480@1400k,640x360@800k"
    takeover = false          # a second publisher replaces the first instead of being refused
    audio = "0:eng:English,1:deu:Deutsch:default"   # like --audio; or an array of tables:
    # audio = [{index = 0, language = "en", name = "English"}, {index = 1, language = "de", default = true},
    #          {index = 2, language = "en", name = "English AD", description = true}]
    max_kbps = 20000          # this stream's ingest budget: reserved at admission, cut above it
    passphrase = "srt-secret-phrase"  # SRT only: the push must be encrypted with it (10-79 characters)
    pbkeylen = 16             # SRT only: the shortest AES key a caller may use, in bytes (16, 24 or 32)

    [events]
    dead_letter = "/var/lib/packager/webhooks-dead-letter.jsonl"   # default: OUT/webhooks-dead-letter.jsonl
    backlog = 1000            # events kept for SSE replay (Last-Event-ID)
    rejection_interval = 10   # seconds: refusals of one kind from one address become one ingest.rejected with a count

    [[webhooks]]              # repeatable: one table per endpoint
    url = "https://cms.example.com/hooks/packager"
    secret = "at-least-16-characters"
    events = ["stream.started", "stream.stopped", "vod.ready"]   # "*" = all but segment.published
    timeout_s = 10            # per attempt
    max_attempts = 6          # then the event goes to the dead-letter file
    allow_private = false     # true lets this endpoint reach loopback/link-local/private addresses
    ca_file = "/etc/ssl/cms-ca.pem"   # https: trust only these PEM CAs (default: the system's); always verified

Every problem raises :class:`~packager.config.ConfigError` naming the field.
"""

from __future__ import annotations

import ssl
import tomllib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packager.admission import InputLimits
from packager.audiotracks import audio_from_toml
from packager.config import (
    ConfigError,
    Ladder,
    StreamConfig,
    check_language,
    check_name,
    parse_seconds,
)
from packager.events import parse_types
from packager.latency import TUNABLES, Tuning, tune
from packager.security import SERVER_KEYS, SecuritySettings, security_settings

# what a stream sets for itself or takes from [defaults]
_DEFAULT_KEYS = {"ladder", "audio_bitrate", "latency", "window", *TUNABLES, "hls_cue_tags", "cc_language"}
_DEFAULT_KEYS |= {"audio", "max_audio"}
_STREAM_KEYS = _DEFAULT_KEYS | {"key", "takeover", "max_kbps"}
_STREAM_KEYS |= {"passphrase", "pbkeylen"}  # SRT encryption
_SERVER_KEYS = {"srt_port", "rtmp_port", "reconnect_window", "keep", "max_publishers", "max_ingest_kbps"}
_SERVER_KEYS |= {"publisher_kbps", "refusal_limit", "refusal_window"}
_PUSH_KEYS = {"push_idle_timeout", "max_input_width", "max_input_height", "max_input_pixels", "max_input_fps"}
_SERVER_KEYS |= _PUSH_KEYS
_RTMP_KEYS = {"rtmp_publish_timeout", "rtmp_max_per_peer", "rtmp_max_unauthenticated"}
_SERVER_KEYS |= _RTMP_KEYS
_SERVER_KEYS |= SERVER_KEYS | {"rtmps_port"}
_WEBHOOK_KEYS = {"url", "secret", "events", "timeout_s", "max_attempts", "allow_private", "ca_file"}
_EVENTS_KEYS = {"dead_letter", "backlog", "rejection_interval"}


@dataclass(frozen=True)
class StreamSettings:
    """One configured ingest stream: its key, packaging config and limits."""

    config: StreamConfig
    key: str
    takeover: bool = False
    max_kbps: int | None = None  # ingest budget; None: the server's per-publisher default
    passphrase: str | None = field(default=None, repr=False)  # SRT pushes must be encrypted with it
    pbkeylen: int = 16  # the shortest AES key (bytes) an SRT caller may use; libsrt's default is 16

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class WebhookSettings:
    """One webhook endpoint: where to POST, the HMAC secret, which event types, retry limits, egress/TLS."""

    url: str
    secret: str
    events: frozenset[str]
    timeout_s: float = 10.0
    max_attempts: int = 6
    allow_private: bool = False  # may reach loopback, link-local and private addresses (refused otherwise)
    ca_file: Path | None = None  # https: PEM CAs to verify the endpoint against (None: the system's)


def _check_ingest_limits(s: IngestSettings) -> None:
    """Every publisher budget fits the total (else that stream could never be admitted); sane refusal limits."""
    if s.publisher_kbps is not None and not 100 <= s.publisher_kbps <= s.max_ingest_kbps:
        raise ConfigError(f"publisher_kbps: {s.publisher_kbps} must be in 100..max_ingest_kbps ({s.max_ingest_kbps})")
    for name, stream in s.streams.items():
        if stream.max_kbps is not None and stream.max_kbps > s.max_ingest_kbps:
            raise ConfigError(
                f"[streams.{name}].max_kbps: {stream.max_kbps} is over max_ingest_kbps ({s.max_ingest_kbps})"
            )
    if not 1 <= s.refusal_limit <= 10_000:
        raise ConfigError(f"refusal_limit: {s.refusal_limit} must be in 1..10000")
    if not 1 <= s.refusal_window_s <= 3600:
        raise ConfigError(f"refusal_window: {s.refusal_window_s} must be in 1..3600 seconds")


@dataclass(frozen=True)
class RtmpLimits:
    """What an RTMP peer gets before its publish is authorised (see ``packager.ingest.slots``)."""

    publish_timeout_s: float = 10.0
    max_per_peer: int = 16
    max_unauthenticated: int = 32
    max_connections: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.publish_timeout_s <= 120:
            raise ConfigError(f"rtmp_publish_timeout: {self.publish_timeout_s} must be in 1..120 seconds")
        if not 1 <= self.max_per_peer <= self.max_connections:
            raise ConfigError(f"rtmp_max_per_peer: {self.max_per_peer} must be in 1..{self.max_connections}")
        if not 1 <= self.max_unauthenticated <= self.max_connections:
            raise ConfigError(
                f"rtmp_max_unauthenticated: {self.max_unauthenticated} must be in 1..{self.max_connections}"
            )


def _rtmp_limits(values: dict[str, Any]) -> RtmpLimits:
    """``[server]`` rtmp_* fields over the defaults."""
    default = RtmpLimits()
    timeout = values.get("rtmp_publish_timeout", default.publish_timeout_s)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigError("--config: [server].rtmp_publish_timeout must be a number of seconds")
    counts = {}
    for key, fallback in (
        ("rtmp_max_per_peer", default.max_per_peer),
        ("rtmp_max_unauthenticated", default.max_unauthenticated),
    ):
        value = values.get(key, fallback)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"--config: [server].{key} must be an integer")
        counts[key] = value
    return RtmpLimits(float(timeout), counts["rtmp_max_per_peer"], counts["rtmp_max_unauthenticated"])


@dataclass(frozen=True)
class IngestSettings:
    streams: dict[str, StreamSettings] = field(default_factory=dict)
    rtmp_port: int = 1935
    srt_port: int = 9000
    rtmps_port: int = 0  # 0: off; RTMP over TLS with the [server] certificate
    reconnect_window_s: float = 30.0
    keep_s: float = 3600.0
    max_publishers: int = 8
    max_ingest_kbps: int = 100_000
    webhooks: tuple[WebhookSettings, ...] = ()
    dead_letter: Path | None = None  # None: OUT/webhooks-dead-letter.jsonl
    event_backlog: int = 1000
    rejection_interval_s: float = 10.0  # ingest.rejected coalescing per (address, stream, reason)
    rtmp_limits: RtmpLimits = field(default_factory=RtmpLimits)
    publisher_kbps: int | None = None  # None: max_ingest_kbps // max_publishers
    refusal_limit: int = 20
    refusal_window_s: float = 10.0
    push_idle_timeout_s: float = 5.0
    input_limits: InputLimits = field(default_factory=InputLimits)
    security: SecuritySettings = field(default_factory=SecuritySettings)

    def __post_init__(self) -> None:
        if not 0 <= self.rtmp_port <= 65535:
            raise ConfigError(f"rtmp_port: {self.rtmp_port} is not a port (0 turns RTMP off)")
        if not 0 <= self.rtmps_port <= 65535:
            raise ConfigError(f"rtmps_port: {self.rtmps_port} is not a port (0 turns RTMPS off)")
        if self.rtmps_port and self.security.tls is None:
            raise ConfigError("rtmps_port: RTMPS needs tls_cert and tls_key ([server] or --tls-cert/--tls-key)")
        if not 0 <= self.srt_port <= 65535:
            raise ConfigError(f"srt_port: {self.srt_port} is not a port (0 turns SRT off)")
        if not 0 <= self.reconnect_window_s <= 3600:
            raise ConfigError(f"reconnect_window: {self.reconnect_window_s} must be in 0..3600 seconds")
        if not 0 <= self.keep_s <= 7 * 86400:
            raise ConfigError(f"keep: {self.keep_s} must be in 0..604800 seconds")
        if not 1 <= self.max_publishers <= 1000:
            raise ConfigError(f"max_publishers: {self.max_publishers} must be in 1..1000")
        if not 100 <= self.max_ingest_kbps <= 10_000_000:
            raise ConfigError(f"max_ingest_kbps: {self.max_ingest_kbps} must be in 100..10000000")
        _check_ingest_limits(self)
        if not 0.1 <= self.push_idle_timeout_s <= 600:
            raise ConfigError(f"push_idle_timeout: {self.push_idle_timeout_s} must be in 0.1..600 seconds")


def _input_limits(values: dict[str, Any]) -> InputLimits:
    """``[server]`` max_input_* fields over the defaults, each checked."""
    default = InputLimits()
    checked: dict[str, int] = {}
    for key, low, high, fallback in (
        ("max_input_width", 16, 16384, default.max_width),
        ("max_input_height", 16, 16384, default.max_height),
        ("max_input_pixels", 256, 16384 * 16384, default.max_pixels),
        ("max_input_fps", 1, 1000, int(default.max_fps)),
    ):
        value = values.get(key, fallback)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"--config: [server].{key} must be an integer in {low}..{high}")
        checked[key] = value
    return InputLimits(
        checked["max_input_width"],
        checked["max_input_height"],
        checked["max_input_pixels"],
        Fraction(checked["max_input_fps"]),
    )


def _check_key(key: object, where: str) -> str:
    if not isinstance(key, str) or not 8 <= len(key) <= 256 or not key.isprintable() or any(c in key for c in " /?&#"):
        raise ConfigError(
            f"{where}: a stream key must be 8-256 printable characters without spaces, '/', '?', '&' or '#'"
        )
    return key


def srt_crypto(values: dict[str, Any], where: str) -> dict[str, Any]:
    """A stream's ``passphrase`` / ``pbkeylen`` as StreamSettings fields, checked against libsrt's rules."""
    passphrase = values.get("passphrase")
    if passphrase is not None and (
        not isinstance(passphrase, str) or not passphrase.isprintable() or not 10 <= len(passphrase.encode()) <= 79
    ):
        raise ConfigError(f"--config: {where}.passphrase must be 10-79 printable characters (libsrt's limits)")
    pbkeylen = values.get("pbkeylen", 16)
    if isinstance(pbkeylen, bool) or not isinstance(pbkeylen, int) or pbkeylen not in (16, 24, 32):
        raise ConfigError(f"--config: {where}.pbkeylen must be 16, 24 or 32 (AES key bytes)")
    if "pbkeylen" in values and passphrase is None:
        raise ConfigError(f"--config: {where}.pbkeylen needs a passphrase")
    return {"passphrase": passphrase, "pbkeylen": pbkeylen}


def stream_config(name: str, values: dict[str, Any], base: StreamConfig, where: str) -> StreamConfig:
    """``base`` with the stream flags found in ``values`` applied."""
    timing, encoding, ladder = base.timing, base.encoding, base.ladder
    if "ladder" in values or "audio_bitrate" in values:
        ladder = Ladder.parse(
            str(values.get("ladder", _ladder_text(base.ladder))),
            str(values.get("audio_bitrate", base.ladder.audio_bitrate)),
        )
    targets = base.targets
    if {"latency", "window", *TUNABLES} & values.keys():
        try:
            window = parse_seconds(values.get("window", timing.window_s), f"{where}.window")
            tuned = tune(Tuning(replace(timing, window_s=window), encoding, targets), values, lambda k: f"{where}.{k}")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        timing, encoding, targets = tuned.timing, tuned.encoding, tuned.targets
    cue_tags = values.get("hls_cue_tags", base.hls_cue_tags)
    if not isinstance(cue_tags, bool):
        raise ConfigError(f"--config: {where}.hls_cue_tags must be true or false")
    language = check_language(values.get("cc_language", base.cc_language), f"--config: {where}.cc_language")
    audio = base.audio
    if {"audio", "max_audio"} & values.keys():
        max_tracks = values.get("max_audio", base.audio.max_tracks)
        audio = audio_from_toml(values.get("audio"), max_tracks, where, keep=base.audio.choices)
    return StreamConfig(
        name=check_name(name, where),
        ladder=ladder,
        timing=timing,
        encoding=encoding,
        hls_cue_tags=cue_tags,
        cc_language=language,
        audio=audio,
        targets=targets,
    )


def check_webhook_url(url: object, where: str) -> str:
    """An absolute http(s) URL with a host, or a ConfigError naming ``where``."""
    if not isinstance(url, str) or not url or len(url) > 2048 or not url.isprintable() or " " in url:
        raise ConfigError(f"{where}: must be an http:// or https:// URL (a string without spaces)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{where}: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{where}: {url!r} must use http:// or https://")
    if not parts.hostname:
        raise ConfigError(f"{where}: {url!r} has no host")
    return url


def check_public_url(url: str, where: str) -> None:
    """A ConfigError naming ``where`` if ``url``'s host is ``localhost`` or a non-public literal address."""
    from origin.egress import private_host  # imported here: aiohttp only loads when webhooks are configured

    host = urlsplit(url).hostname or ""
    if private_host(host):
        raise ConfigError(
            f"{where}: {url!r} points at a loopback, link-local or private address ({host}); "
            "set allow_private = true on that endpoint if that is intended"
        )


def check_ca_file(value: object, where: str) -> Path:
    """A readable PEM file of CA certificates, or a ConfigError naming ``where``."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be the path of a PEM file of CA certificates")
    try:
        ssl.create_default_context(cafile=value)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: {value!r} is not a readable PEM file of CA certificates ({exc})") from None
    return Path(value)


def _webhook_egress(values: dict[str, Any], url: str, where: str) -> tuple[bool, Path | None]:
    """``allow_private`` and ``ca_file`` of one ``[[webhooks]]`` table, checked against its URL."""
    allow_private = values.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise ConfigError(f"--config: {where}.allow_private must be true or false")
    if not allow_private:
        check_public_url(url, f"--config: {where}.url")
    ca_file = values.get("ca_file")
    if ca_file is None:
        return allow_private, None
    if urlsplit(url).scheme != "https":
        raise ConfigError(f"--config: {where}.ca_file only applies to an https:// url")
    return allow_private, check_ca_file(ca_file, f"--config: {where}.ca_file")


def webhook_settings(values: object, where: str) -> WebhookSettings:
    """One ``[[webhooks]]`` table, validated field by field."""
    if not isinstance(values, dict):
        raise ConfigError(f"--config: {where} must be a table")
    bad = set(values) - _WEBHOOK_KEYS
    if bad:
        raise ConfigError(f"--config: {where} has unknown field(s) {', '.join(sorted(bad))}")
    for key in ("url", "secret", "events"):
        if key not in values:
            raise ConfigError(f"--config: {where}.{key} is required")
    url = check_webhook_url(values["url"], f"--config: {where}.url")
    secret = values["secret"]
    if not isinstance(secret, str) or not 16 <= len(secret) <= 1024:
        raise ConfigError(f"--config: {where}.secret must be a string of 16-1024 characters")
    events = values["events"]
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ConfigError(f"--config: {where}.events must be a list of event type names")
    try:
        types = parse_types(events, f"--config: {where}.events")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    timeout_s = values.get("timeout_s", 10.0)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0.1 <= timeout_s <= 120:
        raise ConfigError(f"--config: {where}.timeout_s must be a number of seconds in 0.1..120")
    attempts = values.get("max_attempts", 6)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 50:
        raise ConfigError(f"--config: {where}.max_attempts must be an integer in 1..50")
    allow_private, ca_file = _webhook_egress(values, url, where)
    return WebhookSettings(url, secret, types, float(timeout_s), attempts, allow_private, ca_file)


def _events_section(data: dict[str, Any]) -> tuple[tuple[WebhookSettings, ...], Path | None, int, float]:
    hooks = data.get("webhooks", [])
    if not isinstance(hooks, list):
        raise ConfigError("--config: webhooks must be [[webhooks]] tables")
    webhooks = tuple(webhook_settings(v, f"[[webhooks]] #{i + 1}") for i, v in enumerate(hooks))
    events = data.get("events", {})
    if not isinstance(events, dict):
        raise ConfigError("--config: [events] must be a table")
    bad = set(events) - _EVENTS_KEYS
    if bad:
        raise ConfigError(f"--config: [events] has unknown field(s) {', '.join(sorted(bad))}")
    dead_letter = events.get("dead_letter")
    if dead_letter is not None and (not isinstance(dead_letter, str) or not dead_letter.strip()):
        raise ConfigError("--config: [events].dead_letter must be a file path")
    backlog = events.get("backlog", 1000)
    if isinstance(backlog, bool) or not isinstance(backlog, int) or not 10 <= backlog <= 100_000:
        raise ConfigError("--config: [events].backlog must be an integer in 10..100000")
    interval = events.get("rejection_interval", 10)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0.1 <= interval <= 3600:
        raise ConfigError("--config: [events].rejection_interval must be seconds in 0.1..3600")
    return webhooks, Path(dead_letter) if dead_letter is not None else None, backlog, float(interval)


def _ladder_text(ladder: Ladder) -> str:
    return ",".join(f"{r.width}x{r.height}@{r.bitrate}" for r in ladder.renditions)


def load(
    path: Path | None,
    base: StreamConfig,
    flag_keys: list[str],
    security_flags: dict[str, Any] | None = None,
    **overrides: Any,
) -> IngestSettings:
    """Settings from the TOML file at ``path`` (optional), ``--stream-key NAME=KEY`` flags and overrides;
    ``security_flags``: the TLS, admin-token, CORS and playback flags (see :mod:`packager.security`)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"server", "defaults", "streams", "webhooks", "events", "playback"}
    if unknown:
        raise ConfigError(f"--config: unknown section(s) {', '.join(sorted(unknown))}")
    server = data.get("server", {})
    defaults = data.get("defaults", {})
    for section, allowed, values in (("server", _SERVER_KEYS, server), ("defaults", _DEFAULT_KEYS, defaults)):
        if not isinstance(values, dict):
            raise ConfigError(f"--config: [{section}] must be a table")
        bad = set(values) - allowed
        if bad:
            raise ConfigError(f"--config: [{section}] has unknown field(s) {', '.join(sorted(bad))}")
    base = stream_config(base.name, defaults, base, "[defaults]") if defaults else base
    streams: dict[str, StreamSettings] = {}
    for name, values in (data.get("streams") or {}).items():
        where = f"[streams.{name}]"
        if not isinstance(values, dict):
            raise ConfigError(f"--config: {where} must be a table")
        bad = set(values) - _STREAM_KEYS
        if bad:
            raise ConfigError(f"--config: {where} has unknown field(s) {', '.join(sorted(bad))}")
        if "key" not in values:
            raise ConfigError(f"--config: {where} needs a key")
        max_kbps = values.get("max_kbps")
        if max_kbps is not None and (not isinstance(max_kbps, int) or not 100 <= max_kbps <= 10_000_000):
            raise ConfigError(f"--config: {where}.max_kbps must be an integer in 100..10000000")
        streams[name] = StreamSettings(
            stream_config(name, values, base, where),
            _check_key(values["key"], f"{where}.key"),
            bool(values.get("takeover", False)),
            max_kbps,
            **srt_crypto(values, where),
        )
    for item in flag_keys:
        name, sep, key = item.partition("=")
        if not sep:
            raise ConfigError(f"--stream-key: {item!r} is not NAME=KEY")
        streams[name] = StreamSettings(
            replace(base, name=check_name(name, "--stream-key")), _check_key(key, f"--stream-key {name}")
        )
    webhooks, dead_letter, backlog, rejection_interval_s = _events_section(data)
    values = {k: server[k] for k in server}
    values.update({k: v for k, v in overrides.items() if v is not None})
    input_limits = _input_limits(values)
    playback = data.get("playback", {})
    if not isinstance(playback, dict):
        raise ConfigError("--config: [playback] must be a table")
    security = security_settings(server, playback, security_flags or {})
    try:
        return IngestSettings(
            webhooks=webhooks,
            dead_letter=dead_letter,
            event_backlog=backlog,
            rejection_interval_s=rejection_interval_s,
            streams=streams,
            rtmp_port=int(values.get("rtmp_port", 1935)),
            srt_port=int(values.get("srt_port", 9000)),
            rtmps_port=int(values.get("rtmps_port", 0)),
            security=security,
            reconnect_window_s=float(values.get("reconnect_window", 30)),
            keep_s=float(values.get("keep", 3600)),
            max_publishers=int(values.get("max_publishers", 8)),
            max_ingest_kbps=int(values.get("max_ingest_kbps", 100_000)),
            rtmp_limits=_rtmp_limits(values),
            publisher_kbps=None if values.get("publisher_kbps") is None else int(values["publisher_kbps"]),
            refusal_limit=int(values.get("refusal_limit", 20)),
            refusal_window_s=float(values.get("refusal_window", 10)),
            push_idle_timeout_s=float(values.get("push_idle_timeout", 5)),
            input_limits=input_limits,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--config: [server]: {exc}") from None
