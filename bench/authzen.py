"""What does asking through AuthZEN cost beside /v1/authorize? A benchmark script, not a test.

The same question both ways, "bench.member may `claims` on BENCH-0001" (facts read from the
database on every request), on a fresh SQLite file:
  1. in-process, the Flask test client: POST /v1/authorize and POST /authzen/ahcccs/access/v1/evaluation
     (and, for scale, the evaluations endpoint with 10 items);
  2. a real `portal-authz serve` (as shipped) over loopback, one client on one keep-alive connection.
The two are measured in alternating rounds, so a change in the machine's load falls on both. Before
timing, both must answer allowed with no reasons, and `eligibility` denied with the same reasons.
Prints p50/p99 per request and the AuthZEN / v1 ratio of the medians (the target: within 10%, AuthZEN callers pay no
more than /v1 callers).

    python bench/authzen.py [--quick] [-n 2000] [--rounds 5] [--no-http] [--json out.json]
"""
from __future__ import annotations

import http.client
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import (ROOT, arguments, begin, describe_serving, dumps, finish, free_port,  # noqa: E402
                           ms_summary, seed_world, start_server, stop_server, table, wait_ready, write_config)
from service.app import create_app  # noqa: E402
from service.config import load_config  # noqa: E402
from service.policy import Policy  # noqa: E402
from service.storage.database import Database  # noqa: E402

PORTAL, ORG = "ahcccs", "BENCH-0001"


def v1_body(action: str) -> dict:
    return {"portal": PORTAL, "actor": "bench.member", "action": action,
            "resource": {"type": "organization", "id": ORG}}


def authzen_body(action: str) -> dict:
    return {"subject": {"type": "account", "id": "bench.member"}, "action": {"name": action},
            "resource": {"type": "organization", "id": ORG}}


V1 = "/v1/authorize"
EVALUATION = f"/authzen/{PORTAL}/access/v1/evaluation"
EVALUATIONS = f"/authzen/{PORTAL}/access/v1/evaluations"
BATCH10 = {"subject": {"type": "account", "id": "bench.member"}, "resource": {"type": "organization", "id": ORG},
           "evaluations": [{"action": {"name": a}} for a in ["claims", "eligibility"] * 5]}


def people(world) -> None:
    world.organization(ORG)
    world.account("bench.admin", memberships={ORG: {"role": "admin"}})
    world.account("bench.member", memberships={ORG: {"permissions": ["claims"]}})


def seed(url: str, config) -> str:
    database, key = seed_world(url, config, PORTAL, people, client="bench-authzen")
    database.dispose()
    return key


def check(send) -> None:
    """Both endpoints give the same decision and reasons, allowed and denied."""
    for action, allowed in (("claims", True), ("eligibility", False)):
        v1 = send(V1, v1_body(action))
        az = send(EVALUATION, authzen_body(action))
        assert v1["allowed"] is allowed and az["decision"] is allowed, (v1, az)
        assert az["context"]["reasons"] == v1["reasons"], (v1, az)


def alternate(timers: dict, n: int, rounds: int) -> dict[str, list[int]]:
    """`rounds` rounds of n calls of each timer in turn; the latencies of each, in ns."""
    out: dict[str, list[int]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, fn in timers.items():
            for _ in range(n // rounds):
                t0 = time.perf_counter_ns()
                fn()
                out[name].append(time.perf_counter_ns() - t0)
    return out


def report(title: str, lat: dict[str, list[int]]) -> dict:
    rows, figures = [], {}
    for name, values in lat.items():
        summary = ms_summary(values)
        figures[name] = summary
        rows.append([name, len(values), f"{summary['p50_ms']:.3f}", f"{summary['p99_ms']:.3f}"])
    table(title, ["request", "n", "p50 ms", "p99 ms"], rows)
    ratio = figures["authzen evaluation"]["p50_ms"] / figures["v1 authorize"]["p50_ms"]
    print(f"AuthZEN evaluation / v1 authorize, p50: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)", flush=True)
    figures["ratio_p50"] = ratio
    return figures


def in_process(url: str, key: str, config, n: int, rounds: int) -> dict:
    app = create_app(config, database=Database(url), policy=Policy(config.policy_path))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}

    def send(path, body):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    check(send)
    timers = {
        "v1 authorize": lambda: send(V1, v1_body("claims")),
        "authzen evaluation": lambda: send(EVALUATION, authzen_body("claims")),
        "authzen evaluations x10": lambda: send(EVALUATIONS, BATCH10),
    }
    alternate(timers, max(rounds, n // 10), rounds)  # warm-up
    return report("in-process (Flask test client)", alternate(timers, n, rounds))


def over_http(url: str, key: str, config_path: Path, tmp: Path, n: int, rounds: int) -> dict:
    port = free_port()
    log = tmp / "serve.log"
    proc = start_server(config_path, url, port, log)
    try:
        wait_ready(proc, port, log)
        print(f"serving: {describe_serving(config_path)}", flush=True)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def send(path, body):
            conn.request("POST", path, body=dumps(body), headers=headers)
            response = conn.getresponse()
            payload = response.read()
            assert response.status == 200, payload
            return json.loads(payload)

        check(send)
        v1, az, batch = dumps(v1_body("claims")), dumps(authzen_body("claims")), dumps(BATCH10)

        def raw(path, payload):
            conn.request("POST", path, body=payload, headers=headers)
            response = conn.getresponse()
            response.read()

        timers = {
            "v1 authorize": lambda: raw(V1, v1),
            "authzen evaluation": lambda: raw(EVALUATION, az),
            "authzen evaluations x10": lambda: raw(EVALUATIONS, batch),
        }
        alternate(timers, max(rounds, n // 10), rounds)  # warm every worker's memo and connections
        figures = report("over HTTP (portal-authz serve, one keep-alive client)", alternate(timers, n, rounds))
        conn.close()
        return figures
    finally:
        stop_server(proc)


def main(argv=None) -> None:
    parser = arguments(__doc__, "small counts: checks the script works")
    parser.add_argument("-n", type=int, default=3000, help="requests per endpoint and layer")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args(argv)
    n = 200 if args.quick else args.n
    m = begin("bench/authzen.py: AuthZEN evaluation beside /v1/authorize")
    config = load_config(ROOT / "config.yaml")
    results: dict = {"n": n}
    with tempfile.TemporaryDirectory(prefix="bench-authzen-") as name:
        tmp = Path(name)
        url = f"sqlite:///{tmp / 'bench.db'}"
        key = seed(url, config)
        results["in_process"] = in_process(url, key, config, n, args.rounds)
        if not args.no_http:
            results["http"] = over_http(url, key, write_config(tmp), tmp, n, args.rounds)
    finish(m, args.json, results)


if __name__ == "__main__":
    main()
