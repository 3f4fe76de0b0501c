"""Remedies: a denial asked with `remedies: true` says what change would allow it and who may make it.

Each remedy kind (grant, unlock, approve, enable, change_password, accept_terms, activate), the order and
the limit of who is named, an organization with no active admin left (support), read scoping on masshealth
(a linked account, a non-member asker), batch and AuthZEN; over HTTP in-process, on SQLite and PostgreSQL.
"""
from __future__ import annotations

import pytest

from service.app import create_app
from tests.conftest import make_key
from tests.fixtures.world import World

CLAIMS = "claims_submission_and_status"


@pytest.fixture
def world(any_database, config, policy, clock):
    app = create_app(config, database=any_database, policy=policy, clock=clock)
    key = make_key(any_database, ("authorize",), clock.now())
    client = app.test_client()

    class W:
        database = any_database

        def build(self, portal):
            from contextlib import contextmanager

            @contextmanager
            def _build():
                with any_database.transaction() as session:
                    yield World(session, portal, clock.now())
            return _build()

        def post(self, path, body):
            return client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})

        def post_get(self, path):
            return client.get(path).get_json()

        def ask(self, portal, actor, action, resource, expect=200, **extra):
            response = self.post("/v1/authorize", {"portal": portal, "actor": actor, "action": action,
                                                   "resource": resource, **extra})
            assert response.status_code == expect, response.get_json()
            return response.get_json()

        def remedies(self, portal, actor, action, resource):
            answer = self.ask(portal, actor, action, resource, remedies=True)
            return answer["remedies"]

    return W()


def org(key):
    return {"type": "organization", "id": key}


@pytest.fixture
def ahw(world):
    """T1: admins ann and abe, delegates dee (holding claims) and dex (not), members sam, lok (locked),
    dis (disabled), pen (awaiting approval). T2: its only admin disabled, member mo."""
    with world.build("ahw") as w:
        w.account("ann", memberships={"T1": {"role": "admin"}})
        w.account("abe", memberships={"T1": {"role": "admin"}})
        w.account("dee", memberships={"T1": {"permissions": ["manage_account", "claims"]}})
        w.account("dex", memberships={"T1": {"permissions": ["manage_account"]}})
        w.account("sam", memberships={"T1": {}})
        w.account("lok", status="locked", memberships={"T1": {"permissions": ["claims"]}})
        w.account("dis", status="disabled", memberships={"T1": {"permissions": ["claims"]}})
        w.account("pen", status="pending_approval", memberships={"T1": {"permissions": ["claims"]}})
        w.account("old", status="disabled", memberships={"T2": {"role": "admin"}})
        w.account("mo", memberships={"T2": {}})
        w.account("sue", support=True)
    return world


@pytest.mark.R16
def test_a_missing_function_is_granted_by_delegates_holding_it_then_admins(ahw):
    assert ahw.remedies("ahw", "sam", "claims", org("T1")) == [{
        "code": "permission_not_granted",
        "change": {"action": "grant", "account": "sam", "organization": "T1", "permission": "claims"},
        # dex manages accounts but does not hold claims, so it cannot grant it (R15): not named.
        "by": ["dee", "abe", "ann"], "support": True}]


@pytest.mark.R3
def test_with_no_active_admin_left_nobody_in_the_organization_can_and_support_is_named(ahw):
    assert ahw.remedies("ahw", "mo", "claims", org("T2")) == [{
        "code": "permission_not_granted",
        "change": {"action": "grant", "account": "mo", "organization": "T2", "permission": "claims"},
        "by": [], "support": True}]


@pytest.mark.R5
@pytest.mark.parametrize("who, change", [("lok", "unlock"), ("dis", "enable"), ("pen", "approve")])
def test_an_inactive_account_is_made_active_by_those_who_administer_it(ahw, who, change):
    assert ahw.remedies("ahw", who, "claims", org("T1")) == [{
        "code": "actor_inactive", "change": {"action": change, "account": who, "organization": "T1"},
        "by": ["dee", "dex", "abe", "ann"], "support": True}]


@pytest.mark.R7
@pytest.mark.R18
def test_self_service_changes_are_the_account_s_own(world, any_database):
    with world.build("ahcccs") as w:
        w.account("mah", memberships={"P1": {"role": "admin"}})
        w.account("exp", password_age_days=60, memberships={"P1": {"permissions": ["claims"]}})
        w.account("new", memberships={"P1": {"permissions": ["claims"]}}).terms_accepted_at = None
        w.account("act", status="pending_activation", memberships={"P1": {"role": "admin"}})
    assert world.remedies("ahcccs", "exp", "claims", org("P1")) == [
        {"code": "password_expired", "change": {"action": "change_password", "account": "exp"},
         "by": ["exp"], "support": False}]
    assert world.remedies("ahcccs", "new", "claims", org("P1")) == [
        {"code": "terms_not_accepted", "change": {"action": "accept_terms", "account": "new"},
         "by": ["new"], "support": False}]
    assert world.remedies("ahcccs", "act", "claims", org("P1")) == [
        {"code": "actor_inactive", "change": {"action": "activate", "account": "act"},
         "by": ["act"], "support": False}]


@pytest.mark.parametrize("chunk", [25, 2])
def test_at_most_five_are_named(world, monkeypatch, chunk):
    """Candidates are read a chunk at a time (2: the five named come from three reads), only as far as needed."""
    from service.domain import remedies

    monkeypatch.setattr(remedies, "CANDIDATE_CHUNK", chunk)
    with world.build("ahcccs") as w:
        for i in range(7):
            w.account(f"mah{i}", memberships={"P1": {"role": "admin"}})
        w.account("abe.locked", status="locked", memberships={"P1": {"role": "admin"}})
        w.account("bill", memberships={"P1": {}})
        w.account("lou", status="locked", memberships={"P1": {}})
    (remedy,) = world.remedies("ahcccs", "bill", "eligibility", org("P1"))
    assert remedy["by"] == [f"mah{i}" for i in range(5)]
    # Two remedies share one reading of the candidates; the locked admin is named by neither.
    assert [r["by"] for r in world.remedies("ahcccs", "lou", "eligibility", org("P1"))] == [
        [f"mah{i}" for i in range(5)]] * 2


@pytest.mark.R14
def test_no_change_satisfies_an_unknown_function_nor_acting_on_oneself_and_an_allowed_answer_has_none(ahw):
    assert ahw.remedies("ahw", "sam", "no_such_function", org("T1")) == []
    answer = ahw.ask("ahw", "ann", "unlock", {"type": "account", "id": "ann", "organization": "T1"}, remedies=True)
    assert [r["code"] for r in answer["reasons"]] == ["self_action"] and answer["remedies"] == []
    assert ahw.ask("ahw", "dee", "claims", org("T1"), remedies=True)["remedies"] == []


def test_a_delegate_lacking_the_function_it_would_grant_is_told_who_can_grant_it_first(ahw):
    answer = ahw.ask("ahw", "dex", "grant", {"type": "account", "id": "sam", "organization": "T1"},
                     context={"permission": "claims"}, remedies=True)
    assert answer["remedies"] == [{
        "code": "permission_not_held",
        "change": {"action": "grant", "account": "dex", "organization": "T1", "permission": "claims"},
        "by": ["dee", "abe", "ann"], "support": True}]


def test_remedies_are_computed_only_when_asked(ahw):
    assert "remedies" not in ahw.ask("ahw", "sam", "claims", org("T1"))


@pytest.mark.R1
@pytest.mark.R13
def test_read_scoping_a_linked_account_and_a_non_member(world):
    """masshealth: mb belongs to XB and is linked into XA; pab administers both; pb only XB; out only XC."""
    with world.build("masshealth") as w:
        w.account("pa", memberships={"XA": {"role": "admin"}})
        w.account("pb", memberships={"XB": {"role": "admin"}})
        w.account("pab", memberships={"XA": {"role": "admin"}, "XB": {"role": "admin"}})
        w.account("mb", memberships={"XB": {"permissions": [CLAIMS]}, "XA": {}})
        w.account("lmb", status="locked", memberships={"XB": {"permissions": [CLAIMS]}, "XA": {}})
        w.account("out", memberships={"XC": {"role": "admin"}})
        w.account("lout", status="locked", memberships={"XC": {"permissions": [CLAIMS]}})
    # Granting in XA is XA's to do: its admins, never XB's.
    assert world.remedies("masshealth", "mb", CLAIMS, org("XA")) == [{
        "code": "permission_not_granted",
        "change": {"action": "grant", "account": "mb", "organization": "XA", "permission": CLAIMS},
        "by": ["pa", "pab"], "support": True}]
    # Unlocking reaches every organization of the account: only who administers it in both may (R1).
    assert world.remedies("masshealth", "lmb", CLAIMS, org("XA")) == [
        {"code": "actor_inactive", "change": {"action": "unlock", "account": "lmb", "organization": "XA"},
         "by": ["pab"], "support": True},
        {"code": "permission_not_granted",
         "change": {"action": "grant", "account": "lmb", "organization": "XA", "permission": CLAIMS},
         "by": ["pa", "pab"], "support": True}]
    # A non-member of XA learns nobody of XA, locked or not.
    assert world.remedies("masshealth", "out", CLAIMS, org("XA")) == []
    answer = world.ask("masshealth", "lout", CLAIMS, org("XA"), remedies=True)
    assert [r["code"] for r in answer["reasons"]] == ["actor_inactive", "not_member"] and answer["remedies"] == []
    # Nor through an account of XA it asks about.
    answer = world.ask("masshealth", "out", "unlock", {"type": "account", "id": "lmb", "organization": "XA"},
                       remedies=True)
    assert [r["code"] for r in answer["reasons"]] == ["not_member"] and answer["remedies"] == []


def test_batch_and_authzen_answer_remedies_when_asked(ahw):
    checks = [{"action": "claims", "resource": org("T1")}, {"action": "view", "resource": org("T1")},
              {"action": "claims", "resource": org("NOPE")}]
    results = ahw.post("/v1/authorize/batch", {"portal": "ahw", "actor": "sam", "checks": checks,
                                               "remedies": True}).get_json()["results"]
    assert [len(r["remedies"]) for r in results] == [1, 0, 0]
    assert results[0]["remedies"][0]["by"] == ["dee", "abe", "ann"]
    plain = ahw.post("/v1/authorize/batch", {"portal": "ahw", "actor": "sam", "checks": checks}).get_json()
    assert all("remedies" not in r for r in plain["results"])
    ask = {"subject": {"type": "account", "id": "sam"}, "action": {"name": "claims"},
           "resource": {"type": "organization", "id": "T1"}}
    answer = ahw.post("/authzen/ahw/access/v1/evaluation", {**ask, "context": {"remedies": True}}).get_json()
    assert answer["decision"] is False and answer["context"]["remedies"][0]["by"] == ["dee", "abe", "ann"]
    assert "remedies" not in ahw.post("/authzen/ahw/access/v1/evaluation", ask).get_json()["context"]
    many = ahw.post("/authzen/ahw/access/v1/evaluations",
                    {**ask, "context": {"remedies": True}, "evaluations": [{}, {"action": {"name": "view"}}]})
    assert [len(e["context"]["remedies"]) for e in many.get_json()["evaluations"]] == [1, 0]


def test_the_contract_documents_remedies(ahw):
    spec = ahw.post_get("/openapi.json")
    schemas = spec["components"]["schemas"]
    assert set(schemas["Remedy"]["properties"]) == {"code", "change", "by", "support"}
    assert "remedies" in schemas["AuthorizeRequest"]["properties"]
    assert "remedies" in schemas["BatchRequest"]["properties"]
    assert "remedies" in schemas["AuthorizeExplainedResponse"]["properties"]
    assert "remedies" in schemas["DecisionContext"]["properties"]


# A third kind of account that may grant: a member holding Claims administers the organization's members (and,
# holding Claims, may grant it), though it is neither a delegate nor an admin.
CLAIMS_HOLDERS_GRANT = ('administers(actor: Account, target: TargetAccount) if\n'
                        '    membership(actor, target.organization, m) and m.role = "member" and\n'
                        '    "claims" in m.permissions and target.role = "member";')


@pytest.mark.R15
@pytest.mark.R16
def test_the_accounts_named_follow_a_policy_under_which_another_kind_of_account_grants(tmp_path, any_database,
                                                                                      config, policy, clock):
    """Who is named is the policy's answer to each candidate, and the candidates are the organization's active
    accounts (delegates and admins first), not only those the shipped policy lets grant."""
    from tests.fixtures.policies import widened_policy

    with any_database.transaction() as session:
        w = World(session, "ahw", clock.now())
        w.account("ann", memberships={"T1": {"role": "admin"}})
        w.account("dee", memberships={"T1": {"permissions": ["manage_account", "claims"]}})
        w.account("cal", memberships={"T1": {"permissions": ["claims"]}})
        w.account("eli", memberships={"T1": {"permissions": ["eligibility"]}})
        w.account("sam", memberships={"T1": {}})

    def named(chosen):
        app = create_app(config, database=any_database, policy=chosen, clock=clock)
        key = make_key(any_database, ("authorize",), clock.now())
        answer = app.test_client().post("/v1/authorize", headers={"Authorization": f"Bearer {key}"}, json={
            "portal": "ahw", "actor": "sam", "action": "claims", "resource": org("T1"), "remedies": True}).get_json()
        return [r["by"] for r in answer["remedies"]]

    assert named(policy) == [["dee", "ann"]]
    assert named(widened_policy(tmp_path / "widened", CLAIMS_HOLDERS_GRANT)) == [["dee", "ann", "cal"]]


def test_other_members_are_not_read_when_the_policy_lets_no_member_make_the_change(ahw, monkeypatch):
    """Under the shipped policy only delegates and admins grant: fewer than five named, and still the other
    members are never read (the cost of a remedy stays that of its first candidates)."""
    from service.domain import remedies

    def never(*_):
        raise AssertionError("other members read")

    monkeypatch.setattr(remedies, "other_usernames", never)
    (remedy,) = ahw.remedies("ahw", "sam", "claims", org("T1"))
    assert 0 < len(remedy["by"]) < remedies.MAX_NAMED
