"""What the database-read metrics cost a scrape of GET /metrics: the outbox and sweep collectors over a long
outbox history. A benchmark script, not a test.

Loads N notifications (default 200,000; all but 100 delivered, as an outbox looks after months of delivery)
and three sweep runs into a fresh SQLite file and a throw-away PostgreSQL, then times each collector.

    python bench/scrape.py [--quick] [--notifications 200000] [--backend sqlite|postgres|both] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable without PYTHONPATH

from bench._common import exit_on_sigterm, fmt_load, machine, print_machine  # noqa: E402
from service.clock import FixedClock  # noqa: E402
from service.config import load_config  # noqa: E402
from service.domain.setup import sync_portals  # noqa: E402
from service.domain.sweep import sweep  # noqa: E402
from service.observe.metrics import OutboxCollector, SweepCollector  # noqa: E402
from service.storage.database import Database  # noqa: E402
from service.storage.models import Notification  # noqa: E402

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
WAITING = 100


def load(database: Database, config, n: int) -> None:
    database.upgrade_schema()
    with database.transaction() as session:
        sync_portals(session, config)
    rows = [dict(portal_id="ahcccs", channel="letter" if i % 3 == 0 else "email", recipient=f"u{i}@example.org",
                 template="activation_letter" if i % 3 == 0 else "password_recovery", payload={}, created_at=NOW,
                 status="queued" if i < WAITING else "delivered", attempts=1) for i in range(n)]
    with database.engine.begin() as connection:
        connection.execute(Notification.__table__.insert(), rows)
        if not database.is_sqlite:
            connection.exec_driver_sql("ANALYZE notifications")
    for _ in range(3):
        sweep(database, config, NOW)


def time_collector(collector, n: int) -> float:
    list(collector.collect())  # warm: the statement compiled, the connection open
    start = time.perf_counter()
    for _ in range(n):
        list(collector.collect())
    return (time.perf_counter() - start) / n * 1000


def run(backend: str, url: str, config, notifications: int, rounds: int) -> dict:
    database = Database(url)
    try:
        load(database, config, notifications)
        return {"backend": backend, "notifications": notifications,
                "outbox_ms": round(time_collector(OutboxCollector(database, FixedClock(NOW)), rounds), 2),
                "sweep_ms": round(time_collector(SweepCollector(database), rounds), 2)}
    finally:
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--notifications", type=int, default=200_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    exit_on_sigterm()
    notifications, rounds = (5_000, 20) if args.quick else (args.notifications, 200)
    m = machine()
    print_machine("bench/scrape.py: the outbox and sweep collectors of GET /metrics", m)
    config = load_config(ROOT / "config.yaml")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            results.append(run("sqlite", f"sqlite:///{Path(tmp) / 'scrape.db'}", config, notifications, rounds))
        if args.backend in ("postgres", "both"):
            from tests.fixtures.postgres import start_postgres

            with start_postgres() as server:
                results.append(run("postgres", server.create_database("scrape"), config, notifications, rounds))
    for r in results:
        print(f"{r['backend']:9} {r['notifications']:>9,} notifications ({WAITING} waiting): "
              f"outbox collector {r['outbox_ms']} ms, sweep collector {r['sweep_ms']} ms per scrape")
    print(f"load average at end: {fmt_load(os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": m, "results": results}, indent=2))


if __name__ == "__main__":
    main()
