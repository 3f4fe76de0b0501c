"""Per-request plumbing: the database session, the calling client, the parsed body."""
from __future__ import annotations

from functools import wraps
from typing import TypeVar

from flask import current_app, g, request
from pydantic import BaseModel, ValidationError

from service import observe
from service.api.problems import Problem, validation_problem
from service.domain import clients

M = TypeVar("M", bound=BaseModel)


def services():
    """The injected collaborators (config, database, policy, clock) of this app."""
    return current_app.extensions["portal_authz"]


def db_session():
    if "db_session" not in g:
        g.db_session = services().database.sessions()
    return g.db_session


def close_session(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def parse(model: type[M]) -> M:
    """The JSON body as `model`, or a 400/415/422 problem naming what is wrong."""
    if not request.is_json:
        raise Problem(415, "unsupported_media_type", "Unsupported media type",
                      "send the body as JSON with Content-Type: application/json")
    data = request.get_json(silent=True)
    if data is None:
        raise Problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from None


def require_scope(scope: str):
    """Authenticate the caller's `Authorization: Bearer <client key>` and check its scope.

    A revoked or expired key is refused like an unknown one (401 `unauthenticated`); the
    refusal's reason is counted in /metrics only. A working key's use is recorded at most once a
    minute (service.domain.clients.note_use), never with a write per request.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            header = request.headers.get("Authorization", "")
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                observe.client_refused("missing")
                raise Problem(401, "unauthenticated", "Unauthenticated",
                              "send a client key as Authorization: Bearer <key>")
            s = services()
            now = s.clock.now()
            verdict = clients.check(db_session(), key.strip(), now)
            client = verdict.client
            if client is None:
                observe.client_refused(verdict.refusal)
                raise Problem(401, "unauthenticated", "Unauthenticated", "unknown, revoked or expired client key")
            if scope not in client.scopes.split(","):
                observe.client_refused("insufficient_scope")
                raise Problem(403, "insufficient_scope", "Insufficient scope",
                              f"this client key lacks the {scope!r} scope")
            if clients.use_is_due(client, now):
                clients.note_use(s.database, client.key_id, now)
            g.client = client.name
            return view(*args, **kwargs)

        return wrapper

    return decorate
