"""``POST /api/streams/{stream}/splice``: an operator inserts an ad break into a stream this process encodes.

Bodies (JSON, at most 4 KiB)::

    {"duration_s": 30, "id": 42}      a break out that returns after 30 s
    {"out": true}                     an open-ended break out (optional "id", "duration_s")
    {"in": true}                      the return (optional "id": else the open break's)
    ... "delay_s": 8                  optional: not before 8 s from now (live streams; pre-roll for ad servers)

The splice lands on the first part boundary the encoders have not reached
(:mod:`packager.splicer`); the answer (201) says where. A malformed body is
400 with the reason, an unknown stream 404, a stream encoded by another
process, ended or without video 409. The route is in the admin zone: with an
admin token configured it needs it (:mod:`origin.access`).
"""

from __future__ import annotations

import base64
import math
from fractions import Fraction
from typing import Any

from aiohttp import web

from origin.operator import answer, encoded_pipeline, error_headers, json_body
from origin.responses import error
from packager.splice import MAX_BREAK_S, SPLICE_TIMESCALE, Splice, SpliceError, SpliceRequest
from packager.timebase import iso_from_epoch_s

MAX_BODY = 4096
MAX_DELAY_S = 3600
_KEYS = frozenset({"out", "in", "id", "duration_s", "delay_s"})


def _seconds(body: dict[str, Any], key: str, limit: float) -> Fraction | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpliceError(f"{key} must be a number of seconds")
    if not 0 <= value <= limit:
        raise SpliceError(f"{key} must be within 0..{limit:g} s")
    return Fraction(value).limit_denominator(SPLICE_TIMESCALE)


def parse_request(body: object, now_utc_s: Fraction | None) -> SpliceRequest:
    """The splice a body asks for; SpliceError with the reason. ``now_utc_s``: None when not live."""
    if not isinstance(body, dict):
        raise SpliceError("the body must be a JSON object")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise SpliceError(f"unknown field {unknown[0]!r}")
    out, back = body.get("out"), body.get("in")
    if out not in (None, True, False) or back not in (None, True, False):
        raise SpliceError('"out" and "in" must be true or false')
    duration = _seconds(body, "duration_s", MAX_BREAK_S)
    if bool(out) == bool(back) and not (duration is not None and out is None and back is None):
        raise SpliceError('say "out": true, "in": true, or give "duration_s" for a break that returns')
    event = body.get("id")
    if event is not None and (isinstance(event, bool) or not isinstance(event, int)):
        raise SpliceError("id must be an integer")
    delay = _seconds(body, "delay_s", MAX_DELAY_S)
    at = None
    if delay is not None:
        if now_utc_s is None:
            raise SpliceError("delay_s needs a live stream (its media clock is the wall clock)")
        at = math.ceil((now_utc_s + delay) * SPLICE_TIMESCALE)
    kind = "in" if back else "out"
    ticks = None if duration is None else math.ceil(duration * SPLICE_TIMESCALE)
    if kind == "in" and ticks is not None:
        raise SpliceError("only a break out has a duration")
    return SpliceRequest(kind=kind, event_id=event, at_ticks=at, duration_ticks=ticks, origin="api")


def splice_json(splice: Splice, epoch_s: Fraction) -> dict[str, Any]:
    return {
        "id": splice.event_id,
        "kind": splice.kind,
        "start": iso_from_epoch_s(epoch_s + splice.start_s),
        "start_s": float(splice.start_s),
        "duration_s": None if splice.duration is None else splice.duration / SPLICE_TIMESCALE,
        "scte35": base64.b64encode(splice.section).decode("ascii"),
    }


async def post_splice(request: web.Request) -> web.StreamResponse:
    pipeline = encoded_pipeline(request)
    if isinstance(pipeline, web.Response):
        return pipeline
    headers = error_headers(request)
    splicer = getattr(pipeline, "splicer", None)
    if splicer is None:
        return error(409, "this stream has no video", headers)
    body = await json_body(request, MAX_BODY, "a splice request")
    if isinstance(body, web.Response):
        return body
    if splicer.stream.ended:
        return error(409, "the stream has ended", headers)
    clock = splicer.stream.clock
    now = Fraction(splicer.stream.clock_utc_s()) if clock.live else None
    try:
        splice = splicer.request(parse_request(body, now))
    except SpliceError as exc:
        return error(400, str(exc), headers)
    return answer(request, 201, {"splice": splice_json(splice, clock.epoch_s)})
