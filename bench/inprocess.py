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
`--instructions`: instead of time, the instructions per request of the app's process (Python, the driver, SQLite
itself; not the kernel's, nor PostgreSQL's server), counted by valgrind's callgrind as bench/instructions.py counts
them: a figure the machine's load does not move, for comparing two trees (run the script from each).

    python bench/inprocess.py [--quick] [--backend sqlite|postgres|both] [--accounts 50000] [--questions 60000]
                              [--warmup 20000] [--rounds 3] [-n 10000] [--endpoint authorize|evaluation]
                              [--backend-cpu] [--profile 30] [--profile-out FILE] [--logs] [--json out.json]
    python bench/inprocess.py --instructions --warmup 2000 -n 1000 [--backend ...]   # valgrind: ~2 min a backend

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import (ROOT, arguments, backends, begin, callgrind_total, cpu_ns, dumps, finish,  # noqa: E402
                           sized, write_config, wsgi_poster)
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


def backend_cpu_ns(database) -> int:
    """The CPU time of the PostgreSQL backends serving this process's read pool (/proc/PID/schedstat), in ns."""
    total = 0
    for pid in backend_pids(database):
        try:
            total += cpu_ns(pid)
        except (OSError, ValueError, IndexError):
            pass
    return total


def backend_pids(database) -> list[int]:
    with database.read_engine.connect() as connection:  # the pool's one hot connection (one thread, LIFO)
        return [connection.connection.dbapi_connection.info.backend_pid]


def served_app(url: str, config_path: Path):
    """The app as a `serve` worker builds it, over `url`."""
    from service.config import load_config
    from service.observe import serving
    from service.policy import Policy
    from service.server import settle_heap

    os.environ["PORTAL_AUTHZ_DATABASE_URL"] = url
    config = load_config(config_path)
    serving.prepare(config)
    from service.app import create_app

    app = create_app(config, policy=Policy(config.policy_path))
    settle_heap()
    return app


def endpoint(name: str):
    """(path, body maker) of an endpoint this script asks."""
    if name == "authorize":
        return "/v1/authorize", portal_body
    return f"/authzen/{PORTAL}/access/v1/evaluation", evaluation_body


def run(name: str, url: str, config_path: Path, population, asked, args) -> dict:
    from service.config import load_config

    key, loaded = seed(url, load_config(config_path), population)
    app = served_app(url, config_path)
    database = app.extensions["portal_authz"].database
    path, make = endpoint(args.endpoint)
    bodies = [dumps(make(q)) for q in asked]
    call = wsgi_poster(app, path, key)
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


def worker(url: str, config_path: str, key: str, path: str, bodies_file: str, warmup: int) -> None:
    """--instructions' worker (under callgrind): the app over `url`; `warmup` requests of the bodies, then on each
    stdin line `N` the next N, answering `done`; `quit` ends it."""
    import logging

    logging.disable(logging.WARNING)  # start-up warnings say nothing about the figures
    app = served_app(url, Path(config_path))
    bodies = Path(bodies_file).read_bytes().split(b"\n")
    call = wsgi_poster(app, path, key)
    for body in bodies[:warmup]:
        call(body)
    print("ready", flush=True)
    at = warmup
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        n = int(line)
        for body in bodies[at:at + n]:
            call(body)
        at += n
        print("done", flush=True)
    app.extensions["portal_authz"].database.dispose()


def instructions(name: str, url: str, config_path: Path, population, asked, args) -> dict:
    """Instructions per request of this process's side (the app, the driver; not the kernel's, nor PostgreSQL's
    server): the app in a worker under valgrind's callgrind (as bench/instructions.py runs it), counting on for
    `-n` distinct questions after `--warmup` (smaller here: every request costs ~50 times more under valgrind)."""
    import shutil
    import subprocess

    key, _ = seed(url, _config(config_path), population)
    path, make = endpoint(args.endpoint)
    out = Path(tempfile.mkdtemp(prefix="portal-authz-inprocess-"))
    bodies = out / "bodies"
    bodies.write_bytes(b"\n".join(dumps(make(q)) for q in asked[:args.warmup + args.n * args.rounds]))
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}/callgrind.%p", sys.executable, __file__, "--worker", url,
                             str(config_path), key, path, str(bodies), str(args.warmup)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})

    def control(*options: str) -> None:
        subprocess.run(["callgrind_control", *options, str(proc.pid)], capture_output=True, check=True)

    print(f"\n== {name}: POST {path} under callgrind, {args.warmup:,} warm-up requests, then {args.rounds} rounds "
          f"of {args.n:,}", flush=True)
    rounds = []
    try:
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("bench: the worker did not start (run it without valgrind to see why)")
        for number in range(1, args.rounds + 1):
            control("--zero")
            control("--instr=on")
            proc.stdin.write(f"{args.n}\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "done":
                raise SystemExit("bench: the worker failed")
            control("--instr=off")
            total = callgrind_total(out, proc.pid, f"round{number}")
            if total is None:
                raise SystemExit("bench: no callgrind dump")
            rounds.append(total / args.n)
            print(f"  round {number}: {total / args.n / 1000:,.1f}k instructions per request", flush=True)
    finally:
        proc.stdin.close()  # the worker's end of input: it stops
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(out, ignore_errors=True)
    ordered = sorted(rounds)
    print(f"  {name}: instructions per request, median of {len(rounds)} rounds: {ordered[len(ordered) // 2] / 1000:,.1f}k",
          flush=True)
    return {"path": path, "instructions": rounds, "median_instructions": ordered[len(ordered) // 2]}


def _config(config_path: Path):
    from service.config import load_config

    return load_config(config_path)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(*argv[1:6], int(argv[6]))
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
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per request under callgrind instead (valgrind; slow: a smaller --warmup "
                             "and -n, e.g. --warmup 2000 -n 1000)")
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
            measure = instructions if args.instructions else run
            results[backend.name] = measure(backend.name, backend.database("inprocess"), config_path, population,
                                            asked, args)
    finish(m, args.json, {"accounts": args.accounts, "endpoint": args.endpoint, "results": results})


if __name__ == "__main__":
    main()
