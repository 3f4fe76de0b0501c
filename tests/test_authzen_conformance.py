"""AuthZEN conformance against a LIVE `portal-authz serve`, modelled on the structural checks
of the AuthZEN certification scenario (shared/specs/authzen-certification-scenario.md, section ids
c-2 .. c-6 in the test names' comments).

The scenario's fixture (alice, bob, record-1) is its own toy policy; here the same checks run on a
portal's own entities (R1, R5, R16): "biller" holds `claims` in TIN-1 (a permit), "locked" is a
locked account (a deny), "manager" administers TIN-1. Like the harness, the test discovers the
endpoints from the PDP metadata and then uses only the URLs it was given.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from service.domain import clients
from tests.conftest import START, prepared_database
from tests.fixtures.servers import running
from tests.fixtures.world import World

pytestmark = pytest.mark.slow

PERMIT = {"subject": {"type": "account", "id": "biller"}, "action": {"name": "claims"},
          "resource": {"type": "organization", "id": "TIN-1"}}
DENY = {"subject": {"type": "account", "id": "locked"}, "action": {"name": "claims"},
        "resource": {"type": "organization", "id": "TIN-1"}}


class Pdp:
    def __init__(self, base: str, key: str):
        self.base, self.key, self.endpoints = base, key, {}

    def call(self, url: str, body=None, *, raw: bytes | None = None, content_type="application/json",
             key=True, headers=None, method="POST"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(url if url.startswith("http") else self.base + url, data=data,
                                         method=method)
        if data is not None or method == "POST":
            request.add_header("Content-Type", content_type)
        if key:
            request.add_header("Authorization", f"Bearer {self.key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.headers, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, json.loads(exc.read() or b"null")

    def discover(self, portal: str = "ahw"):
        """Read the PDP metadata; every later request uses the URLs it names."""
        answer = self.call(f"/.well-known/authzen-configuration/authzen/{portal}", method="GET", key=False)
        self.endpoints = {name.removesuffix("_endpoint"): url for name, url in answer[2].items()
                          if name.endswith("_endpoint")}
        return answer

    def post(self, endpoint: str, body=None, **kwargs):
        return self.call(self.endpoints[endpoint], body, **kwargs)


@pytest.fixture(scope="module")
def pdp(tmp_path_factory, config):
    tmp_path = tmp_path_factory.mktemp("authzen-live")
    url = f"sqlite:///{tmp_path / 'live.db'}"
    database = prepared_database(url, config)
    with database.transaction() as session:
        world = World(session, "ahw", START)
        world.organization("TIN-1")
        world.organization("TIN-2")
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("manager2", memberships={"TIN-1": {"role": "admin"}})
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("locked", status="locked", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("newbie", status="pending_approval", memberships={"TIN-1": {}})
        for i in range(5):
            world.account(f"staff{i}", memberships={"TIN-1": {"permissions": ["claims"]}})
        key = clients.create_client(session, "conformance", ("authorize",), START)
    database.dispose()
    # One worker is enough: the conformance checks are about answers, not concurrency.
    with running(["authzen"], url, tmp_path, workers=1) as (server,):
        pdp = Pdp(server.base, key)
        pdp.discover()
        yield pdp


def _shape(answer):
    assert isinstance(answer, dict) and isinstance(answer["decision"], bool)
    assert isinstance(answer.get("context", {}), dict)


def test_c6_discovery(pdp):
    status, headers, metadata = pdp.discover()
    assert status == 200 and headers.get_content_type() == "application/json"
    assert metadata["policy_decision_point"] == pdp.base + "/authzen/ahw"  # the identifier we derived it from
    for name in ("access_evaluation_endpoint", "access_evaluations_endpoint", "search_subject_endpoint",
                 "search_resource_endpoint", "search_action_endpoint"):
        assert metadata[name].startswith(metadata["policy_decision_point"] + "/access/v1/")
    assert pdp.call("/.well-known/authzen-configuration/authzen/nowhere", method="GET", key=False)[0] == 404


def test_c2_access_evaluation(pdp):
    status, headers, answer = pdp.post("access_evaluation", PERMIT)
    assert status == 200 and headers.get_content_type() == "application/json"
    _shape(answer)
    assert answer["decision"] is True
    assert pdp.post("access_evaluation", DENY)[2]["decision"] is False  # c-2-2-2: a deny is a 200
    with_context = {**PERMIT, "context": {"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"}}
    assert pdp.post("access_evaluation", with_context)[2]["decision"] is True  # c-2-2-3
    more = {key: {**value, "properties": {"department": "Sales", "status": "active"}} for key, value in PERMIT.items()}
    assert pdp.post("access_evaluation", more)[2]["decision"] is True  # c-2-2-8
    unknown = {**PERMIT, "foo": "bar", "futureField": {"nested": True}}
    assert pdp.post("access_evaluation", unknown)[2]["decision"] is True  # c-2-2-9
    assert {pdp.post("access_evaluation", DENY)[2]["decision"] for _ in range(3)} == {False}  # c-2-6


@pytest.mark.parametrize("endpoint", ["access_evaluation", "access_evaluations"])
def test_c2_4_error_statuses(pdp, endpoint):
    subject, action, resource = PERMIT["subject"], PERMIT["action"], PERMIT["resource"]
    bodies = [
        {"action": action, "resource": resource}, {"subject": subject, "resource": resource},
        {"subject": subject, "action": action},
        {"subject": {"id": "biller"}, "action": action, "resource": resource},
        {"subject": {"type": "account"}, "action": action, "resource": resource},
        {"subject": subject, "action": {}, "resource": resource},
        {"subject": subject, "action": action, "resource": {"id": "TIN-1"}},
        {"subject": subject, "action": action, "resource": {"type": "organization"}},
        {"subject": "biller", "action": action, "resource": resource},
        {"subject": subject, "action": {"name": 123}, "resource": resource},
    ]
    for body in bodies:
        status, headers, problem = pdp.post(endpoint, body)
        assert status == 400, body
        assert headers.get_content_type() == "application/problem+json" and problem["status"] == 400
    assert pdp.post(endpoint, raw=json.dumps(PERMIT).encode(), content_type="text/plain")[0] == 400  # c-2-4-3
    assert pdp.post(endpoint, raw=b"{not json")[0] == 400  # c-2-4-4
    assert pdp.post(endpoint, raw=b"")[0] == 400  # c-2-4-5
    assert pdp.post(endpoint, PERMIT, key=False)[0] == 401  # the spec's 401: no client key


def test_c2_5_request_id(pdp):
    _, headers, _ = pdp.post("access_evaluation", PERMIT, headers={"X-Request-ID": "bfe9eb29-ab87-4ca3-be83"})
    assert headers["X-Request-ID"] == "bfe9eb29-ab87-4ca3-be83"
    status, headers, _ = pdp.post("access_evaluation", PERMIT)
    assert status == 200 and headers["X-Request-ID"]
    for endpoint in ("access_evaluations", "search_subject", "search_resource", "search_action"):
        assert pdp.post(endpoint, {}, headers={"X-Request-ID": "r-2"})[1]["X-Request-ID"] == "r-2"


def _decisions(pdp, body, semantic=None):
    if semantic:
        body = {**body, "options": {"evaluations_semantic": semantic}}
    status, _, answer = pdp.post("access_evaluations", body)
    assert status == 200
    for item in answer["evaluations"]:
        _shape(item)
    return [item["decision"] for item in answer["evaluations"]]


def test_c3_access_evaluations(pdp):
    defaults = {"subject": PERMIT["subject"], "action": PERMIT["action"],
                "evaluations": [{"resource": {"type": "organization", "id": "TIN-1"}},
                                {"resource": {"type": "organization", "id": "TIN-2"}}]}
    assert _decisions(pdp, defaults) == [True, False]  # c-3-2-1, c-3-3: length, order
    per_action = {"subject": PERMIT["subject"], "resource": PERMIT["resource"],
                  "evaluations": [{"action": {"name": "claims"}}, {"action": {"name": "eligibility"}}]}
    assert _decisions(pdp, per_action) == [True, False]  # c-3-2-2
    assert _decisions(pdp, {"evaluations": [PERMIT, DENY, PERMIT]}) == [True, False, True]  # c-3-2-5
    inherit = {**PERMIT, "context": {"time": "now"}, "evaluations": [{}, {"subject": DENY["subject"]}]}
    assert _decisions(pdp, inherit) == [True, False]  # c-3-2-6, c-3-2-7: whole-object override
    status, _, answer = pdp.post("access_evaluations", defaults)
    assert "decision" not in answer  # c-3-3-4: omitted beside evaluations


def test_c3_semantics_and_item_errors(pdp):
    body = {"subject": PERMIT["subject"], "resource": PERMIT["resource"],
            "evaluations": [{"action": {"name": "claims"}}, {"action": {"name": "eligibility"}},
                            {"action": {"name": "claims"}}]}
    assert _decisions(pdp, body, "execute_all") == [True, False, True]
    assert _decisions(pdp, body, "deny_on_first_deny") == [True, False]
    assert _decisions(pdp, body, "permit_on_first_permit") == [True]
    broken = {**PERMIT, "evaluations": [{"resource": PERMIT["resource"]}, {"resource": None}]}
    broken["evaluations"][1] = {"resource": {"type": "organization"}}  # c-3-4-1: an item missing resource.id
    status, _, answer = pdp.post("access_evaluations", {**broken, "options": {"evaluations_semantic": "execute_all"}})
    assert status == 200 and [e["decision"] for e in answer["evaluations"]] == [True, False]
    assert answer["evaluations"][1]["context"]["error"]["status"] == 400
    assert pdp.post("access_evaluations", PERMIT)[2] == pdp.post("access_evaluation", PERMIT)[2]  # c-3-4-2
    assert pdp.post("access_evaluations", {**PERMIT, "evaluations": []})[2]["decision"] is True  # c-3-4-3


def _results(pdp, endpoint, body):
    status, headers, answer = pdp.post(endpoint, body)
    assert status == 200 and headers.get_content_type() == "application/json", answer
    assert isinstance(answer["results"], list)
    assert isinstance(answer["page"], dict) and isinstance(answer["page"]["next_token"], str)
    return answer["results"]


def test_c4_search(pdp):
    who = {"subject": {"type": "account"}, "action": {"name": "claims"}, "resource": PERMIT["resource"]}
    found = _results(pdp, "search_subject", who)
    assert all(set(r) >= {"type", "id"} and r["type"] == "account" for r in found)  # c-4-2-1
    assert {"biller", "manager", "manager2"} <= {r["id"] for r in found} and "locked" not in {r["id"] for r in found}
    assert _results(pdp, "search_subject", {**who, "context": {"ip": "192.168.1.1"}}) == found  # c-4-2-2
    assert _results(pdp, "search_subject", {**who, "subject": {"type": "account", "id": "biller"}}) == found  # 4-2-3
    what = {"subject": PERMIT["subject"], "action": {"name": "claims"}, "resource": {"type": "organization"}}
    assert _results(pdp, "search_resource", what) == [{"type": "organization", "id": "TIN-1"}]  # c-4-3-1
    assert _results(pdp, "search_resource", {**what, "resource": {"type": "organization", "id": "TIN-2"}}) == \
        [{"type": "organization", "id": "TIN-1"}]  # c-4-3-3: the id is ignored
    approvable = {"subject": {"type": "account", "id": "manager"}, "action": {"name": "approve"},
                  "resource": {"type": "account"}}
    assert _results(pdp, "search_resource", approvable) == [
        {"type": "account", "id": "newbie", "properties": {"organization": "TIN-1"}}]
    actions = _results(pdp, "search_action", {"subject": PERMIT["subject"], "resource": PERMIT["resource"]})
    assert all(set(a) == {"name"} for a in actions) and {"claims", "view"} <= {a["name"] for a in actions}  # c-4-4
    # c-4-6: unknown identifiers and types give empty results, not errors
    assert _results(pdp, "search_action", {"subject": {"type": "account", "id": "nonexistent"},
                                           "resource": PERMIT["resource"]}) == []
    assert _results(pdp, "search_subject", {**who, "subject": {"type": "spaceship"}}) == []
    assert _results(pdp, "search_resource", {**what, "resource": {"type": "spaceship"}}) == []


def test_c4_5_pagination(pdp):
    body = {"subject": {"type": "account"}, "action": {"name": "claims"}, "resource": PERMIT["resource"]}
    everyone = [r["id"] for r in _results(pdp, "search_subject", body)]
    paged, token = [], None
    while True:
        page = {"limit": 3, **({"token": token} if token else {})}
        status, _, answer = pdp.post("search_subject", {**body, "page": page})
        assert status == 200 and answer["page"]["count"] == len(answer["results"]) <= 3
        paged += [r["id"] for r in answer["results"]]
        token = answer["page"]["next_token"]
        if not token:
            break
    assert paged == everyone and len(everyone) == 8
    status, _, problem = pdp.post("search_subject", {**body, "action": {"name": "view"},
                                                     "page": {"limit": 3, "token": "bm90IG91cnM"}})
    assert status == 400 and problem["code"] == "invalid_page_token"


def test_c4_7_search_errors(pdp):
    assert pdp.post("search_subject", {"subject": {"type": "account"}, "resource": PERMIT["resource"]})[0] == 400
    assert pdp.post("search_resource", {"action": {"name": "claims"},
                                        "resource": {"type": "organization"}})[0] == 400
    loose = {"subject": {"type": "account"}, "action": {"name": "claims"}, "resource": {"type": "organization"}}
    assert pdp.post("search_subject", loose)[0] == 400  # the input resource needs its id
    assert pdp.post("search_resource", loose)[0] == 400  # the input subject needs its id
    assert pdp.post("search_action", {"subject": {"type": "account"}, "resource": PERMIT["resource"]})[0] == 400
