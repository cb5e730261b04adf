"""The origin's delivery options on the command line: TLS, the redirect port, the admin token, CORS, signing.

``add_flags`` puts the same flags on ``run`` and ``origin``; ``flags_of``
reads them for :func:`packager.security.security_settings`; ``transport``
loads the certificate and binds the redirect port before anything starts (a
bad certificate or a busy port stops the start with one line). Origin
workers get the settings through the environment (:data:`ENV`), never on
their command line, where ``ps`` would show the secrets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from packager.config import ConfigError
from packager.ports import ListenError, bind_tcp
from packager.security import PlaybackKeys, SecuritySettings, security_settings
from packager.tls import ServerTls, TlsError, TlsFiles

ENV = "PACKAGER_ORIGIN_SECURITY"


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("delivery security")
    g.add_argument("--tls-cert", default=None, metavar="FILE", help="serve HTTPS with this PEM chain (leaf first)")
    g.add_argument("--tls-key", default=None, metavar="FILE", help="the private key of --tls-cert (SIGHUP reloads)")
    g.add_argument(
        "--http-redirect-port", type=int, default=None, metavar="PORT", help="plain HTTP port answering 308 to HTTPS"
    )
    g.add_argument(
        "--admin-token-file",
        default=None,
        metavar="FILE",
        help="Bearer token for /api, /events, /metrics and the dashboard (read from FILE)",
    )
    g.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="origin allowed to read answers: '*' (default) or exact origins (repeatable or comma separated)",
    )
    g.add_argument("--playback-secret-file", default=None, metavar="FILE", help="signed playback: HMAC secret")
    g.add_argument("--playback-public-key", default=None, metavar="FILE", help="signed playback: PEM public key")
    g.add_argument("--playback-jwks", default=None, metavar="FILE", help="signed playback: JWK Set file")


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "http_redirect_port": args.http_redirect_port,
        "admin_token_file": args.admin_token_file,
        "cors_origin": ",".join(args.cors_origin) if args.cors_origin else None,
        "secret_file": args.playback_secret_file,
        "public_key": args.playback_public_key,
        "jwks": args.playback_jwks,
    }


def origin_settings(args: argparse.Namespace) -> SecuritySettings:
    """``packager origin``: from the flags, or (a worker) from its supervisor through :data:`ENV`."""
    if args.worker_of is not None and ENV in os.environ:
        return from_env(os.environ[ENV])
    return security_settings({}, {}, flags_of(args))


def to_env(s: SecuritySettings) -> str:
    playback = s.playback
    return json.dumps(
        {
            "tls": [str(s.tls.cert), str(s.tls.key)] if s.tls else None,
            "admin_token": s.admin_token,
            "cors": list(s.cors_origins),
            "playback": [playback.secret, playback.public_key, playback.jwks] if playback else None,
        }
    )


def from_env(text: str) -> SecuritySettings:
    data = json.loads(text)
    tls = TlsFiles(Path(data["tls"][0]), Path(data["tls"][1])) if data["tls"] else None
    playback = PlaybackKeys(*data["playback"]) if data["playback"] else None
    return SecuritySettings(tls, 0, data["admin_token"], tuple(data["cors"]), playback)


def hand_to_workers(s: SecuritySettings, workers: int) -> None:
    """Workers serve the port: they get the settings (the redirect port cannot be shared by them)."""
    if s.http_redirect_port:
        raise ConfigError("http_redirect_port: not available with origin workers (redirect at the load balancer)")
    os.environ[ENV] = to_env(s)


def warn_if_exposed(s: SecuritySettings, host: str) -> None:
    warning = s.exposed_warning(host)
    if warning is not None:
        print(f"packager: {warning}", file=sys.stderr)


def transport(s: SecuritySettings, host: str, port: int):  # type: ignore[no-untyped-def]
    """The origin's :class:`~origin.transport.Transport`; raises ListenError (busy redirect port) or TlsError."""
    from origin.transport import Transport

    tls = ServerTls(s.tls) if s.tls is not None else None
    redirect = bind_tcp(host, s.http_redirect_port) if s.http_redirect_port else None
    return Transport(tls=tls, redirect=redirect, host=host, port=port)


def transport_or_exit(s: SecuritySettings, host: str, port: int):  # type: ignore[no-untyped-def]
    """:func:`transport`, or None after printing the one line that says why not."""
    try:
        return transport(s, host, port)
    except (ListenError, TlsError) as exc:
        print(f"packager: {exc}", file=sys.stderr)
        return None
