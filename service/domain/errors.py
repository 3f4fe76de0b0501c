"""Domain errors. The HTTP layer maps each to one problem+json response."""
from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Invalid(DomainError):
    """A request that is well-formed JSON but says something impossible; carries field errors."""

    status, code, title = 422, "validation_error", "Invalid request"

    def __init__(self, detail: str, errors: list[dict[str, str]]):
        super().__init__(detail, errors=errors)


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"

    def __init__(self, detail: str, code: str):
        super().__init__(detail)
        self.code = code
