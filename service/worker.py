"""The delivery worker's runtime: the loop that sends queued emails and exports letters, on its own
(`portal-authz deliver`) or as the child of `serve --deliver` (service/background.py starts it).

The loop only schedules; what a batch does is the domain's (service/domain/delivery.py), and how an
email leaves is the transport's (service/transport/smtp.py).
"""
from __future__ import annotations

import logging
import sys
import time

from service.clock import SettableClock, SystemClock
from service.config import Config
from service.domain.delivery import deliver_batch
from service.storage.database import Database
from service.transport.smtp import SmtpSender


def _clock(config: Config, database: Database):
    return SettableClock(database) if config.testing.clock == "settable" else SystemClock()


def _observer(config: Config):
    """Delivery's counters. Beside `serve` they go to the server's multiprocess metrics files (the child
    inherits PROMETHEUS_MULTIPROC_DIR), so the server's GET /metrics includes them; a standalone `deliver`
    keeps them in its own process, where nothing scrapes them (the outbox gauges still show a stuck outbox)."""
    from service.observe.metrics import Metrics

    return Metrics(config)


def deliver(database: Database, config: Config, *, once: bool, interval: float) -> None:
    """Batches until stopped (Ctrl-C), or one; prints each batch's counts."""
    clock = _clock(config, database)
    observer = _observer(config)
    try:
        while True:
            report = deliver_batch(database, config, clock.now(), SmtpSender(config.delivery.smtp), observer)
            print(" ".join(f"{name}={count}" for name, count in report.counts().items()), flush=True)
            if once:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        database.dispose()


def deliver_beside_serve(config: Config, parent_pid: int, interval: float) -> None:
    """The child of `serve --deliver`: logs in the server's format, survives a failing batch (logged, tried
    again next interval), stops between batches on SIGTERM or when the server is gone."""
    from service.background import Stop
    from service.observe import logs

    logs.configure(config.logging)
    log = logging.getLogger("service.delivery")
    stop = Stop(parent_pid)
    database = Database(config.database_url)  # the server upgraded the schema before starting us
    clock = _clock(config, database)
    observer = _observer(config)
    log.info("delivery worker running beside the server (pid %d), every %g s", parent_pid, interval)
    try:
        while not stop:
            try:
                report = deliver_batch(database, config, clock.now(), SmtpSender(config.delivery.smtp), observer)
            except Exception:
                log.exception("delivery batch failed; trying again in %g s", interval)
            else:
                counts = report.counts()
                if any(counts.values()):
                    log.info("delivery: " + " ".join(f"{name}={count}" for name, count in counts.items()))
            stop.sleep(interval)
    finally:
        database.dispose()
        log.info("delivery worker stopped")
