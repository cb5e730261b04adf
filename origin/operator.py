"""What the operator's write routes on a stream share: the stream this process encodes, a bounded JSON body,
and a JSON answer.

Each step returns either what the route needs or the error response to send
(404 unknown stream, 409 encoded elsewhere, 413 too large, 400 not JSON), so
a route reads as a short list of checks.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from origin import policy
from origin.handlers import KIND, NAME, STATE, OriginState, allow_origin
from origin.policy import Kind
from origin.responses import error


def error_headers(request: web.Request) -> dict[str, str]:
    request[KIND] = Kind.API
    return policy.response_headers(Kind.API, 400, allow_origin=allow_origin(request))


def encoded_pipeline(request: web.Request) -> Any | web.Response:
    """The pipeline of the route's ``{stream}`` when this process encodes it; else the 404/409 answer."""
    st: OriginState = request.app[STATE]
    name = request.match_info["stream"]
    headers = error_headers(request)
    if not NAME.match(name) or st.store.get(name) is None:
        return error(404, "no such stream", headers)
    pipeline = st.pipelines.get(name)
    if pipeline is None:
        return error(409, "this stream is not encoded by this process", headers)
    return pipeline


async def json_body(request: web.Request, limit: int, what: str) -> object | web.Response:
    """The request's JSON body of at most ``limit`` bytes; else the 413/400 answer."""
    headers = error_headers(request)
    if request.content_length is not None and request.content_length > limit:
        return error(413, f"{what} is at most {limit} bytes", headers)
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        return error(413, f"{what} is at most {limit} bytes", headers)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return error(400, "the body is not JSON", headers)


def answer(request: web.Request, status: int, payload: dict[str, Any]) -> web.Response:
    headers = policy.response_headers(Kind.API, status, allow_origin=allow_origin(request))
    return web.Response(status=status, text=json.dumps(payload), headers=headers)
