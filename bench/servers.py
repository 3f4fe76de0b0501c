"""Which WSGI server should `portal-authz serve` use? A benchmark script, not a test.

Starts the real `portal-authz serve` (the whole app: observability hooks, policy,
SQLite) once per server configuration, warms every worker, then loads it with
wrk on loopback: GET /healthz (the server's own overhead plus Flask) and
POST /v1/authorize ('function allowed': fact queries and a decision), 10 s each
at 32 connections by default. The load generator shares the machine's cores.

    python bench/servers.py [--seconds 10] [--connections 32] [--repeat 1] [--only granian] [--quiet-logs]
                            [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench._common import (WRK_SCRIPT, drive, free_port, machine, start_server, stop_server, table,  # noqa: E402
                           wait_ready, write_config)
from bench.decisions import FAMILIES, seed  # noqa: E402
from service.config import load_config  # noqa: E402

CORES = os.cpu_count() or 1
# (engine, workers, threads): gunicorn threads=1 is a sync worker, more is gthread; granian threads are its
# WSGI blocking threads. Worker counts: one per core, and gunicorn's 2 x cores + 1.
MATRIX = [
    *[("gunicorn", w, 1) for w in (CORES, 2 * CORES + 1)],
    *[("gunicorn", w, t) for w in (CORES, 2 * CORES + 1) for t in (2, 4, 8)],
    *[("granian", w, t) for w in (CORES, 2 * CORES + 1) for t in (1, 2, 4)],
]


def run_wrk(port: int, path: str, script: Path | None, seconds: float, connections: int) -> dict:
    """wrk -t2 --latency: rate, p50/p99 and the mean latency (for Little's law below)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(script)] if script else []
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 60).stdout

    def ms(pattern: str) -> float:
        m = re.search(pattern, out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    result = {"per_s": float(rate.group(1)) if rate else float("nan"),
              "avg_ms": ms(r"^\s*Latency\s+([\d.]+)(us|ms|s)\s"),
              "p50_ms": ms(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$"), "p99_ms": ms(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$"),
              "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(0) if errors else ""}
    # Little's law: connections in use = rate x mean latency. Far below `connections` means some
    # connections were starved (never answered during the run), which wrk's latency figures do not show.
    result["busy_connections"] = result["per_s"] * result["avg_ms"] / 1000
    return result


def label(engine: str, workers: int, threads: int) -> str:
    if engine == "gunicorn":
        kind = "sync" if threads == 1 else f"gthread x{threads}"
        return f"gunicorn {kind}"
    return f"granian wsgi x{threads}"


def one(tmp: Path, db_url: str, key: str, engine: str, workers: int, threads: int, seconds: float,
        connections: int, quiet: bool) -> dict:
    config_path = write_config(tmp)
    data = yaml.safe_load(config_path.read_text())
    data["server"] = {**data.get("server", {}), "engine": engine, "workers": workers, "threads": threads}
    if quiet:  # the shipped config writes a JSON access-log line per request (to a file here)
        data["logging"] = {"level": "warning", "access_log": False}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_config(config_path)  # fail here, not in the server, on a bad setting
    port, log_path = free_port(), tmp / f"server-{engine}-{workers}-{threads}.log"
    fam = FAMILIES[0]
    body = json.dumps(fam.body()).encode()
    script = tmp / "authorize.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(body.decode()), key=key))
    proc = start_server(config_path, db_url, port, log_path)
    try:
        wait_ready(proc, port, log_path)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        drive(port, "POST", fam.path, body, headers, workers * threads, 1.0)  # warm every worker and thread
        run_wrk(port, "/healthz", None, 2, connections)
        time.sleep(1)
        health = run_wrk(port, "/healthz", None, seconds, connections)
        time.sleep(1)
        authorize = run_wrk(port, fam.path, script, seconds, connections)
    finally:
        stop_server(proc)
    return {"engine": engine, "workers": workers, "threads": threads, "server": label(engine, workers, threads),
            "healthz": health, "authorize": authorize, "loadavg_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="passes over the matrix (interleaved)")
    parser.add_argument("--only", default=None, help="engine[:workers[:threads]],... to run, e.g. granian:2,gunicorn:5:1")
    parser.add_argument("--quiet-logs", action="store_true", help="no access log (default: as shipped, on)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: still stop the server under test
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is required (apt-get install wrk)")
    matrix = MATRIX
    if args.only:  # e.g. "granian:2,gunicorn:5:1"
        wanted = [choice.split(":") for choice in args.only.split(",")]
        matrix = [m for m in MATRIX if any(all(str(m[i]) == w for i, w in enumerate(want)) for want in wanted)]
    config = load_config(ROOT / "config.yaml")
    results = []
    figures = {"machine": machine(), "seconds": args.seconds, "connections": args.connections, "runs": results}
    with tempfile.TemporaryDirectory(prefix="portal-authz-bench-") as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        database, key = seed(db_url, config)
        database.dispose()
        for _ in range(args.repeat):
            for engine, workers, threads in matrix:
                result = one(Path(tmp), db_url, key, engine, workers, threads, args.seconds, args.connections,
                             args.quiet_logs)
                results.append(result)
                h, a = result["healthz"], result["authorize"]
                print(f"{result['server']:<20} workers {workers}: healthz {h['per_s']:8.0f}/s p50 {h['p50_ms']:.1f} "
                      f"p99 {h['p99_ms']:.1f} ms | authorize {a['per_s']:7.0f}/s p50 {a['p50_ms']:.1f} "
                      f"p99 {a['p99_ms']:.1f} ms | busy conns {h['busy_connections']:.0f}/{a['busy_connections']:.0f} "
                      f"| errors {h['non_2xx'] + a['non_2xx']} "
                      f"{h['socket_errors'] or ''} {a['socket_errors'] or ''}", flush=True)
    m = figures["machine"]
    print(f"\n# portal-authz serve under wrk -t2 -c{args.connections} -d{args.seconds:g}s on loopback  {m['date']}\n"
          f"cpu: {m['cpu']}  cores: {m['cores']}  python {m['python']}  load average at start "
          f"{'/'.join(f'{x:.2f}' for x in m['loadavg_at_start'])}")
    table("servers (busy: connections in use by Little's law, of " + str(args.connections) + ")",
          ["server", "workers", "healthz/s", "p50 ms", "p99 ms", "busy", "authorize/s", "p50 ms", "p99 ms", "busy",
           "non-2xx"],
          [[r["server"], str(r["workers"]), r["healthz"]["per_s"], r["healthz"]["p50_ms"], r["healthz"]["p99_ms"],
            f"{r['healthz']['busy_connections']:.0f}", r["authorize"]["per_s"], r["authorize"]["p50_ms"],
            r["authorize"]["p99_ms"], f"{r['authorize']['busy_connections']:.0f}",
            str(r["healthz"]["non_2xx"] + r["authorize"]["non_2xx"])] for r in results])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
