"""What the Flask and FastAPI guards share: the question a request asks, and the 403 that answers a denial."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from portal_authz_client._client import Client
from portal_authz_client.models import Decision

R = TypeVar("R")  # the framework's request
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Guard(Generic[R]):
    """The client, the portal and who is asking, set once per application."""

    client: Client
    portal: str
    actor: Callable[[R], str | None]


@dataclass(frozen=True)
class Requirement(Generic[R]):
    """`require(action, organization=...)` or `require(action, account=...)`: one resource per guarded view."""

    action: str
    organization: Callable[[R], str] | None = None
    account: Callable[[R], str | tuple[str, str]] | None = None
    context: Callable[[R], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.organization is None) == (self.account is None):
            raise TypeError("require(...) takes exactly one of organization= or account= (a function of the request)")

    def resource(self, request: R) -> dict[str, Any]:
        if self.organization is not None:
            return {"type": "organization", "id": self.organization(request)}
        assert self.account is not None
        target = self.account(request)
        if isinstance(target, tuple):  # (username, organization key) for an account in several organizations
            return {"type": "account", "id": target[0], "organization": target[1]}
        return {"type": "account", "id": target}

    def decide(self, guard: Guard[R], request: R) -> Decision | None:
        """The service's decision; None when the request has no actor (the caller's 401)."""
        actor = guard.actor(request)
        if not actor:
            return None
        return guard.client.authorize(portal=guard.portal, actor=actor, action=self.action,
                                      resource=self.resource(request),
                                      context=self.context(request) if self.context else None)


def forbidden(decision: Decision) -> dict[str, Any]:
    """The service's own 403 shape: problem details with `code: forbidden` and the decision's reasons."""
    reasons = [{"code": r.code, "message": r.message} for r in decision.reasons]
    return {"type": "about:blank", "title": "Forbidden", "status": 403,
            "detail": "; ".join(r.message for r in decision.reasons) or "denied", "code": "forbidden",
            "reasons": reasons}


def unauthenticated() -> dict[str, Any]:
    return {"type": "about:blank", "title": "Unauthenticated", "status": 401,
            "detail": "no signed-in actor for this request", "code": "unauthenticated"}
