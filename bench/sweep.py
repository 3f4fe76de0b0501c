"""How long does the inactivity sweep take over a million accounts? A benchmark script, not a test.

Loads N accounts (default 1,000,000: 60% qm, 30% ahw, 10% ahcccs) with last
activity spread over 0..150 days, one membership each, a grant for every tenth
membership and an open session for every hundredth account, into a fresh SQLite
file and a fresh throw-away PostgreSQL server; then times the sweep three times:
today, again today (must change nothing), and tomorrow.

    python bench/sweep.py [--quick] [--accounts 1000000] [--backend sqlite|postgres|both] [--statements]

Target: under 30 s for the sweep on each backend (a daily job that holds write locks).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable without PYTHONPATH

from sqlalchemy import event, text  # noqa: E402

from bench._common import bulk_load, exit_on_sigterm, machine, print_machine  # noqa: E402
from service.config import load_config  # noqa: E402
from service.domain.setup import sync_portals  # noqa: E402
from service.domain.sweep import sweep  # noqa: E402
from service.storage.database import Database  # noqa: E402

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
SHARES = (("qm", 60), ("ahw", 30), ("ahcccs", 10))
ACCOUNTS_PER_ORG = 100
FAKE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$bench$not-a-real-hash"
ACCOUNT_COLUMNS = ("id", "portal_id", "username", "username_key", "first_name", "last_name", "email", "email_key",
                   "phone", "password_hash", "password_changed_at", "status", "is_support", "terms_accepted_at",
                   "last_login_at", "last_activity_at", "created_at")


def plan(n: int):
    """(portal, count, first id) per portal, and the organizations each needs."""
    out, start = [], 1
    for i, (portal, share) in enumerate(SHARES):
        count = n * share // 100 if i < len(SHARES) - 1 else n - (start - 1)
        out.append((portal, count, start))
        start += count
    return out


def account_rows(n: int, text_time):
    """Deterministic rows; `text_time` renders a datetime for the backend."""
    created = text_time(NOW - timedelta(days=400))
    for portal, count, first in plan(n):
        for j in range(count):
            i = first + j
            age_minutes = (i * 7919) % (151 * 24 * 60)  # spread over 0..150 days, any minute of the day
            last = text_time(NOW - timedelta(minutes=age_minutes))
            r = i % 100
            status = ("pending_activation" if r < 2 else "locked" if r < 5 else "disabled" if r < 7 else "active")
            support = r == 99
            name = f"{portal}.user{i}"
            email = f"{name}@example.org"
            yield (i, portal, name, name, "Bench", "User", email, email, "602-555-0100", FAKE_HASH, created,
                   status, support, created, last, last, created)


def org_rows(n: int, text_time):
    created = text_time(NOW - timedelta(days=400))
    next_id = 1
    for portal, count, _ in plan(n):
        for k in range((count + ACCOUNTS_PER_ORG - 1) // ACCOUNTS_PER_ORG):
            yield (next_id, portal, f"{portal.upper()}-{k}", f"Organization {k}", created)
            next_id += 1


def org_of(n: int):
    """account id -> organization id, matching org_rows."""
    bases, next_id = [], 1
    for portal, count, first in plan(n):
        bases.append((first, count, next_id))
        next_id += (count + ACCOUNTS_PER_ORG - 1) // ACCOUNTS_PER_ORG

    def lookup(account_id: int) -> int:
        for first, count, base in bases:
            if first <= account_id < first + count:
                return base + (account_id - first) // ACCOUNTS_PER_ORG
        raise KeyError(account_id)

    return lookup


def membership_rows(n: int, text_time):
    created = text_time(NOW - timedelta(days=400))
    org = org_of(n)
    for i in range(1, n + 1):
        yield (i, i, org(i), "admin" if i % ACCOUNTS_PER_ORG == 1 else "member", "active", created)


def grant_rows(n: int, text_time):
    created = text_time(NOW - timedelta(days=400))
    for i in range(1, n + 1, 10):
        yield (i, "claims", created)


def session_rows(n: int, text_time):
    created, expires = text_time(NOW - timedelta(hours=1)), text_time(NOW + timedelta(hours=7))
    for i in range(1, n + 1, 100):
        yield (f"{i:064d}", i, created, expires)


TABLES = (
    ("accounts", ACCOUNT_COLUMNS, account_rows),
    ("organizations", ("id", "portal_id", "key", "name", "created_at"), org_rows),
    ("memberships", ("id", "account_id", "organization_id", "role", "status", "created_at"), membership_rows),
    ("grants", ("membership_id", "permission", "granted_at"), grant_rows),
    ("session_tokens", ("token_digest", "account_id", "created_at", "expires_at"), session_rows),
)


class StatementTimer:
    """Wall time per SQL statement kind (first words), via engine events."""

    def __init__(self, engine):
        self.engine, self.times, self._start = engine, defaultdict(float), {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self._start[id(cursor)] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        words = " ".join(statement.split())
        head = words[:60]
        if words.startswith("INSERT INTO notifications"):
            head = "INSERT INTO notifications ... (warnings)"
        elif words.startswith("INSERT INTO audit_records"):
            head = "INSERT INTO audit_records ..."
        self.times[head] += time.perf_counter() - self._start.pop(id(cursor), time.perf_counter())

    def report(self) -> list[str]:
        return [f"      {seconds:7.2f} s  {head}" for head, seconds in sorted(self.times.items(), key=lambda x: -x[1])
                if seconds >= 0.01]

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def run_backend(name: str, url: str, config, n: int, statements: bool) -> dict:
    print(f"\n== {name}: {n:,} accounts ==", flush=True)
    database = Database(url)
    t0 = time.perf_counter()
    database.upgrade_schema()
    with database.transaction() as session:
        sync_portals(session, config)
    print(f"  schema                         {time.perf_counter() - t0:7.2f} s", flush=True)
    t0 = time.perf_counter()
    bulk_load(database, TABLES, n)  # executemany on SQLite, COPY on PostgreSQL (bench/_common.py)
    load = time.perf_counter() - t0
    print(f"  load (+ANALYZE)                {load:7.2f} s  ({n / load:,.0f} accounts/s, with memberships, "
          f"grants, sessions)", flush=True)
    if not database.is_sqlite:
        with database.engine.connect() as conn:
            print(f"  server: {conn.execute(text('SHOW server_version')).scalar()}")
    timings = {}
    for label, moment in (("sweep today", NOW), ("sweep again today", NOW + timedelta(hours=2)),
                          ("sweep tomorrow", NOW + timedelta(days=1))):
        timer = StatementTimer(database.engine) if statements else None
        t0 = time.perf_counter()
        result = sweep(database, config, moment, client="bench")
        elapsed = time.perf_counter() - t0
        timings[label] = elapsed
        print(f"  {label:<30} {elapsed:7.2f} s  total {result.counts()}", flush=True)
        for portal, part in result.portals.items():
            if portal in dict(SHARES):
                print(f"      {portal:<10} {part.counts()}")
        if timer:
            print("\n".join(timer.report()))
            timer.close()
        if label == "sweep again today" and any(result.counts().values()):
            print("  !! the second run on the same day changed something", flush=True)
    database.dispose()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 accounts (a smoke run)")
    parser.add_argument("--accounts", type=int, default=None, help="default 1,000,000")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--statements", action="store_true", help="time each SQL statement kind")
    args = parser.parse_args()
    exit_on_sigterm()
    args.accounts = args.accounts or (20_000 if args.quick else 1_000_000)
    config = load_config(ROOT / "config.yaml")
    print_machine("the inactivity sweep", machine())
    print(f"sweep day: {NOW.isoformat()}; target: each sweep under 30 s")
    summary = {}
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
            summary["SQLite"] = run_backend("SQLite", f"sqlite:///{tmp}/bench.db", config, args.accounts,
                                            args.statements)
    if args.backend in ("postgres", "both"):
        from tests.fixtures.postgres import start_postgres

        with start_postgres() as server:
            summary["PostgreSQL"] = run_backend("PostgreSQL", server.create_database("bench"), config,
                                                args.accounts, args.statements)
    print("\nsummary (seconds):")
    for backend, timings in summary.items():
        worst = max(timings.values())
        print(f"  {backend:<11} " + "  ".join(f"{k}: {v:.2f}" for k, v in timings.items())
              + f"  -> {'under' if worst < 30 else 'OVER'} 30 s")


if __name__ == "__main__":
    main()
