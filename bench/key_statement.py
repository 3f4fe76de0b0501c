"""The client key in its own statement, sent with the facts statement in psycopg's pipeline mode, beside the
one statement that carries both (today). A benchmark script, not a test.

On a throw-away PostgreSQL (tests/fixtures/postgres.py) seeded with bench/decisions.py's personas, the
statements `/v1/authorize` runs for "bench.member may `claims` on BENCH-0001" are run on the driver as
service/storage/direct.py runs them (the text compiled once, plain tuples back), each followed by the
rollback that ends the request's transaction:

  - one statement: the facts and the key row in one UNION ALL (the key's columns overloaded);
  - two statements: the key's own, then the facts without it (two round trips);
  - two, pipelined: both in psycopg's pipeline mode (one round trip).

The three answer the same rows (checked first). They are timed in alternating rounds, so a change in the
machine's load falls on all three; the figure is the median round's wall and client CPU µs per request.

    python bench/key_statement.py [--quick] [-n 2000] [--rounds 7] [--json out.json]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from sqlalchemy import select  # noqa: E402

from bench._common import ROOT, arguments, backends, begin, finish  # noqa: E402
from bench.decisions import seed  # noqa: E402
from service.config import load_config  # noqa: E402
from service.storage import facts as stored  # noqa: E402
from service.storage.models import ClientKey  # noqa: E402


def variants(database, key_id: str) -> dict:
    """The three ways to read the facts and the key, each a function of no arguments returning the rows."""
    values = {"portal": "ahcccs", "usernames": ["bench.member"], "organizations": ["BENCH-0001"], "targets": [],
              "key_id": key_id}
    alone = {"portal": "ahcccs", "usernames": [], "organizations": [], "targets": [], "key_id": key_id}
    without = {**values, "key_id": None}
    dialect = database.engine.dialect
    shapes = {name: stored.FACTS._shape(dialect, v) for name, v in (("both", values), ("key", alone),
                                                                    ("facts", without))}
    parameters = {name: stored.FACTS._parameters(shapes[name], v)
                  for name, v in (("both", values), ("key", alone), ("facts", without))}
    raw = database.engine.raw_connection()
    conn = raw.driver_connection

    def run(names, pipelined=False):
        """The statements' rows; plain, each waits for its answer (a round trip each); pipelined, all are sent
        before the first answer is read (one round trip)."""
        with ExitStack() as stack:
            if pipelined:
                stack.enter_context(conn.pipeline())
            cursors = [stack.enter_context(conn.cursor()) for _ in names]
            rows = []
            for cursor, name in zip(cursors, names):
                cursor.execute(shapes[name].sql, parameters[name])
                if not pipelined:
                    rows += cursor.fetchall()
            for cursor in cursors if pipelined else ():
                rows += cursor.fetchall()
        conn.rollback()  # the end of the request's transaction
        return rows

    return {"one statement (today)": lambda: run(["both"]), "two statements": lambda: run(["key", "facts"]),
            "two, pipelined": lambda: run(["key", "facts"], pipelined=True)}, raw


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "-n 100, 2 rounds (a smoke run)")
    parser.add_argument("-n", type=int, default=2000, help="requests per variant and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    n, rounds = (100, 2) if args.quick else (args.n, args.rounds)
    m = begin("bench/key_statement.py: the client key's own statement, pipelined, beside the one statement",
              f"{rounds} alternating rounds of {n} per variant, on the driver, PostgreSQL")
    config = load_config(ROOT / "config.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        (postgres,) = backends("postgres", Path(tmp), stack)
        database, _ = seed(postgres.database(), config)
        with database.engine.connect() as connection:
            key_id = connection.execute(select(ClientKey.key_id)).scalar_one()
        ways, raw = variants(database, key_id)
        stack.callback(database.dispose)
        stack.callback(raw.close)
        answers = [sorted(map(tuple, way())) for way in ways.values()]
        if any(answer != answers[0] for answer in answers):
            raise SystemExit("bench: the three ways answer different rows")
        for way in ways.values():
            for _ in range(max(50, n // 10)):
                way()
        wall: dict[str, list[float]] = {name: [] for name in ways}
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, way in ways.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                for _ in range(n):
                    way()
                wall[name].append((time.perf_counter() - started) / n * 1e6)
                cpu[name].append((time.process_time() - started_cpu) / n * 1e6)
    print(f"\n{'variant':24} {'wall µs':>9} {'client CPU µs':>14}")
    for name in ways:
        rows.append({"variant": name, "wall_us": statistics.median(wall[name]), "cpu_us": statistics.median(cpu[name])})
        print(f"{name:24} {rows[-1]['wall_us']:9.0f} {rows[-1]['cpu_us']:14.0f}")
    finish(m, args.json, {"n": n, "rounds": rounds, "rows": rows})


if __name__ == "__main__":
    main()
