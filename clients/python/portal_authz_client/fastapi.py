"""A FastAPI dependency that asks portal-authz before the endpoint runs; a denial is 403 with the reasons.

    from fastapi import Depends, FastAPI
    from portal_authz_client import Client, Decision
    from portal_authz_client.fastapi import configure, require

    app = FastAPI()
    configure(app, client=Client(URL, KEY, timeout=2.0), portal="ahcccs",
              actor=lambda req: req.headers.get("x-user"))

    @app.get("/orgs/{org}/claims")
    def claims(org: str, decision: Decision = Depends(require("claims", organization=lambda req: req.path_params["org"]))):
        ...

The dependency is synchronous (FastAPI runs it in its thread pool), so the blocking client does not stall
the event loop. A request without an actor is 401; a service that does not answer is a 403 with reason
`unavailable`, never a pass.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from portal_authz_client._client import Client
from portal_authz_client._guard import PROBLEM, Guard, Requirement, forbidden, unauthenticated
from portal_authz_client.models import Decision


class Refused(Exception):
    """Raised by the dependency; the handler `configure` installs answers it as problem details."""

    def __init__(self, body: dict[str, Any]):
        super().__init__(body["detail"])
        self.body = body


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return JSONResponse(exc.body, status_code=exc.body["status"], media_type=PROBLEM)


def configure(app: FastAPI, *, client: Client, portal: str, actor: Callable[[Request], str | None]) -> None:
    """Set the guard up for `app` (in `app.state.portal_authz`) and answer its refusals as problem details."""
    app.state.portal_authz = Guard(client, portal, actor)
    app.add_exception_handler(Refused, _refused)


def require(action: str, *, organization: Callable[[Request], str] | None = None,
            account: Callable[[Request], str | tuple[str, str]] | None = None,
            context: Callable[[Request], Mapping[str, Any]] | None = None) -> Callable[[Request], Decision]:
    """A dependency: `Depends(require("claims", organization=lambda req: req.path_params["org"]))`."""
    requirement: Requirement[Request] = Requirement(action, organization, account, context)

    def dependency(request: Request) -> Decision:
        guard = getattr(request.app.state, "portal_authz", None)
        if guard is None:
            raise RuntimeError("portal_authz_client.fastapi: configure(app, ...) was not called for this app")
        decision = requirement.decide(guard, request)
        if decision is None:
            raise Refused(unauthenticated())
        if not decision.allowed:
            raise Refused(forbidden(decision))
        return decision

    return dependency
