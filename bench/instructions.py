"""Every decision endpoint, in process: instructions per request counted by valgrind. A benchmark script, not a test.

CPU µs per request (bench/endpoints.py) is the figure that matters, but on a shared machine it swings by a
third from one round to the next, so a change of a few µs cannot be told from the load. The instructions a
request executes do not depend on the load: this counts them with valgrind's callgrind (`apt-get install
valgrind`), for the same endpoints, bodies and app as bench/endpoints.py, so two trees can be compared
run by run without alternating them.

Each backend's app runs in a worker process under `valgrind --tool=callgrind --instr-atstart=no` (the
database server, for PostgreSQL, runs outside it); after a warm-up, counting is switched on
(`callgrind_control -i on`) for -n requests of one endpoint, then off, and the count dumped. The figure is
the user-space instructions of the worker per request: Python, the driver, SQLite itself (in process),
not the kernel's (both trees' requests make the same system calls: `strace -c` shows two `fcntl` and one
`getrandom` per SQLite `/v1/authorize`, one `sendto`, `poll`, `recvfrom` and `getrandom` on PostgreSQL) and
not PostgreSQL's server. Instructions are not time: a cache miss costs more than an instruction. Use them to
see a change of a few percent that µs cannot show, and endpoints.py for the µs.

    python bench/instructions.py [--quick] [-n 200] [--backend sqlite|postgres|both] [--only authorize] [--json out]

Run from another tree (`python OTHER_TREE/bench/instructions.py`, the script copied there with
bench/endpoints.py, whose endpoints and options it takes) for a before figure: the worker imports the `service` package of the tree
the script sits in. Each worker takes about 20 s to start under valgrind; a full run about two minutes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import ROOT, arguments, backends, begin, callgrind_total, finish  # noqa: E402


def worker(backend: str) -> None:
    """Serve the endpoints of bench/endpoints.py on `backend`; each stdin line `INDEX N` runs N requests of
    ENDPOINTS[INDEX] and answers `done`; `quit` ends it."""
    import logging

    from bench._common import wsgi_caller
    from bench.decisions import seed
    from bench.endpoints import ENDPOINTS
    from service.app import create_app
    from service.config import load_config
    from service.policy import Policy

    logging.disable(logging.WARNING)  # the app's start-up warnings say nothing about the figures
    config = load_config(ROOT / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        (chosen,) = list(backends(backend, Path(tmp), stack))
        database, key = seed(chosen.database("instructions"), config)
        app = create_app(config, database=database, policy=Policy(config.policy_path))
        calls = [wsgi_caller(app, path, body, key, expect) for _name, path, body, expect in ENDPOINTS]
        for call in calls:
            for _ in range(50):  # warm: compiled statements, prepared statements, the policy's memo
                call()
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            index, n = map(int, line.split())
            for _ in range(n):
                calls[index]()
            print("done", flush=True)
        database.dispose()


def count(backend: str, names: list[str], n: int) -> dict[str, float]:
    """Instructions per request of each endpoint named, in one worker under callgrind."""
    from bench.endpoints import ENDPOINTS

    indexes = {name: i for i, (name, *_rest) in enumerate(ENDPOINTS)}
    out = tempfile.mkdtemp(prefix="portal-authz-instructions-")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/callgrind.%p",
         sys.executable, __file__, "--worker", backend],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"})

    def ask(line: str, expect: str) -> None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline().strip()
        if answer != expect:
            raise SystemExit(f"bench: the worker answered {answer!r}, not {expect!r}")

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(proc.pid)], capture_output=True, check=True)

    figures = {}
    try:
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("bench: the worker did not start (run it without valgrind to see why)")
        for name in names:
            ask(f"{indexes[name]} 10", "done")
            control("--zero")
            control("--instr=on")
            ask(f"{indexes[name]} {n}", "done")
            control("--instr=off")
            total = callgrind_total(Path(out), proc.pid, f"endpoint{indexes[name]}")
            if total is None:
                raise SystemExit(f"bench: no callgrind dump for {name}")
            figures[name] = total / n
        ask("quit", "")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(out, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1])
    from bench.endpoints import ENDPOINTS, endpoint_arguments

    args = endpoint_arguments(__doc__, "-n 20 (a smoke run)", n=200).parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is missing: apt-get install -y valgrind")
    n = 20 if args.quick else args.n
    names = [name for name, *_ in ENDPOINTS if args.only in (None, name)]
    m = begin("bench/instructions.py: every decision endpoint, instructions per request (callgrind)")
    rows = []
    for backend in ("sqlite", "postgres"):
        if args.backend not in (backend, "both"):
            continue
        figures = count(backend, names, n)
        print(f"\n== {backend}: instructions per request, {n} requests each (thousands)")
        for name, value in figures.items():
            print(f"{name:28} {value / 1000:9.1f}k")
            rows.append({"backend": backend, "endpoint": name, "instructions": value})
    finish(m, args.json, {"rows": rows})


if __name__ == "__main__":
    main()
