"""Per-request observation: the request id, the access log line, request and decision metrics, the decision log.

One API whichever way a request is served: `Observer.begin` when it arrives makes its `Exchange` (request
id, start, the calling client once admitted) the current one, `Observer.end` when its answer goes out
counts it and writes the access log line. What happens in between (a refused key, decisions) is told
through the module functions of service.observe, which find the current exchange in a context variable,
so neither the domain nor the lean path needs Flask's `g` for it.

Kept small because it runs on every decision: a few attribute reads and counter increments, and a log
line only when the access log is on and its logger enabled (nothing is formatted otherwise).
"""
from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from dataclasses import dataclass
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


@dataclass(slots=True)
class Exchange:
    """One request being answered: what its access log line and decision log entries say of it."""

    observer: "Observer"
    request_id: str
    start: float
    client: str | None = None  # the calling client's name, once its key is admitted


CURRENT: ContextVar[Exchange | None] = ContextVar("portal_authz_exchange", default=None)


def current() -> Exchange | None:
    """The exchange being answered on this thread, if any."""
    return CURRENT.get()


class Observer:
    """One app's metrics, access log switch and decision log."""

    def __init__(self, config: Config, database, clock=None, policy=None):
        self.metrics = Metrics(config)
        self.metrics.watch_pool(*database.engines)
        self.metrics.watch_client_keys(database, clock)
        if clock is not None:
            self.metrics.watch_outbox_and_sweep(database, clock)
        if policy is not None:
            self.metrics.watch_policy(policy)
        self.access_log = config.logging.access_log
        self.decision_log = DecisionLog(config.decision_log, config.decision_log_path,
                                        on_error=self.metrics.decision_log_errors.inc)

    def hook(self, app: Flask) -> None:
        """The routes Flask serves: begun first among the app's before_request hooks, so every later hook and
        error response has the id; ended by an after_request hook."""
        app.before_request_funcs.setdefault(None, []).insert(0, self._flask_begin)
        app.after_request(self._flask_end)
        app.teardown_request(self._flask_forget)

    # ---- a request arrives, its answer goes out

    def begin(self, environ: dict) -> Exchange:
        """A request arrives: its exchange becomes the current one (see `end`)."""
        exchange = Exchange(self, request_id_of(environ), perf_counter())
        CURRENT.set(exchange)
        return exchange

    def end(self, exchange: Exchange, route: str | None, method: str, status: int, path: str) -> None:
        """Its answer is going out: count it, and write its access log line if that log is on."""
        CURRENT.set(None)
        self.metrics.request(route, method, status)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            fields = {
                "request_id": exchange.request_id,
                "method": method,
                "route": route,
                "path": path,  # no query string: searches (?q=) stay out of the log
                "status": status,
                "duration_ms": round((perf_counter() - exchange.start) * 1000, 3),
                "client": exchange.client,  # the calling service's name, once authenticated
            }
            # Logger.info without its caller lookup (a stack walk): the record's source is always this hook.
            access_log.handle(access_log.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "request", None, None,
                                                    extra={"fields": fields}))

    def _flask_begin(self) -> None:
        g.exchange = self.begin(request.environ)

    def _flask_end(self, response):
        exchange = g.get("exchange")
        if exchange is None:  # a response made before our hook ran
            exchange = g.exchange = self.begin({})
        response.headers[REQUEST_ID_HEADER] = exchange.request_id
        req = request._get_current_object()
        rule = req.url_rule
        self.end(exchange, rule.rule if rule is not None else None, req.method, response.status_code, req.path)
        return response

    @staticmethod
    def _flask_forget(_exc=None) -> None:
        CURRENT.set(None)

    # ---- decisions

    def decided(self, exchange: Exchange, endpoint: str, portal: str, actor: str, questions, decisions) -> None:
        """Decisions answered: their latency, counts and reasons, and the decision log's entries."""
        self.metrics.decision_latency(endpoint, perf_counter() - exchange.start)
        for question, decision in zip(questions, decisions):
            self.metrics.decision(portal, question.action, decision.allowed, decision.reasons)
        log = self.decision_log
        if log.enabled and log.wanted():
            log.write(log.entries(log.base(endpoint, exchange.request_id, exchange.client, portal, actor),
                                  questions, decisions))

    def actions(self, exchange: Exchange, portal: str, actor: str, resource, actions, policy_version: str) -> None:
        self.metrics.decision_latency("authorized_actions", perf_counter() - exchange.start)
        log = self.decision_log
        if log.enabled and log.wanted():
            entry = log.base("authorized_actions", exchange.request_id, exchange.client, portal, actor)
            entry.update(policy_version=policy_version,
                         resource={"type": resource.type, "id": resource.id, "organization": resource.organization},
                         actions=list(actions))
            log.write([entry])
