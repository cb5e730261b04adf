"""TLS for every listener that offers it (HTTPS origin, RTMPS ingest): one certificate, reloadable.

A :class:`ServerTls` owns one server :class:`ssl.SSLContext` built from a PEM
certificate chain and key. Every listener is created with that same context;
:meth:`ServerTls.reload` (on SIGHUP) loads the files again *into* it, so new
handshakes get the new certificate while open connections (players holding a
blocking playlist request, a broadcaster's RTMPS push) keep theirs and nothing
is dropped. A reload that fails (a half-written file, a key that does not
match) keeps the certificate in use and says why.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class TlsError(Exception):
    """The certificate or key cannot be used; the message is the line the user sees."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the PEM certificate chain (leaf first) and its private key are."""

    cert: Path
    key: Path


def _load(ctx: ssl.SSLContext, files: TlsFiles) -> None:
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except FileNotFoundError as exc:
        raise TlsError(f"cannot read {exc.filename}: no such file") from None
    except PermissionError as exc:
        raise TlsError(f"cannot read {exc.filename}: permission denied") from None
    except ssl.SSLError as exc:
        raise TlsError(f"{files.cert} / {files.key}: not a usable certificate and key ({exc.reason})") from None


def _new_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996: TLS 1.0 and 1.1 are deprecated
    ctx.set_alpn_protocols(["http/1.1"])  # HTTP/2 to players is a front proxy's or CDN's job
    _load(ctx, files)
    return ctx


class ServerTls:
    """The server context and its files. The event loop owns it (reload runs there)."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.context = _new_context(files)  # raises TlsError: a start with a bad certificate stops at once

    def reload(self) -> bool:
        """Load the files again into the live context; False (and a log line) when they are unusable.

        The files are tried on a scratch context first, so a bad pair never reaches the live one."""
        try:
            _new_context(self.files)
            _load(self.context, self.files)
        except TlsError as exc:
            log.error("TLS certificate reload failed, keeping the current one: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s", self.files.cert)
        return True


def tls_files(cert: str | None, key: str | None, where: str) -> TlsFiles | None:
    """Both paths or neither; a lone one is a :class:`TlsError` naming ``where``."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise TlsError(f"{where}: a TLS certificate needs its key and a key its certificate (give both)")
    return TlsFiles(Path(cert), Path(key))
