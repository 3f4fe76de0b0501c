"""Authority matches the reach of every effect (R1, R3, R15). Each attack that once worked, over HTTP in-process.

Every single decision was right before; the compositions were not. These tests replay the attacks
(link, then change email, then recover; disable across organizations; a delegate's escalation;
unlimited security-answer guesses; a password change that leaves sessions open; an orphaned
organization no one hears of) and check that `/v1/authorize` predicts each change's answer exactly.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.domain import passwords
from service.storage.models import Account, AuditRecord
from tests.conftest import make_key
from tests.fixtures.http import ANSWERS, Portal, give_answers, outbox
from tests.fixtures.world import PASSWORD


@pytest.fixture
def key(database, clock):
    return make_key(database, ("authorize", "manage", "enroll"), clock.now())


def portal(client, key, name):
    return Portal(client, key, name)


def sign_in(p: Portal, username: str, password: str = PASSWORD) -> str:
    return p.sign_in(username, password)


def authorize(p: Portal, actor: str, action: str, username: str, organization: str, **context):
    body = {"portal": p.portal, "actor": actor, "action": action,
            "resource": {"type": "account", "id": username, "organization": organization}}
    if context:
        body["context"] = context
    answer = p.client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {p.key}"}).get_json()
    return answer["allowed"], sorted(r["code"] for r in answer["reasons"])


def reasons(response) -> list[str]:
    return sorted(r["code"] for r in response.get_json()["reasons"])


@pytest.fixture
def masshealth(client, key, build):
    """Two provider organizations: A with Primary User pa, B whose only Primary User is pb, with a subordinate."""
    with build("masshealth") as world:
        world.account("pa", memberships={"PIDSL-A": {"role": "admin"}})
        world.account("pb", memberships={"PIDSL-B": {"role": "admin"}})
        world.account("mb", memberships={"PIDSL-B": {"permissions": ["claims_submission_and_status"]}})
        world.account("sue", support=True)
    return portal(client, key, "masshealth")


# --- 1. Takeover through a link -------------------------------------------------------------------

@pytest.mark.R1
@pytest.mark.R13
def test_a_link_gives_no_power_over_the_linked_account(masshealth, database):
    p = masshealth
    pa = sign_in(p, "pa")
    p.call("POST", "/organizations/PIDSL-A/links", {"username": "pb"}, token=pa, expect=201)

    expected = ["account_elsewhere"]
    assert authorize(p, "pa", "update_email", "pb", "PIDSL-A") == (False, expected)
    patched = p.call("PATCH", "/accounts/pb", {"organization": "PIDSL-A", "email": "pa@example.org"}, token=pa,
                     expect=403)
    assert reasons(patched) == expected
    assert authorize(p, "pa", "send_password_recovery", "pb", "PIDSL-A") == (False, expected)
    assert reasons(p.act(pa, "pb", "send-password-recovery", organization="PIDSL-A", expect=403)) == expected
    assert [n.template for n in outbox(database, "pa@example.org")] == []
    with database.sessions() as session:
        assert session.scalar(select(Account.email).where(Account.username == "pb")) == "pb@example.org"

    # What the link does give: power over that link.
    assert authorize(p, "pa", "grant", "pb", "PIDSL-A", permission="claims_submission_and_status") == (True, [])
    p.call("PUT", "/accounts/pb/permissions", {"organization": "PIDSL-A",
                                               "permissions": ["claims_submission_and_status"]}, token=pa, expect=200)
    # Its answer shows pb's current memberships pa may see: none (pb's PIDSL-B standing is not pa's to read).
    assert p.act(pa, "pb", "remove", organization="PIDSL-A").get_json()["memberships"] == []


@pytest.mark.R13
@pytest.mark.parametrize("name", ["ahcccs", "ahw", "qm"])
def test_links_and_admin_created_accounts_only_where_the_portal_offers_them(client, key, build, name):
    with build(name) as world:
        world.account("adm", memberships={"ORG-1": {"role": "admin"}})
        world.account("other", memberships={"ORG-2": {}})
    p = portal(client, key, name)
    token = sign_in(p, "adm")
    linked = p.call("POST", "/organizations/ORG-1/links", {"username": "other"}, token=token, expect=403)
    assert reasons(linked) == ["not_offered"]
    created = p.call("POST", "/organizations/ORG-1/accounts",
                     {"username": "newbie", "first_name": "New", "last_name": "Bie", "email": "newbie@example.org",
                      "password": "Long#Enough#Pass1"}, token=token, expect=403)
    assert reasons(created) == ["not_offered"]


# --- 2. Disable and re-enable across organizations --------------------------------------------------

@pytest.mark.R1
@pytest.mark.R3
def test_disable_in_one_organization_cannot_orphan_another(masshealth, database):
    p = masshealth
    pa = sign_in(p, "pa")
    p.call("POST", "/organizations/PIDSL-A/links", {"username": "pb"}, token=pa, expect=201)
    # Without authority in PIDSL-B, pa learns only that; not that PIDSL-B would be left without an admin.
    expected = ["account_elsewhere"]
    assert authorize(p, "pa", "disable", "pb", "PIDSL-A") == (False, expected)
    assert reasons(p.act(pa, "pb", "disable", organization="PIDSL-A", expect=403)) == expected
    # Support staff have authority everywhere, but R3 holds in every organization the disable reaches.
    sue = sign_in(p, "sue")
    assert authorize(p, "sue", "disable", "pb", "PIDSL-A") == (False, ["last_admin"])
    assert p.act(sue, "pb", "disable", organization="PIDSL-A", expect=409).get_json()["code"] == "last_admin"
    assert p.call("GET", "/organizations/PIDSL-B", expect=200).get_json()["warnings"] == ["single_admin"]


@pytest.mark.R1
@pytest.mark.R13
def test_an_account_one_organization_disabled_is_not_re_enabled_by_another(masshealth):
    p = masshealth
    pb, pa = sign_in(p, "pb"), sign_in(p, "pa")
    p.act(pb, "mb", "disable")
    p.call("POST", "/organizations/PIDSL-A/links", {"username": "mb"}, token=pa, expect=201)
    assert authorize(p, "pa", "enable", "mb", "PIDSL-A") == (False, ["account_elsewhere"])
    assert reasons(p.act(pa, "mb", "enable", organization="PIDSL-A", expect=403)) == ["account_elsewhere"]
    refused = p.call("POST", "/sessions", {"username": "mb", "password": PASSWORD})
    assert refused.get_json()["code"] == "account_disabled"


# --- 3. A delegate escalates through another account ----------------------------------------------

@pytest.mark.R15
def test_a_delegate_cannot_take_over_an_account_holding_a_function_it_lacks(client, key, build, database):
    with build("ahw") as world:
        world.account("kim", memberships={"TIN-1": {"role": "admin"}})
        world.account("dee", memberships={"TIN-1": {"permissions": ["manage_account", "claims"]}})
        world.account("hana", memberships={"TIN-1": {"permissions": ["health_records"]}})
        world.account("cleo", memberships={"TIN-1": {"permissions": ["claims"]}})
    p = portal(client, key, "ahw")
    dee = sign_in(p, "dee")
    assert authorize(p, "dee", "update_email", "hana", "TIN-1") == (False, ["permission_not_held"])
    taken = p.call("PATCH", "/accounts/hana", {"email": "dee@example.org"}, token=dee, expect=403)
    assert reasons(taken) == ["permission_not_held"]
    assert authorize(p, "dee", "send_password_recovery", "hana", "TIN-1") == (False, ["permission_not_held"])
    assert reasons(p.act(dee, "hana", "send-password-recovery", expect=403)) == ["permission_not_held"]
    # A user whose functions the delegate holds stays manageable (R15), and the old address is told.
    assert authorize(p, "dee", "update_email", "cleo", "TIN-1") == (True, [])
    p.call("PATCH", "/accounts/cleo", {"email": "cleo.new@example.org"}, token=dee, expect=200)
    told = outbox(database, "cleo@example.org")
    assert [n.template for n in told] == ["email_changed"] and told[0].payload["changed_by"] == "dee"


@pytest.mark.R15
@pytest.mark.R20
def test_a_delegates_recovery_code_is_decided_again_when_used(client, key, build, database):
    """The delegate changes a member's email, sends recovery; the admin then grants the member a function the
    delegate lacks: the delegate's code no longer sets the password (the same question as sending it)."""
    with build("ahw") as world:
        world.account("kim", memberships={"TIN-1": {"role": "admin"}})
        world.account("dee", memberships={"TIN-1": {"permissions": ["manage_account", "claims"]}})
        world.account("cleo", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("cy", memberships={"TIN-1": {"permissions": ["claims"]}})
    p = portal(client, key, "ahw")
    dee, kim = sign_in(p, "dee"), sign_in(p, "kim")
    codes = {}
    for who in ("cleo", "cy"):
        p.call("PATCH", f"/accounts/{who}", {"email": f"dee+{who}@example.org"}, token=dee, expect=200)
        p.act(dee, who, "send-password-recovery")
        codes[who] = outbox(database, f"dee+{who}@example.org")[-1].payload["security_code"]
    p.call("PUT", "/accounts/cleo/permissions", {"permissions": ["claims", "health_records"]}, token=kim, expect=200)
    assert authorize(p, "dee", "send_password_recovery", "cleo", "TIN-1") == (False, ["permission_not_held"])
    taken = p.call("POST", "/password-recoveries/confirm",
                   {"username": "cleo", "code": codes["cleo"], "new_password": "Dee#Owns#Cleo1"})
    assert (taken.status_code, taken.get_json()["code"]) == (422, "recovery_invalid")
    assert p.call("POST", "/sessions", {"username": "cleo", "password": "Dee#Owns#Cleo1"}).status_code == 401
    # Where the sender's authority still holds, its code works.
    p.call("POST", "/password-recoveries/confirm",
           {"username": "cy", "code": codes["cy"], "new_password": "Cy#Own#Pass#2026"}, expect=200)


# --- 4. Security answers are not guessed without limit --------------------------------------------

@pytest.fixture
def recoverable(client, key, build):
    with build("ahcccs") as world:
        world.account("mara", memberships={"P-1": {"role": "admin"}})
        give_answers(world, world.account("ian", memberships={"P-1": {"permissions": ["claims"]}}))
    return portal(client, key, "ahcccs")


def recover(p: Portal, answers):
    response = p.call("POST", "/password-recoveries", {"username": "ian", "answers": answers})
    assert response.status_code == 202
    return response


def recovery_emails(database):
    return [n for n in outbox(database, "ian@example.org") if n.template == "password_recovery"]


@pytest.mark.R19
@pytest.mark.R20
def test_wrong_answers_count_toward_a_limit(recoverable, database, clock):
    p = recoverable
    for _ in range(3):  # ahcccs: the lockout's 3 within 15 minutes
        recover(p, ["wrong", "answers"])
    recover(p, ANSWERS)
    assert recovery_emails(database) == []  # right answers after the limit do nothing
    with database.sessions() as session:
        last = session.scalars(select(AuditRecord).where(AuditRecord.action == "request_password_recovery")
                               .order_by(AuditRecord.id.desc())).first()
    assert (last.outcome, last.reasons, last.target) == ("refused", ["recovery_limit"], "ian")
    clock.advance(timedelta(minutes=16))  # the window has passed
    recover(p, ANSWERS)
    assert len(recovery_emails(database)) == 1


@pytest.mark.R20
def test_an_admin_lifts_the_limit(recoverable, database):
    p = recoverable
    for _ in range(3):
        recover(p, ["wrong", "answers"])
    mara = sign_in(p, "mara")
    p.act(mara, "ian", "send-password-recovery")
    recover(p, ANSWERS)
    assert len(recovery_emails(database)) == 2  # the admin's, then the self-service one


class CountingHasher:
    """The real argon2 hasher, counting its calls: the work a request does, independent of the clock."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def hash(self, secret):
        self.calls.append("hash")
        return self.real.hash(secret)

    def verify(self, stored, secret):
        self.calls.append("verify")
        return self.real.verify(stored, secret)


@pytest.mark.R20
def test_right_and_wrong_answers_cost_the_same_work(recoverable, database, monkeypatch):
    counting = CountingHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", counting)
    work = {}
    for name, answers in (("wrong", ["wrong", "answers"]), ("right", ANSWERS), ("unknown", None)):
        counting.calls.clear()
        if answers is None:
            recoverable.call("POST", "/password-recoveries", {"username": "nobody", "answers": ANSWERS})
        else:
            recover(recoverable, answers)
        work[name] = sorted(counting.calls)
    assert work["wrong"] == work["right"] == work["unknown"] == ["hash", "verify", "verify"]
    assert len(recovery_emails(database)) == 1


# --- 5. A password change ends the account's other sessions ------------------------------------------

@pytest.mark.R18
def test_a_password_change_ends_every_other_session(recoverable):
    p = recoverable
    here, elsewhere = sign_in(p, "ian"), sign_in(p, "ian")
    p.call("PUT", "/accounts/ian/password", {"current_password": PASSWORD, "new_password": "Brand#New42Pass"},
           token=here, expect=200)
    assert p.call("GET", "/accounts/ian", token=elsewhere).get_json()["code"] == "invalid_session"
    assert p.call("GET", "/accounts/ian", token=here).status_code == 200


# --- 6. No organization loses its last active admin unnoticed ------------------------------------------

def support_notices(database):
    return [n for n in outbox(database) if n.template == "organization_without_admin"]


@pytest.mark.R3
@pytest.mark.R4
@pytest.mark.R19
def test_locking_out_the_last_admin_notifies_support(recoverable, build, database):
    p = recoverable
    with build("ahcccs") as world:
        world.account("sam", support=True)
    for _ in range(3):
        p.call("POST", "/sessions", {"username": "mara", "password": "not it"})
    notices = support_notices(database)
    assert [(n.recipient, n.payload["organization"], n.payload["cause"]) for n in notices] == [
        ("sam@example.org", "P-1", "lockout")]
    assert "no_active_admin" in p.call("GET", "/organizations/P-1", expect=200).get_json()["warnings"]


@pytest.mark.R3
@pytest.mark.R4
@pytest.mark.parametrize("action, status", [("enable", "disabled"), ("approve", "pending_approval"),
                                            ("unlock", "locked")])
def test_support_activating_a_member_where_the_only_admin_is_locked_notifies_support(client, key, build, database,
                                                                                      action, status):
    """An action that never takes an admin away still orphans an organization that had none (R3): reported."""
    with build("ahcccs") as world:
        world.account("sam", support=True)
        world.account("kim", status="locked", memberships={"P-1": {"role": "admin"}})
        world.account("uma", status=status, memberships={"P-1": {}})
        world.account("ned", status=status, memberships={"P-2": {}})
        world.account("ada", memberships={"P-2": {"role": "admin"}})
    p = portal(client, key, "ahcccs")
    token = sign_in(p, "sam")
    p.act(token, "uma", action)
    p.act(token, "ned", action)  # P-2 has its admin: nothing to tell
    assert [(n.recipient, n.payload["organization"], n.payload["cause"]) for n in support_notices(database)] == [
        ("sam@example.org", "P-1", action)]


@pytest.mark.R3
@pytest.mark.R4
@pytest.mark.R23
def test_the_sweep_disabling_the_last_admin_notifies_support(client, key, build, database, clock):
    with build("ahw") as world:
        # support staff are swept too: sam was active lately, kim never since day 0
        world.account("sam", support=True).last_activity_at = clock.now() + timedelta(days=89)
        world.account("kim", memberships={"TIN-1": {"role": "admin"}})
        world.account("uma", memberships={"TIN-1": {}}).last_activity_at = clock.now() + timedelta(days=89)
    p = portal(client, key, "ahw")
    clock.advance(timedelta(days=90))
    swept = p.call("POST", "/maintenance/sweep", {}, expect=200).get_json()
    assert swept["disabled"] == 1
    assert [(n.payload["organization"], n.payload["cause"]) for n in support_notices(database)] == [
        ("TIN-1", "inactivity_sweep")]
    assert p.call("GET", "/organizations/TIN-1", expect=200).get_json()["warnings"] == ["no_active_admin"]
    p.call("POST", "/maintenance/sweep", {}, expect=200)
    assert len(support_notices(database)) == 1  # told once, not on every run


@pytest.mark.R3
@pytest.mark.R4
@pytest.mark.R23
def test_idle_support_staff_disabled_by_the_same_sweep_are_still_told(client, key, build, database, clock):
    with build("ahw") as world:
        world.account("sam", support=True)  # as idle as kim: the same run disables both
        world.account("kim", memberships={"TIN-1": {"role": "admin"}})
        world.account("uma", memberships={"TIN-1": {}}).last_activity_at = clock.now() + timedelta(days=89)
    p = portal(client, key, "ahw")
    clock.advance(timedelta(days=90))
    assert p.call("POST", "/maintenance/sweep", {}, expect=200).get_json()["disabled"] == 2
    assert [(n.recipient, n.payload["organization"]) for n in support_notices(database)] == [
        ("sam@example.org", "TIN-1")]


# --- 8. What the audit was missing ----------------------------------------------------------------

@pytest.mark.R27
def test_denied_listings_and_refused_sign_ins_are_audited_under_the_account(masshealth, database):
    p = masshealth
    pa = sign_in(p, "pa")
    p.call("GET", "/organizations/PIDSL-B/accounts", token=pa, expect=403)
    p.call("POST", "/sessions", {"username": "  PB ", "password": "not it"})
    with database.sessions() as session:
        rows = [(r.action, r.outcome, r.actor, r.organization, r.reasons)
                for r in session.scalars(select(AuditRecord).order_by(AuditRecord.id))]
    assert ("list_accounts", "denied", "pa", "PIDSL-B", ["not_member"]) in rows
    assert ("sign_in", "refused", "pb", None, ["invalid_credentials"]) in rows


# --- A non-member learns only not_member --------------------------------------------------------------

@pytest.mark.R1
def test_a_non_member_learns_nothing_about_another_organizations_accounts(masshealth):
    p = masshealth
    pa = sign_in(p, "pa")
    assert authorize(p, "pa", "unlock", "mb", "PIDSL-B") == (False, ["not_member"])
    assert reasons(p.act(pa, "mb", "unlock", expect=403)) == ["not_member"]
    assert reasons(p.act(pa, "pb", "remove", expect=403)) == ["not_member"]
    for who in ("mb", "pb", "nobody-at-all"):
        read = p.call("GET", f"/accounts/{who}?organization=PIDSL-B", token=pa, expect=403)
        assert reasons(read) == ["not_member"]
