"""granian's workers x blocking threads for `serve`, at 1, 8 and 32 connections, on SQLite and PostgreSQL.

Not a test. For each (workers, threads) of the matrix, starts the real `portal-authz serve` with those
settings (logging quiet, otherwise as shipped; granian's backpressure stays service/server.py's
BACKPRESSURE per worker), seeded like bench/peers.py, and loads POST /v1/authorize, the batch of 100
(1 connection) and GET /healthz with wrk (bench/peers.py's `bench_portal`). Prints one table per
backend: req/s and p99 per connection count, so the shipped default can be chosen from figures.

    python bench/serving.py [--seconds 3] [--backend sqlite|postgres|both] [--matrix 2x1,2x2,2x4,3x2]

About 25 s per setting and backend with --seconds 3 (the default matrix: ~3.5 min for both backends).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import ROOT, ensure_wrk, fmt_load, machine, print_machine, table  # noqa: E402
from bench.peers import bench_portal  # noqa: E402
from service.config import load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--matrix", default="2x1,2x2,2x4,3x2", help="workers x threads, comma separated")
    args = parser.parse_args()
    started = time.monotonic()
    m = machine()
    ensure_wrk()
    print_machine("granian workers x threads for portal-authz serve", m, f"{args.seconds:g} s per wrk level")
    config = load_config(ROOT / "config.yaml")
    matrix = [tuple(int(n) for n in item.split("x")) for item in args.matrix.split(",")]
    backends = ["SQLite", "PostgreSQL"] if args.backend == "both" else [
        {"sqlite": "SQLite", "postgres": "PostgreSQL"}[args.backend]]
    with tempfile.TemporaryDirectory(prefix="portal-authz-serving-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        pg = None
        for backend in backends:
            rows = []
            for n, (workers, threads) in enumerate(matrix):
                where = tmp / f"{backend}-{workers}x{threads}"
                where.mkdir()
                if backend == "SQLite":
                    url = f"sqlite:///{where / 'bench.db'}"
                else:
                    if pg is None:
                        from tests.fixtures.postgres import start_postgres

                        pg = stack.enter_context(start_postgres())
                    url = pg.create_database(f"serving_{n}")
                found = bench_portal(where, backend, url, config, args.seconds, True,
                                     tree=f" {workers}x{threads}", server={"engine": "granian", "workers": workers,
                                                                           "threads": threads})
                rows.append(found)
            headers = ["workers x threads"]
            for label in ("authorize c=1", "authorize c=8", "authorize c=32", "batch c=1", "healthz c=32"):
                headers += [f"{label} req/s", "p99 ms"]
            out = []
            for (workers, threads), found in zip(matrix, rows):
                at = {(r["kind"], r["connections"]): r for r in found}
                line = [f"{workers} x {threads}"]
                for kind, c in (("authorize", 1), ("authorize", 8), ("authorize", 32), ("batch", 1),
                                ("healthz", 32)):
                    r = at[(kind, c)]
                    line += [r["per_s"], r["p99_ms"]]
                out.append(line)
            table(f"{backend}: granian workers x threads (backpressure 512 per worker)", headers, out)
    print(f"\nload average at start {fmt_load(m['loadavg_at_start'])}, at the end {fmt_load(os.getloadavg())}; "
          f"the run took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
