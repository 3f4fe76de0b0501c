"""RFC 9457 problem+json responses for every error, so no client ever sees a traceback."""
from __future__ import annotations

import logging

from flask import Flask, Response, json
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


def problem_response(status: int, code: str, title: str, detail: str, **extra) -> Response:
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail, "code": code}
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def validation_problem(exc: ValidationError, prefix: str = "") -> Problem:
    errors = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        code = "unknown_field" if err["type"] == "extra_forbidden" else err["type"]
        errors.append({"field": prefix + where, "code": code, "message": err["msg"]})
    return Problem(422, "validation_error", "Invalid request", "the request body does not match the schema",
                   errors=errors)


def register(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return problem_response(exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError):
        return problem_response(exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        return problem_response(status, HTTP_CODES.get(status, "http_error"), exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if busy(exc):  # the lock wait ran out: nothing was written, and trying again shortly will do
            log.warning("database busy: %s", exc.__class__.__name__)
            response = problem_response(503, "database_busy", "Service busy",
                                        "the database is busy with other changes; try again shortly")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        log.exception("unhandled error")
        return problem_response(500, "internal_error", "Internal error",
                                "the service failed to answer; the error is logged")
