"""Malformed requests over raw sockets: a 400 each, one short rate-limited log line, never a traceback."""

import asyncio
import logging
import ssl
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from origin.app import create_app
from origin.serverlog import ServerLog, short_reason

SECRET = b"k3y-that-must-not-be-logged"
MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Key: " + SECRET + b"\x01\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET + b"a" * 9000 + b"\r\n\r\n",
    b"GET /?key=" + SECRET + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"PUT /ingest/demo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
]


@dataclass(frozen=True)
class Endpoint:
    port: int
    ssl: ssl.SSLContext | None  # a client context over HTTPS


@pytest.fixture(params=["http", "https"])
async def origin(request, tmp_path, certs):
    """The folder origin on a free port, over plain HTTP and then over HTTPS."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "master.m3u8").write_text("#EXTM3U\n")
    (tmp_path / "demo" / "360p").mkdir()
    (tmp_path / "demo" / "360p" / "7.m4s").write_bytes(b"media" * 100)
    runner = web.AppRunner(create_app(root=tmp_path), access_log=None)
    await runner.setup()
    tls = request.param == "https"
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certs.server_context() if tls else None)
    await site.start()
    yield Endpoint(runner.addresses[0][1], certs.ca.client_context() if tls else None)
    await runner.cleanup()


async def exchange(origin: Endpoint, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", origin.port, ssl=origin.ssl)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)  # the server closes after a 400
    finally:
        writer.close()


async def test_a_flood_of_malformed_requests_logs_a_few_lines_without_tracebacks(origin, caplog):
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    answers = [await exchange(origin, MALFORMED[i % len(MALFORMED)]) for i in range(200)]
    assert all(a.startswith(b"HTTP/1.0 400 Bad Request\r\n") for a in answers)
    records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert 1 <= len(records) <= 2  # one line per peer and level per interval
    for r in records:
        assert r.exc_info is None and r.exc_text is None
        line = r.getMessage()
        assert line.startswith("bad request from 127.0.0.1: ") and "\n" not in line
    assert SECRET.decode() not in caplog.text and "Traceback" not in caplog.text
    ok = await exchange(origin, b"GET /live/demo/master.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"#EXTM3U\n")


def test_repeats_are_counted_in_the_next_line(caplog):
    now = [0.0]
    log = ServerLog(logging.getLogger("test.serverlog"), interval_s=10.0, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="test.serverlog")
    exc = BadHttpMessage("Invalid header token:\n\n  b'Host x'\n        ^")
    for _ in range(50):
        log.exception("Error handling request from %s", "192.0.2.7", exc_info=exc)
    now[0] = 11.0
    log.exception("Error handling request from %s", "192.0.2.7", exc_info=exc)
    log.exception("Error handling request from %s", "198.51.100.9", exc_info=exc)
    assert [r.getMessage() for r in caplog.records] == [
        "bad request from 192.0.2.7: Invalid header token",
        "bad request from 192.0.2.7: Invalid header token (+49 similar in the last 11 s)",
        "bad request from 198.51.100.9: Invalid header token",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)


def test_other_errors_keep_their_traceback(caplog):
    log = ServerLog(logging.getLogger("test.serverlog.other"))
    caplog.set_level(logging.DEBUG, logger="test.serverlog.other")
    try:
        raise ValueError("a bug in a handler")
    except ValueError as exc:
        log.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "ValueError: a bug in a handler" in caplog.text


def test_short_reason_never_echoes_request_bytes():
    assert short_reason(LineTooLong("b'key=secret...'", "8190")) == "Got more than 8190 bytes when reading"
    assert short_reason(BadHttpMessage("'secret'")) == "BadHttpMessage"
    assert short_reason(BadHttpMessage("Bad status line:\n  Invalid HTTP version")) == "Bad status line"


async def test_error_answers_are_never_cacheable(origin):
    requests = [
        b"GET /live/demo/nothing.m4s HTTP/1.1\r\n",
        b"GET /no/such/page HTTP/1.1\r\n",
        b"POST /live/demo/master.m3u8 HTTP/1.1\r\nContent-Length: 0\r\n",
        b"GET /live/demo/360p/7.m4s HTTP/1.1\r\nRange: bytes=99999-\r\n",
        b"GET /live/demo/360p/7.m4s HTTP/1.1\r\nRange: bytes=" + b"9" * 5000 + b"-\r\n",
    ]
    for head in requests:
        answer = await exchange(origin, head + b"Host: x\r\nConnection: close\r\n\r\n")
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500 and b"\r\nCache-Control: no-store\r\n" in answer, answer[:200]
