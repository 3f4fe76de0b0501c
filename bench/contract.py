"""What declaring routes with flask-openapi3 costs a POST /v1/authorize, in-process.

    python bench/contract.py [--quick] [-n 20000] [--json out.json]

Two apps answer the same `POST /v1/authorize` body with the same stub view (no database, no
policy): one declares the route as the service does (service/api/declare.py: the Api app, a
Routes blueprint, the admission hook with its JSON depth check, flask-openapi3's validation of
the body into AuthorizeRequest); the other is plain Flask with the hand-rolled parse the service
used before (is_json, get_json, AuthorizeRequest.model_validate). The client key check is left
out of both (it is the same code either way). The difference of the medians is what the
declaration layer adds per request. Then the real app's whole POST /v1/authorize on SQLite
(key, facts, decision) for scale, and a 2,000-level nested body, which must be a 400.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import os  # noqa: E402

from bench._common import fmt_load, machine, measure, print_machine  # noqa: E402
from service.api.schemas import AuthorizeRequest, AuthorizeResponse  # noqa: E402  (the view's annotations)

BODY = {"portal": "ahcccs", "actor": "bench.member", "action": "claims",
        "resource": {"type": "organization", "id": "BENCH-0001"}}
ANSWER = {"allowed": True, "reasons": [], "policy_version": "x"}


def declared_app():
    from flask import jsonify

    from service.api.declare import Api, Routes

    bp = Routes("bench", __name__, url_prefix="/v1")

    @bp.post("/authorize", operation_id="authorize", summary="stub", ok=(200, AuthorizeResponse))
    def authorize(body: AuthorizeRequest):
        return jsonify(ANSWER)

    app = Api("bench_declared")
    app.register_api(bp)
    return app


def plain_app():
    from flask import Flask, jsonify, request
    from pydantic import ValidationError

    from service.api.problems import Problem, validation_problem

    app = Flask("bench_plain")

    @app.post("/v1/authorize")
    def authorize():
        if not request.is_json:
            raise Problem(415, "unsupported_media_type", "Unsupported media type", "JSON please")
        data = request.get_json(silent=True)
        if data is None:
            raise Problem(400, "malformed_json", "Malformed JSON", "not JSON")
        try:
            AuthorizeRequest.model_validate(data)
        except ValidationError as exc:
            raise validation_problem(exc) from None
        return jsonify(ANSWER)

    return app


def real_app(tmp: Path):
    from bench.decisions import seed
    from service.app import create_app
    from service.config import load_config
    from service.policy import Policy

    config = load_config(Path(__file__).resolve().parent.parent / "config.yaml")
    database, key = seed(f"sqlite:///{tmp / 'bench.db'}", config)
    return create_app(config, database=database, policy=Policy(config.policy_path)), key


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts (checks the script; figures mean little)")
    parser.add_argument("-n", type=int, default=None, help="requests per measurement (default 20000, quick 1000)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    n = args.n or (1000 if args.quick else 20000)
    print_machine("bench/contract.py: the declaration layer's cost on POST /v1/authorize", machine(),
                  f"flask-openapi3 {__import__('importlib.metadata').metadata.version('flask-openapi3')}")
    payload = json.dumps(BODY)
    figures: dict = {}
    rounds = 1 if args.quick else 3
    for name, app in (("plain Flask + parse", plain_app()), ("declared (flask-openapi3)", declared_app())):
        client = app.test_client()
        assert client.post("/v1/authorize", data=payload, content_type="application/json").status_code == 200
        best = min((measure(lambda: client.post("/v1/authorize", data=payload, content_type="application/json"),
                            n, n // 10) for _ in range(rounds)), key=lambda s: s["p50_us"])
        figures[name] = best
        print(f"{name:28} p50 {best['p50_us']:7.1f} us   p99 {best['p99_us']:7.1f} us   ({n} requests, best of "
              f"{rounds})")
    added = figures["declared (flask-openapi3)"]["p50_us"] - figures["plain Flask + parse"]["p50_us"]
    figures["added_p50_us"] = added
    print(f"the declaration layer adds {added:.1f} us at p50 per POST /v1/authorize")

    with tempfile.TemporaryDirectory() as tmp:
        app, key = real_app(Path(tmp))
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        answer = client.post("/v1/authorize", json=BODY, headers=headers)
        assert answer.status_code == 200 and answer.get_json()["allowed"] is True, answer.get_json()
        whole = measure(lambda: client.post("/v1/authorize", json=BODY, headers=headers), n // 4, n // 40)
        figures["whole_request"] = whole
        print(f"{'whole POST /v1/authorize':28} p50 {whole['p50_us']:7.1f} us   p99 {whole['p99_us']:7.1f} us   "
              f"(SQLite, key + facts + decision)")
        deep = "[" * 2000 + "]" * 2000
        refused = client.post("/v1/authorize", data=deep, content_type="application/json", headers=headers)
        print(f"a body nested 2,000 levels deep: {refused.status_code} {refused.get_json()['code']}: "
              f"{refused.get_json()['detail']}")
        app.extensions["portal_authz"].database.dispose()
    print(f"load average at end: {fmt_load(os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
