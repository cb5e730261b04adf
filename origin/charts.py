"""``GET /api/streams/{stream}/series``: the dashboard's charts of one stream over the last minutes.

One JSON object of columns, one value per 5-second bucket, oldest first
(``t``: each bucket's start, UTC seconds; ``null``: nothing measured then):

* ``viewers``: request rate, active sessions, joins, stalls (CMCD ``bs``),
  startup requests (``su``), buffer length p50/min, measured throughput and
  requested bitrate p50, requests per requested bitrate (:mod:`origin.viewers`);
* ``publishing``: latency p50/max per stage (capture → published per
  rendition, published → servable here, published → blocking playlist
  answered) and measured bitrate per rendition (:mod:`origin.publishing`).

Both sides are cut at the same instant. The route is in the admin zone
(:mod:`origin.access`); an unknown stream is 404.
"""

from __future__ import annotations

import json

from aiohttp import web

from origin import policy
from origin.handlers import KIND, NAME, STATE, OriginState, allow_origin
from origin.policy import Kind
from origin.responses import error


async def stream_series(request: web.Request) -> web.StreamResponse:
    st: OriginState = request.app[STATE]
    request[KIND] = Kind.API
    name = request.match_info["stream"]
    if not NAME.match(name) or st.store.get(name) is None:
        headers = policy.response_headers(Kind.API, 404, allow_origin=allow_origin(request))
        return error(404, "no such stream", headers)
    now_s = st.viewers.clock()
    body = {
        "stream": name,
        "bucket_s": st.viewers.bucket_s,
        "window_s": st.viewers.window_s,
        "now": round(now_s, 3),
        "viewers": st.viewers.series(name, now_s),
        "publishing": st.publishing.series(name, now_s),
    }
    headers = policy.response_headers(Kind.API, 200, allow_origin=allow_origin(request))
    return web.Response(text=json.dumps(body), headers=headers)
