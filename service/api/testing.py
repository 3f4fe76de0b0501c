"""POST /_testing/clock: only registered when config sets testing.clock: settable."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask import jsonify

from service.api.declare import Routes
from service.api.problems import Problem
from service.api.requests import services
from service.api.schemas import ClockNow, ClockRequest

bp = Routes("testing", __name__, url_prefix="/_testing")
DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """ISO 8601 durations in weeks, days, hours, minutes and seconds (no months: they have no fixed length)."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an ISO 8601 duration like P16D or PT15M")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


def _field_error(field: str, message: str) -> Problem:
    return Problem(422, "validation_error", "Invalid request", message,
                   errors=[{"field": field, "code": "invalid", "message": message}])


@bp.post("/clock", operation_id="moveClock",
         summary="Move the settable clock (only with testing: {clock: settable}; else 404)", ok=(200, ClockNow))
def move_clock(body: ClockRequest):
    clock = services().clock
    if (body.advance is None) == (body.now is None):
        raise _field_error("(body)", "give exactly one of advance or now")
    if body.advance is not None:
        try:
            clock.advance(parse_duration(body.advance))
        except ValueError as exc:
            raise _field_error("advance", str(exc)) from None
    else:
        try:
            moment = datetime.fromisoformat(body.now)
        except ValueError:
            raise _field_error("now", f"{body.now!r} is not an ISO 8601 instant") from None
        if moment.tzinfo is None:
            raise _field_error("now", "the instant needs a time zone, e.g. 2026-01-01T00:00:00Z")
        clock.set(moment)
    return jsonify(now=clock.now().isoformat())
