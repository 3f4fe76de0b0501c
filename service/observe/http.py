"""Per-request observation: the request id, the access log line, request and decision metrics, the decision log.

Kept small because it runs on every decision: two request hooks, a few dict
lookups and counter increments, and a log line only when the access log is on
and its logger enabled (nothing is formatted otherwise).
"""
from __future__ import annotations

import logging
import re
from secrets import token_hex
from time import perf_counter

from flask import Flask, g, request

from service.config import Config
from service.observe.decision_log import DecisionLog
from service.observe.logs import ACCESS_LOGGER
from service.observe.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-Id"
# An incoming id is kept only if it is short and made of characters safe in headers, logs and file names.
WELL_FORMED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
access_log = logging.getLogger(ACCESS_LOGGER)


def new_request_id() -> str:
    return token_hex(16)


def request_id_of(environ: dict) -> str:
    """The request's X-Request-Id if well formed, else a new one."""
    incoming = environ.get("HTTP_X_REQUEST_ID")
    return incoming if incoming and WELL_FORMED_ID.fullmatch(incoming) else new_request_id()


class Observer:
    """One app's metrics, access log switch and decision log."""

    def __init__(self, config: Config, database, clock=None, policy=None):
        self.metrics = Metrics(config)
        self.metrics.watch_pool(database.engine)
        self.metrics.watch_client_keys(database, clock)
        if clock is not None:
            self.metrics.watch_outbox_and_sweep(database, clock)
        if policy is not None:
            self.metrics.watch_policy(policy)
        self.access_log = config.logging.access_log
        self.decision_log = DecisionLog(config.decision_log, config.decision_log_path,
                                        on_error=self.metrics.decision_log_errors.inc)

    def hook(self, app: Flask) -> None:
        # First among the app's before_request hooks, so every later hook and error response has the id.
        app.before_request_funcs.setdefault(None, []).insert(0, self.before)
        app.after_request(self.after)

    # ---- request hooks (each resolves Flask's context proxies once: every proxy access costs a lookup)

    def before(self) -> None:
        state = g._get_current_object()
        state.observe_start = perf_counter()
        state.request_id = request_id_of(request._get_current_object().environ)

    def after(self, response):
        state = g._get_current_object()
        req = request._get_current_object()
        request_id = getattr(state, "request_id", None)
        if request_id is None:  # a response made before our hook ran
            request_id = state.request_id = new_request_id()
        response.headers[REQUEST_ID_HEADER] = request_id
        rule = req.url_rule
        self.answered(rule.rule if rule is not None else None, req.method, response.status_code, request_id,
                      req.path, getattr(state, "observe_start", None), getattr(state, "client", None))
        return response

    def answered(self, route: str | None, method: str, status: int, request_id: str, path: str,
                 start: float | None, client: str | None) -> None:
        """A response is going out: count it, and write its access log line if that log is on."""
        self.metrics.request(route, method, status)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            fields = {
                "request_id": request_id,
                "method": method,
                "route": route,
                "path": path,  # no query string: searches (?q=) stay out of the log
                "status": status,
                "duration_ms": round((perf_counter() - start) * 1000, 3) if start is not None else None,
                "client": client,  # the calling service's name, once authenticated
            }
            # Logger.info without its caller lookup (a stack walk): the record's source is always this hook.
            access_log.handle(access_log.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "request", None, None,
                                                    extra={"fields": fields}))

    # ---- decisions

    def decisions(self, endpoint: str, portal: str, actor: str, questions, decisions) -> None:
        state = g._get_current_object()
        self.decided(endpoint, portal, actor, questions, decisions, getattr(state, "observe_start", None),
                     getattr(state, "request_id", None), getattr(state, "client", None))

    def decided(self, endpoint: str, portal: str, actor: str, questions, decisions, start: float | None,
                request_id: str | None, client: str | None) -> None:
        """Decisions answered: their latency, counts and reasons, and the decision log's entries."""
        if start is not None:
            self.metrics.decision_latency(endpoint, perf_counter() - start)
        for question, decision in zip(questions, decisions):
            self.metrics.decision(portal, question.action, decision.allowed, decision.reasons)
        log = self.decision_log
        if log.enabled and log.wanted():
            log.write(log.entries(log.base(endpoint, request_id, client, portal, actor), questions, decisions))

    def actions(self, portal: str, actor: str, resource, actions, policy_version: str) -> None:
        state = g._get_current_object()
        start = getattr(state, "observe_start", None)
        if start is not None:
            self.metrics.decision_latency("authorized_actions", perf_counter() - start)
        log = self.decision_log
        if log.enabled and log.wanted():
            entry = log.base("authorized_actions", getattr(state, "request_id", None), getattr(state, "client", None),
                             portal, actor)
            entry.update(policy_version=policy_version,
                         resource={"type": resource.type, "id": resource.id, "organization": resource.organization},
                         actions=list(actions))
            log.write([entry])
