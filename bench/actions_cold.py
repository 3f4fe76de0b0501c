"""`POST /v1/authorized-actions` over HTTP about accounts never asked about, one request at a time. A benchmark
script, not a test.

Issue 23's target: `authorized-actions` on an account never asked about answers in under 2 ms p50 over HTTP.
This bulk-loads bench/mixed.py's portal (`--accounts` ahcccs accounts in organizations of 100, statuses mixed
as in life), starts the real `portal-authz serve` (as shipped, the demo off; `--quiet-logs` as in mixed.py)
and asks, on one keep-alive connection and one request at a time, what an admin of each organization may do
to `-n` accounts of it, each account once (the admin's own account and its fellow admin left out). Every
answer is a question the server has never been asked; the policy's memo still answers an account whose
facts have the shape of one seen before (service/canonical.py), as it would in a portal. The first `--warmup`
requests (other accounts) are not counted. Prints p50/p90/p99 wall per request as the caller sees it, and
how many of the actions each answer listed (so that the answers are not all empty).

    python bench/actions_cold.py [--quick] [--accounts 20000] [-n 2000] [--warmup 200]
                                 [--backend sqlite|postgres|both] [--quiet-logs] [--json out.json]

--quick: 2,000 accounts, 300 requests (a smoke run; figures meaningless).
"""
from __future__ import annotations

import http.client
import json
import random
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench import mixed  # noqa: E402
from bench._common import ROOT, arguments, backends, begin, dumps, finish, ms_summary, percentile, sized, table  # noqa: E402

TARGET_P50_MS = 2.0


def pairs(population: list[mixed.Person], count: int, seed: int = 29) -> list[tuple[str, mixed.Person]]:
    """(an admin of the organization, an account of it that is not an admin): each account at most once."""
    admins: dict[str, str] = {}
    for person in population:
        if person.role == "admin":
            admins.setdefault(person.organization, person.username)
    members = [p for p in population if p.role != "admin" and p.organization in admins]
    random.Random(seed).shuffle(members)
    return [(admins[p.organization], p) for p in members[:count]]


def body(admin: str, target: mixed.Person) -> bytes:
    return dumps({"portal": mixed.PORTAL, "actor": admin,
                  "resource": {"type": "account", "id": target.username, "organization": target.organization}})


def ask(port: int, bodies: list[bytes], headers: dict) -> tuple[list[int], Counter]:
    """Each body once, in order, on one keep-alive connection: the wall time of each (ns) and how many actions
    the answers listed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, listed = [], Counter()
    try:
        for data in bodies:
            started = time.perf_counter_ns()
            conn.request("POST", "/v1/authorized-actions", body=data, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            latencies.append(time.perf_counter_ns() - started)
            if response.status != 200:
                raise SystemExit(f"bench: authorized-actions answered {response.status} {answer[:300]!r}")
            listed[len(json.loads(answer)["actions"])] += 1
    finally:
        conn.close()
    return latencies, listed


def run(tmp: Path, backend: str, url: str, config, population, asked, warmup: int, quiet_logs: bool) -> dict:
    with mixed.served(tmp, backend, url, config, population, quiet_logs) as (port, headers, _loaded, _pid):
        bodies = [body(admin, target) for admin, target in asked]
        ask(port, bodies[:warmup], headers)  # connections, prepared statements; these accounts are not counted
        latencies, listed = ask(port, bodies[warmup:], headers)
    summary = {**ms_summary(latencies), "p90_ms": percentile(sorted(latencies), 90) / 1e6}
    print(f"  {backend}: n={len(latencies)}  p50 {summary['p50_ms']:.2f} ms  p90 {summary['p90_ms']:.2f} ms  "
          f"p99 {summary['p99_ms']:.2f} ms; actions listed per answer {dict(sorted(listed.items()))}", flush=True)
    return {"backend": backend, "n": len(latencies), **summary, "listed": dict(listed)}


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "2,000 accounts, 300 requests (a smoke run)", backend="both")
    parser.add_argument("--accounts", type=int, default=None, help="accounts in the portal (default 20,000)")
    parser.add_argument("-n", type=int, default=None, help="accounts asked about, each once (default 2,000)")
    parser.add_argument("--warmup", type=int, default=200, help="requests before the measured ones")
    parser.add_argument("--quiet-logs", action="store_true",
                        help="portal-authz at log level warning without its access log (default: as shipped)")
    args = sized(parser.parse_args(argv), accounts=(2_000, 20_000), n=(300, 2_000))
    started = time.monotonic()
    from service.config import load_config

    m = begin("bench/actions_cold.py: authorized-actions over HTTP about accounts never asked about")
    config = load_config(ROOT / "config.yaml")
    population = mixed.people(args.accounts)
    asked = pairs(population, args.warmup + args.n)
    if len(asked) < args.warmup + args.n:
        raise SystemExit(f"bench: only {len(asked)} non-admin accounts for {args.warmup + args.n} requests")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for backend in backends(args.backend, Path(tmp), stack):
            rows.append(run(backend.folder, backend.name, backend.database("actions"), config, population, asked,
                            args.warmup, args.quiet_logs))
    table("authorized-actions over HTTP, each account asked about once, one request at a time",
          ["backend", "n", "p50 ms", "p90 ms", "p99 ms", f"p50 < {TARGET_P50_MS:g} ms"],
          [[r["backend"], r["n"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}",
            "met" if r["p50_ms"] < TARGET_P50_MS else "NOT met"] for r in rows])
    finish(m, args.json, {"rows": rows}, started)


if __name__ == "__main__":
    main()
