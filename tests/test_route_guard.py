"""One test walks every route of the URL map and proves each refuses a request without
a client key (401 `unauthenticated`, before anything is read), and each route that acts for a person
refuses a request with a key but without a session (401). A new route cannot forget either.
R26 (only a portal's own client calls the service), R1 (a person's changes are that person's).
"""
from __future__ import annotations

import pytest

from tests.conftest import make_key

# Routes anyone may call, by design: probes, the published contract, the metrics scrape, AuthZEN discovery.
PUBLIC = {"health.healthz", "health.readyz", "openapi.openapi_json", "metrics.metrics", "authzen.metadata", "static"}
# The smallest valid body of each route that needs a session, so that the session check, not the schema, answers.
PERSON = {"first_name": "Pat", "last_name": "Lee", "email": "pat@example.org", "phone": "602-555-0101",
          "password": "Valid#Pass2024x"}
SESSION_BODIES = {
    "registration.reissue_activation_code": {"username": "someone"},
    "sessions.sign_out": None,
    "accounts.patch_account": {"first_name": "Pat"},
    "accounts.act": None,
    "accounts.put_permissions": {"permissions": []},
    "roster.create_subordinate": {"organization": "ORG1", "username": "newbie", **PERSON},
    "roster.link": {"username": "someone"},
    "roster.list_accounts": None,
    "access_requests.request_access": {"permission": "claims"},
    "access_requests.list_access_requests": None,
    "access_requests.approve": None,
    "access_requests.decline": None,
}
VALUES = {"portal": "ahcccs", "org": "ORG1", "username": "someone", "path_action": "approve",
          "filename": "x", "request_id": "1"}


def routes(app):
    """(endpoint, method, path, declaration) for every rule and method of the URL map."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console"):
            continue  # the console's pages: a browser session and CSRF guard them (tests/test_console.py)
        blueprint, _, name = rule.endpoint.rpartition(".")
        declared = app.blueprints[blueprint].declared.get(name) if blueprint in app.blueprints else None
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", VALUES[argument]).replace(f"<path:{argument}>", VALUES[argument])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path, declared


def test_every_route_but_the_public_ones_refuses_a_request_without_a_client_key(app, client):
    walked = 0
    for endpoint, method, path, declared in routes(app):
        if endpoint in PUBLIC:
            assert declared is None or declared.scope is None, endpoint
            continue
        assert declared is not None and declared.scope, f"{endpoint} is neither public nor scoped"
        response = client.open(path, method=method, json={})
        assert response.status_code == 401, (endpoint, response.status_code, response.get_json())
        assert response.get_json()["code"] == "unauthenticated", endpoint
        walked += 1
    assert walked >= 30


def test_every_route_that_acts_for_a_person_refuses_a_request_without_a_session(app, client, database, clock):
    key = make_key(database, ("manage",), clock.now())
    needing = {endpoint: (method, path) for endpoint, method, path, declared in routes(app)
               if declared is not None and declared.session == "required"}
    assert set(needing) == set(SESSION_BODIES), "give each route that needs a session its smallest valid body"
    for endpoint, (method, path) in needing.items():
        body = SESSION_BODIES[endpoint]
        response = client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401, (endpoint, response.status_code, response.get_json())
        assert response.get_json()["code"] in ("unauthenticated", "invalid_session"), endpoint


@pytest.mark.parametrize("token", ["", "not-a-session"])
def test_a_bad_session_token_is_refused_like_none(app, client, database, clock, token):
    key = make_key(database, ("manage",), clock.now())
    response = client.open("/v1/portals/ahcccs/organizations/ORG1/accounts", method="GET",
                           headers={"Authorization": f"Bearer {key}", "X-Session-Token": token})
    assert response.status_code == 401
