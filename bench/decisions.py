"""How fast are decisions, and where does the time go? A benchmark script, not a test.

Layers, each measured on the same seeded facts so they can be subtracted:
  1/2. Policy.decide on warm in-memory facts beside oso's raw is_allowed (the engine alone);
  3.   Decider (SQLite fact queries + decide), then the Flask app in-process (test client);
  4.   a real `portal-authz serve` (gunicorn) over loopback HTTP, with /healthz as the ceiling.

    python bench/decisions.py [--quick] [--no-http] [--seconds 5] [-n 2000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import (CONCURRENCY, ROOT, arguments, describe_serving, drive, fmt_load,  # noqa: E402
                           free_port, machine, measure, post_script, run_wrk, seed_world, sized, start_server,
                           stop_server, table, wait_ready, write_config)
from service.app import create_app  # noqa: E402
from service.config import load_config  # noqa: E402
from service.domain.decisions import Decider, Question, Resource, profile_of  # noqa: E402
from service.policy import Policy  # noqa: E402
from service.storage.database import Database  # noqa: E402
from tests.fixtures.world import World  # noqa: E402


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


# --- seeded database -----------------------------------------------------------------------------

def personas(world: World) -> None:
    """The benchmark personas: an admin, a member and another member of BENCH-0001 (ahcccs), and an admin, a
    delegate (manage_account) and a user of TIN-0001 (ahw)."""
    world.organization("BENCH-0001")
    world.account("bench.admin", memberships={"BENCH-0001": {"role": "admin"}})
    world.account("bench.member", memberships={"BENCH-0001": {"permissions": ["claims"]}})
    world.account("bench.other", memberships={"BENCH-0001": {"permissions": ["claims"]}})
    ahw = World(world.session, "ahw", world.now)
    ahw.organization("TIN-0001")
    ahw.account("ahw.admin", memberships={"TIN-0001": {"role": "admin"}})
    ahw.account("ahw.delegate", memberships={"TIN-0001": {"permissions": ["manage_account", "claims"]}})
    ahw.account("ahw.user", memberships={"TIN-0001": {"permissions": []}})


def seed(url: str, config) -> tuple[Database, str]:
    """Schema as tests/conftest.py prepares it, the benchmark personas, and an `authorize` client key."""
    return seed_world(url, config, "ahcccs", personas)


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
    """The fast path (memo hit), the same policy with no memo, and the bare engine call, on the same facts."""
    oso = policy.oso()
    cold = Policy(policy.policy_dir, memo_size=0)  # every call evaluates: is_allowed, then deny_reason on a denial
    results = []
    for fam in FAMILIES:
        actor, resource = facts[fam.name]
        if fam.expect is None:
            full = measure(lambda: policy.authorized_actions(actor, resource), n, warmup)
            miss = measure(lambda: cold.authorized_actions(actor, resource), n, warmup)
            raw = measure(lambda: oso.authorized_actions(actor, resource), n, warmup)
        else:
            full = measure(lambda: policy.decide(actor, fam.action, resource), n, warmup)
            miss = measure(lambda: cold.decide(actor, fam.action, resource), n, warmup)
            raw = measure(lambda: oso.is_allowed(actor, fam.action, resource), n, warmup)
        results.append({"family": fam.name, "outcome": outcome(policy, fam, actor, resource),
                        "decide": full, "memo_miss": miss, "raw_oso": raw})
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
                # As the API calls it: by username, the actor's facts read in the same statement.
                if fam.expect is None:
                    return decider.authorized_actions(fam.actor, fam.resource)
                return decider.decide(fam.actor, fam.question)

        body = fam.body()

        def flask_call(fam=fam, body=body):
            response = client.post(fam.path, json=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"bench: {fam.path} answered {response.status_code}: {response.get_data(True)}")

        results.append({"family": fam.name, "decider": measure(decider_call, n, warmup),
                        "flask": measure(flask_call, n, warmup)})
    return results


# --- section 4: a real server over HTTP ---------------------------------------------------------

def bench_http(tmp: Path, db_url: str, key: str, seconds: float) -> dict:
    """Start the real server, load it from this process (and from wrk if installed), always stop it."""
    config_path, port, log_path = write_config(tmp), free_port(), tmp / "server.log"
    fam = FAMILIES[0]
    body = json.dumps(fam.body()).encode()
    post_headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    out = {"serving": describe_serving(config_path), "family": fam.name, "python": [], "wrk": []}
    proc = start_server(config_path, db_url, port, log_path)
    try:
        wait_ready(proc, port, log_path)
        # Warm every worker (engine connections, SQLAlchemy statement caches) before anything is timed.
        drive(port, "POST", fam.path, body, post_headers, 8, 1.0)
        for threads in CONCURRENCY:
            auth = drive(port, "POST", fam.path, body, post_headers, threads, seconds)
            health = drive(port, "GET", "/healthz", None, {}, threads, seconds)
            out["python"].append({"concurrency": threads, "authorize": auth, "healthz": health})
        if shutil.which("wrk"):
            script = post_script(tmp / "authorize.lua", body, post_headers)
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

def report(figures: dict) -> None:
    m = figures["machine"]
    print(f"# portal-authz decision benchmark  {m['date']}")
    print(f"cpu: {m['cpu']}  cores: {m['cores']} (usable {m['usable_cores']})  python {m['python']}  "
          f"oso {m['oso']}  sqlite {m['sqlite']}\nplatform: {m['platform']}  "
          f"load average {fmt_load(m['loadavg_at_start'])}\n{figures['settings']}")
    table("1+2. In-process, warm facts: fast path (memo hit) vs the same policy without memo vs oso is_allowed (raw)",
          ["family", "outcome", "fast p50 us", "fast p99 us", "no-memo p50", "no-memo p99", "raw p50", "raw p99",
           "fast/raw p50"],
          [[r["family"], r["outcome"], r["decide"]["p50_us"], r["decide"]["p99_us"], r["memo_miss"]["p50_us"],
            r["memo_miss"]["p99_us"], r["raw_oso"]["p50_us"], r["raw_oso"]["p99_us"],
            r["decide"]["p50_us"] / r["raw_oso"]["p50_us"]] for r in figures["engine"]])
    print("  (no-memo and raw differ on denials: no-memo asks deny_reason too; authorized_actions: raw ="
          " oso.authorized_actions)")
    table("3. In-process with SQLite: Decider (fact queries + decide) and Flask test client",
          ["family", "decider/s", "p50 us", "p99 us", "flask/s", "p50 us", "p99 us"],
          [[r["family"], r["decider"]["per_s"], r["decider"]["p50_us"], r["decider"]["p99_us"],
            r["flask"]["per_s"], r["flask"]["p50_us"], r["flask"]["p99_us"]] for r in figures["database"]])
    http_figs = figures.get("http")
    if not http_figs:
        return
    table(f"4. portal-authz serve ({http_figs['serving']}) over loopback, "
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
    parser = arguments(__doc__, "small N and 2 s per HTTP level (smoke run)")
    parser.add_argument("--no-http", action="store_true", help="skip the real-server section")
    parser.add_argument("-n", type=int, default=None, help="iterations per in-process family (default 2000)")
    parser.add_argument("--db-n", type=int, default=None, help="iterations per database family (default 500)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per HTTP level (default 5)")
    args = sized(parser.parse_args(argv), n=(200, 2000), db_n=(50, 500), seconds=(2.0, 5.0))
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
