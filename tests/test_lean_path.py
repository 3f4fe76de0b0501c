"""Every decision endpoint takes one path, the lean one (service/api/lean.py), whatever the request.

The decision endpoints are declared Flask routes served without Flask's per-request machinery; these
tests prove that no request to one of them reaches Flask's routing (so there is no second path to keep
equal), that the lean rules match exactly the requests Flask's URL map would route to them, and that
what Flask's error handler would answer (problems, 413, a short body, an unexpected error, a busy
database) is answered alike on the lean path. The answers themselves are checked against the contract
by test_api_contract, test_hostile_bodies, test_authzen_conformance and test_observability.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from io import BytesIO

import pytest
from flask import Flask
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from service.api import lean
from service.api.lean import LeanRoutes
from service.domain.decisions import Decider

DECISION_ENDPOINTS = {"decisions.authorize", "decisions.authorize_batch", "decisions.authorized_actions",
                      "authzen.evaluation", "authzen.evaluations"}
ORG = {"type": "organization", "id": "TIN-1"}


def _requests():
    subject = {"type": "account", "id": "biller"}
    return {
        "/v1/authorize": {"portal": "ahw", "actor": "biller", "action": "claims", "resource": ORG},
        "/v1/authorize/batch": {"portal": "ahw", "actor": "biller", "checks": [{"action": "claims", "resource": ORG}]},
        "/v1/authorized-actions": {"portal": "ahw", "actor": "manager",
                                   "resource": {"type": "account", "id": "biller"}},
        "/authzen/ahw/access/v1/evaluation": {"subject": subject, "action": {"name": "claims"}, "resource": ORG},
        "/authzen/ahw/access/v1/evaluations": {"subject": subject, "resource": ORG,
                                               "evaluations": [{"action": {"name": "claims"}}]},
    }


def test_the_lean_routes_are_the_decision_endpoints(app):
    assert {name for name, declared in app.declarations.items() if declared.lean} == DECISION_ENDPOINTS


def test_no_request_to_a_decision_endpoint_reaches_flask(app, client, authorize_key, clinic, monkeypatch):
    def no_flask(*_args):
        raise AssertionError("a decision endpoint was routed by Flask")

    monkeypatch.setattr(Flask, "wsgi_app", no_flask)
    headers = {"Authorization": f"Bearer {authorize_key}"}
    for path, body in _requests().items():
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 200, (path, answer.get_data(True))
        for refused in (client.post(path, json=body), client.post(path, data="[", headers={**headers, "Content-Type": "application/json"})):
            assert refused.status_code in (400, 401) and refused.headers["X-Request-Id"], path
    with pytest.raises(AssertionError, match="routed by Flask"):
        client.get("/healthz")


@pytest.mark.parametrize("path", [
    "/v1/authorize", "/v1/authorize/", "/v1//authorize", "/V1/authorize", "/v1/authorize/batch",
    "/v1/authorized-actions", "/v1/authorized-actions/x", "/authzen/ahw/access/v1/evaluation",
    "/authzen/ahw/access/v1/evaluations", "/authzen/ahw/access/v1/evaluations/", "/authzen//access/v1/evaluation",
    "/authzen/a/b/access/v1/evaluation", "/authzen/\u00e4rzte/access/v1/evaluation",
    "/authzen/ahw/access/v1/search/subject", "/v1/portals/ahw/registrations",
])
def test_the_lean_rules_match_what_flask_would_route_to_them(app, path):
    try:
        endpoint, _ = app.url_map.bind("localhost").match(path, method="POST")
    except (NotFound, MethodNotAllowed, RequestRedirect):
        endpoint = None
    found = LeanRoutes(app).match(path.encode().decode("latin-1"))  # PATH_INFO as a WSGI server passes it
    lean = found[0].rule if found is not None else None
    flask = next(r.rule for r in app.url_map.iter_rules() if r.endpoint == endpoint) \
        if endpoint in DECISION_ENDPOINTS else None
    assert lean == flask


def test_a_lean_route_answers_post_only(app):
    assert all(rule.methods - {"OPTIONS"} == {"POST"} for rule in app.url_map.iter_rules()
               if rule.endpoint in DECISION_ENDPOINTS)


def _call(app, path: str, body: bytes, **environ):
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
           "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
           "wsgi.input": BytesIO(body), **environ}
    status = []
    payload = b"".join(app(env, lambda line, headers, exc_info=None: status.append((line, dict(headers)))))
    return status[0][0], status[0][1], json.loads(payload)


def test_a_body_shorter_or_longer_than_allowed_is_a_problem(app, authorize_key, clinic):
    key = {"HTTP_AUTHORIZATION": f"Bearer {authorize_key}"}
    body = json.dumps(_requests()["/v1/authorize"]).encode()
    line, headers, problem = _call(app, "/v1/authorize", body, CONTENT_LENGTH=str(len(body) + 10), **key)
    assert line == "400 BAD REQUEST" and problem["status"] == 400 and headers["X-Request-Id"]
    line, _, problem = _call(app, "/v1/authorize", body, CONTENT_LENGTH=str(10 ** 9), **key)
    assert line.startswith("413") and problem["code"] == "payload_too_large"
    line, _, problem = _call(app, "/v1/authorize", body, **key)
    assert line == "200 OK" and problem["allowed"] is True


def test_an_unexpected_error_is_a_logged_500_with_the_request_id(app, client, authorize_key, clinic, monkeypatch,
                                                                  caplog):
    def fail(*_args, **_kwargs):
        raise ZeroDivisionError

    monkeypatch.setattr(Decider, "decide", fail)
    caplog.set_level(logging.ERROR)
    answer = client.post("/v1/authorize", json=_requests()["/v1/authorize"],
                         headers={"Authorization": f"Bearer {authorize_key}", "X-Request-Id": "trace-lean"})
    assert answer.status_code == 500 and answer.get_json()["code"] == "internal_error"
    assert answer.headers["X-Request-Id"] == "trace-lean" and answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Content-Type"] == "application/problem+json"
    [record] = [r for r in caplog.records if r.message == "unhandled error"]
    assert record.exc_info[0] is ZeroDivisionError


def test_a_busy_database_is_a_503_to_retry(app, client, authorize_key, clinic, monkeypatch):
    def busy(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(Decider, "authorized_actions", busy)
    answer = client.post("/v1/authorized-actions", json=_requests()["/v1/authorized-actions"],
                         headers={"Authorization": f"Bearer {authorize_key}"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.get_json()["code"] == "database_busy"


def test_authzen_statuses_hold_on_the_lean_path(client, authorize_key, clinic):
    headers = {"Authorization": f"Bearer {authorize_key}"}
    for path in ("/authzen/ahw/access/v1/evaluation", "/authzen/ahw/access/v1/evaluations"):
        media = client.post(path, data="{}", headers={**headers, "Content-Type": "text/plain"})
        schema = client.post(path, json={"subject": {"type": "account"}}, headers=headers)
        assert (media.status_code, media.get_json()["code"]) == (400, "unsupported_media_type")
        assert (schema.status_code, schema.get_json()["code"]) == (400, "validation_error")


def test_every_request_the_express_lane_handed_over_is_answered_as_the_contract_says(client, database, clock, build,
                                                                                      authorize_key):
    """What the retired equivalence test sent to both paths, now checked against shared/api-v1.md on the one path."""
    from service.domain import clients
    from tests.conftest import make_key

    with build("ahw") as world:
        world.organization("TIN-1")
        world.organization("TIN-2")
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("both", memberships={"TIN-1": {}, "TIN-2": {"permissions": ["claims"]}})
    manage = make_key(database, ("manage",), clock.now())
    with database.transaction() as session:
        revoked = clients.create_client(session, "old", ("authorize",), clock.now())
        clients.revoke(session, "old", clock.now(), actor="test")
    ok = {"portal": "ahw", "actor": "biller", "action": "claims", "resource": ORG}
    good = {"Content-Type": "application/json", "Authorization": f"Bearer {authorize_key}"}
    text = json.dumps(ok).encode()

    def body(**changes):
        return json.dumps({**ok, **changes}).encode()

    cases = {
        "no key": (text, {"Content-Type": "application/json"}, 401, "unauthenticated"),
        "not bearer": (text, {**good, "Authorization": f"Basic {authorize_key}"}, 401, "unauthenticated"),
        "unknown key": (text, {**good, "Authorization": "Bearer pak_0000_nope"}, 401, "unauthenticated"),
        "malformed key": (text, {**good, "Authorization": "Bearer nope"}, 401, "unauthenticated"),
        "revoked key": (text, {**good, "Authorization": f"Bearer {revoked}"}, 401, "unauthenticated"),
        "manage key": (text, {**good, "Authorization": f"Bearer {manage}"}, 403, "insufficient_scope"),
        "text/plain": (text, {**good, "Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        "not json": (b"{portal: ahw}", good, 400, "malformed_json"),
        "array": (b"[1, 2]", good, 422, "validation_error"),
        "string": (b'"ahw"', good, 422, "validation_error"),
        "empty": (b"", good, 400, "malformed_json"),
        "too deep": (b'{"context": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", good, 400, "malformed_json"),
        "too large": (body(context={"pad": "x" * 70000}), good, 413, "payload_too_large"),
        "extra field": (body(extra=1), good, 422, "validation_error"),
        "no actor": (json.dumps({k: v for k, v in ok.items() if k != "actor"}).encode(), good, 422,
                     "validation_error"),
        "bad action": (body(action="Claims!"), good, 422, "validation_error"),
        "explain maybe": (body(explain="maybe"), good, 422, "validation_error"),
        "unknown portal": (body(portal="nowhere"), good, 404, "not_found"),
        "unknown organization": (body(resource={"type": "organization", "id": "TIN-9"}), good, 404, "not_found"),
        "unknown account": (body(action="approve", resource={"type": "account", "id": "ghost"}), good, 404,
                            "not_found"),
        "several organizations": (body(actor="manager", action="remove", resource={"type": "account", "id": "both"}),
                                  good, 422, "validation_error"),
        "grant without permission": (body(actor="manager", action="grant",
                                          resource={"type": "account", "id": "biller"}), good, 422, "validation_error"),
        "utf-16": (json.dumps(ok).encode("utf-16"), good, 400, "malformed_json"),
        "declared utf-16": (json.dumps(ok).encode("utf-16"), {**good, "Content-Type": "application/json; charset=utf-16"},
                            415, "unsupported_media_type"),
        "declared latin-1": (text, {**good, "Content-Type": "application/json; charset=iso-8859-1"}, 415,
                             "unsupported_media_type"),
        "deep utf-16-le behind an escaped quote": (
            ('{"a":"\\"","b":' + "[" * 5000 + "]" * 5000 + ',"c":"d"}').encode("utf-16-le"), good, 400,
            "malformed_json"),
        "not utf-8": (text.replace(b'"biller"', b'"b\xe9ller"'), good, 400, "malformed_json"),
        "lone surrogate actor": (text.replace(b'"biller"', b'"b\\ud800"'), good, 422, "validation_error"),
        "lone surrogate organization": (text.replace(b'"TIN-1"', b'"\\udfff"'), good, 422, "validation_error"),
    }
    for name, (data, headers, status, code) in cases.items():
        answer = client.post("/v1/authorize", data=data, headers={"X-Request-Id": "same-id", **headers})
        assert (answer.status_code, answer.get_json()["code"]) == (status, code), (name, answer.get_data(True))
        assert answer.headers["Content-Type"] == "application/problem+json", name
        assert (answer.headers["X-Request-Id"], answer.headers["Cache-Control"],
                answer.headers["X-Content-Type-Options"]) == ("same-id", "no-store", "nosniff"), name
    explained = client.post("/v1/authorize", data=body(explain=True), headers=good).get_json()
    assert explained["allowed"] is True and explained["explanation"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                    max_leaves=20)


@given(JSON)
@example({"allowed": True, "reasons": [], "policy_version": "v"})
@example([float("nan"), float("-inf"), "\u00e9\U0001F600", {"1": {"2": [1e300, -0.0]}}])
def test_an_answer_is_encoded_as_jsonify_encodes_it(value):
    """The lean path's encoder, its C encoder made once, writes what json.dumps (compact, ASCII: jsonify) writes."""
    assert lean._encode(value) == json.dumps(value, separators=(",", ":"))


def test_an_answer_that_is_not_json_is_still_refused():
    with pytest.raises(TypeError):
        lean._encode({"when": object()})
