"""``POST /api/streams/{stream}/subtitles``: live subtitle cues for a stream this process encodes.

Body (JSON, at most 64 KiB; see :mod:`packager.livecues` for the limits)::

    {"language": "en", "cues": [{"text": "Good evening", "duration_s": 2.5},
                                {"text": "Later", "start_s": 1767225600.5, "duration_s": 2}]}

A cue without ``start_s`` starts now (the live media clock is UTC). The first
request for a language creates its subtitle rendition (HLS ``SUBTITLES``
group, DASH text AdaptationSet); an input subtitle stream of that language
takes the cues instead. The answer (201) names the rendition and how many
cues came too late for it (their segments were already published). A
malformed body is 400 with the reason, an unknown stream 404, one encoded by
another process, ended or not live 409. The route is in the admin zone.
"""

from __future__ import annotations

from aiohttp import web

from origin.operator import answer, encoded_pipeline, error_headers, json_body
from origin.responses import error
from packager.livecues import CueError, parse_cues

MAX_BODY = 64 * 1024


async def post_subtitles(request: web.Request) -> web.StreamResponse:
    pipeline = encoded_pipeline(request)
    if isinstance(pipeline, web.Response):
        return pipeline
    headers = error_headers(request)
    stream = getattr(pipeline, "stream", None)
    if stream is None or getattr(pipeline, "subtitles", None) is None:
        return error(409, "this stream is not encoded by this process", headers)
    body = await json_body(request, MAX_BODY, "a subtitle request")
    if isinstance(body, web.Response):
        return body
    if stream.ended:
        return error(409, "the stream has ended", headers)
    if not stream.clock.live:
        return error(409, "live subtitles need a live stream (its media clock is the wall clock)", headers)
    try:
        cues = parse_cues(body, stream.clock_utc_s())
    except CueError as exc:
        return error(400, str(exc), headers)
    track, late = pipeline.live_cues(cues.language, cues.cues)
    payload = {"track": track, "language": cues.language, "accepted": len(cues.cues) - late, "late": late}
    return answer(request, 201, payload)
