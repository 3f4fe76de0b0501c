"""The client's errors. Each carries a stable `code`; `Client.authorize` turns any of them into a denial whose
reason has that code, unless the caller asked for exceptions (`raise_errors=True`)."""
from __future__ import annotations

from typing import Any


class PortalAuthzError(Exception):
    """Base of every error this client raises."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ServiceUnavailable(PortalAuthzError):
    """The service did not answer: refused connection (after retries), timeout, broken connection, 5xx."""

    code = "unavailable"


class UnexpectedResponse(PortalAuthzError):
    """The service answered something this client does not understand (wrong status, body or type)."""

    code = "unexpected_response"


class IncompatibleService(PortalAuthzError):
    """The service speaks an API major version this client does not know."""

    code = "incompatible_service"


class ProblemError(PortalAuthzError):
    """An RFC 9457 problem the service answered: 401 `unauthenticated`, 403 `insufficient_scope` or `forbidden`
    (with `reasons`), 404 `not_found`, 409, 422 `validation_error` (with `errors`)..."""

    def __init__(self, status: int, code: str, title: str, detail: str, body: dict[str, Any]):
        super().__init__(f"{status} {code}: {detail or title}")
        self.status, self.code, self.title, self.detail, self.body = status, code, title, detail, body

    @property
    def reasons(self) -> list[dict[str, Any]]:
        return list(self.body.get("reasons") or [])

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.body.get("errors") or [])
