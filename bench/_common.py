"""Helpers shared by the benchmark scripts: figures, the machine, a real server, wrk, bulk loading.

Nothing here asserts a time: the scripts print figures and where they were taken.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # runnable without PYTHONPATH

import yaml  # noqa: E402

CONCURRENCY = (1, 8, 32)


# --- figures -------------------------------------------------------------------------------------

def percentile(ordered: list, p: float):
    """Nearest-rank percentile of an already sorted list."""
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered))) - 1))]


def stats(latencies_ns: list[int], wall_s: float) -> dict:
    """Throughput over the wall time, and nearest-rank p50/p99 in microseconds."""
    ordered = sorted(latencies_ns)
    return {"n": len(ordered), "per_s": len(ordered) / wall_s if wall_s else 0.0,
            "p50_us": percentile(ordered, 50) / 1000, "p99_us": percentile(ordered, 99) / 1000}


def measure(fn, n: int, warmup: int) -> dict:
    """Time n calls one by one with perf_counter_ns after a warm-up (caches, JIT-free but branch-warm)."""
    for _ in range(warmup):
        fn()
    lat = []
    start = time.perf_counter_ns()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        lat.append(time.perf_counter_ns() - t0)
    return stats(lat, (time.perf_counter_ns() - start) / 1e9)


def ms_summary(latencies_ns: list[int]) -> dict:
    """n, p50, p99 and max in milliseconds."""
    ordered = sorted(latencies_ns)
    return {"n": len(ordered), "p50_ms": percentile(ordered, 50) / 1e6, "p99_ms": percentile(ordered, 99) / 1e6,
            "max_ms": ordered[-1] / 1e6}


def table(title: str, headers: list[str], rows: list[list]) -> None:
    """Print an aligned text table; numbers are right-aligned."""
    if not rows:
        print(f"\n## {title}\n(no rows)")
        return
    cells = [[f"{c:,.0f}" if isinstance(c, float) and abs(c) >= 100 else
              f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    left = [isinstance(c, str) for c in rows[0]]  # text columns read left to right, numbers align right

    def line(values):
        return "  ".join(v.ljust(w) if lf else v.rjust(w) for v, w, lf in zip(values, widths, left)).rstrip()

    print(f"\n## {title}\n{line(headers)}\n{line(['-' * w for w in widths])}")
    for row in cells:
        print(line(row))


def fmt_load(load) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def exit_on_sigterm() -> None:
    """SIGTERM (timeout, kill) unwinds like Ctrl-C, so servers and temporary databases are stopped and removed."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# --- the machine ---------------------------------------------------------------------------------

def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def machine() -> dict:
    """Where the figures come from: they mean nothing without it."""
    model = "unknown"
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    memory = None
    try:
        kb = int(re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
        memory = round(kb / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "memory_gib": memory, "python": platform.python_version(), "oso": _version("oso"),
            "flask": _version("flask"), "sqlalchemy": _version("sqlalchemy"), "gunicorn": _version("gunicorn"),
            "granian": _version("granian"), "psycopg": _version("psycopg"), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "loadavg_at_start": os.getloadavg()}


def print_machine(title: str, m: dict, extra: str = "") -> None:
    print(f"# {title}  {m['date']}\n"
          f"cpu: {m['cpu']}  cores: {m['cores']} (usable {m['usable_cores']})  memory: {m['memory_gib']} GiB\n"
          f"python {m['python']}  oso {m['oso']}  flask {m['flask']}  sqlalchemy {m['sqlalchemy']}  "
          f"gunicorn {m['gunicorn']}  granian {m['granian']}  psycopg {m['psycopg']}  sqlite {m['sqlite']}\n"
          f"platform: {m['platform']}\nload average at start: {fmt_load(m['loadavg_at_start'])} "
          f"(1/5/15 min; above ~0.5 on this machine, other work skews every figure)" + (f"\n{extra}" if extra else ""),
          flush=True)


# --- a benchmark's frame: its options, its start, its databases, its end --------------------------

BACKENDS = ("sqlite", "postgres", "both")


def arguments(doc: str, quick: str, *, backend: str | None = None) -> argparse.ArgumentParser:
    """The options every benchmark takes, in the same words: --quick (`quick` says what it shrinks), --json,
    and --backend (default `backend`) for one that runs on SQLite and PostgreSQL. The script adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    if backend is not None:
        parser.add_argument("--backend", choices=BACKENDS, default=backend)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    return parser


def sized(args: argparse.Namespace, **sizes: tuple) -> argparse.Namespace:
    """Each option left unset takes its (quick, full) size: `sized(args, n=(10, 50))`."""
    for name, (quick, full) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def organization_options(parser: argparse.ArgumentParser, sizes: dict, settle: bool = False) -> None:
    """The options of a benchmark over one large organization (bench/roster.py, console.py, remedies.py):
    --accounts in it, --others elsewhere in the portal, -n requests per kind; `sizes` their (quick, full)
    sizes, for `sized`. `settle`: --no-settle, for one that settles the heap as a serving worker does."""
    parser.add_argument("--accounts", type=int, default=None,
                        help=f"accounts in the big organization ({sizes['accounts'][1]:,})")
    parser.add_argument("--others", type=int, default=None,
                        help=f"accounts in other organizations ({sizes['others'][1]:,})")
    parser.add_argument("-n", type=int, default=None, help=f"requests per kind (default {sizes['n'][1]})")
    if settle:
        parser.add_argument("--no-settle", action="store_true",
                            help="leave the startup heap to the garbage collector (a serving worker freezes it)")



def callgrind_total(out: Path, pid: int, label: str) -> int | None:
    """Dump the counts of the callgrind process `pid` (whose `--callgrind-out-file` is in `out`) as `label` and
    return the dump's total instructions, or None when no dump came within a minute: the worker writes it itself,
    shortly after the request."""
    before = set(out.glob("callgrind.*"))
    subprocess.run(["callgrind_control", f"--dump={label}", str(pid)], capture_output=True, check=True)
    for _ in range(600):
        for dump in set(out.glob("callgrind.*")) - before:
            found = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.M)
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    return None

def begin(title: str, extra: str = "") -> dict:
    """A run's start: SIGTERM unwinds like Ctrl-C, and the machine the figures come from is printed first."""
    exit_on_sigterm()
    m = machine()
    print_machine(title, m, extra)
    return m


@dataclass
class Backend:
    """One database kind of a run: SQLite files in `folder`, or the run's throw-away PostgreSQL server."""

    name: str
    folder: Path
    server: object | None = None  # tests/fixtures/postgres.py's server; None for SQLite

    def database(self, name: str = "bench") -> str:
        """The URL of a new, empty database of this kind."""
        return f"sqlite:///{self.folder / f'{name}.db'}" if self.server is None else self.server.create_database(name)


def backends(choice: str, tmp: Path, stack: ExitStack) -> Iterator[Backend]:
    """SQLite, then PostgreSQL, as --backend chose; each with its own folder under `tmp`. The PostgreSQL
    server starts only when its turn comes and stops with `stack`."""
    for name, wanted in (("SQLite", "sqlite"), ("PostgreSQL", "postgres")):
        if choice not in (wanted, "both"):
            continue
        folder = tmp / wanted
        folder.mkdir()
        server = None
        if wanted == "postgres":
            from tests.fixtures.postgres import start_postgres

            server = stack.enter_context(start_postgres())
        yield Backend(name, folder, server)


def finish(m: dict, json_path: Path | None, figures: dict, started: float | None = None) -> None:
    """A run's end: the load then (beside the load at the start), and the figures as JSON when asked."""
    took = "" if started is None else f"; the run took {time.monotonic() - started:.0f} s"
    print(f"\nload average at start {fmt_load(m['loadavg_at_start'])}, at the end {fmt_load(os.getloadavg())}{took}",
          flush=True)
    if json_path:
        json_path.write_text(json.dumps({"machine": m, **figures}, indent=2, default=str))
        print(f"figures written to {json_path}")


# --- a seeded database, and the app called as a WSGI server calls it ------------------------------

def seed_world(url: str, config, portal: str, build: Callable, client: str = "bench"):
    """A migrated database with config.yaml's portals, the people `build(world)` makes with a
    tests/fixtures/world.py World of `portal`, and a client key of scope `authorize`: (database, key)."""
    from service.domain import clients
    from service.domain.setup import sync_portals
    from service.storage.database import Database
    from tests.fixtures.world import World

    database = Database(url)
    database.upgrade_schema()
    now = datetime.now(timezone.utc)
    with database.transaction() as session:
        sync_portals(session, config)
        build(World(session, portal, now))
        key = clients.create_client(session, client, ("authorize",), now)
    return database, key


def wsgi_poster(app, path: str, key: str) -> Callable[[bytes], bytes]:
    """A function that POSTs one JSON body's bytes to `path` the way a WSGI server calls the app: the environ built
    once (a test client builds one per request, and that would be measured with the app), each answer checked
    (anything but 200 ends the run) and returned."""
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(path=path, method="POST", content_type="application/json",
                          headers={"Authorization": f"Bearer {key}"}).get_environ()

    def post(data: bytes) -> bytes:
        environ = dict(base)
        environ["CONTENT_LENGTH"] = str(len(data))
        environ["wsgi.input"] = BytesIO(data)
        status = []
        answer = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
        if status != ["200 OK"]:
            raise SystemExit(f"bench: {path}: {status} {answer[:300]!r}")
        return answer

    return post


def wsgi_caller(app, path: str, body: dict, key: str, expect: bytes) -> Callable[[], None]:
    """A function that POSTs `body` to `path` (`wsgi_poster`), and checks that `expect` is in every answer."""
    post, data = wsgi_poster(app, path, key), dumps(body)

    def call():
        answer = post(data)
        if expect not in answer:
            raise SystemExit(f"bench: {path}: {answer[:300]!r}")

    return call


def cpu_ns(pid: int) -> int:
    """A process's time on a CPU so far (the first field of /proc/PID/schedstat, in ns)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


# --- a real `portal-authz serve` -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, root: Path = ROOT, **overrides) -> Path:
    """The shipped config with the demo off and the policies found by absolute path; overrides per top key.

    `root`: the code tree whose config and policies to use (bench/peers.py --baseline runs another tree)."""
    data = yaml.safe_load((root / "config.yaml").read_text())
    data["demo"] = {"enabled": False}
    data["policy_dir"] = str(root / "policies")
    for key, value in overrides.items():
        data[key] = {**(data.get(key) or {}), **value} if isinstance(value, dict) else value
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_server(config_path: Path, db_url: str, port: int, log_path: Path, root: Path = ROOT) -> subprocess.Popen:
    """`portal-authz serve` (of the code tree `root`) in its own process group, so stopping it stops its workers."""
    env = {**os.environ, "PORTAL_AUTHZ_DATABASE_URL": db_url, "PYTHONPATH": str(root)}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "service.cli", "--config", str(config_path), "serve",
                                 "--port", str(port)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 60, path: str = "/readyz") -> None:
    """Poll `path` until 200; fail fast if the server exits, and never wait forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: server exited {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise SystemExit(f"bench: server not ready after {timeout:.0f} s:\n{log_path.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the group (the server shuts its workers down), SIGKILL if it lingers; bounded."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def group_processes(pgid: int) -> int:
    """How many processes are in a process group (a server's main process and its workers)."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        count += int(fields[2]) == pgid  # fields after the command: state, ppid, pgrp
    return count


def describe_serving(config_path: Path) -> str:
    """The engine, workers and threads `serve` picks for this config (as the CLI resolves them)."""
    from service.config import load_config

    server = load_config(config_path).server
    engine = getattr(server, "engine", "gunicorn")
    try:
        from service.server import default_threads, default_workers

        workers = server.workers or default_workers(engine)
        threads = getattr(server, "threads", None) or default_threads(engine)
    except ImportError:
        workers, threads = server.workers or 2 * (os.cpu_count() or 1) + 1, 1
    return f"{engine}, {workers} workers x {threads} threads"


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 30) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def drive(port: int, method: str, path: str, body: bytes | None, headers: dict, threads: int, seconds: float) -> dict:
    """`threads` clients, one http.client connection each, requesting back to back until the deadline."""
    deadline: list[float] = []
    barrier = threading.Barrier(threads, action=lambda: deadline.append(time.monotonic() + seconds))

    def client() -> tuple[list[int], int, int, float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        lat, errors, connects = [], 0, 0
        barrier.wait(timeout=30)
        while time.monotonic() < deadline[0]:
            connects += conn.sock is None  # the server closed the last one (gunicorn sync workers do)
            t0 = time.perf_counter_ns()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            lat.append(time.perf_counter_ns() - t0)
            errors += not ok
        conn.close()
        return lat, errors, connects, time.monotonic()

    with ThreadPoolExecutor(threads) as pool:
        outcomes = [f.result(timeout=seconds + 90) for f in [pool.submit(client) for _ in range(threads)]]
    wall = max(o[3] for o in outcomes) - (deadline[0] - seconds)
    lat = [x for o in outcomes for x in o[0]]
    result = stats(lat, wall)
    result.update(errors=sum(o[1] for o in outcomes), connects=sum(o[2] for o in outcomes))
    return result


# --- wrk -----------------------------------------------------------------------------------------

# Kept for bench/servers.py; new code uses post_script (Lua long strings need no escaping).
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def post_script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk Lua script that POSTs `body` with `headers` on every request."""
    text = body.decode()
    level = "=" * next(n for n in range(1, 10) if f"]{'=' * n}]" not in text)
    lines = ['wrk.method = "POST"', f"wrk.body = [{level}[{text}]{level}]"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def ensure_wrk(install: bool = True) -> str:
    """The path to wrk. Missing: say so, and as root with apt-get install Debian's package, else stop."""
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk is not installed; the load figures need it.", flush=True)
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing Debian's wrk: apt-get update && apt-get install -y wrk", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, timeout=600)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("bench: wrk is required and is not installed: `apt-get install -y wrk` "
                     "(Debian/Ubuntu), then run this script again")


def wrk_version() -> str:
    exe = shutil.which("wrk")
    if not exe:
        return "not installed"
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
    first = (out.stdout + out.stderr).strip().splitlines()
    return first[0] if first else "?"


def run_wrk(port: int, path: str, script: Path | None, seconds: float, connections: int) -> dict:
    """Debian's wrk (2 threads, 1 for one connection), parsed from its --latency report; bounded by a timeout."""
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "10s"]
    cmd += ["-s", str(script)] if script else []
    done = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                          timeout=seconds + 60)
    out = done.stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    if not rate:
        print(f"bench: could not read wrk's report (exit {done.returncode}):\n{out}\n{done.stderr}", flush=True)
    return {"per_s": float(rate.group(1)) if rate else float("nan"), "requests": int(total.group(1)) if total else 0,
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errs.group(0) if errs else ""}


# --- bulk loading (bench/sweep.py, bench/roster.py) -------------------------------------------------

def sqlite_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite format


def pg_time(moment: datetime) -> str:
    return moment.isoformat()


def load_sqlite(database, tables, n: int, batch: int = 50_000) -> None:
    """tables: (name, columns, rows(n, text_time)) each; executemany in chunks, one transaction, then ANALYZE."""
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        for table_name, columns, rows in tables:
            sql = f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            chunk = []
            for row in rows(n, sqlite_time):
                chunk.append(row)
                if len(chunk) >= batch:
                    cursor.executemany(sql, chunk)
                    chunk.clear()
            if chunk:
                cursor.executemany(sql, chunk)
        raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def load_postgres(database, tables, n: int) -> None:
    """The same rows with COPY, sequences moved past the loaded ids, then VACUUM ANALYZE."""
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table_name, columns, rows in tables:
            with cursor.copy(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows(n, pg_time):
                    copy.write_row(row)
            if "id" in columns:
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), "
                               f"(SELECT max(id) FROM {table_name}))")
        raw.commit()
        raw.driver_connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    finally:
        raw.close()


def bulk_load(database, tables, n: int) -> None:
    (load_sqlite if database.is_sqlite else load_postgres)(database, tables, n)


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
