"""Every decision endpoint, in process, CPU and wall time per request. A benchmark script, not a test.

For SQLite and a throw-away PostgreSQL (tests/fixtures/postgres.py), seeded with bench/decisions.py's
personas, the app as `serve` builds it (create_app, observe hooks on) is called as a WSGI server calls
it (one environ built once per endpoint, so no test client's cost is counted), for:

  - POST /v1/authorize                         bench.member may `claims` on BENCH-0001
  - POST /v1/authorize/batch                   10 checks of the same actor
  - POST /v1/authorized-actions                bench.admin on bench.member
  - POST /authzen/ahcccs/access/v1/evaluation  the /v1/authorize question
  - POST /authzen/ahcccs/access/v1/evaluations 10 items, defaults merged

Each answer is checked (200, the expected body) before anything is timed. The endpoints are timed in
`--rounds` alternating rounds of -n requests, so a change in the machine's load falls on all of them;
the figure per endpoint is the median round's CPU µs per request (time.process_time: what the process
spent, the least noisy figure on a shared machine) and its wall µs.

    python bench/endpoints.py [--quick] [-n 500] [--rounds 5] [--backend sqlite|postgres|both] [--only authorize]
                              [--no-memo] [--oso] [--json out.json]

`--no-memo` serves with no memo, so every request is decided as a question never asked before (a miss);
`--oso` asks oso alone (not the policy compiled to Python, service/polar_compile.py): with `--no-memo`,
a miss before and after the compiled evaluator.

Run from another tree (`python OTHER_TREE/bench/endpoints.py`) for a before figure: the script imports
the `service` package of the tree it sits in.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import ROOT, arguments, backends, begin, finish, wsgi_caller  # noqa: E402
from bench.decisions import seed  # noqa: E402
from service.app import create_app  # noqa: E402
from service.config import load_config  # noqa: E402
from service.policy import Policy  # noqa: E402

ORG = "BENCH-0001"
CLAIMS = {"action": "claims", "resource": {"type": "organization", "id": ORG}}
SUBJECT = {"type": "account", "id": "bench.member"}
ENDPOINTS = (
    ("authorize", "/v1/authorize",
     {"portal": "ahcccs", "actor": "bench.member", **CLAIMS}, b'"allowed":true'),
    ("batch of 10", "/v1/authorize/batch",
     {"portal": "ahcccs", "actor": "bench.member", "checks": [CLAIMS] * 10}, b'"allowed":true'),
    ("authorized-actions", "/v1/authorized-actions",
     {"portal": "ahcccs", "actor": "bench.admin",
      "resource": {"type": "account", "id": "bench.member", "organization": ORG}}, b'"actions":['),
    ("authzen evaluation", "/authzen/ahcccs/access/v1/evaluation",
     {"subject": SUBJECT, "action": {"name": "claims"}, "resource": {"type": "organization", "id": ORG}},
     b'"decision":true'),
    ("authzen evaluations (10)", "/authzen/ahcccs/access/v1/evaluations",
     {"subject": SUBJECT, "resource": {"type": "organization", "id": ORG},
      "evaluations": [{"action": {"name": "claims"}}] * 10}, b'"decision":true'),
)


def run(backend: str, url: str, config, n: int, rounds: int, only: str | None = None,
        memo: bool = True, compiled: bool = True) -> list[dict]:
    database, key = seed(url, config)
    policy = Policy(config.policy_path, **({} if memo else {"memo_size": 0}), compile=compiled)
    app = create_app(config, database=database, policy=policy)
    calls = [(name, wsgi_caller(app, path, body, key, expect)) for name, path, body, expect in ENDPOINTS
             if only is None or name == only]
    for _, call in calls:
        for _ in range(200):  # warm: compiled statements, prepared statements, the policy's memo
            call()
    cpu: dict[str, list[float]] = {name: [] for name, _ in calls}
    wall: dict[str, list[float]] = {name: [] for name, _ in calls}
    for _ in range(rounds):
        for name, call in calls:
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                call()
            cpu[name].append((time.process_time() - started_cpu) / n * 1e6)
            wall[name].append((time.perf_counter() - started) / n * 1e6)
    database.dispose()
    rows = [{"backend": backend, "endpoint": name, "cpu_us": statistics.median(cpu[name]),
             "wall_us": statistics.median(wall[name])} for name, _ in calls]
    engine = ("compiled" if policy.compiled else "oso") + ("" if memo else ", no memo")
    print(f"\n== {backend} ({engine}): median of {rounds} rounds of {n} requests")
    print(f"{'endpoint':28} {'CPU µs/req':>11} {'wall µs/req':>12}")
    for row in rows:
        print(f"{row['endpoint']:28} {row['cpu_us']:11.0f} {row['wall_us']:12.0f}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "-n 100, 2 rounds (a smoke run)", backend="both")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=[name for name, *_ in ENDPOINTS], default=None, help="one endpoint")
    parser.add_argument("--no-memo", action="store_true", help="every request a miss")
    parser.add_argument("--oso", action="store_true", help="oso alone, not the compiled policy")
    args = parser.parse_args(argv)
    n, rounds = (100, 2) if args.quick else (args.n, args.rounds)
    m = begin("bench/endpoints.py: every decision endpoint, in process")
    config = load_config(ROOT / "config.yaml")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for backend in backends(args.backend, Path(tmp), stack):
            rows += run(backend.name, backend.database("endpoints"), config, n, rounds, args.only,
                        not args.no_memo, not args.oso)
    finish(m, args.json, {"rows": rows})


if __name__ == "__main__":
    main()
