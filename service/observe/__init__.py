"""Operations: Prometheus metrics, JSON logs with request ids, and the optional decision log.

The app calls `install(app)` once; whichever way a request is served, admission
calls `client` or `client_refused` and the decision endpoints `decided` or `actions`
once per request (service/observe/http.py: the request's exchange); `portal-authz serve` calls
`serving.prepare(config)` before its workers start and passes
`serving.gunicorn_options(config)` to gunicorn.
"""
from __future__ import annotations

import os

from flask import Flask, current_app

from service.observe import logs
from service.observe.http import CURRENT, Observer
from service.observe.serving import SERVING_ENV

EXTENSION = "portal_authz_observe"


def install(app: Flask) -> Observer:
    """Request ids, the access log and metrics for this app; its own collectors, nothing shared with other apps."""
    services = app.extensions["portal_authz"]
    if os.environ.get(SERVING_ENV) and not logs.is_configured():
        logs.configure(services.config.logging)
    observer = Observer(services.config, services.database, services.clock, services.policy)
    observer.hook(app)
    app.extensions[EXTENSION] = observer
    return observer


# Each function reads the request's exchange from CURRENT itself (not through http.current): they run on every
# decision.


def client(name: str) -> None:
    """The request's client key was admitted: its client's name goes on the access log and decision log lines."""
    if (exchange := CURRENT.get()) is not None:
        exchange.client = name


def client_refused(reason: str | None) -> None:
    """A request refused for its client key: missing, malformed, unknown, revoked, expired or insufficient_scope."""
    if (exchange := CURRENT.get()) is not None:
        exchange.observer.metrics.client_refused(reason)


def decided(endpoint: str, portal: str, actor: str, questions, decisions) -> None:
    """After a decision endpoint (`authorize`, `authorize_batch`, `authzen`) decided `questions` for `actor`, in
    order (service.domain.decisions.Question and service.policy.Decision)."""
    if (exchange := CURRENT.get()) is not None:
        exchange.observer.decided(exchange, endpoint, portal, actor, questions, decisions)


def actions(portal: str, actor: str, resource, actions, policy_version: str) -> None:
    """After POST /v1/authorized-actions listed `actions` on `resource`."""
    if (exchange := CURRENT.get()) is not None:
        exchange.observer.actions(exchange, portal, actor, resource, actions, policy_version)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text for GET /metrics: this app's registry, or every worker's when served."""
    return current_app.extensions[EXTENSION].metrics.exposition()
