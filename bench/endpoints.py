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
                              [--no-memo] [--oso] [--baseline TREE] [--json out.json]

`--no-memo` serves with no memo, so every request is decided as a question never asked before (a miss);
`--oso` asks oso alone (not the policy compiled to Python, service/polar_compile.py): with `--no-memo`,
a miss before and after the compiled evaluator.

Run from another tree (`python OTHER_TREE/bench/endpoints.py`) for a before figure: the script imports
the `service` package of the tree it sits in. On a shared machine two such runs minutes apart differ by a
third; `--baseline OTHER_TREE` (this script copied there) times both trees in turns instead, each in its own
worker process, round after round of -n requests (`-n 100 --rounds 60`: short rounds, many of them), and
prints the median and lower quartile of each tree's rounds.
"""
from __future__ import annotations

import argparse
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


def _serve(url: str, config, only: str | None = None, memo: bool = True, compiled: bool = True):
    """The seeded database, per endpoint a warm caller, and the policy: (database, [(name, call), ...], policy)."""
    database, key = seed(url, config)
    options = {**({} if memo else {"memo_size": 0}), **({} if compiled else {"compile": False})}
    policy = Policy(config.policy_path, **options)  # no option named unless asked: a before tree may lack it
    app = create_app(config, database=database, policy=policy)
    calls = [(name, wsgi_caller(app, path, body, key, expect)) for name, path, body, expect in ENDPOINTS
             if only is None or name == only]
    for _, call in calls:
        for _ in range(200):  # warm: compiled statements, prepared statements, the policy's memo
            call()
    return database, calls, policy


def worker(backend: str) -> None:
    """--baseline's worker: serve every endpoint on `backend`; each stdin line `INDEX N` runs N requests of
    ENDPOINTS[INDEX] and answers the CPU ns per request; `quit` ends it."""
    import gc
    import logging

    logging.disable(logging.WARNING)
    config = load_config(ROOT / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        (chosen,) = list(backends(backend, Path(tmp), stack))
        database, calls, _policy = _serve(chosen.database("endpoints"), config)
        gc.collect()
        gc.freeze()  # as a serving worker does: the start-up heap is never traversed again
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            index, n = map(int, line.split())
            call = calls[index][1]
            started = time.process_time_ns()
            for _ in range(n):
                call()
            print((time.process_time_ns() - started) / n, flush=True)
        database.dispose()


def alternate(backend: str, baseline: Path, n: int, rounds: int, only: str | None) -> list[dict]:
    """This tree and `baseline` (its own copy of this script), each in a worker process, timed in turns: round
    after round of n requests of one endpoint, the order swapped each round, so both see the same moments of a
    shared machine's load. The figures are the median and lower quartile of the rounds' CPU µs per request."""
    import subprocess

    trees = {"this tree": Path(__file__), "baseline": baseline / "bench" / "endpoints.py"}
    workers = {tree: subprocess.Popen([sys.executable, str(script), "--worker", backend], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for tree, script in trees.items()}
    try:
        for tree, proc in workers.items():
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"bench: the {tree}'s worker did not start (does {trees[tree]} take --worker?)")
        chosen = [(i, name) for i, (name, *_rest) in enumerate(ENDPOINTS) if only in (None, name)]
        cpu = {(tree, name): [] for tree in workers for _, name in chosen}
        for r in range(rounds):
            for index, name in chosen:
                for tree in (list(workers) if r % 2 == 0 else list(workers)[::-1]):
                    proc = workers[tree]
                    proc.stdin.write(f"{index} {n}\n")
                    proc.stdin.flush()
                    cpu[(tree, name)].append(float(proc.stdout.readline()) / 1000)
        for proc in workers.values():
            proc.stdin.write("quit\n")
            proc.stdin.flush()
    finally:
        for proc in workers.values():
            proc.wait(timeout=60)
    rows = []
    print(f"\n== {backend}: {rounds} rounds of {n} requests, this tree and {baseline} in turns; CPU µs per request")
    print(f"{'endpoint':28} {'this median':>12} {'baseline median':>16} {'this p25':>9} {'baseline p25':>13}")
    for _, name in chosen:
        figures = {tree: (statistics.median(cpu[(tree, name)]), statistics.quantiles(cpu[(tree, name)], n=4)[0])
                   for tree in workers}
        (ours, ours25), (theirs, theirs25) = figures["this tree"], figures["baseline"]
        print(f"{name:28} {ours:12.0f} {theirs:16.0f} {ours25:9.0f} {theirs25:13.0f}")
        rows.append({"backend": backend, "endpoint": name, "cpu_us_median": ours, "cpu_us_p25": ours25,
                     "baseline_cpu_us_median": theirs, "baseline_cpu_us_p25": theirs25})
    return rows


def run(backend: str, url: str, config, n: int, rounds: int, only: str | None = None,
        memo: bool = True, compiled: bool = True) -> list[dict]:
    database, calls, policy = _serve(url, config, only, memo, compiled)
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
    engine = ("compiled" if getattr(policy, "compiled", False) else "oso") + ("" if memo else ", no memo")
    print(f"\n== {backend} ({engine}): median of {rounds} rounds of {n} requests")
    print(f"{'endpoint':28} {'CPU µs/req':>11} {'wall µs/req':>12}")
    for row in rows:
        print(f"{row['endpoint']:28} {row['cpu_us']:11.0f} {row['wall_us']:12.0f}")
    return rows


def endpoint_arguments(doc: str, quick: str, *, n: int) -> argparse.ArgumentParser:
    """The options of a benchmark over the decision endpoints (this one, bench/instructions.py): those of every
    benchmark, on both backends unless told, -n requests per endpoint (default `n`), --only one endpoint."""
    parser = arguments(doc, quick, backend="both")
    parser.add_argument("-n", type=int, default=n, help="requests per endpoint")
    parser.add_argument("--only", choices=[name for name, *_ in ENDPOINTS], default=None, help="one endpoint")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1])
    parser = endpoint_arguments(__doc__, "-n 100, 2 rounds (a smoke run)", n=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-memo", action="store_true", help="every request a miss")
    parser.add_argument("--oso", action="store_true", help="oso alone, not the compiled policy")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another tree (with this script copied in) timed in turns with this one")
    args = parser.parse_args(argv)
    n, rounds = (100, 2) if args.quick else (args.n, args.rounds)
    m = begin("bench/endpoints.py: every decision endpoint, in process")
    rows: list[dict] = []
    if args.baseline is not None:
        for backend in ("sqlite", "postgres"):
            if args.backend in (backend, "both"):
                rows += alternate(backend, args.baseline.resolve(), n, rounds, args.only)
        return finish(m, args.json, {"rows": rows})
    config = load_config(ROOT / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for backend in backends(args.backend, Path(tmp), stack):
            rows += run(backend.name, backend.database("endpoints"), config, n, rounds, args.only,
                        not args.no_memo, not args.oso)
    finish(m, args.json, {"rows": rows})


if __name__ == "__main__":
    main()
