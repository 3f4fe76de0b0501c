"""The decision API (api-v1.md "Decisions") through the Flask test client."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, event, select

from service.storage.models import Grant, Membership
from tests.conftest import make_key

V1_ROUTES = ["/v1/authorize", "/v1/authorize/batch", "/v1/authorized-actions"]


@pytest.fixture
def clinic(decision_clinic):
    return decision_clinic


def org(key="TIN-1"):
    return {"type": "organization", "id": key}


def account(username, organization=None):
    ref = {"type": "account", "id": username}
    if organization:
        ref["organization"] = organization
    return ref


def codes(response):
    return [r["code"] for r in response.get_json()["reasons"]]


# --- Authentication and scopes (api-v1.md Conventions) ----------------------------------------

@pytest.mark.parametrize("path", V1_ROUTES)
def test_every_decision_route_needs_a_client_key(client, path):
    response = client.post(path, json={})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "unauthenticated"


@pytest.mark.parametrize("path", V1_ROUTES)
def test_unknown_key_is_unauthenticated(client, path, authorize_key):
    forged = authorize_key[:-4] + "AAAA"
    for header in (f"Bearer {forged}", "Bearer pak_nothing", "Basic abc", f"Bearer{authorize_key}"):
        response = client.post(path, json={}, headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.get_json()["code"] == "unauthenticated"


@pytest.mark.parametrize("path", V1_ROUTES)
def test_key_without_the_authorize_scope_is_refused(client, database, clock, path):
    key = make_key(database, ("manage", "enroll"), clock.now())
    response = client.post(path, json={}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert response.get_json()["code"] == "insufficient_scope"


# --- Decisions with reasons (R1, R5, R14, R15, R16) -------------------------------------------

def test_member_with_the_grant_may_submit_a_claim(ask):
    """R16."""
    response = ask("biller", "claims", org())
    assert response.status_code == 200
    body = response.get_json()
    assert body["allowed"] is True and body["reasons"] == []
    assert len(body["policy_version"]) == 16


@pytest.mark.parametrize(
    ("actor", "action", "resource", "expected"),
    [
        ("biller", "eligibility", org(), ["permission_not_granted"]),          # R16
        ("biller", "bake_bread", org(), ["permission_unknown"]),               # R14
        ("stranger", "claims", org(), ["not_member"]),                          # R1
        ("locked", "claims", org(), ["actor_inactive"]),                        # R16
        ("nobody", "claims", org(), ["unknown_actor"]),                         # unknown actor: a deny
        ("biller", "remove", account("delegate"), ["not_admin"]),               # R5
        ("stranger", "remove", account("biller"), ["not_member"]),              # R1
        ("manager", "remove", account("manager"), ["self_action"]),
        ("delegate", "upgrade", account("biller"), ["cannot_make_admin"]),      # R15
        ("delegate", "remove", account("manager"), ["not_admin"]),              # R15
        ("manager", "approve", account("biller"), ["target_status"]),
        ("support", "claims", org(), ["not_member"]),
    ],
)
def test_denials_carry_the_policy_reasons(ask, actor, action, resource, expected):
    response = ask(actor, action, resource)
    assert response.status_code == 200
    body = response.get_json()
    assert body["allowed"] is False
    assert codes(response) == expected
    assert all(r["message"] for r in body["reasons"])


@pytest.mark.parametrize(
    ("actor", "action", "resource"),
    [
        ("manager", "claims", org()),                 # admins hold the catalog
        ("manager", "remove", account("biller")),     # R5
        ("manager", "upgrade", account("biller")),    # R2
        ("manager", "downgrade", account("manager2")),
        ("delegate", "disable", account("biller")),   # R15
        ("biller", "update_profile", account("biller")),  # R21
        ("support", "remove", account("biller")),     # R1 support staff
        ("support", "view", org("TIN-2")),
    ],
)
def test_allowed_actions(ask, actor, action, resource):
    body = ask(actor, action, resource).get_json()
    assert body == {**body, "allowed": True, "reasons": []}


def test_grant_needs_context_permission(ask):
    response = ask("delegate", "grant", account("biller"))
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "context.permission"


def test_delegate_grants_only_what_it_holds(ask):
    """R15."""
    assert ask("delegate", "grant", account("biller"), {"permission": "claims"}).get_json()["allowed"] is True
    denied = ask("delegate", "grant", account("biller"), {"permission": "eligibility"})
    assert codes(denied) == ["permission_not_held"]
    assert codes(ask("manager", "grant", account("biller"), {"permission": "teleport"})) == ["permission_unknown"]


def test_account_in_several_organizations_needs_the_organization(ask):
    response = ask("manager", "remove", account("twofold"))
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "resource.organization"
    assert ask("manager", "remove", account("twofold", "TIN-1")).get_json()["allowed"] is True
    assert codes(ask("manager", "remove", account("twofold", "TIN-2"))) == ["not_member"]


# --- Unknown things are 404, bad input is a problem ------------------------------------------

@pytest.mark.parametrize(
    ("body_change", "detail"),
    [
        ({"portal": "nowhere"}, "unknown portal"),
        ({"resource": org("TIN-404")}, "no organization"),
        ({"resource": account("ghost")}, "no account"),
        ({"resource": account("biller", "TIN-2")}, "not in organization"),
        ({"resource": account("biller", "TIN-404")}, "no organization"),
    ],
)
def test_unknown_portal_organization_or_account_is_404(client, authorize_key, clinic, body_change, detail):
    body = {"portal": clinic, "actor": "manager", "action": "view", "resource": org(), **body_change}
    response = client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {authorize_key}"})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "not_found" and detail in problem["detail"]
    assert set(problem) >= {"type", "title", "status", "detail", "code"}


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_json"),
        ("", "application/json", 400, "malformed_json"),
        ('{"portal": "ahw"}', "text/plain", 415, "unsupported_media_type"),
        ('[1, 2]', "application/json", 422, "validation_error"),
        ('{"portal": 5, "actor": "a", "action": "claims", "resource": {"type": "organization", "id": "x"}}',
         "application/json", 422, "validation_error"),
        ('{"portal": "ahw", "actor": "a", "action": "claims", "resource": {"type": "planet", "id": "x"}}',
         "application/json", 422, "validation_error"),
        ('{"portal": "ahw", "actor": "a", "action": "claims", "resource": {"type": "organization", "id": "x"},'
         ' "admin": true}', "application/json", 422, "validation_error"),
        ('{"portal": "ahw", "actor": "", "action": "claims", "resource": {"type": "organization", "id": "x"}}',
         "application/json", 422, "validation_error"),
        ('{"portal": "ahw", "actor": "a", "action": "DROP TABLE", "resource": {"type": "organization", "id": "x"}}',
         "application/json", 422, "validation_error"),
    ],
)
def test_bad_input_is_a_problem_never_a_500(client, authorize_key, data, content_type, status, code):
    response = client.post("/v1/authorize", data=data, content_type=content_type,
                           headers={"Authorization": f"Bearer {authorize_key}"})
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == code


def test_unknown_field_is_named(client, authorize_key):
    body = {"portal": "ahw", "actor": "a", "action": "claims", "resource": org(), "actr": "x"}
    response = client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {authorize_key}"})
    assert response.get_json()["errors"] == [
        {"field": "actr", "code": "unknown_field", "message": "Extra inputs are not permitted"}]


def test_oversized_body_is_413(client, authorize_key, config):
    padding = "x" * (config.server.max_body_bytes + 1)
    response = client.post("/v1/authorize", data='{"pad": "' + padding + '"}', content_type="application/json",
                           headers={"Authorization": f"Bearer {authorize_key}"})
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_unknown_route_and_method_are_problems(client):
    assert client.get("/v1/nothing").get_json()["code"] == "not_found"
    response = client.get("/v1/authorize")
    assert response.status_code == 405 and response.get_json()["code"] == "method_not_allowed"


# --- Batch and authorized actions -------------------------------------------------------------

def test_batch_answers_in_order(ask):
    checks = [
        {"action": "claims", "resource": org()},
        {"action": "eligibility", "resource": org()},
        {"action": "grant", "resource": account("locked"), "context": {"permission": "claims"}},
    ]
    response = ask("delegate", None, None, path="/v1/authorize/batch", checks=checks)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["allowed"] for r in results] == [True, False, True]
    assert [r["code"] for r in results[1]["reasons"]] == ["permission_not_granted"]


def test_batch_answers_equal_single_answers(ask):
    questions = [("claims", org()), ("remove", account("biller")), ("upgrade", account("biller")),
                 ("remove", account("manager")), ("view", org("TIN-2"))]
    batch = ask("delegate", None, None, path="/v1/authorize/batch",
                checks=[{"action": a, "resource": r} for a, r in questions]).get_json()["results"]
    singles = [ask("delegate", a, r).get_json() for a, r in questions]
    assert batch == singles


def test_a_batch_reads_its_facts_in_as_many_statements_as_one_check(ask, database):
    """One statement for the facts of every check, however many checks and targets."""
    statements = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    targets = ["manager", "manager2", "biller", "locked", "twofold"]
    one = [{"action": "claims", "resource": org()}]
    many = [{"action": "claims", "resource": org(key)} for key in ("TIN-1", "TIN-2")] + [
        {"action": action, "resource": account(user, "TIN-1")}
        for user in targets for action in ("remove", "upgrade", "view")]
    # The key's first use is recorded (at most once a minute): before counting, not in either count.
    assert ask("delegate", None, None, path="/v1/authorize/batch", checks=one).status_code == 200
    for engine in database.engines:  # on PostgreSQL the reads have a pool of their own
        event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for checks in (one, many):
            statements.clear()
            assert ask("delegate", None, None, path="/v1/authorize/batch", checks=checks).status_code == 200
            counts.append(len(statements))
    finally:
        for engine in database.engines:
            event.remove(engine, "before_cursor_execute", count)
    assert len(many) == 17 and counts[0] == counts[1], counts


def test_batch_limits(client, authorize_key, clinic):
    headers = {"Authorization": f"Bearer {authorize_key}"}
    check = {"action": "claims", "resource": org()}
    too_many = {"portal": clinic, "actor": "biller", "checks": [check] * 101}
    response = client.post("/v1/authorize/batch", json=too_many, headers=headers)
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "checks"
    ok = client.post("/v1/authorize/batch", json={**too_many, "checks": [check] * 100}, headers=headers)
    assert ok.status_code == 200 and len(ok.get_json()["results"]) == 100
    empty = client.post("/v1/authorize/batch", json={**too_many, "checks": []}, headers=headers)
    assert empty.status_code == 422


def test_batch_answers_each_check_even_when_one_names_something_unknown(client, authorize_key, clinic):
    """One answer per check, as the contract promises: an unknown organization or account, or an impossible
    question, is that check's denial carrying its problem; the other checks are decided as alone."""
    checks = [{"action": "claims", "resource": org()},
              {"action": "eligibility", "resource": org()},
              {"action": "claims", "resource": org("TIN-404")},
              {"action": "remove", "resource": account("nobody")},
              {"action": "grant", "resource": account("biller")},
              {"action": "claims", "resource": org()}]
    headers = {"Authorization": f"Bearer {authorize_key}"}
    response = client.post("/v1/authorize/batch", json={"portal": clinic, "actor": "biller", "checks": checks},
                           headers=headers)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert len(results) == len(checks)
    singles = [client.post("/v1/authorize", json={"portal": clinic, "actor": "biller", **check}, headers=headers)
               for check in checks]
    for index, (result, single) in enumerate(zip(results, singles)):
        if single.status_code == 200:
            assert result == single.get_json(), index
            continue
        problem = single.get_json()
        assert result["allowed"] is False and "error" in result, index
        assert result["error"]["status"] == single.status_code and result["error"]["code"] == problem["code"]
        assert result["error"]["message"] == f"checks[{index}]: {problem['detail']}"
        assert result["reasons"] == [{"code": problem["code"], "message": result["error"]["message"]}]
        assert result["policy_version"] == results[0]["policy_version"]
    assert [r.get("error", {}).get("status") for r in results] == [None, None, 404, 404, 422, None]
    assert results[4]["error"]["errors"][0]["field"] == "checks[4].context.permission"


def test_batch_of_an_unknown_portal_is_404_whole(client, authorize_key):
    response = client.post("/v1/authorize/batch", json={"portal": "nowhere", "actor": "biller",
                                                        "checks": [{"action": "claims", "resource": org()}]},
                           headers={"Authorization": f"Bearer {authorize_key}"})
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


def test_authorized_actions(ask):
    def actions(actor, resource):
        response = ask(actor, None, resource, path="/v1/authorized-actions")
        assert response.status_code == 200, response.get_json()
        return response.get_json()["actions"]

    assert actions("biller", org()) == ["claims", "view"]
    # ahw offers neither links nor admin-created accounts (R13 is masshealth's): not listed.
    assert actions("manager", org()) == ["health_records", "claims", "manage_account", "eligibility",
                                         "health_passport", "assessments", "authorizations", "view"]
    assert actions("delegate", account("biller")) == [
        "view", "disable", "remove", "send_password_recovery", "update_profile", "update_email",
        "comment", "grant", "revoke"]
    assert "upgrade" in actions("manager", account("biller"))
    assert actions("biller", account("biller")) == ["view", "update_profile"]
    assert actions("stranger", org()) == []


def test_authorized_actions_agree_with_authorize(ask):
    """Every action listed is allowed by /v1/authorize and every other one is denied."""
    from service.kernel.catalog import ACCOUNT_ACTIONS

    for actor in ("manager", "delegate", "biller", "stranger", "support"):
        listed = set(ask(actor, None, account("biller"), path="/v1/authorized-actions").get_json()["actions"])
        for action in ACCOUNT_ACTIONS:
            context = {"permission": "claims"} if action in ("grant", "revoke") else None
            allowed = ask(actor, action, account("biller"), context).get_json()["allowed"]
            assert allowed == (action in listed), (actor, action)


# --- Facts are read fresh: a revoked grant or removed membership changes the next decision -----

def test_revoking_a_grant_changes_the_next_decision(ask, database):
    assert ask("biller", "claims", org()).get_json()["allowed"] is True
    with database.transaction() as session:
        link = session.scalar(select(Membership).join(Membership.account).where(
            Membership.account.has(username="biller")))
        session.execute(delete(Grant).where(Grant.membership_id == link.id))
    assert codes(ask("biller", "claims", org())) == ["permission_not_granted"]
    with database.transaction() as session:
        session.delete(session.get(Membership, link.id))
    assert codes(ask("biller", "claims", org())) == ["not_member"]


@pytest.mark.parametrize(("age", "allowed"), [(0, True), (44, True), (45, False), (46, False)])
def test_expired_password_denies_portal_functions(client, authorize_key, build, age, allowed):
    """R18: ahcccs passwords expire 45 days after they were set."""
    with build("ahcccs") as world:
        world.account("ivy", password_age_days=age, memberships={"P-1": {"permissions": ["claims"]}})
    body = {"portal": "ahcccs", "actor": "ivy", "action": "claims", "resource": org("P-1")}
    answer = client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {authorize_key}"}).get_json()
    assert answer["allowed"] is allowed
    assert [r["code"] for r in answer["reasons"]] == ([] if allowed else ["password_expired"])


def test_portals_without_expiry_never_expire(ask, clock):
    """ahw's seed sets no expiry: a year-old password is still current."""
    from datetime import timedelta

    clock.advance(timedelta(days=400))
    assert ask("biller", "claims", org()).get_json()["allowed"] is True


def test_usernames_are_case_insensitive(ask):
    """R6."""
    assert ask("BILLER", "claims", org()).get_json()["allowed"] is True
    assert ask("manager", "remove", account("Biller")).get_json()["allowed"] is True


def test_the_openapi_documents_a_batch_check_answered_with_its_error(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    result = schemas["BatchResult"]["properties"]
    assert {"allowed", "reasons", "policy_version", "error"} <= set(result)
    assert set(schemas["CheckError"]["properties"]) == {"status", "code", "message", "errors"}
    operation = document["paths"]["/v1/authorize/batch"]["post"]
    assert "in its place" in operation["description"]
