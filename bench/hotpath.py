"""Where one POST /v1/authorize spends its time, and how many database round trips it makes. Not a test.

For SQLite and a throw-away PostgreSQL (tests/fixtures/postgres.py), seeded with
bench/decisions.py's personas, the app as `serve` builds it (create_app, observe hooks on)
answers "bench.member may `claims` on BENCH-0001", called as a WSGI server calls it (one environ
built once, so the test client's own cost is not counted):

  - statements per request, counted by an SQLAlchemy `before_cursor_execute` listener;
  - on PostgreSQL, every message the server received per request, from its own log
    (log_statement = all): this counts what the listener cannot see, the pool's pre-ping,
    BEGIN and the ROLLBACK when the session closes;
  - -n requests timed without a profiler (µs per request, the figure to compare), then
    cProfile over -n more: time per layer by cumulative time (the lean path's admission,
    connection, key check and facts statement, decision, observe, JSON answer; Flask's own
    dispatch, which is 0: a decision endpoint never reaches it), and the top functions by own time.

    python bench/hotpath.py [--quick] [-n 2000] [--backend sqlite|postgres|both] [--top 25] [--json out.json]

About 30 s (quick: 10 s). On a shared machine the absolute times are noisy; the counts are exact.
"""
from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from sqlalchemy import event  # noqa: E402

from bench._common import ROOT, arguments, backends, begin, finish, wsgi_caller  # noqa: E402
from bench.decisions import FAMILIES, seed  # noqa: E402
from service.app import create_app  # noqa: E402
from service.config import load_config  # noqa: E402
from service.policy import Policy  # noqa: E402

ALLOWED = FAMILIES[0]

# Layers: (label, (file fragment, function name)) whose cumulative time is the layer's.
LAYERS = [
    ("whole request (the app's WSGI callable)", ("flask/app.py", "__call__")),
    ("lean path (service/api/lean.py)", ("service/api/lean.py", "__call__")),
    ("  admission (service/api/admission.py)", ("service/api/admission.py", "admit")),
    ("    body: parse and validate", ("service/api/admission.py", "_body")),
    ("  connection open + close (Database.reading)", ("service/storage/database.py", "reading")),
    ("  client key check (clients.check)", ("service/domain/clients.py", "check")),
    ("    facts statement (load_facts)", ("service/storage/facts.py", "load_facts")),
    ("      on the driver (DirectStatement.rows)", ("service/storage/direct.py", "rows")),
    ("      rows to facts (_assemble)", ("service/storage/facts.py", "_assemble")),
    ("  Decider.decide (facts to answer)", ("service/domain/decisions.py", "decide")),
    ("    policy.decide", ("service/policy.py", "decide")),
    ("  observe: decision metrics and log", ("service/observe/http.py", "decided")),
    ("  observe: request metrics, access log", ("service/observe/http.py", "end")),
    ("  JSON answer (JSONEncoder.encode)", ("json/encoder.py", "encode")),
    ("Flask's dispatch (Flask.wsgi_app): 0", ("flask/app.py", "wsgi_app")),
    ("pool checkout (incl. idle ping)", ("sqlalchemy/pool/base.py", "_checkout")),
]


def layer_times(stats: pstats.Stats, n: int) -> list[tuple[str, float, int]]:
    out = []
    for label, (fragment, name) in LAYERS:
        total, calls = 0.0, 0
        for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
            if func == name and filename.endswith(fragment):
                total += ct
                calls += nc
        out.append((label, total / n * 1e6, calls / n))
    return out


def pg_messages(log_path: Path, start: int) -> list[str]:
    text = log_path.read_text(errors="replace")[start:]
    return [line.split("statement: ", 1)[-1].split("execute ", 1)[-1][:60]
            for line in text.splitlines() if "LOG:  statement:" in line or "LOG:  execute" in line]


def run(backend: str, url: str, config, n: int, top: int, server=None) -> dict:
    database, key = seed(url, config)
    app = create_app(config, database=database, policy=Policy(config.policy_path))
    call = wsgi_caller(app, ALLOWED.path, ALLOWED.body(), key, b'"allowed":true')
    for _ in range(200):  # warm: compiled statements, prepared statements, the policy's memo
        call()

    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split())[:60])

    event.listen(database.engine, "before_cursor_execute", count)
    messages: list[str] = []
    if server is not None:
        server._admin("ALTER SYSTEM SET log_statement = 'all'")
        server._admin("SELECT pg_reload_conf()")
        time.sleep(0.5)
        mark = len(server.log_file.read_text(errors="replace"))
        for _ in range(10):
            call()
        time.sleep(0.3)
        messages = pg_messages(server.log_file, mark)
        server._admin("ALTER SYSTEM SET log_statement = 'none'")
        server._admin("SELECT pg_reload_conf()")
        time.sleep(0.5)
        statements.clear()
    for _ in range(10):
        call()
    event.remove(database.engine, "before_cursor_execute", count)

    started = time.perf_counter()
    for _ in range(n):
        call()
    plain = (time.perf_counter() - started) / n * 1e6

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    print(f"\n== {backend}: POST {ALLOWED.path} ({ALLOWED.name}), {n} requests under cProfile, "
          f"{wall / n * 1e6:.0f} µs per request profiled, {plain:.0f} µs unprofiled")
    print(f"SQLAlchemy statements per request: {len(statements) / 10:g}")
    for s in dict.fromkeys(statements):
        print(f"    {s}")
    if server is not None:
        print(f"PostgreSQL messages per request (server log, all round trips): {len(messages) / 10:g}")
        for m in dict.fromkeys(messages):
            print(f"    {m}")
    print(f"{'layer':42} {'µs/request':>10} {'calls/req':>9}")
    for label, us, calls in layer_times(stats, n):
        print(f"{label:42} {us:10.0f} {calls:9.2f}")
    print(f"top {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)
    database.dispose()
    return {"statements": len(statements) / 10, "messages": len(messages) / 10, "us": wall / n * 1e6,
            "plain_us": plain}


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "-n 300 (a smoke run)", backend="both")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    n = 300 if args.quick else args.n
    m = begin("bench/hotpath.py: one POST /v1/authorize, profiled")
    config = load_config(ROOT / "config.yaml")
    results = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for backend in backends(args.backend, Path(tmp), stack):
            results[backend.name] = run(backend.name, backend.database("profile"), config, n, args.top,
                                        backend.server)
    finish(m, args.json, {"n": n, "results": results})


if __name__ == "__main__":
    main()
