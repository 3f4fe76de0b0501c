"""The mixed workload in process: the app's own CPU per decision, without a server, wrk or a second worker beside it.
A benchmark script, not a test.

bench/mixed.py's portal (`--accounts` ahcccs accounts, default 50,000, bulk-loaded) and its questions, in a
SQLite file and in a throw-away PostgreSQL (tests/fixtures/postgres.py). The app is built as a `serve` worker
builds it: the shipped config (the demo off; `--logs` as shipped, else quiet as `mixed.py --quiet-logs`: level
warning, no access log), `serving.prepare` (logging, the multiprocess metrics directory), `create_app` with the
policy, the heap settled. It is called as a WSGI server calls it, one thread, each request a distinct question
drawn from `--questions` (default 60,000): `--warmup` requests first (default 20,000: compiled statements,
prepared statements, the memo as a busy worker has it), then `--rounds` rounds (default 3) of `-n` (10,000),
the questions reshuffled between rounds. Per round: CPU µs per request (`time.process_time`: this process, the kernel's share beside it; on
PostgreSQL its backend's CPU is not in it, `--backend-cpu` adds the backend's from /proc/PID/schedstat) and
wall µs per request. `--profile N`: cProfile (process time) over one more round, the top N functions by own
time. `--endpoint evaluation` asks the same questions of AuthZEN's Access Evaluation instead of /v1/authorize.

    python bench/inprocess.py [--quick] [--backend sqlite|postgres|both] [--accounts 50000] [--questions 60000]
                              [--warmup 20000] [--rounds 3] [-n 10000] [--endpoint authorize|evaluation]
                              [--backend-cpu] [--profile 30] [--profile-out FILE] [--logs] [--json out.json]

--quick: 2,000 accounts, 6,000 questions, 1,000 warm-up, rounds of 1,000 (a smoke run; figures meaningless).
CPU per request is the figure to compare between trees (wall moves with the machine's other work).
"""
from __future__ import annotations

import cProfile
import os
import pstats
import random
import resource
import sys
import tempfile
import time
from contextlib import ExitStack
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import ROOT, arguments, backends, begin, dumps, finish, sized, write_config  # noqa: E402
from bench.mixed import PORTAL, people, portal_body, questions, seed  # noqa: E402

ENDPOINTS = ("authorize", "evaluation")


def evaluation_body(q) -> dict:
    """The mixed question as AuthZEN's Access Evaluation asks it (the resource's organization a property)."""
    if q.target is None:
        resource = {"type": "organization", "id": q.organization}
    else:
        resource = {"type": "account", "id": q.target.username, "properties": {"organization": q.organization}}
    body = {"subject": {"type": "account", "id": q.actor.username}, "action": {"name": q.action},
            "resource": resource}
    if q.permission:
        body["context"] = {"permission": q.permission}
    return body


def caller(app, path: str, key: str):
    """A function that POSTs one body's bytes to `path` as a WSGI server calls the app; any answer but 200 ends
    the run."""
    base = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": f"Bearer {key}"}

    def call(body: bytes) -> bytes:
        environ = dict(base)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = BytesIO(body)
        status = []
        answer = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
        if status != ["200 OK"]:
            raise SystemExit(f"bench: {path}: {status} {answer[:300]!r}")
        return answer

    return call


def backend_cpu_ns(database) -> int:
    """The CPU time of the PostgreSQL backends serving this process's read pool (/proc/PID/schedstat), in ns."""
    total = 0
    for pid in backend_pids(database):
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def backend_pids(database) -> list[int]:
    with database.read_engine.connect() as connection:  # the pool's one hot connection (one thread, LIFO)
        return [connection.connection.dbapi_connection.info.backend_pid]


def run(name: str, url: str, config_path: Path, population, asked, args) -> dict:
    from service.config import load_config
    from service.observe import serving
    from service.policy import Policy
    from service.server import settle_heap

    key, loaded = seed(url, load_config(config_path), population)
    os.environ["PORTAL_AUTHZ_DATABASE_URL"] = url
    config = load_config(config_path)
    serving.prepare(config)
    from service.app import create_app

    app = create_app(config, policy=Policy(config.policy_path))
    settle_heap()
    database = app.extensions["portal_authz"].database
    if args.endpoint == "authorize":
        path, make = "/v1/authorize", portal_body
    else:
        path, make = f"/authzen/{PORTAL}/access/v1/evaluation", evaluation_body
    bodies = [dumps(make(q)) for q in asked]
    call = caller(app, path, key)
    warm, rest = bodies[:args.warmup], bodies[args.warmup:]
    print(f"\n== {name}: {len(population):,} accounts loaded in {loaded:.1f} s; POST {path}, "
          f"{len(warm):,} warm-up requests, then {args.rounds} rounds of {args.n:,}", flush=True)
    for body in warm:
        call(body)
    rng = random.Random(7)
    watch = args.backend_cpu and not database.is_sqlite
    rounds = []
    for number in range(1, args.rounds + 1):
        rng.shuffle(rest)
        batch = rest[:args.n]
        backend_before = backend_cpu_ns(database) if watch else 0
        usage, cpu, wall = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
        for body in batch:
            call(body)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime - usage.ru_stime
        figures = {"cpu_us": cpu / len(batch) * 1e6, "kernel_us": kernel / len(batch) * 1e6,
                   "wall_us": wall / len(batch) * 1e6}
        if watch:
            figures["backend_cpu_us"] = (backend_cpu_ns(database) - backend_before) / len(batch) / 1e3
        rounds.append(figures)
        extra = f", backend {figures['backend_cpu_us']:.0f}" if watch else ""
        print(f"  round {number}: CPU {figures['cpu_us']:.0f} µs/request (kernel {figures['kernel_us']:.0f}){extra}, "
              f"wall {figures['wall_us']:.0f}",
              flush=True)
    cpus = sorted(r["cpu_us"] for r in rounds)
    print(f"  {name}: CPU µs per request, median of {len(cpus)} rounds: {cpus[len(cpus) // 2]:.0f}", flush=True)
    if args.profile:
        rng.shuffle(rest)
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for body in rest[:args.n]:
            call(body)
        profiler.disable()
        print(f"  cProfile (process time) over {min(args.n, len(rest)):,} more requests, top {args.profile} by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
        if args.profile_out:
            profiler.dump_stats(args.profile_out)
    database.dispose()
    return {"path": path, "rounds": rounds, "median_cpu_us": cpus[len(cpus) // 2]}


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "2,000 accounts, 6,000 questions, rounds of 1,000 (a smoke run)", backend="both")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--questions", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=None, help="requests per round (10,000)")
    parser.add_argument("--endpoint", choices=ENDPOINTS, default="authorize")
    parser.add_argument("--backend-cpu", action="store_true",
                        help="on PostgreSQL, also the backend's CPU per request (/proc/PID/schedstat)")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP")
    parser.add_argument("--profile-out", type=Path, default=None, help="also dump the profile (pstats) here")
    parser.add_argument("--logs", action="store_true", help="log as shipped (default: quiet, no access log)")
    args = sized(parser.parse_args(argv), accounts=(2_000, 50_000), questions=(6_000, 60_000),
                 warmup=(1_000, 20_000), n=(1_000, 10_000))
    if args.warmup + args.n > args.questions:
        parser.error("--questions must hold the warm-up and one round")
    m = begin("bench/inprocess.py: the mixed workload in process, CPU per request",
              f"{args.accounts:,} accounts, endpoint {args.endpoint}")
    population = people(args.accounts)
    asked = questions(population, args.questions)
    results = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        overrides = {} if args.logs else {"logging": {"level": "warning", "access_log": False}}
        config_path = write_config(Path(tmp), **overrides)
        for backend in backends(args.backend, Path(tmp), stack):
            results[backend.name] = run(backend.name, backend.database("inprocess"), config_path, population,
                                        asked, args)
    finish(m, args.json, {"accounts": args.accounts, "endpoint": args.endpoint, "results": results})


if __name__ == "__main__":
    main()
