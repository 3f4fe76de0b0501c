"""What do request ids, metrics, the access log and the decision log add to a decision? A benchmark, not a test.

The same app answers POST /v1/authorize through the Flask test client with the
observation hooks removed and with them in place (access log formatted as JSON
to /dev/null, as when served; then also the decision log in mode `all`).
Rounds alternate so that other load on the machine hits every variant alike, and
times are this process's CPU time (time.process_time), which others' load on a
shared machine disturbs far less than wall time.
/healthz shows the hooks alone (a cheap route, so the difference is not lost in noise).

    python bench/observability.py [-n 5000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable without PYTHONPATH

from service import observe  # noqa: E402
from service.app import create_app  # noqa: E402
from service.clock import FixedClock  # noqa: E402
from service.config import DecisionLog, load_config  # noqa: E402
from service.domain import clients  # noqa: E402
from service.domain.setup import sync_portals  # noqa: E402
from service.observe.logs import JsonFormatter  # noqa: E402
from service.policy import Policy  # noqa: E402
from service.storage.database import Database  # noqa: E402
from tests.fixtures.world import World  # noqa: E402

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def strip(app) -> None:
    """The app as it was before service.observe: no hooks, no recording."""
    obs = app.extensions.pop(observe.EXTENSION)
    app.before_request_funcs[None].remove(obs.before)
    app.after_request_funcs[None].remove(obs.after)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    config = load_config(ROOT / "config.yaml")
    database = Database(f"sqlite:///{tmp / 'bench.db'}")
    database.upgrade_schema()
    with database.transaction() as session:
        sync_portals(session, config)
        world = World(session, "ahcccs", NOW)
        world.organization("ORG-1")
        world.account("alice", memberships={"ORG-1": {"permissions": ["claims"]}})
        key = clients.create_client(session, "bench", ("authorize",), NOW)
    policy = Policy(config.policy_path)

    # As served: the access log formatted as JSON lines (to /dev/null, so the terminal's speed is not measured).
    devnull = open("/dev/null", "w")
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)

    def app_for(variant: str):
        cfg = config
        if variant == "observed + decision log":
            cfg = config.model_copy(update={"decision_log": DecisionLog(mode="all", path=tmp / "decisions.jsonl")})
        app = create_app(cfg, database=database, policy=policy, clock=FixedClock(NOW))
        if variant == "without":
            strip(app)
        return app.test_client()

    variants = ["without", "observed", "observed + decision log"]
    clients_ = {v: app_for(v) for v in variants}
    body = {"portal": "ahcccs", "actor": "alice", "action": "claims",
            "resource": {"type": "organization", "id": "ORG-1"}}
    headers = {"Authorization": f"Bearer {key}"}
    for client in clients_.values():  # warm up
        for _ in range(200):
            assert client.post("/v1/authorize", json=body, headers=headers).status_code == 200

    def run(path: str, payload, n: int) -> None:
        per_request: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                post = clients_[variant].post if payload is not None else clients_[variant].get
                kwargs = {"json": payload, "headers": headers} if payload is not None else {}
                start = time.process_time()
                for _ in range(n):
                    post(path, **kwargs)
                per_request[variant].append((time.process_time() - start) / n * 1e6)
        base = statistics.median(per_request["without"])
        print(f"{path}: {n} requests x {args.rounds} rounds via the Flask test client (median CPU µs/request)")
        for variant in variants:
            median = statistics.median(per_request[variant])
            print(f"  {variant:<26} {median:8.1f} µs   {median - base:+6.1f} µs   "
                  f"(rounds: {', '.join(f'{x:.0f}' for x in per_request[variant])})")

    run("/healthz", None, args.n)  # the hooks alone, on the cheapest route
    run("/v1/authorize", body, args.n)  # the hooks and the decision recording, beside a whole decision
    direct(clients_["observed"].application, args.n)


def direct(app, n: int) -> None:
    """The same work timed on its own inside one request context: what whole requests add, without their noise."""
    from flask import Response

    from service.domain.decisions import Question, Resource
    from service.policy import Decision

    obs = app.extensions[observe.EXTENSION]
    question = Question("claims", Resource("organization", "ORG-1"), {})
    decision = Decision(False, ("permission_not_granted",), "0123456789abcdef")
    response = Response("{}", mimetype="application/json")
    access = logging.getLogger("portal_authz.access")
    with app.test_request_context("/v1/authorize", method="POST"):
        def once():
            obs.before()
            observe.decision("ahcccs", "alice", question, decision)
            obs.after(response)

        print(f"in one request context, {n} times (best of 5, µs per request):")
        for label, level in (("hooks + decision, access log on", logging.INFO),
                             ("hooks + decision, access log disabled", logging.WARNING)):
            access.setLevel(level)
            best = min(timeit(once, n) for _ in range(5))
            print(f"  {label:<40} {best:6.1f} µs")
        access.setLevel(logging.NOTSET)


def timeit(fn, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6

if __name__ == "__main__":
    main()
