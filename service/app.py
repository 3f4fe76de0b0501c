"""The application factory. Collaborators are injected; nothing is created at import time."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask

from service import console, observe
from service.api import (access_requests, accounts, authzen, decisions, enrolment, health, maintenance, metrics,
                         openapi, passwords, problems, registration, roster, sessions, support, testing)
from service.api.declare import Api
from service.api.requests import close_session, secure_headers
from service.clock import Clock, SettableClock, SystemClock
from service.config import DEFAULT_HOST, DEFAULT_PORT, Config, served_base_url
from service.domain import passwords as hashing
from service.domain.notify import Notifier, OutboxNotifier
from service.policy import Policy
from service.storage.database import Database


@dataclass
class Services:
    config: Config
    database: Database
    policy: Policy
    clock: Clock
    notifier: Notifier


def create_app(config: Config, *, database: Database | None = None, policy: Policy | None = None,
               clock: Clock | None = None, notifier: Notifier | None = None) -> Flask:
    """Build the Flask app. The database, clock and notifier default from config; tests pass their own."""
    database = database or Database(config.database_url)
    policy = policy or Policy(config.policy_path)
    if clock is None:
        clock = SettableClock(database) if config.testing.clock == "settable" else SystemClock()

    app = Api(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.json.sort_keys = False
    app.extensions["portal_authz"] = Services(config, database, policy, clock, notifier or OutboxNotifier())

    observe.install(app)  # request ids, access log, metrics: first, so every response has them
    problems.register(app)
    app.after_request(secure_headers)
    app.teardown_appcontext(close_session)
    app.register_api(health.bp)
    app.register_api(decisions.bp)
    app.register_api(authzen.bp)
    app.register_api(enrolment.bp)
    app.register_api(registration.bp)
    app.register_api(sessions.bp)
    app.register_api(accounts.bp)
    app.register_api(roster.bp)
    app.register_api(access_requests.bp)
    app.register_api(passwords.bp)
    app.register_api(maintenance.bp)
    app.register_api(support.bp)
    app.register_api(openapi.bp)
    app.register_api(metrics.bp)
    console.install(app)  # the User Management console: HTML pages under /console/{portal}/
    if config.authzen.base_url is None:  # `serve` fills it in (and says so); an app built otherwise says so here
        logging.getLogger(__name__).warning(
            "authzen.base_url is unset: AuthZEN discovery names %s, never a request's Host; set authzen.base_url",
            served_base_url(DEFAULT_HOST, DEFAULT_PORT))
    if config.testing.clock == "settable":
        app.register_api(testing.bp)
        logging.getLogger(__name__).warning("testing.clock is settable: POST /_testing/clock moves time")
    if config.testing.hashing == "cheap":  # config.py allows it only with the settable clock
        hashing.use_cheap_hashing()
        logging.getLogger(__name__).warning("testing.hashing is cheap: passwords are hashed at test cost")
    return app
