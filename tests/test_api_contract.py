"""The fixed contract (shared/api-v1.md) as an outside client meets it: each place where the service once
deviated from it, driven against the app, and the same bodies against a live server."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import make_key
from tests.fixtures.servers import running

ADDRESS = {"id": "CORR", "line1": "801 E Jefferson St", "city": "Phoenix", "state": "AZ", "zip": "85034"}
PASSWORD = "Valid#Pass2024x"
QUESTIONS = [{"question": "First pet?", "answer": "Rex"}, {"question": "Birth town?", "answer": "Mesa"}]


def registration_fields(org: str, username: str) -> dict:
    """Every registration field api-v1.md names (address_id, business_type and region optional)."""
    return {"organization": org, "username": username, "first_name": "Ada", "last_name": "Lovelace",
            "email": f"{username}@example.org", "phone": "602-555-0101", "password": PASSWORD,
            "security_questions": QUESTIONS, "accepted_terms": True, "address_id": "CORR",
            "business_type": "IOC", "region": "Central"}


@pytest.fixture
def call(client, database, clock):
    key = make_key(database, ("authorize", "manage", "enroll"), clock.now())

    def _call(method, path, body=None, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {key}", **({"X-Session-Token": token} if token else {})}
        return client.open(path, method=method, json=body, headers=headers, **kwargs)

    return _call


def first_sign_in(call, portal, username, temporary):
    """A designated admin's first sign-in: its own password (someone else chose the first), then the terms (R7)."""
    changed = call("PUT", f"/v1/portals/{portal}/accounts/{username}/password",
                   {"current_password": temporary, "new_password": "my own long pass"})
    assert changed.status_code == 200, changed.get_json()
    answer = call("POST", f"/v1/portals/{portal}/sessions",
                  {"username": username, "password": "my own long pass", "accepted_terms": True})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["token"]


# --- R4, R12, R13: admin and subordinate bodies take the registration fields ----------------------

def test_designated_admin_body_takes_the_registration_fields(call):
    """R4: `{"username", ...registration fields}`; fields of self-registration are accepted and ignored."""
    call("POST", "/v1/portals/ahcccs/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]})
    made = call("POST", "/v1/portals/ahcccs/organizations/P-1/admins", registration_fields("P-1", "ada"))
    assert made.status_code == 201, made.get_json()
    assert made.get_json() == {"username": "ada", "organization": "P-1", "role": "admin", "status": "active"}
    assert call("GET", "/v1/portals/ahcccs/accounts/ada").get_json()["memberships"][0]["role"] == "admin"


def test_an_organization_that_disagrees_with_the_path_is_422(call):
    call("POST", "/v1/portals/ahcccs/organizations", {"key": "P-1", "name": "Clinic"})
    wrong = call("POST", "/v1/portals/ahcccs/organizations/P-1/admins", registration_fields("P-2", "ada"))
    assert wrong.status_code == 422
    assert wrong.get_json()["errors"] == [{"field": "organization", "code": "organization_mismatch",
                                           "message": "must be 'P-1', the organization of the path"}]
    refused = call("POST", "/v1/portals/ahcccs/organizations/P-1/admins",
                   {**registration_fields("P-1", "ada"), "accepted_terms": False})
    assert refused.status_code == 422 and refused.get_json()["code"] == "terms_not_accepted"
    assert call("GET", "/v1/portals/ahcccs/accounts/ada").status_code == 404  # nothing half-written


def test_subordinate_body_takes_the_registration_fields(call):
    """R13: a masshealth Primary User creates a subordinate with the contract's registration body."""
    call("POST", "/v1/portals/masshealth/organizations", {"key": "PIDSL-1", "name": "Provider"})
    call("POST", "/v1/portals/masshealth/organizations/PIDSL-1/admins",
         {"username": "pu", "first_name": "Pat", "last_name": "Primary", "email": "pu@example.org",
          "password": "long enough pass"})
    token = first_sign_in(call, "masshealth", "pu", "long enough pass")
    body = {**registration_fields("PIDSL-1", "jdoe"), "password": "long enough pass",
            "permissions": ["claims_submission_and_status"]}
    made = call("POST", "/v1/portals/masshealth/organizations/PIDSL-1/accounts", body, token=token)
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["memberships"][0]["permissions"] == ["claims_submission_and_status"]
    wrong = call("POST", "/v1/portals/masshealth/organizations/PIDSL-1/accounts",
                 {**body, "username": "kdoe", "email": "k@example.org", "organization": "PIDSL-9"}, token=token)
    assert wrong.status_code == 422 and wrong.get_json()["errors"][0]["field"] == "organization"


# --- R26: reads with a manage key, with or without a person's session -------------------------------

def test_account_reads_with_a_manage_key_need_no_session(call):
    """R26: a portal's back office reads status, last sign-in and memberships with its `manage` key."""
    call("POST", "/v1/portals/ahw/organizations", {"key": "TIN-1", "name": "Practice"})
    call("POST", "/v1/portals/ahw/organizations/TIN-1/admins",
         {"username": "am", "first_name": "Ann", "last_name": "Manager", "email": "am@example.org",
          "password": "long enough pass"})
    first_sign_in(call, "ahw", "am", "long enough pass")
    read = call("GET", "/v1/portals/ahw/accounts/AM")  # usernames are case-insensitive
    assert read.status_code == 200
    body = read.get_json()
    assert body["status"] == "active" and body["last_login_at"] is not None
    assert body["memberships"] == [{"organization": "TIN-1", "role": "admin", "status": "active", "permissions": []}]
    assert call("GET", "/v1/portals/ahw/accounts/am/comments").status_code == 200
    assert call("GET", "/v1/portals/ahw/accounts/nobody").get_json()["code"] == "not_found"
    assert call("GET", "/v1/portals/ahw/accounts/nobody/comments").status_code == 404


def test_account_reads_with_a_session_are_decided_as_view(call, client, database, clock):
    """R1/R2: with a session token the actor must be allowed `view` (an admin of the organization is)."""
    call("POST", "/v1/portals/ahw/organizations", {"key": "TIN-1", "name": "Practice"})
    for username in ("am", "bo"):
        call("POST", "/v1/portals/ahw/organizations/TIN-1/admins",
             {"username": username, "first_name": username.title(), "last_name": "X",
              "email": f"{username}@example.org", "password": "long enough pass"})
    token = first_sign_in(call, "ahw", "am", "long enough pass")
    assert call("GET", "/v1/portals/ahw/accounts/bo", token=token).status_code == 200
    assert call("GET", "/v1/portals/ahw/accounts/bo", token="not-a-session").get_json()["code"] == "invalid_session"
    key = make_key(database, ("authorize",), clock.now())
    no_scope = client.get("/v1/portals/ahw/accounts/bo", headers={"Authorization": f"Bearer {key}"})
    assert no_scope.status_code == 403 and no_scope.get_json()["code"] == "insufficient_scope"


# --- R11: a missing field says `required` ----------------------------------------------------------

def test_qm_registration_without_business_type_says_required(call):
    call("POST", "/v1/portals/qm/organizations", {"key": "IOC-7", "name": "IOC", "addresses": [ADDRESS],
                                                   "business_type": "IOC", "region": "Central"})
    body = {**registration_fields("IOC-7", "ioc_ma"), "business_type": None}
    answer = call("POST", "/v1/portals/qm/registrations", body)
    assert answer.status_code == 422
    (error,) = answer.get_json()["errors"]
    assert (error["field"], error["code"]) == ("business_type", "required")
    no_region = call("POST", "/v1/portals/qm/registrations", {**body, "business_type": "IOC", "region": None})
    assert no_region.get_json()["errors"][0]["code"] == "required"


# --- bad input and headers ------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [33, 3000, 100_000])
def test_deeply_nested_json_is_a_400_naming_the_limit(call, levels):
    body = '{"portal": "ahcccs", "context": ' + '{"a": ' * levels + "1" + "}" * levels + "}"
    answer = call("POST", "/v1/authorize", data=body, content_type="application/json")
    if len(body) > 65536:
        assert answer.status_code == 413 and answer.get_json()["code"] == "payload_too_large"
    else:
        assert answer.status_code == 400
        assert answer.get_json()["code"] == "malformed_json" and "32 levels" in answer.get_json()["detail"]


def test_nesting_inside_strings_is_not_counted(call):
    text = "[" * 500
    answer = call("POST", "/v1/authorize", {"portal": "ahcccs", "actor": text[:100], "action": "claims",
                                            "resource": {"type": "organization", "id": "X"}})
    assert answer.status_code == 404  # unknown organization: the body was read, not refused


def test_json_answers_are_not_cached_or_sniffed(call, client):
    for answer in (call("GET", "/v1/portals/ahw/accounts/nobody"), client.get("/healthz"),
                   call("POST", "/v1/authorize", data="{", content_type="application/json"),
                   client.get("/openapi.json"), client.get("/no/such/path")):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Cache-Control"] == "no-store"


def test_every_route_is_declared_and_every_declared_route_exists(app, client):
    """A route not in /openapi.json must not exist; each operation has an operationId and its parameters."""
    document = client.get("/openapi.json").get_json()
    rules = {(rule.rule, method.lower()) for rule in app.url_map.iter_rules()
             for method in rule.methods - {"HEAD", "OPTIONS"} if rule.endpoint != "static"
             and not rule.endpoint.startswith("console")}  # the console's HTML pages are not the API
    templated = {(rule.replace("<", "{").replace(">", "}"), method) for rule, method in rules}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert templated == documented
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for path, item in document["paths"].items():
        for operation in item.values():
            named = {p["name"] for p in parameters(document, operation) if p["in"] == "path"}
            assert named == set(part[1:-1] for part in path.split("/") if part.startswith("{")), path
    sign_in_links = document["paths"]["/v1/portals/{portal}/sessions"]["post"]["responses"]["201"]["links"]
    assert sign_in_links["GetAccountAsSession"]["parameters"]["header.X-Session-Token"] == "$response.body#/token"
    listing = document["paths"]["/v1/portals/{portal}/organizations/{org}/accounts"]["get"]
    assert {p["name"] for p in parameters(document, listing) if p["in"] == "query"} == {
        "q", "status", "manageable", "limit", "after"}
    assert {p["name"] for p in parameters(document, listing) if p["in"] == "header"} == {"X-Session-Token"}
    assert listing["security"] == [{"clientKey": ["manage"]}]


def test_each_problem_status_is_described_once_and_every_operation_refers_to_it(client):
    """A problem status means the same on every route: its description and codes stand once under
    `components/responses`, and no operation restates them."""
    document = client.get("/openapi.json").get_json()
    shared = document["components"]["responses"]
    referred = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    name = response["$ref"].removeprefix("#/components/responses/")
                    assert name in shared and "code: " in shared[name]["description"], (path, method, status)
                    referred.add((status, name))
                else:
                    assert "application/problem+json" not in response.get("content", {}), (path, method, status)
    assert len({status for status, _ in referred}) == len(referred) == len(shared)  # one response a status
    for response in shared.values():
        assert response["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def parameters(document: dict, operation: dict) -> list[dict]:
    """An operation's parameters, those it refers to under `components/parameters` read from there."""
    shared = document["components"].get("parameters", {})
    return [shared[p["$ref"].rpartition("/")[2]] if "$ref" in p else p for p in operation.get("parameters", [])]


# --- the same, against a live server ---------------------------------------------------------------

def live(base, key, method, path, body=None, token=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if token:
        headers["X-Session-Token"] = token
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, data=data, method=method, headers=headers),
                                    timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}"), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), exc.headers


@pytest.mark.slow
def test_the_contract_against_a_live_server(tmp_path, config):
    from datetime import datetime, timezone

    from service.domain import clients
    from service.storage.database import Database

    url = f"sqlite:///{tmp_path / 'live.db'}"
    with running(["contract"], url, tmp_path, workers=1) as (server,):
        database = Database(url)
        with database.transaction() as session:
            key = clients.create_client(session, "live", ("authorize", "manage", "enroll"), datetime.now(timezone.utc))
        database.dispose()
        base, v1 = server.base, "/v1/portals/ahcccs"
        assert live(base, key, "POST", f"{v1}/organizations", {"key": "P-1", "name": "C", "addresses": [ADDRESS]})[0] == 201
        status, body, headers = live(base, key, "POST", f"{v1}/organizations/P-1/admins",
                                     registration_fields("P-1", "ada"))
        assert status == 201, body
        assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
        status, body, _ = live(base, key, "GET", f"{v1}/accounts/ada")
        assert status == 200 and body["status"] == "active"
        assert live(base, key, "GET", f"{v1}/accounts/ada/comments")[0] == 200
        deep = b'{"a": ' * 5000 + b"1" + b"}" * 5000
        status, body, _ = live(base, key, "POST", "/v1/authorize", raw=deep)
        assert status == 400 and body["code"] == "malformed_json", body
        status, body, _ = live(base, key, "POST", f"{v1}/organizations/P-1/admins",
                               registration_fields("P-9", "bob"))
        assert status == 422 and body["errors"][0]["code"] == "organization_mismatch"
