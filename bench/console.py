"""How long does the console's user list of a 100,000-account organization take to render? A benchmark script.

The organization is bulk-loaded as bench/roster.py loads it (COPY on PostgreSQL, bulk inserts on SQLite;
100,000 accounts in one organization and 50,000 more in the portal, statuses mixed). Its admin signs in
through the console's own form (CSRF token and all); then each page below is requested ~50 times through
the Flask app in-process, cursors and search terms rotating: the whole request is timed (cookie session,
the person's session row, the roster query, one decision pass over the page's rows, Jinja2 rendering), in
wall time and in this thread's CPU time (which a loaded machine does not inflate).

  GET /console/ahcccs/admin?organization=BIG-0001                    first page (25 rows)
                                        ...&after=<cursor>           a deep page (keyset)
                                        ...&q=<last name>            search by name
                                        ...&status=locked            a status filter
                                        ...&pending=yes              Pending Approval
  GET /console/ahcccs/accounts/<username>?organization=BIG-0001      one account's page

Each row's actions come from `Decider.authorized_actions_each`: the facts of the page's rows in one
statement, then one answer each from the policy's memo, keyed by the facts' shape (rows of one shape
share an entry), where one POST /v1/authorized-actions per row would cost a statement and a Polar query each.

    python bench/console.py [--quick] [--accounts 100000] [--others 50000] [-n 50]
                            [--backend postgres|sqlite|both] [--json out.json]

Target: the user list under 100 ms p99 server time on PostgreSQL.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import finish, ms_summary, table  # noqa: E402
from bench.roster import BIG, LAST, NOW, PORTAL, Statements, cursors, measured, person, seed  # noqa: E402
from service.app import create_app  # noqa: E402
from service.clock import FixedClock  # noqa: E402
from service.policy import Policy  # noqa: E402
from service.server import settle_heap  # noqa: E402
from tests.fixtures.world import PASSWORD  # noqa: E402

TARGET_MS = 100.0
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def run_backend(name: str, url: str, config, policy: Policy, args) -> dict:
    print(f"\n== {name}: one organization of {args.accounts:,} accounts, {args.others:,} more in the portal ==",
          flush=True)
    database, key, loaded = seed(url, config, args.accounts, args.others)
    print(f"  bulk load {loaded:.1f} s", flush=True)
    app = create_app(config, database=database, policy=policy, clock=FixedClock(NOW))
    client = app.test_client()
    form = client.get(f"/console/{PORTAL}/").get_data(as_text=True)
    signed = client.post(f"/console/{PORTAL}/sign-in", data={
        "csrf_token": CSRF.search(form).group(1), "username": "big.admin", "password": PASSWORD})
    if signed.status_code != 302 or not signed.headers["Location"].endswith("/home"):
        raise SystemExit(f"bench: console sign-in answered {signed.status_code}: {signed.get_data(True)[:300]}")
    auth = {"Authorization": f"Bearer {key}"}
    api_signed = client.post(f"/v1/portals/{PORTAL}/sessions", json={"username": "big.admin", "password": PASSWORD},
                             headers=auth)
    api_headers = {**auth, "X-Session-Token": api_signed.get_json()["token"]}
    base = f"/console/{PORTAL}/admin?organization={BIG}"
    n = args.n
    deep = cursors(database, args.accounts, n)
    lasts = [LAST[(k * 17) % len(LAST)] for k in range(n)]
    members = [person(k * 97 + 2)[2] for k in range(n)]
    if not args.no_settle:
        # As a serving worker does once its app is built (service/server.py), after the bench's own set-up
        # (the cursors above read the whole roster), which no serving worker carries.
        settle_heap()
    kinds = {
        "user list: first page": lambda k: base,
        "user list: deep page (after=)": lambda k: f"{base}&after={deep[k % len(deep)]}",
        "user list: q=<last name>": lambda k: f"{base}&q={lasts[k % len(lasts)]}",
        "user list: status=locked": lambda k: f"{base}&status=locked",
        "user list: Pending Approval": lambda k: f"{base}&pending=yes",
        "account page": lambda k: f"/console/{PORTAL}/accounts/{members[k % n]}?organization={BIG}",
        # For reference, under the same conditions: the API's listing of the same page (JSON, no actions).
        "API listing, limit=25 (reference)": lambda k: (f"/v1/portals/{PORTAL}/organizations/{BIG}/accounts"
                                                        f"?limit=25&manageable=true"),
    }
    statements = Statements(database.engine)
    rows = []
    memo_before = policy._engine.memo_size()
    try:
        for kind, make in kinds.items():
            lat, cpu, sql, counted = [], [], [], 0
            misses = 0  # action lists the policy's memo had to compute (a row shape seen for the first time)

            def send(i, make=make):
                path = make(i)
                return client.get(path, headers=api_headers if path.startswith("/v1/") else None), f"GET {path}"

            computed = policy._engine._actions.cache_info
            for _, elapsed, used, missed in statements.timed(n, send, lambda: computed().misses):
                lat.append(elapsed)
                cpu.append(used)
                misses += missed
                sql.append(sum(s[0] for s in statements.current))
                counted = len(statements.current)
            summary, used = ms_summary(lat), ms_summary(cpu)
            sql_p50 = ms_summary(sql)["p50_ms"]
            rows.append({"kind": kind, **summary, "cpu_p50_ms": used["p50_ms"], "cpu_p99_ms": used["p99_ms"],
                         "sql_p50_ms": sql_p50, "statements": counted, "memo_misses": misses})
            print(f"  {kind:<32} p50 {summary['p50_ms']:7.2f} ms  p99 {summary['p99_ms']:7.2f} ms  "
                  f"(this thread's CPU p50 {used['p50_ms']:.2f}, p99 {used['p99_ms']:.2f} ms; {counted} statements, "
                  f"{sql_p50:.1f} ms in SQL at p50; {misses} row shapes new to the memo)", flush=True)
    finally:
        statements.close()
        database.dispose()
    memo = policy._engine.memo_size() - memo_before
    print(f"  policy memo entries added by all these pages: {memo}", flush=True)
    return {"backend": name, "load_s": loaded, "rows": rows, "memo_entries": memo}


def main(argv: list[str] | None = None) -> None:
    m, args, results = measured(argv, __doc__, "the console's user list of a large organization",
                                f"user list p99 <= {TARGET_MS:g} ms on PostgreSQL", run_backend, "postgres")
    rows = []
    for r in results:
        for row in r["rows"]:
            rows.append([r["backend"], row["kind"], row["n"], row["p50_ms"], row["p99_ms"], row["cpu_p50_ms"],
                         row["cpu_p99_ms"], row["statements"], row["sql_p50_ms"], row["memo_misses"],
                         "yes" if row["p99_ms"] <= TARGET_MS else "NO"])
    table(f"the console, {args.accounts:,} accounts in one organization, {args.others:,} elsewhere "
          "(ms per page, server time in-process)",
          ["backend", "page", "n", "p50 ms", "p99 ms", "CPU p50", "CPU p99", "statements", "SQL p50 ms",
           "new shapes", f"p99<={TARGET_MS:g}"], rows)
    print("  (CPU: this process's thread's own CPU time for the request, which other work on the machine does not"
          " inflate; the database server's is not in it. SQL p50: the statements' wall time in a median request. new shapes: rows\n"
          "   whose facts' shape the policy's memo had not seen, each an uncached policy evaluation, in the kind's measured requests.)")
    finish(m, args.json, {"results": results})


if __name__ == "__main__":
    main()
