"""Under load, whose CPU does one POST /v1/authorize cost? A benchmark script, not a test.

`portal-authz serve` as shipped (logging quiet, as `peers.py --quiet-logs`), seeded as `peers.py`
seeds it, is loaded by wrk at `--connections` for `--seconds`; the CPU time every process on the
machine spent meanwhile (user and system, from /proc) is divided by the requests answered and
grouped: the server's workers ("python"), PostgreSQL's backends ("postgres"), anything else that
ran. wrk itself has exited before the second reading and is not counted. This is the profile
`hotpath.py` cannot give: a request in one process has no context switches, no other process's
cache pressure and no database server on the same cores.

    python bench/cpu_split.py [--backend sqlite|postgres|both] [--seconds 8] [--connections 32]

About 30 s per backend.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench import peers  # noqa: E402
from bench._common import ROOT, fmt_load, machine, print_machine  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_process() -> dict[int, tuple[str, float, float]]:
    """Every process's (command, user seconds, system seconds) so far."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(pid)] = (comm, int(fields[11]) / TICKS, int(fields[12]) / TICKS)
    return out


def spent(before: dict, after: dict) -> dict[str, tuple[float, float]]:
    """CPU seconds (user, system) between two readings, grouped by kind of process."""
    groups: dict[str, list[float]] = {}
    for pid, (comm, user, system) in after.items():
        _, user0, system0 = before.get(pid, (comm, 0.0, 0.0))
        kind = "postgres" if comm.startswith("postgres") else comm
        group = groups.setdefault(kind, [0.0, 0.0])
        group[0] += user - user0
        group[1] += system - system0
    return {kind: (u, s) for kind, (u, s) in groups.items() if u + s > 0.02}


def measure(backend: str, db_url: str, seconds: float, connections: int, tmp: Path) -> None:
    key = peers.seed_tree(ROOT, db_url)
    config_path = peers.write_config(tmp, ROOT, logging={"level": "warning", "access_log": False})
    port, log_path = peers.free_port(), tmp / f"server-{backend}.log"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = peers.dumps(peers.ALLOWED.body())
    proc = peers.start_server(config_path, db_url, port, log_path, ROOT)
    try:
        peers.wait_ready(proc, port, log_path)
        peers.check_portal(port, headers)
        peers.drive(port, "POST", "/v1/authorize", body, headers, 8, 1.0)  # warm every worker
        script = peers.post_script(tmp / f"authorize-{backend}.lua", body, headers)
        time.sleep(0.5)
        before = cpu_by_process()
        result = peers.run_wrk(port, "/v1/authorize", script, seconds, connections)
        after = cpu_by_process()
    finally:
        peers.stop_server(proc)
    answered = result["per_s"] * seconds
    print(f"\n== {backend} ({peers.describe_serving(config_path)}): {result['per_s']:,.0f} req/s at "
          f"c={connections}, p99 {result['p99_ms']:.2f} ms, non-2xx {result['non_2xx']}")
    print(f"{'process':<16} {'user µs/req':>12} {'system µs/req':>14} {'total':>8}")
    total = 0.0
    for kind, (user, system) in sorted(spent(before, after).items(), key=lambda kv: -sum(kv[1])):
        total += user + system
        print(f"{kind:<16} {user / answered * 1e6:12.1f} {system / answered * 1e6:14.1f} "
              f"{(user + system) / answered * 1e6:8.1f}")
    print(f"{'all (not wrk)':<16} {'':>12} {'':>14} {total / answered * 1e6:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print_machine("bench/cpu_split.py: CPU per POST /v1/authorize under load, by process", machine())
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            measure("SQLite", f"sqlite:///{tmp}/split.db", args.seconds, args.connections, Path(tmp))
        if args.backend in ("postgres", "both"):
            from tests.fixtures.postgres import start_postgres

            with start_postgres() as server:
                measure("PostgreSQL", server.create_database("split"), args.seconds, args.connections, Path(tmp))
    print(f"\nload average at end: {fmt_load(os.getloadavg())}")


if __name__ == "__main__":
    main()
