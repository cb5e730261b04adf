"""Fixtures every test folder shares: a throw-away CA and server certificate, and HTTP/HTTPS test clients."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp
import pytest

from tests.support.certs import CertAuthority, Issued, make_ca


@dataclass(frozen=True)
class Certs:
    ca: CertAuthority
    server: Issued

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server.cert, self.server.key)
        return ctx


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca = make_ca(folder)
    return Certs(ca, ca.issue(folder))


@pytest.fixture(params=["http", "https"])
def scheme_client(request, aiohttp_client, certs):
    """``await scheme_client(app)``: a test client over plain HTTP, then over HTTPS (the chain verified)."""

    async def make(app):  # type: ignore[no-untyped-def]
        if request.param == "http":
            return await aiohttp_client(app)
        connector = aiohttp.TCPConnector(ssl=certs.ca.client_context())
        return await aiohttp_client(app, server_kwargs={"ssl": certs.server_context()}, connector=connector)

    return make
