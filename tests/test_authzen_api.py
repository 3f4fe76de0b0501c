"""The OpenID AuthZEN endpoints in-process, each endpoint and each error status.

The clinic is the same ahw world as tests/test_api_decisions.py, so every AuthZEN answer can be
compared with what /v1/authorize says about the same question (R1, R5, R14-R16).
"""
from __future__ import annotations

import pytest

from service.config import parse_config
from tests.conftest import make_key

PDP = "/authzen/ahw"
EVALUATION = PDP + "/access/v1/evaluation"
EVALUATIONS = PDP + "/access/v1/evaluations"
SUBJECTS = PDP + "/access/v1/search/subject"
RESOURCES = PDP + "/access/v1/search/resource"
ACTIONS = PDP + "/access/v1/search/action"
ROUTES = [EVALUATION, EVALUATIONS, SUBJECTS, RESOURCES, ACTIONS]


@pytest.fixture
def clinic(decision_clinic):
    return decision_clinic


@pytest.fixture
def post(client, authorize_key, clinic):
    def _post(path, body, **headers):
        return client.post(path, json=body, headers={"Authorization": f"Bearer {authorize_key}", **headers})

    return _post


def sub(username):
    return {"type": "account", "id": username}


def org(key="TIN-1"):
    return {"type": "organization", "id": key}


def acct(username, organization=None):
    return {"type": "account", "id": username, **({"properties": {"organization": organization}} if organization
                                                   else {})}


def ask(subject, action, resource, **more):
    return {"subject": sub(subject), "action": {"name": action}, "resource": resource, **more}


def v1(client, authorize_key, actor, action, resource, context=None):
    ref = {"type": resource["type"], "id": resource["id"]}
    if resource.get("properties", {}).get("organization"):
        ref["organization"] = resource["properties"]["organization"]
    body = {"portal": "ahw", "actor": actor, "action": action, "resource": ref, "context": context or {}}
    return client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {authorize_key}"}).get_json()


# --- Access Evaluation ---------------------------------------------------------------------------

@pytest.mark.parametrize("actor, action, resource, context", [
    ("biller", "claims", org(), None),                       # R16: granted
    ("biller", "eligibility", org(), None),                  # R16: not granted
    ("locked", "claims", org(), None),                       # R16: inactive
    ("stranger", "claims", org(), None),                     # R1: not a member
    ("ghost", "claims", org(), None),                        # unknown actor: a denial, not an error
    ("manager", "approve", acct("newbie"), None),            # R5
    ("delegate", "upgrade", acct("biller"), None),           # R15: delegates never make admins
    ("delegate", "grant", acct("biller"), {"permission": "health_records"}),  # R15: not held
    ("manager", "remove", acct("twofold", "TIN-1"), None),
    ("manager", "view", org(), None),
])
def test_evaluation_gives_the_v1_decision_and_reasons(client, authorize_key, post, actor, action, resource, context):
    body = ask(actor, action, resource, **({"context": context} if context else {}))
    response = post(EVALUATION, body)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    answer = response.get_json()
    expected = v1(client, authorize_key, actor, action, resource, context)
    assert answer == {"decision": expected["allowed"],
                      "context": {"reasons": expected["reasons"], "policy_version": expected["policy_version"]}}


def test_grant_takes_the_permission_from_action_properties(post):
    body = {"subject": sub("manager"), "action": {"name": "grant", "properties": {"permission": "claims"}},
            "resource": acct("biller")}
    assert post(EVALUATION, body).get_json()["decision"] is True
    body["action"]["properties"]["permission"] = "teleport"
    answer = post(EVALUATION, body).get_json()
    assert answer["decision"] is False
    assert [r["code"] for r in answer["context"]["reasons"]] == ["permission_unknown"]


def test_unknown_fields_and_properties_are_ignored(post):
    body = ask("biller", "claims", {**org(), "properties": {"status": "active"}}, foo="bar",
               futureField={"nested": True}, context={"time": "2025-06-27T18:03-07:00"})
    body["subject"]["properties"] = {"department": "Sales"}
    body["action"]["properties"] = {"method": "GET"}
    response = post(EVALUATION, body)
    assert response.status_code == 200
    assert response.get_json()["decision"] is True


def test_unknown_resource_is_a_denial_carrying_the_error(post):
    for resource in (org("TIN-404"), acct("nobody"), {"type": "record", "id": "record-1"}):
        answer = post(EVALUATION, ask("manager", "view", resource)).get_json()
        assert answer["decision"] is False
        assert answer["context"]["error"]["status"] == 404
    answer = post(EVALUATION, {**ask("manager", "view", org()), "subject": {"type": "user", "id": "x"}}).get_json()
    assert answer["decision"] is False and answer["context"]["error"]["code"] == "not_found"


@pytest.mark.parametrize("body", [
    {"action": {"name": "claims"}, "resource": org()},
    {"subject": sub("biller"), "resource": org()},
    {"subject": sub("biller"), "action": {"name": "claims"}},
    {"subject": {"id": "biller"}, "action": {"name": "claims"}, "resource": org()},
    {"subject": {"type": "account"}, "action": {"name": "claims"}, "resource": org()},
    {"subject": sub("biller"), "action": {}, "resource": org()},
    {"subject": sub("biller"), "action": {"name": "claims"}, "resource": {"id": "TIN-1"}},
    {"subject": sub("biller"), "action": {"name": "claims"}, "resource": {"type": "organization"}},
    {"subject": "biller", "action": {"name": "claims"}, "resource": org()},
    {"subject": sub("biller"), "action": {"name": 123}, "resource": org()},
    [1, 2],
])
def test_missing_or_mistyped_fields_are_400(post, body):
    response = post(EVALUATION, body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "validation_error"


def test_impossible_questions_are_400(post):
    assert post(EVALUATION, ask("manager", "grant", acct("biller"))).status_code == 400  # no permission named
    response = post(EVALUATION, ask("manager", "view", acct("twofold")))  # which organization?
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "resource.organization"


def test_not_json_malformed_and_empty_bodies_are_400(client, authorize_key, clinic):
    auth = {"Authorization": f"Bearer {authorize_key}"}
    for path in ROUTES:
        cases = [
            client.post(path, data='{"subject": 1}', headers={**auth, "Content-Type": "text/plain"}),
            client.post(path, data="{not json", headers={**auth, "Content-Type": "application/json"}),
            client.post(path, data="", headers={**auth, "Content-Type": "application/json"}),
        ]
        assert [r.status_code for r in cases] == [400, 400, 400], path
        assert [r.get_json()["code"] for r in cases] == ["unsupported_media_type", "malformed_json", "malformed_json"]


@pytest.mark.parametrize("path", ROUTES)
def test_authentication_is_the_v1_client_key_with_authorize_scope(client, database, clock, clinic, path):
    assert client.post(path, json={}).status_code == 401
    assert client.post(path, json={}, headers={"Authorization": "Bearer pak_nothing"}).status_code == 401
    key = make_key(database, ("manage", "enroll"), clock.now())
    response = client.post(path, json={}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert response.get_json()["code"] == "insufficient_scope"


def test_unknown_portal_is_404(post):
    response = post("/authzen/nowhere/access/v1/evaluation", ask("biller", "claims", org()))
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_request_id_is_echoed(post):
    response = post(EVALUATION, ask("biller", "claims", org()), **{"X-Request-ID": "bfe9eb29-ab87-4ca3-be83"})
    assert response.headers["X-Request-ID"] == "bfe9eb29-ab87-4ca3-be83"
    assert post(EVALUATION, ask("biller", "claims", org())).headers["X-Request-ID"]  # absent: one is made up
    assert post(EVALUATION, {}, **{"X-Request-ID": "err-1"}).headers["X-Request-ID"] == "err-1"  # errors too


# --- Access Evaluations ----------------------------------------------------------------------------

def decisions(response):
    assert response.status_code == 200, response.get_json()
    return [item["decision"] for item in response.get_json()["evaluations"]]


def test_evaluations_merge_defaults_and_keep_order(post):
    body = {"subject": sub("biller"), "resource": org(), "context": {"permission": "claims"},
            "evaluations": [{"action": {"name": "claims"}}, {"action": {"name": "eligibility"}},
                            {"action": {"name": "claims"}, "subject": sub("locked")},
                            {"action": {"name": "grant"}, "subject": sub("manager"), "resource": acct("biller")},
                            {"action": {"name": "grant"}, "subject": sub("manager"), "resource": acct("biller"),
                             "context": {"other": 1}}]}
    response = post(EVALUATIONS, body)
    assert decisions(response) == [True, False, False, True, False]
    last = response.get_json()["evaluations"][4]["context"]["error"]  # the item's context replaced the default
    assert last["status"] == 400 and last["errors"][0]["field"] == "context.permission"
    assert "decision" not in response.get_json()


def test_evaluations_answer_each_item_as_evaluation_does(client, authorize_key, post):
    items = [("biller", "claims", org()), ("locked", "claims", org()), ("manager", "approve", acct("newbie")),
             ("delegate", "upgrade", acct("biller"))]
    body = {"evaluations": [ask(*item) for item in items]}
    got = post(EVALUATIONS, body).get_json()["evaluations"]
    assert got == [post(EVALUATION, ask(*item)).get_json() for item in items]


def test_an_unknown_or_invalid_item_is_a_denial_and_the_others_are_decided(post):
    body = {"subject": sub("biller"), "action": {"name": "claims"},
            "options": {"evaluations_semantic": "execute_all"},
            "evaluations": [{"resource": org()}, {}, {"resource": org("TIN-404")}, {"resource": {"type": "x"}},
                            {"resource": org()}]}
    response = post(EVALUATIONS, body)
    assert decisions(response) == [True, False, False, False, True]
    items = response.get_json()["evaluations"]
    assert items[1]["context"]["error"]["status"] == 400
    assert items[1]["context"]["error"]["errors"][0]["field"] == "evaluations[1].resource"
    assert items[2]["context"]["error"]["status"] == 404
    assert items[3]["context"]["error"]["status"] == 400


def test_the_three_semantics(post):
    def run(semantic):
        body = {"subject": sub("biller"), "resource": org(), "options": {"evaluations_semantic": semantic},
                "evaluations": [{"action": {"name": "claims"}}, {"action": {"name": "eligibility"}},
                                {"action": {"name": "claims"}}]}
        return decisions(post(EVALUATIONS, body))

    assert run("execute_all") == [True, False, True]
    assert run("deny_on_first_deny") == [True, False]
    assert run("permit_on_first_permit") == [True]
    body = {"subject": sub("biller"), "action": {"name": "claims"},
            "options": {"evaluations_semantic": "deny_on_first_deny"},
            "evaluations": [{"resource": org("TIN-404")}, {"resource": org()}]}
    assert decisions(post(EVALUATIONS, body)) == [False]  # an error is a denial that stops it too
    body["options"]["evaluations_semantic"] = "whatever"
    assert post(EVALUATIONS, body).status_code == 400


def test_evaluations_without_items_is_one_evaluation(post):
    single = ask("biller", "claims", org())
    expected = post(EVALUATION, single).get_json()
    assert post(EVALUATIONS, single).get_json() == expected
    assert post(EVALUATIONS, {**single, "evaluations": []}).get_json() == expected
    assert post(EVALUATIONS, {"evaluations": []}).status_code == 400


def test_batch_facts_are_read_in_one_statement(app, database, post):
    from sqlalchemy import event

    statements = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append(statement)

    body = {"evaluations": [ask(who, "claims", org()) for who in ("biller", "locked", "manager", "twofold")]
            + [ask("manager", "approve", acct("newbie")), ask("stranger", "view", org("TIN-2"))]}
    post(EVALUATIONS, body)  # warm: the client key is looked up once per request too
    for engine in database.engines:  # on PostgreSQL the reads have a pool of their own
        event.listen(engine, "before_cursor_execute", count)
    try:
        post(EVALUATIONS, body)
    finally:
        for engine in database.engines:
            event.remove(engine, "before_cursor_execute", count)
    facts = [s for s in statements if "UNION ALL" in s.upper()]
    assert len(facts) == 1, statements


# --- Search ------------------------------------------------------------------------------------------------

def results(response):
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def test_action_search_is_the_authorized_actions_answer(client, authorize_key, post):
    answer = results(post(ACTIONS, {"subject": sub("delegate"), "resource": acct("biller")}))
    v1_answer = client.post("/v1/authorized-actions", json={
        "portal": "ahw", "actor": "delegate", "resource": {"type": "account", "id": "biller"}},
        headers={"Authorization": f"Bearer {authorize_key}"}).get_json()["actions"]
    assert [a["name"] for a in answer] == v1_answer
    assert "upgrade" not in v1_answer and "approve" not in v1_answer  # R15, status
    assert results(post(ACTIONS, {"subject": sub("ghost"), "resource": org()})) == []
    assert results(post(ACTIONS, {"subject": sub("biller"), "resource": {"type": "record", "id": "1"}})) == []


def test_resource_search_finds_organizations_and_accounts(post):
    body = {"subject": sub("twofold"), "action": {"name": "view"}, "resource": {"type": "organization"}}
    assert results(post(RESOURCES, body)) == [org("TIN-1"), org("TIN-2")]
    body = {"subject": sub("biller"), "action": {"name": "claims"}, "resource": {"type": "organization", "id": "x"}}
    assert results(post(RESOURCES, body)) == [org("TIN-1")]  # resource.id is ignored
    body = {"subject": sub("manager"), "action": {"name": "approve"}, "resource": {"type": "account"}}
    assert results(post(RESOURCES, body)) == [acct("newbie", "TIN-1")]
    body = {"subject": sub("delegate"), "action": {"name": "disable"}, "resource": {"type": "account"}}
    # R15: members; not twofold, who also belongs to TIN-2 where the delegate has no authority (R1)
    assert [r["id"] for r in results(post(RESOURCES, body))] == ["biller", "locked"]


def test_subject_search_finds_who_may(post):
    body = {"subject": {"type": "account"}, "action": {"name": "approve"}, "resource": acct("newbie")}
    assert [r["id"] for r in results(post(SUBJECTS, body))] == ["delegate", "manager", "manager2", "support"]
    body = {"subject": {"type": "account", "id": "biller"}, "action": {"name": "claims"}, "resource": org()}
    assert [r["id"] for r in results(post(SUBJECTS, body))] == ["biller", "delegate", "manager", "manager2"]
    body["subject"]["type"] = "spaceship"
    assert results(post(SUBJECTS, body)) == []
    body = {"subject": {"type": "account"}, "action": {"name": "claims"}, "resource": org("TIN-404")}
    assert results(post(SUBJECTS, body)) == []


def test_search_pages_with_tokens(post):
    body = {"subject": {"type": "account"}, "action": {"name": "view"}, "resource": org(), "page": {"limit": 2}}
    seen, pages = [], 0
    while True:
        answer = post(SUBJECTS, body).get_json()
        assert answer["page"]["count"] == len(answer["results"]) <= 2
        seen += [r["id"] for r in answer["results"]]
        pages += 1
        if not answer["page"]["next_token"]:
            break
        body["page"]["token"] = answer["page"]["next_token"]
    everyone = results(post(SUBJECTS, {k: v for k, v in body.items() if k != "page"}))
    assert seen == [r["id"] for r in everyone] and pages == 3 and len(seen) == 6
    body["page"]["token"] = post(SUBJECTS, {**body, "page": {"limit": 2}}).get_json()["page"]["next_token"]
    body["action"] = {"name": "claims"}  # changed mid-pagination
    response = post(SUBJECTS, body)
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_page_token"
    body["page"]["token"] = "garbage!"
    assert post(SUBJECTS, body).status_code == 400
    body["page"] = {"limit": 0}
    assert post(SUBJECTS, body).status_code == 400


def _forged(after, request_body) -> str:
    """A page token as the unsigned tokens were: base64 JSON of the key and the request's fingerprint."""
    import base64
    import json

    from service.api.authzen import _fingerprint

    payload = json.dumps({"after": after, "request": _fingerprint(request_body)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def test_a_page_token_that_does_not_verify_is_400(client, post, authorize_key):
    """Page tokens are signed (HMAC) for one portal, one search endpoint and one request: a forged one (a
    one-element cursor, a lone surrogate), another portal's or another endpoint's is 400, never 500."""
    body = {"subject": sub("manager"), "action": {"name": "view"}, "resource": {"type": "account"},
            "page": {"limit": 1}}
    token = post(RESOURCES, body).get_json()["page"]["next_token"]
    assert token and post(RESOURCES, {**body, "page": {"limit": 1, "token": token}}).status_code == 200

    def refused(path, page_token, request_body=body):
        response = post(path, {**request_body, "page": {"limit": 1, "token": page_token}})
        return response.status_code == 400 and response.get_json()["code"] == "invalid_page_token"

    assert refused(RESOURCES, _forged(["twofold"], body))               # one element where two are issued
    assert refused(RESOURCES, _forged(["\ud800", "TIN-1"], body))      # a lone surrogate inside
    assert refused(RESOURCES, _forged(["manager", "TIN-1"], body))      # well-formed, but not signed here
    lone = post(RESOURCES, {**body, "page": {"limit": 1, "token": "\ud800"}})  # not even text
    assert lone.status_code == 400 and lone.get_json()["errors"][0]["field"] == "page.token"
    assert refused(RESOURCES.replace("/ahw/", "/qm/"), token)           # another portal's PDP
    actions = {"subject": sub("manager"), "resource": org()}
    assert refused(PDP + "/access/v1/search/action", token, actions)    # another endpoint's
    # The JSON escape of a lone surrogate as the token itself, byte for byte as a caller may send it.
    raw = (b'{"subject": {"type": "account", "id": "manager"}, "action": {"name": "view"}, '
           b'"resource": {"type": "account"}, "page": {"token": "\\ud800"}}')
    response = client.post(RESOURCES, data=raw, content_type="application/json",
                           headers={"Authorization": f"Bearer {authorize_key}"})
    assert response.status_code == 400


def test_replicas_over_one_database_accept_each_others_page_tokens(config, database, policy, clock, clinic,
                                                                  authorize_key):
    """No per-process secret: the page-token key is the database's shared one (or the configuration's)."""
    from service.app import create_app

    first, second = (create_app(config, database=database, policy=policy, clock=clock).test_client()
                     for _ in range(2))
    headers = {"Authorization": f"Bearer {authorize_key}"}
    body = {"subject": {"type": "account"}, "action": {"name": "view"}, "resource": org(), "page": {"limit": 2}}
    token = first.post(SUBJECTS, json=body, headers=headers).get_json()["page"]["next_token"]
    answer = second.post(SUBJECTS, json={**body, "page": {"limit": 2, "token": token}}, headers=headers)
    assert answer.status_code == 200 and answer.get_json()["page"]["count"] == 2


def test_action_search_pages_too(post):
    body = {"subject": sub("manager"), "resource": org(), "page": {"limit": 3}}
    names = []
    while True:
        answer = post(ACTIONS, body).get_json()
        names += [a["name"] for a in answer["results"]]
        if not answer["page"]["next_token"]:
            break
        body["page"]["token"] = answer["page"]["next_token"]
    assert names == [a["name"] for a in results(post(ACTIONS, {"subject": sub("manager"), "resource": org()}))]


@pytest.mark.parametrize("path, body", [
    (SUBJECTS, {"subject": {"type": "account"}, "resource": org()}),
    (SUBJECTS, {"subject": {"type": "account"}, "action": {"name": "view"}, "resource": {"type": "organization"}}),
    (RESOURCES, {"action": {"name": "view"}, "resource": {"type": "organization"}}),
    (RESOURCES, {"subject": {"type": "account"}, "action": {"name": "view"}, "resource": {"type": "organization"}}),
    (ACTIONS, {"subject": {"type": "account"}, "resource": org()}),
    (ACTIONS, {"subject": sub("manager")}),
    (RESOURCES, {"subject": sub("manager"), "action": {"name": "grant"}, "resource": {"type": "account"}}),
])
def test_search_errors_are_400(post, path, body):
    assert post(path, body).status_code == 400


# --- Discovery -------------------------------------------------------------------------------------------

def test_metadata_is_served_at_the_well_known_url(client, clinic):
    # The request's Host is the caller's to choose: the URLs come from configuration only (unset here, so the
    # address `serve` binds by default), never from the request.
    response = client.get("/.well-known/authzen-configuration/authzen/ahw", base_url="https://pdp.example.org",
                          headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    pdp = "http://127.0.0.1:8000/authzen/ahw"
    assert response.get_json() == {
        "policy_decision_point": pdp,
        "access_evaluation_endpoint": pdp + "/access/v1/evaluation",
        "access_evaluations_endpoint": pdp + "/access/v1/evaluations",
        "search_subject_endpoint": pdp + "/access/v1/search/subject",
        "search_resource_endpoint": pdp + "/access/v1/search/resource",
        "search_action_endpoint": pdp + "/access/v1/search/action",
    }
    assert client.get("/.well-known/authzen-configuration/authzen/nowhere").status_code == 404


def test_metadata_base_url_from_config(config, database, policy, clock):
    from service.app import create_app

    data = config.model_dump(exclude={"base_dir"})
    data["authzen"] = {"base_url": "https://authz.example.org/"}
    configured = parse_config(data, config.base_dir)
    client = create_app(configured, database=database, policy=policy, clock=clock).test_client()
    answer = client.get("/.well-known/authzen-configuration/authzen/qm").get_json()
    assert answer["policy_decision_point"] == "https://authz.example.org/authzen/qm"
    assert answer["search_action_endpoint"] == "https://authz.example.org/authzen/qm/access/v1/search/action"
    with pytest.raises(Exception, match="authzen.base_url"):
        parse_config({**data, "authzen": {"base_url": "pdp.example.org?x=1"}}, config.base_dir)


def test_serve_names_its_own_address_when_base_url_is_unset(config, monkeypatch, caplog):
    """`serve` fills an unset authzen.base_url with the address it binds, and says so in its log."""
    from service import server

    seen = {}
    monkeypatch.setattr(server, "_serve_granian", lambda config, *rest: seen.setdefault("config", config))
    monkeypatch.setattr(server.PolicySnapshots, "refresh", lambda self: None)
    options = server.Options(host="::1", port=8123, engine="granian", workers=1, threads=1)
    with caplog.at_level("WARNING", logger="service.server"):
        server.serve(config, options)
    assert seen["config"].authzen.base_url == "http://[::1]:8123"
    assert "authzen.base_url is unset" in caplog.text and "http://[::1]:8123" in caplog.text
