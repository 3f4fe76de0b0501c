"""How fast are decisions, and where does the time go? A benchmark script, not a test.

Layers, each measured on the same seeded facts so they can be subtracted:
  1/2. Policy.decide on warm in-memory facts beside oso's raw is_allowed (the engine alone);
  3.   Decider (SQLite fact queries + decide), then the Flask app in-process (test client);
  4.   a real `portal-authz serve` (gunicorn) over loopback HTTP, with /healthz as the ceiling.

    python bench/decisions.py [--quick] [--no-http] [--seconds 5] [-n 2000] [--json out.json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable without PYTHONPATH

import yaml  # noqa: E402

from service.app import create_app  # noqa: E402
from service.config import load_config  # noqa: E402
from service.domain import clients  # noqa: E402
from service.domain.decisions import Decider, Question, Resource, profile_of  # noqa: E402
from service.domain.setup import sync_portals  # noqa: E402
from service.policy import Policy  # noqa: E402
from service.storage.database import Database  # noqa: E402
from tests.fixtures.world import World  # noqa: E402

CONCURRENCY = (1, 8, 32)


@dataclass(frozen=True)
class Family:
    """One rule family: a representative question and the answer it must get."""

    name: str
    portal: str
    actor: str
    action: str
    resource: Resource
    context: dict = field(default_factory=dict)
    expect: bool | None = None  # None: authorized_actions (a list, not a decision)

    @property
    def question(self) -> Question:
        return Question(self.action, self.resource, self.context)

    def body(self) -> dict:
        res = {"type": self.resource.type, "id": self.resource.id}
        body = {"portal": self.portal, "actor": self.actor, "resource": res}
        return body if self.expect is None else {**body, "action": self.action, "context": self.context}

    @property
    def path(self) -> str:
        return "/v1/authorized-actions" if self.expect is None else "/v1/authorize"


FAMILIES = (
    Family("function allowed", "ahcccs", "bench.member", "claims", Resource("organization", "BENCH-0001"), expect=True),
    Family("function denied", "ahcccs", "bench.member", "eligibility", Resource("organization", "BENCH-0001"),
           expect=False),
    Family("admin action allowed", "ahcccs", "bench.admin", "remove", Resource("account", "bench.other"), expect=True),
    Family("admin action denied", "ahcccs", "bench.member", "remove", Resource("account", "bench.other"), expect=False),
    Family("delegated grant", "ahw", "ahw.delegate", "grant", Resource("account", "ahw.user"),
           {"permission": "claims"}, expect=True),
    Family("authorized_actions", "ahcccs", "bench.admin", "view", Resource("account", "bench.other")),
)


# --- figures -------------------------------------------------------------------------------------

def stats(latencies_ns: list[int], wall_s: float) -> dict:
    """Throughput over the wall time, and nearest-rank p50/p99 in microseconds."""
    ordered = sorted(latencies_ns)

    def pct(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered))) - 1))] / 1000

    return {"n": len(ordered), "per_s": len(ordered) / wall_s if wall_s else 0.0,
            "p50_us": pct(50), "p99_us": pct(99)}


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


def table(title: str, headers: list[str], rows: list[list]) -> None:
    """Print an aligned text table; numbers are right-aligned."""
    cells = [[f"{c:,.0f}" if isinstance(c, float) and abs(c) >= 100 else
              f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    left = [isinstance(c, str) for c in rows[0]]  # text columns read left to right, numbers align right

    def line(values):
        return "  ".join(v.ljust(w) if lf else v.rjust(w) for v, w, lf in zip(values, widths, left)).rstrip()

    print(f"\n## {title}\n{line(headers)}\n{line(['-' * w for w in widths])}")
    for row in cells:
        print(line(row))


def machine() -> dict:
    """Where the figures come from: they mean nothing without it."""
    model = "unknown"
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "oso": version("oso"), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "loadavg_at_start": os.getloadavg()}


# --- seeded database -----------------------------------------------------------------------------

def seed(url: str, config) -> tuple[Database, str]:
    """Schema as tests/conftest.py prepares it, the benchmark personas, and an `authorize` client key."""
    database = Database(url)
    database.upgrade_schema()
    now = datetime.now(timezone.utc)
    with database.transaction() as session:
        sync_portals(session, config)
        world = World(session, "ahcccs", now)
        world.organization("BENCH-0001")
        world.account("bench.admin", memberships={"BENCH-0001": {"role": "admin"}})
        world.account("bench.member", memberships={"BENCH-0001": {"permissions": ["claims"]}})
        world.account("bench.other", memberships={"BENCH-0001": {"permissions": ["claims"]}})
        ahw = World(session, "ahw", now)
        ahw.organization("TIN-0001")
        ahw.account("ahw.admin", memberships={"TIN-0001": {"role": "admin"}})
        ahw.account("ahw.delegate", memberships={"TIN-0001": {"permissions": ["manage_account", "claims"]}})
        ahw.account("ahw.user", memberships={"TIN-0001": {"permissions": []}})
        key = clients.create_client(session, "bench", ("authorize",), now)
    return database, key


def new_decider(session, config, policy: Policy, portal: str) -> Decider:
    """A Decider built the way the API builds one per request (profile looked up, clock read)."""
    return Decider(session, profile_of(config, portal), policy, portal, datetime.now(timezone.utc))


def load_facts(database: Database, config, policy: Policy) -> dict[str, tuple]:
    """(actor facts, resource facts) per family, loaded once through the Decider the API uses."""
    facts = {}
    with database.sessions() as session:
        for fam in FAMILIES:
            decider = new_decider(session, config, policy, fam.portal)
            need = fam.expect is not None
            facts[fam.name] = (decider.actor(fam.actor), decider.resource(fam.question, need_permission=need))
    return facts


def outcome(policy: Policy, fam: Family, actor, resource) -> str:
    """The answer, checked against the family's expectation so we never time the wrong path."""
    if fam.expect is None:
        return f"{len(policy.authorized_actions(actor, resource))} actions"
    decision = policy.decide(actor, fam.action, resource)
    if decision.allowed != fam.expect:
        raise SystemExit(f"bench: {fam.name} answered {decision} but {fam.expect} was expected")
    return "allowed" if decision.allowed else "denied: " + ",".join(decision.reasons)


# --- sections 1 to 3: in-process ---------------------------------------------------------------

def bench_engine(policy: Policy, facts: dict, n: int, warmup: int) -> list[dict]:
    """Policy.decide (with reasons on denial) beside the bare engine call on the same facts."""
    oso = policy._oso  # private on purpose: the engine alone, without reasons or ordering
    results = []
    for fam in FAMILIES:
        actor, resource = facts[fam.name]
        if fam.expect is None:
            full = measure(lambda: policy.authorized_actions(actor, resource), n, warmup)
            raw = measure(lambda: oso.authorized_actions(actor, resource), n, warmup)
        else:
            full = measure(lambda: policy.decide(actor, fam.action, resource), n, warmup)
            raw = measure(lambda: oso.is_allowed(actor, fam.action, resource), n, warmup)
        results.append({"family": fam.name, "outcome": outcome(policy, fam, actor, resource),
                        "decide": full, "raw_oso": raw})
    return results


def bench_database(database: Database, config, policy: Policy, key: str, n: int, warmup: int) -> list[dict]:
    """Per decision, as a request does it: a fresh session, fact queries, decide; then via Flask in-process."""
    app = create_app(config, database=database, policy=policy)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    results = []
    for fam in FAMILIES:
        def decider_call(fam=fam):
            with database.sessions() as session:
                decider = new_decider(session, config, policy, fam.portal)
                if fam.expect is None:
                    return decider.authorized_actions(decider.actor(fam.actor), fam.resource)
                return decider.decide(decider.actor(fam.actor), fam.question)

        body = fam.body()

        def flask_call(fam=fam, body=body):
            response = client.post(fam.path, json=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"bench: {fam.path} answered {response.status_code}: {response.get_data(True)}")

        results.append({"family": fam.name, "decider": measure(decider_call, n, warmup),
                        "flask": measure(flask_call, n, warmup)})
    return results


# --- section 4: a real server over HTTP ---------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path) -> Path:
    """The shipped config with the demo off and the policies found by absolute path."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["demo"] = {"enabled": False}
    data["policy_dir"] = str(ROOT / "policies")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_server(config_path: Path, db_url: str, port: int, log_path: Path) -> subprocess.Popen:
    """`portal-authz serve` in its own process group, so stopping it stops its gunicorn workers too."""
    env = {**os.environ, "PORTAL_AUTHZ_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "service.cli", "--config", str(config_path), "serve",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 60) -> None:
    """Poll /readyz until 200; fail fast if the server exits, and never wait forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: server exited {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise SystemExit(f"bench: server not ready after {timeout:.0f} s:\n{log_path.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the group (gunicorn shuts workers down), SIGKILL if it lingers; bounded."""
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


WRK_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def run_wrk(port: int, path: str, script: Path | None, seconds: float, connections: int) -> dict:
    """Debian's wrk (2 threads), parsed from its --latency report; bounded by a timeout."""
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(script)] if script else []
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 60).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"per_s": float(rate.group(1)) if rate else float("nan"), "p50_ms": ms("50%"), "p99_ms": ms("99%"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errs.group(0) if errs else ""}


def bench_http(tmp: Path, db_url: str, key: str, seconds: float) -> dict:
    """Start the real server, load it from this process (and from wrk if installed), always stop it."""
    config_path, port, log_path = write_config(tmp), free_port(), tmp / "server.log"
    fam = FAMILIES[0]
    body = json.dumps(fam.body()).encode()
    post_headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    workers = load_config(config_path).server.workers or 2 * multiprocessing.cpu_count() + 1
    out = {"workers": workers, "family": fam.name, "python": [], "wrk": []}
    proc = start_server(config_path, db_url, port, log_path)
    try:
        wait_ready(proc, port, log_path)
        # Warm every worker (engine connections, SQLAlchemy statement caches) before anything is timed.
        drive(port, "POST", fam.path, body, post_headers, workers, 1.0)
        for threads in CONCURRENCY:
            auth = drive(port, "POST", fam.path, body, post_headers, threads, seconds)
            health = drive(port, "GET", "/healthz", None, {}, threads, seconds)
            out["python"].append({"concurrency": threads, "authorize": auth, "healthz": health})
        if shutil.which("wrk"):
            script = tmp / "authorize.lua"
            script.write_text(WRK_SCRIPT.format(body=json.dumps(body.decode()), key=key))
            for conns in (8, 32):
                out["wrk"].append({"endpoint": "POST /v1/authorize", "connections": conns,
                                   **run_wrk(port, fam.path, script, seconds, conns)})
                out["wrk"].append({"endpoint": "GET /healthz", "connections": conns,
                                   **run_wrk(port, "/healthz", None, seconds, conns)})
        out["loadavg_after"] = os.getloadavg()
    finally:
        stop_server(proc)
    return out


# --- report ------------------------------------------------------------------------------------

def fmt_load(load) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def report(figures: dict) -> None:
    m = figures["machine"]
    print(f"# portal-authz decision benchmark  {m['date']}")
    print(f"cpu: {m['cpu']}  cores: {m['cores']} (usable {m['usable_cores']})  python {m['python']}  "
          f"oso {m['oso']}  sqlite {m['sqlite']}\nplatform: {m['platform']}  "
          f"load average {fmt_load(m['loadavg_at_start'])}\n{figures['settings']}")
    table("1+2. In-process, warm in-memory facts: Policy.decide vs oso is_allowed (raw)",
          ["family", "outcome", "decide/s", "p50 us", "p99 us", "raw/s", "raw p50", "raw p99", "decide/raw p50"],
          [[r["family"], r["outcome"], r["decide"]["per_s"], r["decide"]["p50_us"], r["decide"]["p99_us"],
            r["raw_oso"]["per_s"], r["raw_oso"]["p50_us"], r["raw_oso"]["p99_us"],
            r["decide"]["p50_us"] / r["raw_oso"]["p50_us"]] for r in figures["engine"]])
    print("  (authorized_actions: raw = oso.authorized_actions; denied rows: decide = is_allowed + deny_reason)")
    table("3. In-process with SQLite: Decider (fact queries + decide) and Flask test client",
          ["family", "decider/s", "p50 us", "p99 us", "flask/s", "p50 us", "p99 us"],
          [[r["family"], r["decider"]["per_s"], r["decider"]["p50_us"], r["decider"]["p99_us"],
            r["flask"]["per_s"], r["flask"]["p50_us"], r["flask"]["p99_us"]] for r in figures["database"]])
    http_figs = figures.get("http")
    if not http_figs:
        return
    table(f"4. portal-authz serve (gunicorn, {http_figs['workers']} sync workers) over loopback, "
          f"Python threads, '{http_figs['family']}'",
          ["concurrency", "authz req/s", "p50 ms", "p99 ms", "err", "health req/s", "p50 ms", "p99 ms", "err",
           "authz/health"],
          [[r["concurrency"], r["authorize"]["per_s"], r["authorize"]["p50_us"] / 1000,
            r["authorize"]["p99_us"] / 1000, r["authorize"]["errors"], r["healthz"]["per_s"],
            r["healthz"]["p50_us"] / 1000, r["healthz"]["p99_us"] / 1000, r["healthz"]["errors"],
            r["authorize"]["per_s"] / r["healthz"]["per_s"]] for r in http_figs["python"]])
    reconnects = [r["authorize"]["connects"] / max(1, r["authorize"]["n"]) for r in http_figs["python"]]
    print(f"  (new TCP connections per request: {', '.join(f'{x:.2f}' for x in reconnects)}; "
          "the load generator shares the cores with the server)")
    if http_figs["wrk"]:
        table("4b. wrk -t2 (load generator and server share the cores)",
              ["endpoint", "connections", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors"],
              [[r["endpoint"], r["connections"], r["per_s"], r["p50_ms"], r["p99_ms"], r["non_2xx"],
                r["socket_errors"] or "-"] for r in http_figs["wrk"]])
    else:
        print("\n(wrk not installed: `apt-get install wrk` for a better load generator)")
    print(f"\nload average at start {fmt_load(figures['machine']['loadavg_at_start'])}, "
          f"after HTTP {fmt_load(http_figs['loadavg_after'])} (other work on the machine skews every figure)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N and 2 s per HTTP level (smoke run)")
    parser.add_argument("--no-http", action="store_true", help="skip the real-server section")
    parser.add_argument("-n", type=int, default=None, help="iterations per in-process family (default 2000)")
    parser.add_argument("--db-n", type=int, default=None, help="iterations per database family (default 500)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per HTTP level (default 5)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    args.n = args.n or (200 if args.quick else 2000)
    args.db_n = args.db_n or (50 if args.quick else 500)
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.warmup = max(20, args.n // 10)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_config(ROOT / "config.yaml")
    policy = Policy(config.policy_path)
    figures = {"machine": machine(),
               "settings": f"n={args.n} (warm-up {args.warmup}), db n={args.db_n}, http {args.seconds:g} s/level"}
    with tempfile.TemporaryDirectory(prefix="portal-authz-bench-") as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        database, key = seed(db_url, config)
        try:
            figures["engine"] = bench_engine(policy, load_facts(database, config, policy), args.n, args.warmup)
            figures["database"] = bench_database(database, config, policy, key, args.db_n,
                                                 max(10, args.db_n // 10))
        finally:
            database.dispose()
        if not args.no_http:
            figures["http"] = bench_http(Path(tmp), db_url, key, args.seconds)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
