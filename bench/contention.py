"""Fifty parallel changes against one account and one organization: status counts and lockout, per backend.

A benchmark script, not a test (tests/test_contention_live.py is the test). For each backend a fresh
`portal-authz serve --workers N` is started (SQLite file; a throw-away PostgreSQL server), seeded
with one organization, its admin, the target account `ian` with security answers and ten members
(tests/fixtures/contention.py); then `--requests` requests leave at once: wrong sign-ins for `ian`
(2 in 5), recovery requests with wrong answers (1 in 5), confirmations with wrong codes (1 in 5),
and the admin sending password recovery to members (1 in 5). Printed: how many answers of each
(kind, status, code), the wall time of the burst, and what the database says of R19 afterwards
(counted failures must be [1, 2, 3], one lock). Repeated `--rounds` times on fresh databases.

    python bench/contention.py [--backend sqlite|postgres|both] [--workers 4] [--requests 50] [--rounds 3]
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable without PYTHONPATH

from bench._common import exit_on_sigterm, machine, print_machine  # noqa: E402
from service.storage.database import Database  # noqa: E402
from tests.fixtures import contention  # noqa: E402
from tests.fixtures.servers import running  # noqa: E402


def one_round(name: str, url: str, tmp: Path, workers: int, requests: int) -> tuple[Counter, dict, float]:
    # The server's log (printed when it stops) stays in `tmp`: the figures are the counts below.
    with redirect_stdout(io.StringIO()), running([name], url, tmp, workers=workers) as (server,):
        database = Database(url)
        key = contention.seed(database, datetime.now(timezone.utc))
        start = time.perf_counter()
        answers = contention.storm(server.base, key, requests)
        wall = time.perf_counter() - start
        held = contention.lockout(database)
        database.dispose()
    return contention.counts(answers), held, wall


def report(backend: str, rounds: list[tuple[Counter, dict, float]]) -> None:
    total: Counter = Counter()
    for counts, _, _ in rounds:
        total.update(counts)
    print(f"\n## {backend}: {len(rounds)} rounds")
    print(f"{'kind':<8} {'status':>6}  {'code':<22} {'answers':>7}")
    for (kind, status, code), n in sorted(total.items(), key=lambda item: (item[0][0], item[0][1])):
        print(f"{kind:<8} {status:>6}  {code or '-':<22} {n:>7}")
    errors = sum(n for (_, status, _), n in total.items() if status >= 500)
    print(f"5xx answers: {errors} (503 busy: {sum(n for (_, s, _), n in total.items() if s == 503)})")
    for i, (_, held, wall) in enumerate(rounds, 1):
        print(f"round {i}: burst {wall:.2f} s  status {held['status']}  counted {held['counted']}  "
              f"failure rows {held['failure_rows']}  locks {held['locks']}")


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_machine("contention: parallel sign-ins, recoveries and admin actions", machine(),
                  f"workers {args.workers}  requests {args.requests}  rounds {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="portal-authz-contention-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.backend in ("sqlite", "both"):
            rounds = []
            for i in range(args.rounds):
                folder = tmp / f"sqlite-{i}"
                folder.mkdir()
                rounds.append(one_round("sqlite", f"sqlite:///{folder / 'bench.db'}", folder, args.workers,
                                        args.requests))
            report("SQLite", rounds)
        if args.backend in ("postgres", "both"):
            from tests.fixtures.postgres import start_postgres

            with start_postgres() as server:
                rounds = []
                for i in range(args.rounds):
                    folder = tmp / f"postgres-{i}"
                    folder.mkdir()
                    rounds.append(one_round("postgres", server.create_database(f"bench{i}"), folder, args.workers,
                                            args.requests))
                report("PostgreSQL", rounds)


if __name__ == "__main__":
    main()
