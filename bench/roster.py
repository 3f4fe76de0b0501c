"""How long does one page of a 100,000-account organization take? A benchmark script, not a test.

Loads, with bulk inserts (SQLite) or COPY (PostgreSQL) rather than the API, one
organization of N accounts (default 100,000) with their memberships and grants,
plus other organizations of the same portal (default 50,000 more accounts in
organizations of 100), into a fresh SQLite file and a fresh throw-away
PostgreSQL. Statuses are mixed (active, locked, disabled, pending approval or
activation, removed), names repeat as in life (60 first names x 200 last names).
An admin of the big organization signs in through the API; then each request
below is sent ~50 times through the Flask app in-process (the whole request:
session, decision, query, rendering; no network), cursors and search terms
rotating so that no two consecutive requests are the same:

  GET .../organizations/{org}/accounts?limit=100          first page
                                     ...&after=<cursor>   a deep page (keyset, second half of the roster)
                                     ...&q=<last name>    search, ~0.5% of the roster matches
                                     ...&q=<username>     search, one match (the worst case: nothing stops early)
                                     ...&status=locked    a status filter (~5%), and status=pending_approval (~3%)
                                     ...&manageable=true  what the admin may administer
  POST /v1/authorized-actions  on an account of the organization, and on the organization

    python bench/roster.py [--quick] [--accounts 100000] [--others 50000] [-n 50]
                           [--backend sqlite|postgres|both] [--explain] [--json out.json]

--explain prints, per request kind, the costliest SQL statement of its last request
(each run again, best of 3) and the database's plan for it (EXPLAIN ANALYZE on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite).
Target: at most 50 ms per listing page on PostgreSQL (a page a person waits for).
"""
from __future__ import annotations

import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from sqlalchemy import event, select, text  # noqa: E402

from bench._common import (ROOT, arguments, backends, begin, bulk_load, finish, ms_summary,  # noqa: E402
                           organization_options, sized, table)
from service.app import create_app  # noqa: E402
from service.clock import FixedClock  # noqa: E402
from service.config import load_config  # noqa: E402
from service.domain import clients  # noqa: E402
from service.domain.setup import sync_portals  # noqa: E402
from service.policy import Policy  # noqa: E402
from service.server import settle_heap  # noqa: E402
from service.storage.database import Database  # noqa: E402
from service.storage.models import Organization  # noqa: E402
from tests.fixtures.world import PASSWORD, World  # noqa: E402

PORTAL, BIG = "ahcccs", "BIG-0001"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
TARGET_MS = 50.0
# (quick, full) sizes: accounts in the big organization, accounts elsewhere, requests per kind.
SIZES = {"accounts": (5_000, 100_000), "others": (2_000, 50_000), "n": (10, 50)}
PER_ORG = 100
FAKE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$bench$not-a-real-hash"
FIRST = ("maria", "james", "linda", "robert", "patricia", "john", "jennifer", "michael", "elizabeth", "david",
         "barbara", "william", "susan", "richard", "jessica", "joseph", "sarah", "thomas", "karen", "charles",
         "nancy", "christopher", "lisa", "daniel", "betty", "matthew", "margaret", "anthony", "sandra", "mark",
         "ashley", "donald", "kimberly", "steven", "emily", "paul", "donna", "andrew", "michelle", "joshua",
         "carol", "kenneth", "amanda", "kevin", "dorothy", "brian", "melissa", "george", "deborah", "timothy",
         "stephanie", "ronald", "rebecca", "edward", "sharon", "jason", "laura", "jeffrey", "cynthia", "ryan")
LAST = tuple(f"{stem}{suffix}" for stem in ("garcia", "smith", "johnson", "williams", "brown", "jones", "miller",
                                            "davis", "rodriguez", "martinez", "hernandez", "lopez", "gonzalez",
                                            "wilson", "anderson", "thomas", "taylor", "moore", "jackson", "martin")
             for suffix in ("", "son", "ez", "er", "ton", "ley", "well", "field", "wood", "ford"))
# (status, membership status, share in percent): the rest are active.
MIX = (("locked", "active", 5), ("disabled", "active", 4), ("pending_approval", "active", 3),
       ("pending_activation", "active", 2), ("active", "removed", 1))
ACCOUNT_COLUMNS = ("id", "portal_id", "username", "username_key", "first_name", "last_name", "email", "email_key",
                   "phone", "password_hash", "password_changed_at", "status", "is_support", "terms_accepted_at",
                   "last_login_at", "last_activity_at", "created_at")


# --- data ---------------------------------------------------------------------------------------------

def person(i: int) -> tuple[str, str, str]:
    """Deterministic names; the username sorts nowhere near the id (so pages are not id ranges)."""
    first, last = FIRST[(i * 7) % len(FIRST)], LAST[(i * 13 + i // 7) % len(LAST)]
    return first, last, f"{first}.{last}{i}"


def status_of(i: int) -> tuple[str, str]:
    r, floor = (i * 37) % 100, 0
    for status, link, share in MIX:
        if floor <= r < floor + share:
            return status, link
        floor += share
    return "active", "active"


def tables(big: int, others: int):
    """(table, columns, rows(n, text_time)): accounts 1..big in the big organization (id 1), the rest in orgs of 100."""
    total = big + others

    def org_id(i: int) -> int:
        return 1 if i <= big else 2 + (i - big - 1) // PER_ORG

    def organizations(_n, t):
        created = t(NOW - timedelta(days=400))
        yield 1, PORTAL, BIG, "The Big Provider Group", created
        for k in range((others + PER_ORG - 1) // PER_ORG):
            yield 2 + k, PORTAL, f"SMALL-{k:05d}", f"Small Practice {k}", created

    def accounts(_n, t):
        created = t(NOW - timedelta(days=400))
        for i in range(1, total + 1):
            first, last, username = person(i)
            status, _ = status_of(i)
            last_seen = t(NOW - timedelta(minutes=(i * 7919) % (40 * 24 * 60)))
            email = f"{username}@example.org"
            yield (i, PORTAL, username, username, first.title(), last.title(), email, email, "602-555-0100",
                   FAKE_HASH, t(NOW - timedelta(days=i % 40)), status, False, created, last_seen, last_seen, created)

    def memberships(_n, t):
        created = t(NOW - timedelta(days=400))
        for i in range(1, total + 1):
            role = "admin" if (i <= big and i % 20_000 == 1) or (i > big and (i - big) % PER_ORG == 1) else "member"
            yield i, i, org_id(i), role, status_of(i)[1], created

    def grants(_n, t):
        created = t(NOW - timedelta(days=400))
        for i in range(1, total + 1):
            if i % 3 == 0:
                yield i, "claims", created
            if i % 5 == 0:
                yield i, "eligibility", created

    return (("organizations", ("id", "portal_id", "key", "name", "created_at"), organizations),
            ("accounts", ACCOUNT_COLUMNS, accounts),
            ("memberships", ("id", "account_id", "organization_id", "role", "status", "created_at"), memberships),
            ("grants", ("membership_id", "permission", "granted_at"), grants))


def seed(url: str, config, big: int, others: int) -> tuple[Database, str, float]:
    database = Database(url)
    database.upgrade_schema()
    with database.transaction() as session:
        sync_portals(session, config)
    t0 = time.perf_counter()
    bulk_load(database, tables(big, others), big + others)
    loaded = time.perf_counter() - t0
    with database.transaction() as session:
        world = World(session, PORTAL, NOW)
        world.organizations[BIG] = session.scalar(select(Organization).where(Organization.key == BIG))
        world.account("big.admin", memberships={BIG: {"role": "admin"}})
        key = clients.create_client(session, "bench", ("authorize", "manage"), NOW)
    return database, key, loaded


# --- requests ---------------------------------------------------------------------------------------------

class Statements:
    """Every SQL statement of the current request, with its time (engine events)."""

    def __init__(self, engine):
        self.engine, self.current, self._start = engine, [], {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self._start[id(cursor)] = time.perf_counter_ns()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.current.append((time.perf_counter_ns() - self._start.pop(id(cursor), time.perf_counter_ns()),
                             statement, parameters))

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def timed(self, n: int, send, counter=lambda: 0):
        """`send(i)` three times to warm up, then n times timed; for each timed one (response, wall ns, this thread's
        CPU ns, how much `counter()` grew), its statements in `current`. An answer other than 200 stops the run."""
        for k in range(-3, n):
            self.current = []
            before, c0, t0 = counter(), time.thread_time_ns(), time.perf_counter_ns()
            response, asked = send(max(k, 0))
            elapsed, used = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
            if response.status_code != 200:
                raise SystemExit(f"bench: {asked} answered {response.status_code}: {response.get_data(True)[:500]}")
            if k >= 0:
                yield response, elapsed, used, counter() - before


def explain(database: Database, statement: str, parameters) -> str:
    prefix = "EXPLAIN QUERY PLAN " if database.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
    with database.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    if database.is_sqlite:
        return "\n".join(f"      {r[-1]}" for r in rows)
    return "\n".join(f"      {r[0]}" for r in rows)


def costliest(database: Database, statements: list) -> tuple[int, str, object]:
    """The statement that takes longest when run again (best of 3, so other load on the machine counts less)."""
    best = (0, "", None)
    with database.engine.connect() as conn:
        for _, statement, parameters in list(statements):  # a copy: these runs are recorded too
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            runs = []
            for _ in range(3):
                t0 = time.perf_counter_ns()
                conn.exec_driver_sql(statement, parameters).all()
                runs.append(time.perf_counter_ns() - t0)
            best = max(best, (min(runs), statement, parameters), key=lambda s: s[0])
        conn.rollback()
    return best


def cursors(database: Database, big: int, count: int) -> list[str]:
    """Keyset cursors spread over the second half of the big organization's roster."""
    with database.engine.connect() as conn:
        keys = [r[0] for r in conn.execute(text(
            "SELECT a.username_key FROM accounts a JOIN memberships m ON m.account_id = a.id "
            "WHERE m.organization_id = 1 ORDER BY a.username_key"))]
    start = len(keys) // 2
    step = max(1, (len(keys) - start - 200) // count)
    return [keys[start + k * step] for k in range(count)]


def run_backend(name: str, url: str, config, policy: Policy, args) -> dict:
    print(f"\n== {name}: one organization of {args.accounts:,} accounts, {args.others:,} more in the portal ==",
          flush=True)
    database, key, loaded = seed(url, config, args.accounts, args.others)
    print(f"  bulk load {loaded:.1f} s", flush=True)
    if not database.is_sqlite:
        with database.engine.connect() as conn:
            print(f"  server: PostgreSQL {conn.execute(text('SHOW server_version')).scalar()}")
    app = create_app(config, database=database, policy=policy, clock=FixedClock(NOW))
    if not args.no_settle:
        settle_heap()  # as a serving worker does once its app is built (service/server.py)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    signed = client.post(f"/v1/portals/{PORTAL}/sessions", json={"username": "big.admin", "password": PASSWORD},
                         headers=auth)
    if signed.status_code != 201:
        raise SystemExit(f"bench: sign-in answered {signed.status_code}: {signed.get_data(True)}")
    headers = {**auth, "X-Session-Token": signed.get_json()["token"]}
    base = f"/v1/portals/{PORTAL}/organizations/{BIG}/accounts?limit=100"
    n = args.n
    deep = cursors(database, args.accounts, n)
    lasts = [LAST[(k * 17) % len(LAST)] for k in range(n)]
    rare = [person(args.accounts // 3 + k * 101)[2] for k in range(n)]
    members = [person(k * 97 + 2)[2] for k in range(n)]
    kinds = {
        "first page": lambda k: ("GET", base, None),
        "deep page (after=)": lambda k: ("GET", f"{base}&after={deep[k % len(deep)]}", None),
        "q=<last name> (~0.5%)": lambda k: ("GET", f"{base}&q={lasts[k % len(lasts)]}", None),
        "q=<username> (1 match)": lambda k: ("GET", f"{base}&q={rare[k % len(rare)]}", None),
        "status=locked": lambda k: ("GET", f"{base}&status=locked", None),
        "status=pending_approval": lambda k: ("GET", f"{base}&status=pending_approval", None),
        "manageable=true": lambda k: ("GET", f"{base}&manageable=true", None),
        "manageable + status=locked, deep": lambda k: ("GET", f"{base}&manageable=true&status=locked"
                                                       f"&after={deep[k % len(deep)]}", None),
        "authorized-actions: account": lambda k: (
            "POST", "/v1/authorized-actions",
            {"portal": PORTAL, "actor": "big.admin", "resource": {"type": "account", "id": members[k % n]}}),
        "authorized-actions: organization": lambda k: (
            "POST", "/v1/authorized-actions",
            {"portal": PORTAL, "actor": "big.admin", "resource": {"type": "organization", "id": BIG}}),
    }
    statements = Statements(database.engine)
    rows, plans = [], []
    try:
        for kind, make in kinds.items():
            lat, sql, slowest, listed = [], [], (0, "", None), 0
            def send(i, make=make):
                method, path, body = make(i)
                return client.open(path, method=method, json=body, headers=headers), f"{method} {path}"

            for response, elapsed, _, _ in statements.timed(n, send):
                lat.append(elapsed)
                sql.append(sum(s[0] for s in statements.current))
                payload = response.get_json()
                listed += len(payload.get("accounts", payload.get("actions", [])))
                top = max(statements.current, key=lambda s: s[0], default=(0, "", None))
                slowest = max(slowest, top, key=lambda s: s[0])
            summary = ms_summary(lat)
            sql_p50 = ms_summary(sql)["p50_ms"]
            rows.append({"kind": kind, **summary, "avg_items": listed / n, "sql_p50_ms": sql_p50,
                         "slowest_sql_ms": slowest[0] / 1e6, "statements": len(statements.current)})
            print(f"  {kind:<34} p50 {summary['p50_ms']:7.2f} ms  p99 {summary['p99_ms']:7.2f} ms  "
                  f"({listed / n:.0f} items; {len(statements.current)} statements, {sql_p50:.1f} ms in SQL at p50, "
                  f"slowest statement {slowest[0] / 1e6:.1f} ms)", flush=True)
            if args.explain:
                took, statement, parameters = costliest(database, statements.current)
                plans.append(f"  {kind}: costliest statement of the last request, {took / 1e6:.2f} ms (best of 3)\n    "
                             + " ".join(statement.split())[:600] + "\n" + explain(database, statement, parameters))
    finally:
        statements.close()
        database.dispose()
    if plans:
        print("\n" + "\n\n".join(plans), flush=True)
    return {"backend": name, "load_s": loaded, "rows": rows}


def measured(argv, doc: str, title: str, target: str, run, backend: str, explain: bool = False):
    """The frame of a benchmark of one large organization's pages served in process (this one, bench/console.py):
    its options, the machine, and `run(name, url, config, policy, args)` on each backend; (machine, args, results)."""
    parser = arguments(doc, "5,000 accounts, 10 requests each (a smoke run)", backend=backend)
    organization_options(parser, SIZES, settle=True)
    if explain:
        parser.add_argument("--explain", action="store_true", help="print each kind's slowest statement and its plan")
    args = sized(parser.parse_args(argv), **SIZES)
    m = begin(title, f"{args.n} requests per kind after 3 warm-up requests, in-process (Flask test client); "
                     f"target: {target}")
    config = load_config(ROOT / "config.yaml")
    policy = Policy(config.policy_path)
    with tempfile.TemporaryDirectory(prefix="portal-authz-bench-") as tmp, ExitStack() as stack:
        results = [run(backend.name, backend.database(), config, policy, args)
                   for backend in backends(args.backend, Path(tmp), stack)]
    return m, args, results


def main(argv: list[str] | None = None) -> None:
    m, args, results = measured(argv, __doc__, "one page of a large organization's roster",
                                f"listing pages <= {TARGET_MS:g} ms on PostgreSQL", run_backend, "both", explain=True)
    rows = []
    for r in results:
        for row in r["rows"]:
            listing = not row["kind"].startswith("authorized-actions")
            p50_ok, p99_ok = (("yes" if row[k] <= TARGET_MS else "NO") if listing else "-"
                              for k in ("p50_ms", "p99_ms"))
            rows.append([r["backend"], row["kind"], row["n"], row["p50_ms"], row["p99_ms"], row["avg_items"],
                         row["sql_p50_ms"], row["slowest_sql_ms"], p50_ok, p99_ok])
    table(f"{args.accounts:,} accounts in one organization, {args.others:,} elsewhere in the portal "
          "(ms per request, in-process)",
          ["backend", "request", "n", "p50 ms", "p99 ms", "items", "SQL p50 ms", "slowest stmt ms",
           f"p50<={TARGET_MS:g}", f"p99<={TARGET_MS:g}"], rows)
    print("  (SQL p50: the statements' own time in a median request; the rest is Python: session, decision,"
          " ORM loading and JSON. slowest stmt: the slowest single statement of any request of that kind.)")
    finish(m, args.json, {"results": results})


if __name__ == "__main__":
    main()
