"""POST /v1/authorize over HTTP beside a peer (Cerbos), in one run. A benchmark script, not a test.

Starts the real `portal-authz serve` as configured by default (engine, workers and
logging as shipped; the demo off) on a fresh SQLite file, then on a throw-away
PostgreSQL, each seeded with bench/decisions.py's personas, and loads it with wrk
on loopback at 1, 8 and 32 connections:

  - POST /v1/authorize, 'function allowed' (bench.member may `claims` on BENCH-0001):
    the facts are read from the database on every request;
  - GET /healthz of the same server: the ceiling of the server and Flask alone.

Then the peer: Cerbos (a Go policy decision point, from the npm package
@cerbos/cerbos-linux-x64, installed into a cache directory outside the repository
when missing) with the same rule written as a Cerbos resource policy, run with its
log level at warn, and loaded by wrk the same way on POST /api/check/resources. As
Cerbos callers do, the facts travel in the request (principal attributes), so
Cerbos reads no database: that is the comparison asked for, not a like-for-like one.

Before timing anything the script checks that both answer the same: allowed for
`claims`, denied for `eligibility`. wrk and the servers share the machine's cores.

Also, on each backend, POST /v1/authorize/batch with 100 checks at 1 connection (its p50).

    python bench/peers.py [--quick] [--seconds 10] [--backend sqlite|postgres|both] [--no-cerbos]
                          [--quiet-logs] [--json out.json] [--baseline OTHER_TREE]

`--baseline OTHER_TREE` (e.g. `git worktree add /tmp/base main`) runs that tree's `serve`
right after this one's on each backend, with its own database seeded by its own code: a
before/after in one run, under the same load.

Prints one table, then the targets each with met / NOT met: portal-authz / Cerbos
throughput at 32 connections (>= 1.0), portal-authz / its own /healthz, p99 < 25 ms,
p50 at 1 connection (< 1 ms SQLite, < 2 ms PostgreSQL), batch of 100 p50 < 10 ms; and how long
the run took (about 2.5 min with --seconds 5, 4.5 min by default; twice the portal part with
--baseline).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import (CONCURRENCY, ROOT, arguments, backends, begin, describe_serving, drive,  # noqa: E402
                           dumps, ensure_wrk, finish, free_port, group_processes, post_script, request, run_wrk,
                           sized, start_server, stop_server, table, wait_ready, wrk_version, write_config)
from bench.decisions import FAMILIES  # noqa: E402
from service.config import load_config  # noqa: E402

P99_TARGET_MS = 25.0
P50_TARGET_MS = {"SQLite": 1.0, "PostgreSQL": 2.0}  # p50 at one connection
BATCH = 100
BATCH_P50_TARGET_MS = 10.0
CERBOS_VERSION = "0.55.0"
ALLOWED, DENIED = FAMILIES[0], FAMILIES[1]  # claims allowed, eligibility denied, same actor and organization


# --- Cerbos ------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    base = os.environ.get("PORTAL_AUTHZ_BENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME")
                                                              or Path.home() / ".cache") / "portal-authz-bench"
    return Path(base)


def ensure_cerbos(explicit: str | None) -> Path:
    """The cerbos binary: --cerbos/$CERBOS_BIN, else the cached npm package, installed with npm when missing."""
    given = explicit or os.environ.get("CERBOS_BIN")
    if given:
        return Path(given)
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine())
    if arch is None:
        raise SystemExit(f"bench: no Cerbos npm package for {platform.machine()}; pass --cerbos PATH")
    package = f"@cerbos/cerbos-linux-{arch}"
    prefix = cache_dir() / f"cerbos-{CERBOS_VERSION}"
    binary = prefix / "node_modules" / package / f"cerbos-linux-{arch}"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("bench: Cerbos is not installed and npm is missing: install Node.js/npm "
                         "(apt-get install -y npm), pass --cerbos PATH, or run with --no-cerbos")
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix),
           f"{package}@{CERBOS_VERSION}"]
    print(f"bench: installing Cerbos {CERBOS_VERSION} outside the repository: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not binary.exists():
        raise SystemExit(f"bench: npm install failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return binary


def cerbos_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return (out.stdout.strip().splitlines() or ["?"])[0]


def cerbos_rule(name: str, action: str, exprs: list[str]) -> str:
    """One Cerbos resource-policy rule allowing `action` to role `user` when every expression holds."""
    head = (f"    - name: {name}\n      actions: [\"{action}\"]\n      effect: EFFECT_ALLOW\n      roles: [\"user\"]\n"
            "      condition:\n        match:\n          all:\n            of:\n")
    return head + "".join(f"              - expr: {expr}\n" for expr in exprs)


def cerbos_resource_policy(resource: str, rules: list[str]) -> str:
    return ("apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  version: default\n"
            f"  resource: {resource}\n  rules:\n" + "".join(rules))


# The actor's standing, as every Polar rule starts: active, with a current password.
STANDING = ['P.attr.status == "active"', "P.attr.password_current == true"]


def cerbos_policy(catalog: tuple[str, ...]) -> str:
    """Our 'portal function' rule in Cerbos: active, password current, active member, granted (admins: all).

    One rule per catalog function, the action named literally, as the Polar rule binds the action
    from the catalog.
    """
    return cerbos_resource_policy("organization", [cerbos_rule(f"function-{action}", action, [
        *STANDING,
        "R.id in P.attr.memberships",
        'P.attr.memberships[R.id].status == "active"',
        f'>\n                  P.attr.memberships[R.id].role == "admin" ||\n'
        f'                  "{action}" in P.attr.memberships[R.id].permissions',
    ]) for action in catalog])


def cerbos_request(family) -> dict:
    """The check a Cerbos caller sends for the family's question, with the facts our database holds for it."""
    return {
        "requestId": "bench",
        "principal": {"id": family.actor, "roles": ["user"],
                      "attr": {"status": "active", "password_current": True,
                               "memberships": {family.resource.id: {"role": "member", "status": "active",
                                                                    "permissions": ["claims"]}}}},
        "resources": [{"actions": [family.action],
                       "resource": {"kind": "organization", "id": family.resource.id, "attr": {}}}],
    }


def start_cerbos(binary: Path, tmp: Path, catalog: tuple[str, ...]) -> tuple[subprocess.Popen, int, Path]:
    policies = tmp / "cerbos-policies"
    policies.mkdir(exist_ok=True)
    (policies / "organization.yaml").write_text(cerbos_policy(catalog))
    compiled = subprocess.run([str(binary), "compile", str(policies)], capture_output=True, text=True, timeout=60)
    if compiled.returncode != 0:
        raise SystemExit(f"bench: the Cerbos policy does not compile:\n{compiled.stdout}\n{compiled.stderr}")
    port, grpc = free_port(), free_port()
    conf = tmp / "cerbos.yaml"
    conf.write_text(f"""server:
  httpListenAddr: "127.0.0.1:{port}"
  grpcListenAddr: "127.0.0.1:{grpc}"
storage:
  driver: disk
  disk:
    directory: "{policies}"
    watchForChanges: false
audit:
  enabled: false
telemetry:
  disabled: true
""")
    log_path = tmp / "cerbos.log"
    env = {**os.environ, "CERBOS_NO_TELEMETRY": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(binary), "server", f"--config={conf}", "--log-level=warn",
                                 f"--debug-listen-addr=127.0.0.1:{free_port()}"], cwd=tmp, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port, log_path


def check_cerbos(port: int) -> None:
    """Same answers as portal-authz before anything is timed."""
    for family, want in ((ALLOWED, "EFFECT_ALLOW"), (DENIED, "EFFECT_DENY")):
        status, body = request(port, "POST", "/api/check/resources", dumps(cerbos_request(family)),
                               {"Content-Type": "application/json"})
        got = json.loads(body)["results"][0]["actions"][family.action] if status == 200 else f"HTTP {status}"
        if got != want:
            raise SystemExit(f"bench: Cerbos answered {got} for {family.name}, expected {want}: {body[:500]!r}")


# --- portal-authz -----------------------------------------------------------------------------------

def check_portal(port: int, headers: dict) -> None:
    for family in (ALLOWED, DENIED):
        status, body = request(port, "POST", "/v1/authorize", dumps(family.body()), headers)
        if status != 200 or json.loads(body)["allowed"] is not family.expect:
            raise SystemExit(f"bench: /v1/authorize answered {status} {body[:500]!r} for {family.name}")


def load_levels(port: int, path: str, script: Path | None, seconds: float, label: str,
                levels: tuple[int, ...] = CONCURRENCY) -> list[dict]:
    rows = []
    for connections in levels:
        time.sleep(0.5)  # let the previous level's connections close
        result = run_wrk(port, path, script, seconds, connections)
        print(f"  {label:<38} c={connections:<3} {result['per_s']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
              f"p99 {result['p99_ms']:7.2f} ms  non-2xx {result['non_2xx']} {result['socket_errors']}", flush=True)
        rows.append({"target": label, "connections": connections, **result})
    return rows


SEED = ("import sys; from bench._common import ROOT; from bench.decisions import seed; "
        "from service.config import load_config; "
        "database, key = seed(sys.argv[1], load_config(ROOT / 'config.yaml')); database.dispose(); print(key)")


def seed_tree(root: Path, db_url: str) -> str:
    """Seed `db_url` with the code tree `root` (its own migrations and personas); the `authorize` key."""
    done = subprocess.run([sys.executable, "-c", SEED, db_url], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"bench: seeding with {root} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def batch_body(catalog: tuple[str, ...]) -> dict:
    """100 checks for one actor (bench.member): every catalog function on its organization, round robin,
    and every fifth a `view` of a colleague's account: allowed and denied answers mixed."""
    checks = []
    for i in range(BATCH):
        if i % 5 == 4:
            checks.append({"action": "view", "resource": {"type": "account", "id": "bench.other"}})
        else:
            checks.append({"action": catalog[i % len(catalog)],
                           "resource": {"type": "organization", "id": "BENCH-0001"}})
    return {"portal": ALLOWED.portal, "actor": ALLOWED.actor, "checks": checks}


def bench_portal(tmp: Path, backend: str, db_url: str, config, seconds: float, quiet: bool,
                 root: Path = ROOT, tree: str = "", server: dict | None = None) -> list[dict]:
    key = seed_tree(root, db_url)
    overrides = {"logging": {"level": "warning", "access_log": False}} if quiet else {}
    if server:
        overrides["server"] = server
    config_path = write_config(tmp, root, **overrides)
    name = f"portal-authz{tree} {backend}"
    port, log_path = free_port(), tmp / f"server-{backend}{tree.strip()}.log"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    serving = describe_serving(config_path)
    proc = start_server(config_path, db_url, port, log_path, root)
    try:
        wait_ready(proc, port, log_path)
        check_portal(port, headers)
        print(f"{name} ({root}): {serving}; {group_processes(proc.pid)} processes in the server's group; "
              f"logging {'quiet (warning, no access log)' if quiet else 'as shipped'}", flush=True)
        drive(port, "POST", "/v1/authorize", dumps(ALLOWED.body()), headers, 8, 1.0)  # warm every worker
        script = post_script(tmp / f"authorize-{backend}.lua", dumps(ALLOWED.body()), headers)
        rows = load_levels(port, "/v1/authorize", script, seconds, f"{name} POST /v1/authorize")
        batch = dumps(batch_body(config.portals[ALLOWED.portal].catalog))
        status, answer = request(port, "POST", "/v1/authorize/batch", batch, headers)
        if status != 200 or len(json.loads(answer)["results"]) != BATCH:
            raise SystemExit(f"bench: /v1/authorize/batch answered {status} {answer[:500]!r}")
        script = post_script(tmp / f"batch-{backend}.lua", batch, headers)
        rows += load_levels(port, "/v1/authorize/batch", script, seconds, f"{name} POST batch of {BATCH}",
                            levels=(1,))
        rows += load_levels(port, "/healthz", None, seconds, f"{name} GET /healthz")
    finally:
        stop_server(proc)
    for row in rows:
        kind = "healthz" if "healthz" in row["target"] else "batch" if "batch" in row["target"] else "authorize"
        row.update(kind=kind, backend=backend, tree=tree.strip() or "this")
    return rows


def bench_cerbos(tmp: Path, binary: Path, config, seconds: float) -> list[dict]:
    proc, port, log_path = start_cerbos(binary, tmp, config.portals["ahcccs"].catalog)
    try:
        wait_ready(proc, port, log_path, path="/_cerbos/health")
        check_cerbos(port)
        print(f"Cerbos {cerbos_version(binary)} ({binary}), log level warn, audit and telemetry off", flush=True)
        body = dumps(cerbos_request(ALLOWED))
        drive(port, "POST", "/api/check/resources", body, {"Content-Type": "application/json"}, 8, 1.0)
        script = post_script(tmp / "cerbos.lua", body, {"Content-Type": "application/json"})
        rows = load_levels(port, "/api/check/resources", script, seconds, "Cerbos POST /api/check/resources")
    finally:
        stop_server(proc)
    for row in rows:
        row.update(kind="cerbos", backend="-", tree="this")
    return rows


# --- report -------------------------------------------------------------------------------------------

def summary(rows: list[dict]) -> list[str]:
    """Ratios and the targets, each line saying met or not."""
    lines = []
    at = {(r["kind"], r["backend"], r.get("tree", "this"), r["connections"]): r for r in rows}
    cerbos = at.get(("cerbos", "-", "this", 32))
    for r in rows:
        if r["kind"] != "authorize" or r["connections"] != 32:
            continue
        who = f"portal-authz{'' if r['tree'] == 'this' else ' ' + r['tree']} ({r['backend']})"
        healthz = at.get(("healthz", r["backend"], r["tree"], 32))
        if cerbos:
            ratio = r["per_s"] / cerbos["per_s"]
            lines.append(f"{who} / Cerbos throughput at 32 connections: {r['per_s']:.0f} / {cerbos['per_s']:.0f} "
                         f"= {ratio:.2f}  (target >= 1.0: {'met' if ratio >= 1 else 'NOT met'})")
        else:
            lines.append(f"{who} at 32 connections: {r['per_s']:.0f} req/s (no Cerbos run)")
        if healthz:
            lines.append(f"{who} / its own /healthz at 32 connections: {r['per_s'] / healthz['per_s']:.2f}")
        if r["tree"] != "this" and (mine := at.get(("authorize", r["backend"], "this", 32))):
            lines.append(f"this tree / {r['tree']} ({r['backend']}) at 32 connections: "
                         f"{mine['per_s']:.0f} / {r['per_s']:.0f} = {mine['per_s'] / r['per_s']:.2f}")
    for r in rows:
        who = f"{r['target']} c={r['connections']}"
        if r["kind"] in ("authorize", "cerbos"):
            verdict = "met" if r["p99_ms"] < P99_TARGET_MS else "NOT met"
            lines.append(f"p99 < {P99_TARGET_MS:g} ms: {verdict:<7}  {who} (p99 {r['p99_ms']:.2f} ms)")
        if r["kind"] == "authorize" and r["connections"] == 1:
            target = P50_TARGET_MS[r["backend"]]
            lines.append(f"p50 < {target:g} ms at 1 connection: {'met' if r['p50_ms'] < target else 'NOT met':<7}  "
                         f"{who} (p50 {r['p50_ms']:.2f} ms)")
        if r["kind"] == "batch":
            lines.append(f"batch of {BATCH} p50 < {BATCH_P50_TARGET_MS:g} ms: "
                         f"{'met' if r['p50_ms'] < BATCH_P50_TARGET_MS else 'NOT met':<7}  {who} "
                         f"(p50 {r['p50_ms']:.2f} ms)")
    return lines


def cerbos_options(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark beside Cerbos (this one and bench/mixed.py)."""
    parser.add_argument("--no-cerbos", action="store_true", help="skip the peer")
    parser.add_argument("--cerbos", default=None, help="a cerbos binary to use instead of the npm package")
    parser.add_argument("--quiet-logs", action="store_true",
                        help="portal-authz at log level warning without its access log (default: as shipped)")


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "1 s per level (a smoke run, figures meaningless)", backend="both")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per wrk level (default 10)")
    cerbos_options(parser)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another code tree (e.g. `git worktree add /tmp/base main`) measured right after this "
                             "one on each backend, with its own database, for a before/after in one run")
    args = sized(parser.parse_args(argv), seconds=(1.0, 10.0))
    started = time.monotonic()
    seconds = args.seconds
    ensure_wrk()
    binary = None if args.no_cerbos else ensure_cerbos(args.cerbos)
    m = begin("portal-authz vs Cerbos over HTTP (wrk on loopback)",
              f"{wrk_version()}; cerbos {cerbos_version(binary) if binary else 'not run'}; "
              f"{seconds:g} s per level, connections {', '.join(map(str, CONCURRENCY))}; "
              "wrk shares the cores with the server")
    config = load_config(ROOT / "config.yaml")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="portal-authz-peers-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        for backend in backends(args.backend, tmp, stack):
            if backend.server is not None:
                print(f"PostgreSQL: throw-away server from {backend.server.bin_dir} (fsync and synchronous_commit "
                      "off)", flush=True)
            rows += bench_portal(backend.folder, backend.name, backend.database(), config, seconds,
                                 args.quiet_logs)
            if args.baseline:
                rows += bench_portal(backend.folder, backend.name, backend.database("baseline"), config, seconds,
                                     args.quiet_logs, args.baseline.resolve(), " baseline")
        if binary:
            rows += bench_cerbos(tmp, binary, config, seconds)
    table("POST /v1/authorize vs GET /healthz vs Cerbos CheckResources (wrk, loopback)",
          ["target", "connections", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors"],
          [[r["target"], r["connections"], r["per_s"], r["p50_ms"], r["p99_ms"], r["non_2xx"],
            r["socket_errors"] or "-"] for r in rows])
    print()
    print("\n".join(summary(rows)))
    finish(m, args.json, {"seconds": seconds, "rows": rows}, started)


if __name__ == "__main__":
    main()
