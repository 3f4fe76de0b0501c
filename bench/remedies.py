"""How long does a denial with remedies take in an organization of 100,000 accounts? A benchmark, not a test.

Loads (COPY, as bench/roster.py does) one `ahw` organization of N accounts (default 100,000; 5 admins
among them, some locked or disabled as in life) plus other organizations, adds three delegates (members
granted `manage_account`, one of them holding `claims`) and a member holding nothing, into a throw-away
PostgreSQL (tests/fixtures/postgres.py), starts a real `portal-authz serve` on 127.0.0.1 and sends, one
at a time on one keep-alive connection, -n requests of each kind:

  plain      POST /v1/authorize   the member asks for `claims`: denied, permission_not_granted
  remedies   the same with "remedies": true: the change (grant claims) and who may make it
             (the delegate holding claims, then the admins; at most 5) and support
  unlock     a locked member asks with remedies: unlock, by whoever administers it

Figures: p50 / p99 in ms over HTTP, measured by the client. Target: remedies p50 < 10 ms.

    python bench/remedies.py [--quick] [--accounts 100000] [--others 20000] [-n 300] [--json out.json]
"""
from __future__ import annotations

import http.client
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from sqlalchemy import select  # noqa: E402

from bench import roster  # noqa: E402
from bench._common import (ROOT, arguments, backends, begin, bulk_load, finish, free_port, ms_summary,  # noqa: E402
                           organization_options, sized, start_server, stop_server, table, wait_ready,
                           write_config)
from service.config import load_config  # noqa: E402
from service.domain import clients  # noqa: E402
from service.domain.setup import sync_portals  # noqa: E402
from service.storage.database import Database  # noqa: E402
from service.storage.models import Organization  # noqa: E402
from tests.fixtures.world import World  # noqa: E402

PORTAL = "ahw"
TARGET_MS = 10.0
# (quick, full) sizes: accounts in the big organization, accounts elsewhere, requests per kind.
SIZES = {"accounts": (5_000, 100_000), "others": (1_000, 20_000), "n": (50, 300)}


def seed(url: str, config, big: int, others: int) -> tuple[str, float]:
    """The organization of bench/roster.py, in the ahw portal, with delegates; returns the client key."""
    roster.PORTAL = PORTAL  # bench/roster.py's tables read the portal when called
    database = Database(url)
    database.upgrade_schema()
    with database.transaction() as session:
        sync_portals(session, config)
    t0 = time.perf_counter()
    bulk_load(database, roster.tables(big, others), big + others)
    loaded = time.perf_counter() - t0
    with database.transaction() as session:
        world = World(session, PORTAL, roster.NOW)
        world.organizations[roster.BIG] = session.scalar(select(Organization).where(Organization.key == roster.BIG))
        world.account("bench.delegate1", memberships={roster.BIG: {"permissions": ["manage_account", "claims"]}})
        world.account("bench.delegate2", memberships={roster.BIG: {"permissions": ["manage_account"]}})
        world.account("bench.delegate3", memberships={roster.BIG: {"permissions": ["manage_account"]}})
        world.account("bench.member", memberships={roster.BIG: {}})
        world.account("bench.locked", status="locked", memberships={roster.BIG: {"permissions": ["claims"]}})
        key = clients.create_client(session, "bench", ("authorize",), roster.NOW)
    database.dispose()
    return key, loaded


def timed(conn: http.client.HTTPConnection, body: bytes, headers: dict, n: int, warmup: int) -> tuple[dict, dict]:
    latencies, answer = [], None
    for i in range(warmup + n):
        t0 = time.perf_counter_ns()
        conn.request("POST", "/v1/authorize", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter_ns() - t0
        if response.status != 200:
            raise SystemExit(f"bench: {response.status} {data[:500]!r}")
        if i >= warmup:
            latencies.append(elapsed)
        answer = json.loads(data)
    return ms_summary(latencies), answer


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "5,000 accounts, 50 requests each (a smoke run)")
    organization_options(parser, SIZES)
    args = sized(parser.parse_args(argv), **SIZES)
    m = begin("a denial with remedies in a large organization",
              f"{args.n} requests per kind after 20 warm-up, one keep-alive connection to `serve` on "
              f"127.0.0.1, PostgreSQL; target: remedies p50 < {TARGET_MS:g} ms")
    config = load_config(ROOT / "config.yaml")
    headers = {"Content-Type": "application/json"}
    kinds = {
        "plain": {"actor": "bench.member", "action": "claims"},
        "remedies": {"actor": "bench.member", "action": "claims", "remedies": True},
        "unlock (remedies)": {"actor": "bench.locked", "action": "claims", "remedies": True},
    }
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="portal-authz-remedies-") as tmp, ExitStack() as stack:
        (postgres,) = backends("postgres", Path(tmp), stack)
        url = postgres.database()
        key, loaded = seed(url, config, args.accounts, args.others)
        print(f"loaded {args.accounts + args.others:,} accounts in {loaded:.1f} s")
        port, log = free_port(), Path(tmp) / "serve.log"
        proc = start_server(write_config(Path(tmp)), url, port, log)
        stack.callback(stop_server, proc)
        wait_ready(proc, port, log)
        headers["Authorization"] = f"Bearer {key}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stack.callback(conn.close)
        for kind, ask in kinds.items():
            body = json.dumps({"portal": PORTAL, "resource": {"type": "organization", "id": roster.BIG},
                               **ask}).encode()
            summary, answer = timed(conn, body, headers, args.n, 20)
            results[kind] = {**summary, "answer": answer}
            named = "; ".join(f"{r['change']['action']} by {', '.join(r['by']) or 'nobody'}"
                              f"{' + support' if r['support'] else ''}" for r in answer.get("remedies", []))
            ok = ("yes" if summary["p50_ms"] < TARGET_MS else "NO") if "remedies" in ask else "-"
            rows.append([kind, summary["n"], summary["p50_ms"], summary["p99_ms"], ok, named or "-"])
    table(f"POST /v1/authorize, a denial in an organization of {args.accounts:,} accounts (PostgreSQL, over HTTP)",
          ["request", "n", "p50 ms", "p99 ms", "p50 < 10 ms", "remedies"], rows)
    finish(m, args.json, {"accounts": args.accounts, "others": args.others, "results": results})


if __name__ == "__main__":
    main()
