"""Delivery security settings: TLS files, the admin token, allowed CORS origins, playback signing keys.

They come from ``[server]`` (``tls_cert``, ``tls_key``, ``http_redirect_port``,
``admin_token``, ``cors_origin``) and ``[playback]`` (``secret``,
``public_key``, ``jwks``) of ``--config``, or from the same-named flags, which
win. Secrets are read from files named on the command line (a flag's value is
visible in ``ps``) and never appear in a ``repr``. Every problem is a
:class:`~packager.config.ConfigError` naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packager.config import ConfigError
from packager.tls import TlsError, TlsFiles, tls_files

SERVER_KEYS = {"tls_cert", "tls_key", "http_redirect_port", "admin_token", "cors_origin"}
PLAYBACK_KEYS = {"secret", "public_key", "jwks"}
MIN_SECRET = 16  # an admin token shorter than this is guessable
MIN_HMAC_SECRET = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class PlaybackKeys:
    """What signed-playback tokens are checked against: an HMAC secret, a PEM public key, or a JWKS."""

    secret: str | None = field(default=None, repr=False)
    public_key: str | None = None  # PEM text (RSA or EC)
    jwks: str | None = None  # JSON text of a JWK Set


@dataclass(frozen=True)
class SecuritySettings:
    tls: TlsFiles | None = None
    http_redirect_port: int = 0  # 0: no plain-HTTP port redirecting to HTTPS
    admin_token: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ("*",)
    playback: PlaybackKeys | None = None

    def exposed_warning(self, host: str) -> str | None:
        """The warning for a non-loopback ``host`` with no admin token, naming what anyone can reach."""
        if self.admin_token is not None or host in LOOPBACK_HOSTS:
            return None
        return (
            f"warning: --host {host} with no admin token: anyone who reaches this port can read /api/streams, "
            "/events (publishers' addresses), /metrics and the dashboard; set [server] admin_token or "
            "--admin-token-file"
        )


def check_origins(value: object, where: str) -> tuple[str, ...]:
    """``*`` or a list of exact origins (``scheme://host[:port]``), as a list or one comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{where}: must be '*' or a list of origins such as https://player.example.com")
    origins: list[str] = []
    for item in items:
        origin = item.strip() if isinstance(item, str) else ""
        if origin == "*":
            if len(items) > 1:
                raise ConfigError(f"{where}: '*' allows every origin; it cannot be combined with others")
            return ("*",)
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ConfigError(f"{where}: {item!r} is not an origin (scheme://host[:port], no path)")
        origins.append(origin.lower())
    return tuple(origins)


def _read_secret(path: str, where: str, shortest: int = MIN_SECRET) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    return _check_secret(value, where, shortest)


def _check_secret(value: object, where: str, shortest: int = MIN_SECRET) -> str:
    if not isinstance(value, str) or not shortest <= len(value) <= 4096 or not value.isprintable():
        raise ConfigError(f"{where}: must be {shortest}-4096 printable characters")
    return value


def _read_text(path: object, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}: must be a file path")
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None


def playback_keys(values: dict[str, Any], flags: dict[str, str | None]) -> PlaybackKeys | None:
    """``[playback]`` over nothing, flags (file paths) over ``[playback]``; exactly one kind of key."""
    bad = set(values) - PLAYBACK_KEYS
    if bad:
        raise ConfigError(f"--config: [playback] has unknown field(s) {', '.join(sorted(bad))}")
    secret = values.get("secret")
    secret = _check_secret(secret, "[playback].secret", MIN_HMAC_SECRET) if secret is not None else None
    if flags.get("secret_file"):
        secret = _read_secret(flags["secret_file"], "--playback-secret-file", MIN_HMAC_SECRET)  # type: ignore[arg-type]
    public = flags.get("public_key") or values.get("public_key")
    jwks = flags.get("jwks") or values.get("jwks")
    given = [k for k, v in (("secret", secret), ("public_key", public), ("jwks", jwks)) if v]
    if len(given) > 1:
        raise ConfigError(f"[playback]: give one of secret, public_key or jwks, not {' and '.join(given)}")
    if not given:
        return None
    if public:
        text = _read_text(public, "[playback].public_key")
        if "-----BEGIN PUBLIC KEY-----" not in text:
            raise ConfigError(f"[playback].public_key: {public} is not a PEM public key")
        return PlaybackKeys(public_key=text)
    if jwks:
        text = _read_text(jwks, "[playback].jwks")
        try:
            keys = json.loads(text).get("keys")
        except (ValueError, AttributeError):
            keys = None
        if not isinstance(keys, list) or not keys:
            raise ConfigError(f"[playback].jwks: {jwks} is not a JWK Set (a JSON object with a 'keys' list)")
        return PlaybackKeys(jwks=text)
    return PlaybackKeys(secret=secret)


def security_settings(server: dict[str, Any], playback: dict[str, Any], flags: dict[str, Any]) -> SecuritySettings:
    """``[server]`` and ``[playback]`` values with flags (``None``: not given) over them."""
    try:
        tls = tls_files(
            flags.get("tls_cert") or server.get("tls_cert"), flags.get("tls_key") or server.get("tls_key"), "TLS"
        )
    except TlsError as exc:
        raise ConfigError(str(exc)) from None
    redirect = flags.get("http_redirect_port") or server.get("http_redirect_port", 0)
    if isinstance(redirect, bool) or not isinstance(redirect, int) or not 0 <= redirect <= 65535:
        raise ConfigError("http_redirect_port: must be a port (0 turns it off)")
    if redirect and tls is None:
        raise ConfigError("http_redirect_port: redirects to HTTPS, which needs tls_cert and tls_key")
    token = server.get("admin_token")
    token = _check_secret(token, "[server].admin_token") if token is not None else None
    if flags.get("admin_token_file"):
        token = _read_secret(flags["admin_token_file"], "--admin-token-file")
    cors = flags.get("cors_origin") or server.get("cors_origin", "*")
    where = "--cors-origin" if flags.get("cors_origin") else "[server].cors_origin"
    return SecuritySettings(
        tls=tls,
        http_redirect_port=redirect,
        admin_token=token,
        cors_origins=check_origins(cors, where),
        playback=playback_keys(playback, flags),
    )


OPEN = SecuritySettings()  # no TLS, no admin token, any origin, no signed playback: the defaults
