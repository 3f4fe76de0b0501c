"""Prometheus metrics: one set of collectors per app, aggregated across gunicorn workers when served.

In-process (tests, the Flask test client) each app gets its own CollectorRegistry,
so nothing leaks between app instances. Under `portal-authz serve` the
environment variable PROMETHEUS_MULTIPROC_DIR (a fresh directory made by
`service.observe.serving.prepare`) switches prometheus-client to its
multiprocess mode: every worker writes its values to memory-mapped files there
and `GET /metrics`, answered by whichever worker, sums the files of all of them.

Labels are bounded sets only (route templates, methods, status codes,
configured portals, known actions, reason codes): never a username, an id or a
raw path.
"""
from __future__ import annotations

import os
from typing import Iterable

from sqlalchemy import event

from service.config import Config

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Decisions take from a tenth of a millisecond (warm facts) to tens of milliseconds (a full batch).
DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
                    0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"
CLIENT_REFUSALS = frozenset({"missing", "malformed", "unknown", "revoked", "expired", "insufficient_scope"})
CHANNELS = frozenset({"email", "letter"})
DELIVERY_FAILURES = frozenset({"rejected", "temporary", "lease_expired", "refused", "export"})
SWEEP_CHANGES = ("warned", "locked", "disabled", "deleted")
OTHER = "other"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def _ensure_multiprocess_values() -> None:
    """prometheus-client picks its value class when first imported; if that was before the variable was set, redo it."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def known_actions(config: Config) -> frozenset[str]:
    """Every action a decision can be about: the portals' catalogs and the policy's fixed actions."""
    from service.kernel.catalog import ACCOUNT_ACTIONS, ORGANIZATION_ACTIONS

    actions = set(ORGANIZATION_ACTIONS) | set(ACCOUNT_ACTIONS)
    for profile in config.portals.values():
        actions.update(profile.permissions)
    return frozenset(actions)


class Metrics:
    """The service's collectors. `registry` is what `GET /metrics` exposes."""

    def __init__(self, config: Config):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: they double the text and no dashboard reads them
        self.multiprocess = multiprocess_dir()
        if self.multiprocess:
            _ensure_multiprocess_values()
            own = None  # values live in the shared files; the exposition registry reads them all
            from prometheus_client import multiprocess

            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry, path=self.multiprocess)
        else:
            own = self.registry = CollectorRegistry()
        self.portals = frozenset(config.portals)
        self.actions = known_actions(config)

        self.requests = Counter("portal_authz_http_requests", "HTTP requests answered, by route template",
                                ["route", "method", "status"], registry=own)
        self.decisions = Counter("portal_authz_decisions", "Decisions answered by the decision endpoints",
                                 ["portal", "action", "outcome"], registry=own)
        self.reasons = Counter("portal_authz_decision_reasons",
                               "Reason codes of denied decisions (a denial may carry several)",
                               ["portal", "action", "reason"], registry=own)
        self.latency = Histogram("portal_authz_decision_duration_seconds",
                                 "Time from the request's arrival to its decisions, per decision endpoint",
                                 ["endpoint"], buckets=DECISION_BUCKETS, registry=own)
        self.decision_log_errors = Counter("portal_authz_decision_log_errors",
                                           "Decision log entries that could not be written", registry=own)
        self.client_refusals = Counter("portal_authz_client_refusals",
                                       "Requests refused for their client key, by reason", ["reason"], registry=own)
        self.pool_checked_out = Gauge("portal_authz_db_pool_checked_out",
                                      "Database connections in use (summed over live workers)",
                                      registry=own, multiprocess_mode="livesum")
        self.pool_size = Gauge("portal_authz_db_pool_size",
                               "Configured database pool size (summed over live workers)",
                               registry=own, multiprocess_mode="livesum")
        self.delivery_attempts = Counter("portal_authz_delivery_attempts",
                                         "Attempts to hand a notification over (an email sent, a letter exported), "
                                         "by the processes that deliver", ["channel"], registry=own)
        self.delivery_failures = Counter("portal_authz_delivery_failures",
                                         "Failed delivery attempts, by channel and reason", ["channel", "reason"],
                                         registry=own)
        self.policy_info = Gauge("portal_authz_policy_info", "The policy version loaded (value 1; 0 once replaced)",
                                 ["version"], registry=own, multiprocess_mode="livemax")
        self.policy_reloads = Counter("portal_authz_policy_reloads", "Policy reloads that loaded, per worker",
                                      registry=own)
        self.policy_reload_failures = Counter("portal_authz_policy_reload_failures",
                                              "Policy reloads refused (the running policy stays)", registry=own)
        self.policy_last_reload = Gauge("portal_authz_policy_last_reload_timestamp_seconds",
                                        "When a worker last loaded a reloaded policy (Unix time)",
                                        registry=own, multiprocess_mode="livemax")
        # Children by label tuple: a dict lookup instead of prometheus-client's locked one on every request.
        self._request_children: dict[tuple, object] = {}
        self._decision_children: dict[tuple, object] = {}
        self._reason_children: dict[tuple, object] = {}
        self._latency_children: dict[str, object] = {}

    # ---- requests

    def request(self, route: str | None, method: str, status: int) -> None:
        key = (route or UNMATCHED, method if method in METHODS else OTHER, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(key[0], key[1], str(status))
        child.inc()

    # ---- decisions

    def decision(self, portal: str, action: str, allowed: bool, reasons: Iterable[str]) -> None:
        portal = portal if portal in self.portals else OTHER
        action = action if action in self.actions else OTHER
        key = (portal, action, allowed)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision_children[key] = self.decisions.labels(
                portal, action, "allowed" if allowed else "denied")
        child.inc()
        for reason in reasons:
            rkey = (portal, action, reason)
            rchild = self._reason_children.get(rkey)
            if rchild is None:
                rchild = self._reason_children[rkey] = self.reasons.labels(portal, action, reason)
            rchild.inc()

    def decision_latency(self, endpoint: str, seconds: float) -> None:
        child = self._latency_children.get(endpoint)
        if child is None:
            child = self._latency_children[endpoint] = self.latency.labels(endpoint)
        child.observe(seconds)

    # ---- client keys

    def client_refused(self, reason: str | None) -> None:
        self.client_refusals.labels(reason if reason in CLIENT_REFUSALS else OTHER).inc()

    def watch_client_keys(self, database, clock) -> None:
        """Key operations (from the audit trail) and keys by state (from client_keys), read at each scrape."""
        self.registry.register(ClientKeyCollector(database, clock))

    def watch_outbox_and_sweep(self, database, clock) -> None:
        """The outbox's waiting notifications and the sweep's last run, read from the database at each scrape."""
        self.registry.register(OutboxCollector(database, clock))
        self.registry.register(SweepCollector(database))

    # ---- delivery (service.domain.delivery.DeliveryObserver)

    def delivery_attempt(self, channel: str, count: int = 1) -> None:
        self.delivery_attempts.labels(channel if channel in CHANNELS else OTHER).inc(count)

    def delivery_failure(self, channel: str, reason: str, count: int = 1) -> None:
        self.delivery_failures.labels(channel if channel in CHANNELS else OTHER,
                                      reason if reason in DELIVERY_FAILURES else OTHER).inc(count)

    # ---- the policy

    def watch_policy(self, policy) -> None:
        """The loaded version as an info metric, and every reload of this process's policy, as it happens."""
        self.policy_info.labels(policy.version).set(1)
        policy.on_reload(self.policy_reloaded)

    def policy_reloaded(self, previous: str, version: str | None) -> None:
        """`version` None: the reload failed and `previous` stays in force."""
        import time

        if version is None:
            self.policy_reload_failures.inc()
            return
        self.policy_reloads.inc()
        self.policy_last_reload.set(time.time())
        if version != previous:
            self.policy_info.labels(previous).set(0)
            self.policy_info.labels(version).set(1)

    # ---- the database pool

    def watch_pool(self, *engines) -> None:
        """Count checked-out connections by pool events; the pools' configured sizes once (summed: on
        PostgreSQL changes and reads have a pool each)."""
        size = checked_out = 0
        for engine in engines:
            pool = engine.pool
            if callable(getattr(pool, "size", None)):
                size += pool.size()
            if callable(getattr(pool, "checkedout", None)):
                checked_out += pool.checkedout()
            event.listen(engine, "checkout", lambda *_: self.pool_checked_out.inc())
            event.listen(engine, "checkin", lambda *_: self.pool_checked_out.dec())
        self.pool_size.set(size)
        self.pool_checked_out.set(checked_out)

    # ---- exposition

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


class ClientKeyCollector:
    """Client key operations and states, read from the database at each scrape.

    The operations are run by the command line, often on another host, so no server process
    sees them happen; the append-only audit trail does. Counting its `client_key_<operation>`
    records gives a true counter (it never decreases) that every replica reports alike, and a
    scrape costs two small indexed queries. A database that does not answer leaves these two
    families out of that scrape rather than failing it.
    """

    def __init__(self, database, clock):
        self.database, self.clock = database, clock

    def collect(self):
        import logging

        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        from service.domain import clients
        from service.storage.models import AuditRecord, ClientKey

        operations = CounterMetricFamily("portal_authz_client_key_operations",
                                         "Client key operations (clients add, revoke, rotate), from the audit trail",
                                         labels=["operation"])
        keys = GaugeMetricFamily("portal_authz_client_keys", "Client keys by state", labels=["state"])
        try:
            now = self.clock.now() if self.clock is not None else None
            with self.database.sessions() as session:
                counted = dict(session.execute(
                    select(AuditRecord.action, func.count()).where(AuditRecord.portal_id == clients.SERVICE_WIDE,
                                                                   AuditRecord.action.like("client_key_%"))
                    .group_by(AuditRecord.action)).all())
                rows = session.execute(select(ClientKey.revoked_at, ClientKey.expires_at)).all()
        except SQLAlchemyError:
            logging.getLogger(__name__).warning("client key metrics unavailable", exc_info=True)
            return
        for operation in clients.OPERATIONS:
            operations.add_metric([operation], counted.get(f"client_key_{operation}", 0))
        states = {"active": 0, "expired": 0, "revoked": 0}
        if now is not None:
            for revoked_at, expires_at in rows:
                states[clients.state_of(revoked_at, expires_at, now)] += 1
        for state, n in states.items():
            keys.add_metric([state], n)
        yield operations
        yield keys


def refused_policy_reload() -> None:
    """In the server's main process: a reload it refused (the files do not load), so the workers never saw it.

    Counted in the same family as the workers' own failures, through the multiprocess files that /metrics reads.
    """
    global _main_reload_failures
    if not multiprocess_dir():
        return
    if _main_reload_failures is None:
        from prometheus_client import Counter

        _ensure_multiprocess_values()
        _main_reload_failures = Counter("portal_authz_policy_reload_failures",
                                        "Policy reloads refused (the running policy stays)", registry=None)
    _main_reload_failures.inc()


_main_reload_failures = None


class OutboxCollector:
    """Notifications waiting (queued, or claimed and not yet done) by channel and template, and the age of the
    oldest per channel: one grouped query over the outbox's (channel, status) index at each scrape, so every
    replica reports the same, wherever delivery runs. A database that does not answer leaves them out."""

    def __init__(self, database, clock):
        self.database, self.clock = database, clock

    def collect(self):
        import logging

        from prometheus_client.core import GaugeMetricFamily
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        from service.storage.models import Notification

        waiting = GaugeMetricFamily("portal_authz_outbox_waiting",
                                    "Notifications waiting to be delivered, by channel and template",
                                    labels=["channel", "template"])
        oldest = GaugeMetricFamily("portal_authz_outbox_oldest_age_seconds",
                                   "Age of the oldest notification waiting, per channel (0: none waiting)",
                                   labels=["channel"])
        try:
            now = self.clock.now()
            with self.database.reads() as session:
                rows = session.execute(
                    select(Notification.channel, Notification.template, func.count(), func.min(Notification.created_at))
                    # Both leading columns of the (channel, status, ...) index named, so the delivered
                    # history that the outbox keeps is never scanned, however long it grows.
                    .where(Notification.channel.in_(sorted(CHANNELS)), Notification.status.in_(("queued", "sending")))
                    .group_by(Notification.channel, Notification.template)).all()
        except SQLAlchemyError:
            logging.getLogger(__name__).warning("outbox metrics unavailable", exc_info=True)
            return
        ages = {channel: 0.0 for channel in sorted(CHANNELS)}
        for channel, template, count, created_at in rows:
            waiting.add_metric([channel, template], count)
            if created_at is not None:
                if created_at.tzinfo is None:  # SQLite's aggregate skips the column's type
                    from datetime import timezone

                    created_at = created_at.replace(tzinfo=timezone.utc)
                ages[channel] = max(ages.get(channel, 0.0), (now - created_at).total_seconds())
        for channel, age in ages.items():
            oldest.add_metric([channel], max(age, 0.0))
        yield waiting
        yield oldest


class SweepCollector:
    """The inactivity sweep's runs (table sweep_runs, written by whichever process swept: cron's CLI, the API):
    when the last one started and finished, how long it took, and the changes of every run summed."""

    def __init__(self, database):
        self.database = database

    def collect(self):
        import logging

        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        from service.storage.models import SweepRun

        started = GaugeMetricFamily("portal_authz_sweep_last_start_timestamp_seconds",
                                    "When the last sweep started (Unix time; 0: never)")
        finished = GaugeMetricFamily("portal_authz_sweep_last_finish_timestamp_seconds",
                                     "When the last sweep that finished did (Unix time; 0: never)")
        duration = GaugeMetricFamily("portal_authz_sweep_last_duration_seconds",
                                     "How long the last finished sweep took")
        changes = CounterMetricFamily("portal_authz_sweep_changes", "Accounts the sweep changed (and warnings it "
                                      "queued), summed over every run", labels=["change"])
        try:
            latest = (select(SweepRun.finished_at).where(SweepRun.finished_at.is_not(None))
                      .order_by(SweepRun.id.desc()).limit(1))
            with self.database.reads() as session:  # one statement: a run a day keeps the table small
                last_start, last_finish, last_duration, *totals = session.execute(select(
                    func.max(SweepRun.started_at), latest.scalar_subquery(),
                    latest.with_only_columns(SweepRun.duration_seconds).scalar_subquery(),
                    *(func.coalesce(func.sum(getattr(SweepRun, c)), 0) for c in SWEEP_CHANGES))).one()
        except SQLAlchemyError:
            logging.getLogger(__name__).warning("sweep metrics unavailable", exc_info=True)
            return
        started.add_metric([], _unix(last_start))
        finished.add_metric([], _unix(last_finish))
        duration.add_metric([], float(last_duration or 0.0))
        for change, total in zip(SWEEP_CHANGES, totals):
            changes.add_metric([change], total)
        yield from (started, finished, duration, changes)


def _unix(moment) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # SQLite's aggregate skips the column's type: stored as UTC
        from datetime import timezone

        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
