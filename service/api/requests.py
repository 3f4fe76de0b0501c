"""Per-request plumbing: the injected services, the database session, the answer's headers."""
from __future__ import annotations

from flask import current_app, g, request


def services():
    """The injected collaborators (config, database, policy, clock) of this app."""
    return current_app.extensions["portal_authz"]


def client_name() -> str | None:
    """The calling client's name, once admission admitted its key (service/api/admission.py)."""
    client = getattr(request, "client", None)
    return client.name if client is not None else None


def db_session():
    if "db_session" not in g:
        g.db_session = services().database.reads()  # read-only, autocommit on PostgreSQL: no BEGIN/ROLLBACK round trips
    return g.db_session


def close_session(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def secure_headers(response):
    """JSON answers hold personal data: never cached, never sniffed as another type."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype in ("application/json", "application/problem+json"):
        response.headers["Cache-Control"] = "no-store"
    return response
