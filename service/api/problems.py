"""RFC 9457 problem+json responses for every error, so no client ever sees a traceback."""
from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from service.domain.errors import DomainError
from service.storage.database import busy

log = logging.getLogger(__name__)
PROBLEM_TYPE = "https://portal-authz.dev/problems/"
RETRY_AFTER_SECONDS = 1
HTTP_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
    500: "internal_error", 503: "unavailable",
}


class Problem(Exception):
    """Raise from a view to answer with this problem."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extra):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra


def problem_body(status: int, code: str, title: str, detail: str, **extra) -> bytes:
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail, "code": code}
    body.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(body).encode()


def problem_response(status: int, code: str, title: str, detail: str, **extra) -> Response:
    return Response(problem_body(status, code, title, detail, **extra), status=status,
                    mimetype="application/problem+json")


def answer_of(exc: BaseException, statuses: dict[int, int] | None = None) -> tuple[int, bytes, list[tuple[str, str]]]:
    """The problem an error answers with: (status, problem+json body, extra headers), whichever way the request
    is served. `statuses`: the route's status mapping (AuthZEN: 415 and 422 are 400). Unexpected errors are
    logged here, with the request's id."""
    headers: list[tuple[str, str]] = []
    if isinstance(exc, Problem):
        status, code, title, detail, extra = exc.status, exc.code, exc.title, exc.detail, exc.extra
    elif isinstance(exc, DomainError):
        status, code, title, detail, extra = exc.status, exc.code, exc.title, exc.detail, exc.extra
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        code, title, detail, extra = HTTP_CODES.get(status, "http_error"), exc.name, exc.description or exc.name, {}
    elif busy(exc):  # the lock wait ran out: nothing was written, and trying again shortly will do
        log.warning("database busy: %s", exc.__class__.__name__)
        status, code, title, extra = 503, "database_busy", "Service busy", {}
        detail = "the database is busy with other changes; try again shortly"
        headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
    else:
        log.error("unhandled error", exc_info=exc)
        status, code, title, extra = 500, "internal_error", "Internal error", {}
        detail = "the service failed to answer; the error is logged"
    if statuses:
        status = statuses.get(status, status)
    return status, problem_body(status, code, title, detail, **extra), headers


def validation_problem(exc: ValidationError, prefix: str = "") -> Problem:
    errors = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        code = "unknown_field" if err["type"] == "extra_forbidden" else err["type"]
        errors.append({"field": prefix + where, "code": code, "message": err["msg"]})
    return Problem(422, "validation_error", "Invalid request", "the request body does not match the schema",
                   errors=errors)


def register(app: Flask) -> None:
    """Every error of a route Flask serves, answered by `answer_of` with the route's status mapping."""
    @app.errorhandler(Exception)
    def _any(exc: Exception):
        declared = getattr(app, "declarations", {}).get(request.endpoint or "")
        status, body, headers = answer_of(exc, declared.statuses if declared is not None else None)
        response = Response(body, status=status, mimetype="application/problem+json")
        for name, value in headers:
            response.headers[name] = value
        return response
