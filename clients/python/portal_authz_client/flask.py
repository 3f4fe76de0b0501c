"""A Flask decorator that asks portal-authz before the view runs; a denial is 403 with the service's reasons.

    from portal_authz_client import Client
    from portal_authz_client.flask import PortalAuthz, require

    PortalAuthz(app, client=Client(URL, KEY, timeout=2.0), portal="ahcccs",
                actor=lambda req: req.headers.get("X-User"))

    @app.get("/orgs/<org>/claims")
    @require("claims", organization=lambda req: req.view_args["org"])
    def claims(org): ...

The decision is in `flask.g.portal_authz_decision` inside the view. A request without an actor is 401; a
service that does not answer is a denial (403, reason `unavailable`), never a pass.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from flask import Flask, Request, Response, current_app, g, request

from portal_authz_client._client import Client
from portal_authz_client._guard import PROBLEM, Guard, Requirement, forbidden, unauthenticated

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "portal_authz_client"


class PortalAuthz:
    """The guard's settings for one Flask app (`app.extensions["portal_authz_client"]`)."""

    def __init__(self, app: Flask | None = None, *, client: Client, portal: str,
                 actor: Callable[[Request], str | None]):
        self.guard: Guard[Request] = Guard(client, portal, actor)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self


def _problem(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=body["status"], mimetype=PROBLEM)


def require(action: str, *, organization: Callable[[Request], str] | None = None,
            account: Callable[[Request], str | tuple[str, str]] | None = None,
            context: Callable[[Request], Mapping[str, Any]] | None = None) -> Callable[[F], F]:
    """Guard a view: `organization=` or `account=` names the resource from the request (`flask.request`)."""
    requirement: Requirement[Request] = Requirement(action, organization, account, context)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            settings = current_app.extensions.get(EXTENSION)
            if settings is None:
                raise RuntimeError("portal_authz_client.flask: PortalAuthz(app, ...) was not set up for this app")
            decision = requirement.decide(settings.guard, request)
            if decision is None:
                return _problem(unauthenticated())
            if not decision.allowed:
                return _problem(forbidden(decision))
            g.portal_authz_decision = decision
            return view(*args, **kwargs)

        return cast(F, guarded)

    return decorate
