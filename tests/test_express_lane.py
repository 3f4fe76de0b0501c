"""The express lane for POST /v1/authorize answers exactly as the declared route does.

The lane (service/api/express.py) sits in front of Flask. Every request here is sent twice, once
through the lane and once straight to the Flask app behind it, and the two answers must be equal
byte for byte: status, headers (with the same X-Request-Id), body. The lane's own counter says
which requests it answered itself, so these tests also fail if it quietly hands everything over.
On SQLite and PostgreSQL (R5, R10-R14 decisions; R1 reach; the contract's problems).
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client
from werkzeug.wrappers import Response

from service.api.express import ExpressAuthorize
from service.app import create_app
from service.domain import clients
from tests.conftest import make_key
from tests.fixtures.world import World

PORTAL = "ahw"


@pytest.fixture
def lane(config, any_database, policy, clock):
    """(through the lane, straight to the route, the app's metrics registry, keys by name)."""
    with any_database.transaction() as session:
        world = World(session, PORTAL, clock.now())
        world.organization("TIN-1")
        world.organization("TIN-2")
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("both", memberships={"TIN-1": {}, "TIN-2": {"permissions": ["claims"]}})
        world.account("newbie", status="pending_approval", memberships={"TIN-1": {}})
        world.account("gone", status="disabled", memberships={"TIN-1": {"permissions": ["claims"]}})
    app = create_app(config, database=any_database, policy=policy, clock=clock)
    express = app.wsgi_app
    assert isinstance(express, ExpressAuthorize)
    keys = {"authorize": make_key(any_database, ("authorize",), clock.now()),
            "manage": make_key(any_database, ("manage",), clock.now())}
    with any_database.transaction() as session:
        keys["revoked"] = clients.create_client(session, "old", ("authorize",), clock.now())
        clients.revoke(session, "old", clock.now(), actor="test")
    registry = app.extensions["portal_authz_observe"].metrics.registry
    return Client(express, Response), Client(express.route, Response), registry, keys


def _answered(registry) -> float:
    """What /metrics reports as answered by the lane."""
    return registry.get_sample_value("portal_authz_authorize_express_total", {"outcome": "answered"}) or 0.0


def _both(lane, body: bytes, headers: dict):
    through, direct, registry, _ = lane
    headers = {"X-Request-Id": "same-id", **headers}
    before = _answered(registry)
    a = through.post("/v1/authorize", data=body, headers=headers)
    by_lane = _answered(registry) > before
    b = direct.post("/v1/authorize", data=body, headers=headers)
    assert (a.status_code, a.get_data()) == (b.status_code, b.get_data())
    assert list(a.headers.items()) == list(b.headers.items())
    return a, by_lane


def _json(headers=None, key="authorize", **body):
    return json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}, key


QUESTIONS = [  # well formed: the lane answers every one of these itself
    {"actor": "biller", "action": "claims", "resource": {"type": "organization", "id": "TIN-1"}},
    {"actor": "biller", "action": "eligibility", "resource": {"type": "organization", "id": "TIN-1"}},
    {"actor": "gone", "action": "claims", "resource": {"type": "organization", "id": "TIN-1"}},
    {"actor": "nobody", "action": "claims", "resource": {"type": "organization", "id": "TIN-1"}},
    {"actor": "manager", "action": "approve", "resource": {"type": "account", "id": "newbie"}},
    {"actor": "biller", "action": "approve", "resource": {"type": "account", "id": "newbie", "organization": "TIN-1"}},
    {"actor": "manager", "action": "upgrade", "resource": {"type": "account", "id": "biller"}},
    {"actor": "manager", "action": "grant", "resource": {"type": "account", "id": "biller"},
     "context": {"permission": "claims"}},
    {"actor": "manager", "action": "remove", "resource": {"type": "account", "id": "both", "organization": "TIN-1"}},
    {"actor": "both", "action": "claims", "resource": {"type": "organization", "id": "TIN-2"}},
    {"actor": "manager", "action": "fly", "resource": {"type": "organization", "id": "TIN-1"}},
    {"actor": "Biller", "action": "claims", "resource": {"type": "organization", "id": "TIN-1"}, "explain": False},
]


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: f"{q['actor']}-{q['action']}")
def test_the_lane_answers_well_formed_questions_as_the_route_does(lane, question):
    body, headers, key = _json(**{"portal": PORTAL, **question})
    answer, by_lane = _both(lane, body, {**headers, "Authorization": f"Bearer {lane[3][key]}"})
    assert answer.status_code == 200 and by_lane


def _handed_over_cases(keys):
    ok = {"portal": PORTAL, "actor": "biller", "action": "claims", "resource": {"type": "organization", "id": "TIN-1"}}
    good = {"Content-Type": "application/json", "Authorization": f"Bearer {keys['authorize']}"}
    text = json.dumps(ok).encode()
    return {
        "no key": (text, {"Content-Type": "application/json"}),
        "not bearer": (text, {**good, "Authorization": f"Basic {keys['authorize']}"}),
        "unknown key": (text, {**good, "Authorization": "Bearer pak_0000_nope"}),
        "malformed key": (text, {**good, "Authorization": "Bearer nope"}),
        "revoked key": (text, {**good, "Authorization": f"Bearer {keys['revoked']}"}),
        "manage key": (text, {**good, "Authorization": f"Bearer {keys['manage']}"}),
        "text/plain": (text, {**good, "Content-Type": "text/plain"}),
        "not json": (b"{portal: ahw}", good),
        "array": (b"[1, 2]", good),
        "string": (b'"ahw"', good),
        "empty": (b"", good),
        "too deep": (b'{"context": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", good),
        "too large": (json.dumps({**ok, "context": {"pad": "x" * 70000}}).encode(), good),
        "extra field": (json.dumps({**ok, "extra": 1}).encode(), good),
        "no actor": (json.dumps({k: v for k, v in ok.items() if k != "actor"}).encode(), good),
        "bad action": (json.dumps({**ok, "action": "Claims!"}).encode(), good),
        "explain": (json.dumps({**ok, "explain": True}).encode(), good),
        "explain maybe": (json.dumps({**ok, "explain": "maybe"}).encode(), good),
        "unknown portal": (json.dumps({**ok, "portal": "nowhere"}).encode(), good),
        "unknown organization": (json.dumps({**ok, "resource": {"type": "organization", "id": "TIN-9"}}).encode(),
                                 good),
        "unknown account": (json.dumps({**ok, "action": "approve",
                                        "resource": {"type": "account", "id": "ghost"}}).encode(), good),
        "several organizations": (json.dumps({**ok, "actor": "manager", "action": "remove",
                                              "resource": {"type": "account", "id": "both"}}).encode(), good),
        "grant without permission": (json.dumps({**ok, "actor": "manager", "action": "grant",
                                                 "resource": {"type": "account", "id": "biller"}}).encode(), good),
        "utf-16": (json.dumps(ok).encode("utf-16"), good),
        "declared utf-16": (json.dumps(ok).encode("utf-16"), {**good, "Content-Type": "application/json; charset=utf-16"}),
        "declared latin-1": (text, {**good, "Content-Type": "application/json; charset=iso-8859-1"}),
        "deep utf-16-le behind an escaped quote": (
            ('{"a":"\\"","b":' + "[" * 5000 + "]" * 5000 + ',"c":"d"}').encode("utf-16-le"), good),
        "not utf-8": (text.replace(b'"biller"', b'"b\xe9ller"'), good),
        "lone surrogate actor": (text.replace(b'"biller"', b'"b\\ud800"'), good),
        "lone surrogate organization": (text.replace(b'"TIN-1"', b'"\\udfff"'), good),
    }


def test_everything_else_is_handed_to_the_route_which_answers_it(lane):
    cases = _handed_over_cases(lane[3])
    for name, (body, headers) in cases.items():
        answer, by_lane = _both(lane, body, headers)
        assert not by_lane, name
        assert answer.status_code != 200 or name == "explain", (name, answer.get_data())
        assert answer.status_code < 500, (name, answer.get_data())


def test_bodies_the_lane_parses_itself_match_the_routes_reading(lane):
    """JSON the two parsers might read differently: duplicate keys, escapes, a charset parameter."""
    key = {"Authorization": f"Bearer {lane[3]['authorize']}"}
    cases = [
        (b'{"portal": "ahw", "actor": "nobody", "actor": "biller", "action": "claims", '
         b'"resource": {"type": "organization", "id": "TIN-1"}}', "application/json"),
        (b'{"portal": "ahw", "actor": "b\\u0069ller", "action": "claims", '
         b'"resource": {"type": "organization", "id": "TIN-1"}}', "application/json; charset=utf-8"),
        (b'{"portal": "ahw", "actor": "biller", "action": "claims", "context": {"n": 1e400}, '
         b'"resource": {"type": "organization", "id": "TIN-1"}}', "application/json"),
        (b'\xef\xbb\xbf{"portal": "ahw", "actor": "biller", "action": "claims", '
         b'"resource": {"type": "organization", "id": "TIN-1"}}', "application/json"),
    ]
    for body, content_type in cases:
        _both(lane, body, {**key, "Content-Type": content_type})


names = st.sampled_from(["biller", "manager", "both", "newbie", "gone", "nobody", "BILLER", ""])
resources = st.one_of(
    st.fixed_dictionaries({"type": st.just("organization"), "id": st.sampled_from(["TIN-1", "TIN-2", "TIN-9"])}),
    st.fixed_dictionaries({"type": st.just("account"), "id": names},
                          optional={"organization": st.sampled_from(["TIN-1", "TIN-2", "TIN-9"])}))
questions = st.fixed_dictionaries(
    {"portal": st.sampled_from([PORTAL, "qm", "nowhere"]), "actor": names,
     "action": st.sampled_from(["claims", "eligibility", "approve", "upgrade", "downgrade", "grant", "revoke",
                                "remove", "disable", "unlock", "view", "fly"]),
     "resource": resources},
    optional={"context": st.fixed_dictionaries({}, optional={"permission": st.sampled_from(["claims", "x", 3])}),
              "explain": st.booleans()})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=questions)
def test_any_question_is_answered_alike_by_both(lane, question):
    _both(lane, json.dumps(question).encode(),
          {"Content-Type": "application/json", "Authorization": f"Bearer {lane[3]['authorize']}"})
