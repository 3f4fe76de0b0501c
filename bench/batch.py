"""How long does POST /v1/authorize/batch take for 100 checks? A benchmark script, not a test.

One actor per batch, 100 mixed checks through the public API only (so it measures
whatever the batch path is at the time):
  - an admin: portal functions on its own organization (allowed) and on another
    (denied, not_member), and admin actions on 40 accounts of various statuses
    (approve, enable, disable, remove, upgrade, downgrade, unlock, grant/revoke
    with context.permission, view, comment: allowed or denied by target status);
  - a member: the same functions (allowed where granted, denied otherwise) and the
    same admin actions (denied, not_admin), so denials with reasons are in the mix.

For each backend (a SQLite file, a throw-away PostgreSQL):
  1. in-process, the Flask test client (the whole request: parsing, facts, decisions,
     JSON), p50/p99 per batch; beside it, the same 100 checks as 100 single
     POST /v1/authorize calls in a row, for scale;
  2. a real `portal-authz serve` over loopback, one client on one keep-alive
     connection, p50/p99 per batch.
Before timing, every batch answer is compared with the single /v1/authorize answer
for the same check (they must agree).

    python bench/batch.py [--quick] [-n 300] [--backend sqlite|postgres|both] [--no-http] [--json out.json]
"""
from __future__ import annotations

import http.client
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import (ROOT, arguments, backends, begin, describe_serving, dumps, finish,  # noqa: E402
                           free_port, ms_summary, seed_world, sized, start_server, stop_server, table, wait_ready,
                           write_config)
from service.app import create_app  # noqa: E402
from service.config import load_config  # noqa: E402
from service.policy import Policy  # noqa: E402
from service.storage.database import Database  # noqa: E402

PORTAL, ORG, OTHER_ORG = "ahcccs", "BATCH-0001", "BATCH-0002"
STATUSES = ("active", "active", "active", "locked", "disabled", "pending_approval", "active", "pending_activation")
ACCOUNT_ACTIONS = ("view", "approve", "enable", "disable", "remove", "upgrade", "downgrade", "unlock", "comment",
                   "send_password_recovery", "update_profile", "grant", "revoke")
TARGETS = 40


def people(world) -> None:
    world.organization(ORG)
    world.organization(OTHER_ORG)
    world.account("batch.admin", memberships={ORG: {"role": "admin"}})
    world.account("batch.admin2", memberships={ORG: {"role": "admin"}})
    world.account("batch.member", memberships={ORG: {"permissions": ["claims", "eligibility"]}})
    world.account("other.admin", memberships={OTHER_ORG: {"role": "admin"}})
    for i in range(TARGETS):
        grants = [["claims"], [], ["claims", "prior_authorizations"]][i % 3]
        role = "admin" if i % 10 == 9 else "member"
        world.account(f"batch.user{i:02d}", status=STATUSES[i % len(STATUSES)],
                      memberships={ORG: {"role": role, "permissions": grants}})


def seed(url: str, config) -> tuple[Database, str]:
    return seed_world(url, config, PORTAL, people)


def checks(catalog: tuple[str, ...]) -> list[dict]:
    """100 checks: 6 functions on two organizations, then admin actions over the 40 accounts."""
    out = [{"action": f, "resource": {"type": "organization", "id": org}} for org in (ORG, OTHER_ORG) for f in catalog]
    i = 0
    while len(out) < 100:
        action = ACCOUNT_ACTIONS[i % len(ACCOUNT_ACTIONS)]
        check = {"action": action, "resource": {"type": "account", "id": f"batch.user{i % TARGETS:02d}"}}
        if action in ("grant", "revoke"):
            check["context"] = {"permission": catalog[i % len(catalog)]}
        out.append(check)
        i += 1
    return out


def batch_bodies(catalog) -> dict[str, dict]:
    items = checks(catalog)
    return {actor: {"portal": PORTAL, "actor": actor, "checks": items} for actor in ("batch.admin", "batch.member")}


def singles(body: dict) -> list[dict]:
    return [{"portal": body["portal"], "actor": body["actor"], **check} for check in body["checks"]]


def verify(post, bodies: dict[str, dict]) -> list[str]:
    """Each batch answer against the single /v1/authorize answer for the same check; a summary line per actor."""
    lines = []
    for actor, body in bodies.items():
        status, batch = post("/v1/authorize/batch", body)
        if status != 200:
            raise SystemExit(f"bench: /v1/authorize/batch answered {status}: {batch}")
        results = batch["results"]
        differ = 0
        for single_body, got in zip(singles(body), results):
            status, single = post("/v1/authorize", single_body)
            if status != 200:
                raise SystemExit(f"bench: /v1/authorize answered {status}: {single}")
            differ += (single["allowed"], single["reasons"]) != (got["allowed"], got["reasons"])
        reasons = Counter(r["code"] for res in results for r in res["reasons"])
        allowed = sum(r["allowed"] for r in results)
        lines.append(f"{actor}: {len(results)} checks, {allowed} allowed, {len(results) - allowed} denied "
                     f"({', '.join(f'{k} {v}' for k, v in reasons.most_common())}); "
                     f"{'agrees with' if not differ else f'!! {differ} DIFFER from'} the single /v1/authorize answers")
    return lines


def timed(fn, n: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        lat.append(time.perf_counter_ns() - t0)
    return ms_summary(lat)


def in_process(database: Database, config, policy: Policy, key: str, bodies: dict, n: int) -> tuple[list, list]:
    client = create_app(config, database=database, policy=policy).test_client()
    headers = {"Authorization": f"Bearer {key}"}

    def post(path, body):
        response = client.post(path, json=body, headers=headers)
        return response.status_code, response.get_json()

    lines = verify(post, bodies)
    rows = []
    for actor, body in bodies.items():
        def batch(body=body):
            response = client.post("/v1/authorize/batch", json=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"bench: batch answered {response.status_code}")

        def hundred_singles(body=body):
            for single in singles(body):
                client.post("/v1/authorize", json=single, headers=headers)

        b = timed(batch, n, max(5, n // 10))
        s = timed(hundred_singles, max(3, n // 20), 1)
        rows.append({"actor": actor, "batch": b, "singles": s})
    return lines, rows


def over_http(tmp: Path, db_url: str, key: str, bodies: dict, n: int) -> dict:
    config_path, port, log_path = write_config(tmp), free_port(), tmp / "server.log"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    proc = start_server(config_path, db_url, port, log_path)
    try:
        wait_ready(proc, port, log_path)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rows = []
        for actor, body in bodies.items():
            payload = dumps(body)

            def call(payload=payload):
                conn.request("POST", "/v1/authorize/batch", body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"bench: batch over HTTP answered {response.status}")

            rows.append({"actor": actor, "http": timed(call, n, max(10, n // 5))})  # warms every worker too
        conn.close()
    finally:
        stop_server(proc)
    return {"serving": describe_serving(config_path), "rows": rows}


def run_backend(name: str, url: str, tmp: Path, config, policy: Policy, args) -> dict:
    database, key = seed(url, config)
    bodies = batch_bodies(config.portals[PORTAL].catalog)
    try:
        lines, rows = in_process(database, config, policy, key, bodies, args.n)
    finally:
        database.dispose()
    print(f"\n{name}:\n  " + "\n  ".join(lines), flush=True)
    http_part = None if args.no_http else over_http(tmp, url, key, bodies, args.n)
    return {"backend": name, "checks": lines, "in_process": rows, "http": http_part}


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "n=20 (a smoke run)", backend="both")
    parser.add_argument("-n", type=int, default=None, help="batches timed per actor and layer (default 300)")
    parser.add_argument("--no-http", action="store_true", help="skip the real server")
    args = sized(parser.parse_args(argv), n=(20, 300))
    m = begin("POST /v1/authorize/batch, 100 checks", f"n={args.n} batches per actor and layer")
    config = load_config(ROOT / "config.yaml")
    policy = Policy(config.policy_path)
    results = []
    with tempfile.TemporaryDirectory(prefix="portal-authz-batch-") as tmp_name, ExitStack() as stack:
        for backend in backends(args.backend, Path(tmp_name), stack):
            results.append(run_backend(backend.name, backend.database(), backend.folder, config, policy, args))
    rows = []
    for r in results:
        for part in r["in_process"]:
            b, s = part["batch"], part["singles"]
            rows.append([r["backend"], part["actor"], "in-process batch", b["n"], b["p50_ms"], b["p99_ms"],
                         b["p50_ms"] * 10, "-"])
            rows.append([r["backend"], part["actor"], "in-process 100 singles", s["n"], s["p50_ms"], s["p99_ms"],
                         s["p50_ms"] * 10, f"{s['p50_ms'] / b['p50_ms']:.1f}x"])
        for part in (r["http"] or {}).get("rows", []):
            h = part["http"]
            rows.append([r["backend"], part["actor"], "HTTP batch, 1 client", h["n"], h["p50_ms"], h["p99_ms"],
                         h["p50_ms"] * 10, "-"])
    table("100 checks per request (ms per request; us per check at p50)",
          ["backend", "actor", "layer", "n", "p50 ms", "p99 ms", "us/check", "singles/batch"], rows)
    serving = next((r["http"]["serving"] for r in results if r["http"]), None)
    if serving:
        print(f"  (HTTP: portal-authz serve as shipped: {serving}; one keep-alive connection)")
    print("  (the same batch is repeated: any memo of decisions or facts in the service is warm, as for a "
          "caller asking the same page again)")
    finish(m, args.json, {"results": results})


if __name__ == "__main__":
    main()
