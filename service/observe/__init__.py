"""Operations: Prometheus metrics, JSON logs with request ids, and the optional decision log.

The app calls `install(app)` once; the decision endpoints call `decision`,
`decisions` or `actions` once per request; `portal-authz serve` calls
`serving.prepare(config)` before its workers start and passes
`serving.gunicorn_options(config)` to gunicorn.
"""
from __future__ import annotations

import os

from flask import Flask, current_app

from service.observe import logs
from service.observe.http import Observer
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


def observer() -> Observer | None:
    return current_app.extensions.get(EXTENSION)


def decision(portal: str, actor: str, question, decision) -> None:
    """After POST /v1/authorize decided `question` (a service.domain.decisions.Question)."""
    if (obs := observer()) is not None:
        obs.decisions("authorize", portal, actor, (question,), (decision,))


def decisions(portal: str, actor: str, questions, decisions) -> None:
    """After POST /v1/authorize/batch decided `questions`, in order."""
    if (obs := observer()) is not None:
        obs.decisions("authorize_batch", portal, actor, questions, decisions)


def actions(portal: str, actor: str, resource, actions, policy_version: str) -> None:
    """After POST /v1/authorized-actions listed `actions` on `resource`."""
    if (obs := observer()) is not None:
        obs.actions(portal, actor, resource, actions, policy_version)


def client_refused(reason: str | None) -> None:
    """A request refused for its client key: missing, malformed, unknown, revoked, expired or insufficient_scope."""
    if (obs := observer()) is not None:
        obs.metrics.client_refused(reason)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text for GET /metrics: this app's registry, or every worker's when served."""
    return current_app.extensions[EXTENSION].metrics.exposition()
