"""Account lifecycle over HTTP, per portal: registration to removal (issue 4; R1-R13, R21, R25, R27)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.storage.models import AuditRecord, Notification
from tests.conftest import make_key

ADDRESS = {"id": "CORR", "line1": "801 E Jefferson St", "city": "Phoenix", "state": "AZ", "zip": "85034"}
QUESTIONS = [{"question": "What is our address?", "answer": "123 Oak St."},
             {"question": "Favourite gemstone?", "answer": "opal"}]


class Portal:
    """A caller with all three scopes, speaking to one portal as api-v1.md says."""

    def __init__(self, client, key, portal):
        self.client, self.key, self.portal = client, key, portal

    def call(self, method, path, body=None, token=None, expect=None):
        headers = {"Authorization": f"Bearer {self.key}"}
        if token:
            headers["X-Session-Token"] = token
        response = self.client.open(f"/v1/portals/{self.portal}{path}", method=method, json=body, headers=headers)
        if expect is not None:
            assert response.status_code == expect, response.get_json()
        return response

    def register(self, username, org="P-1", expect=201, **extra):
        body = {"organization": org, "username": username, "first_name": username.title(), "last_name": "Smith",
                "email": f"{username}@example.org", "phone": "602-555-0101", "password": "Valid#Pass2024x",
                "security_questions": QUESTIONS, "accepted_terms": True, **extra}
        return self.call("POST", "/registrations", body, expect=expect)

    def sign_in(self, username, password="Valid#Pass2024x"):
        return self.call("POST", "/sessions", {"username": username, "password": password}, expect=201).get_json()["token"]

    def act(self, token, username, action, expect=200, **body):
        return self.call("POST", f"/accounts/{username}/{action}", body or None, token=token, expect=expect)


@pytest.fixture
def api(client, database, clock):
    key = make_key(database, ("authorize", "manage", "enroll"), clock.now())
    return lambda portal: Portal(client, key, portal)


def outbox(database, to=None):
    with database.sessions() as session:
        query = select(Notification).order_by(Notification.id)
        if to:
            query = query.where(Notification.recipient == to)
        return list(session.scalars(query))


def activate_master(api_portal, database, username="mara", org="P-1"):
    api_portal.register(username, org=org, address_id="CORR")
    letter = [n for n in outbox(database) if n.channel == "letter"][-1]
    api_portal.call("POST", "/activations", {"username": username, "code": letter.payload["activation_code"],
                                             "temporary_password": letter.payload["temporary_password"],
                                             "new_password": "Valid#Pass2024x"}, expect=200)
    return api_portal.sign_in(username)


def test_ahcccs_master_story(api, database, clock):
    """000: first registrant is master, letter with code, activation, then individuals awaiting approval."""
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    first = p.register("mara", address_id="CORR").get_json()
    assert (first["role"], first["status"]) == ("admin", "pending_activation")
    letters = outbox(database)
    assert [n.channel for n in letters] == ["letter"]
    assert letters[0].recipient.startswith("801 E Jefferson St")
    assert "activation_code" in letters[0].payload
    refused = p.call("POST", "/sessions", {"username": "mara", "password": "Valid#Pass2024x"})
    assert refused.status_code == 401 and refused.get_json()["code"] == "invalid_credentials"

    code = letters[0].payload["activation_code"]
    wrong_case = p.call("POST", "/activations", {"username": "mara", "code": code.swapcase(),
                                                 "temporary_password": letters[0].payload["temporary_password"],
                                                 "new_password": "Valid#Pass2024x"})
    assert wrong_case.status_code == 422 and wrong_case.get_json()["code"] == "activation_code_invalid"
    p.call("POST", "/activations", {"username": "mara", "code": code,
                                    "temporary_password": letters[0].payload["temporary_password"],
                                    "new_password": "Valid#Pass2024x"}, expect=200)
    token = p.sign_in("mara")

    member = p.register("ian").get_json()
    assert (member["role"], member["status"]) == ("member", "pending_approval")
    assert member["admins"] == [{"name": "Mara Smith", "email": "mara@example.org", "phone": "602-555-0101"}]
    notice = outbox(database, "mara@example.org")[-1]
    assert notice.channel == "email" and "activation_code" not in notice.payload
    assert p.call("POST", "/sessions", {"username": "ian", "password": "Valid#Pass2024x"}).get_json()["code"] \
        == "pending_approval"

    approved = p.act(token, "ian", "approve", comment="new biller").get_json()
    assert approved["status"] == "active"
    granted = p.call("PUT", "/accounts/ian/permissions", {"permissions": ["claims"]}, token=token, expect=200)
    assert granted.get_json()["memberships"][0]["permissions"] == ["claims"]
    decision = p.client.post("/v1/authorize", json={"portal": "ahcccs", "actor": "ian", "action": "claims",
                                                    "resource": {"type": "organization", "id": "P-1"}},
                             headers={"Authorization": f"Bearer {p.key}"}).get_json()
    assert decision["allowed"] is True

    upgraded = p.act(token, "ian", "upgrade").get_json()
    assert upgraded["memberships"][0]["role"] == "admin"
    org = p.call("GET", "/organizations/P-1", expect=200).get_json()
    assert [a["username"] for a in org["admins"]] == ["ian", "mara"] and org["warnings"] == []  # R2

    ian = p.sign_in("ian")
    p.act(ian, "mara", "downgrade")
    last = p.act(ian, "ian", "downgrade", expect=403).get_json()
    assert [r["code"] for r in last["reasons"]] == ["self_action", "last_admin"]
    removed = p.act(ian, "mara", "remove").get_json()
    assert removed["status"] == "removed"
    with database.sessions() as session:
        actions = [(r.action, r.outcome) for r in session.scalars(select(AuditRecord).order_by(AuditRecord.id))]
    assert ("downgrade", "denied") in actions and ("remove", "done") in actions  # R27


def test_member_cannot_act_and_denial_is_recorded(api, database):
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    master = activate_master(p, database)
    p.register("ian")
    p.register("joy")
    p.act(master, "ian", "approve")
    p.act(master, "joy", "approve")
    ian = p.sign_in("ian")
    denied = p.act(ian, "joy", "remove", expect=403)
    assert denied.mimetype == "application/problem+json"
    assert denied.get_json()["code"] == "forbidden"
    assert [r["code"] for r in denied.get_json()["reasons"]] == ["not_admin"]
    with database.sessions() as session:
        record = session.scalars(select(AuditRecord).where(AuditRecord.action == "remove")).one()
    assert (record.actor, record.target, record.outcome, record.reasons) == ("ian", "joy", "denied", ["not_admin"])


def test_actor_comes_from_the_session(api, database):
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    activate_master(p, database)
    p.register("ian")
    assert p.act(None, "ian", "approve", expect=401).get_json()["code"] == "invalid_session"
    assert p.act("forged", "ian", "approve", expect=401).get_json()["code"] == "invalid_session"
    master = p.sign_in("mara")
    p.call("DELETE", "/sessions/current", token=master, expect=204)
    assert p.act(master, "ian", "approve", expect=401).get_json()["code"] == "invalid_session"


def test_registration_rules(api, database):
    """R7 terms, R9 no address, R6 username taken, R13 masshealth has no self-registration."""
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic"}, expect=201)
    assert p.register("mara", accepted_terms=False, expect=422).get_json()["code"] == "terms_not_accepted"
    assert p.register("mara", expect=422).get_json()["code"] == "no_correspondence_address"
    assert p.call("GET", "/organizations/P-1").get_json()["admins"] == []
    m = api("masshealth")
    m.call("POST", "/organizations", {"key": "PIDSL-1", "name": "Clinic"}, expect=201)
    assert m.register("sam", org="PIDSL-1", expect=403).get_json()["code"] == "self_registration_closed"


def test_activation_code_expires_after_15_days(api, database, clock):
    """R10."""
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    p.register("mara", address_id="CORR")
    letter = outbox(database)[-1].payload
    clock.advance(timedelta(days=15, seconds=1))
    late = p.call("POST", "/activations", {"username": "mara", "code": letter["activation_code"],
                                           "temporary_password": letter["temporary_password"],
                                           "new_password": "Valid#Pass2024x"})
    assert late.status_code == 422 and late.get_json()["code"] == "activation_code_expired"


def test_ahw_self_registration_enable_and_confirm(api, database):
    """R12: payer sets up the first Account Manager; users register, get enabled, confirm by email."""
    p = api("ahw")
    p.call("POST", "/organizations", {"key": "TIN-1", "name": "Practice"}, expect=201)
    p.call("POST", "/organizations/TIN-1/admins", {"username": "kim", "first_name": "Kim", "last_name": "Lee",
                                                  "email": "kim@example.org", "password": "long enough pass"},
           expect=201)
    user = p.register("uma", org="TIN-1", password="long enough pass").get_json()
    assert (user["role"], user["status"]) == ("member", "pending_approval")
    assert outbox(database, "kim@example.org")[-1].template == "account_awaits_approval"
    kim = p.sign_in("kim", "long enough pass")
    assert p.act(kim, "uma", "enable").get_json()["status"] == "unverified"
    p.act(kim, "uma", "send-registration-email", comment="<script>alert(1)</script>")
    mail = outbox(database, "uma@example.org")[-1]
    confirmed = p.call("POST", "/registrations/confirm",
                       {"username": "uma", "code": mail.payload["registration_code"]}, expect=200)
    assert confirmed.get_json()["status"] == "active"
    history = p.call("GET", "/accounts/uma/comments", token=kim, expect=200).get_json()
    assert history[-1]["text"] == "<script>alert(1)</script>" and history[-1]["actor"] == "kim"  # R25
    long = p.act(kim, "uma", "disable", expect=422, comment="x" * 201)
    assert long.get_json()["errors"][0]["field"] == "comment"
    assert p.call("GET", "/accounts/uma", token=kim, expect=200).get_json()["status"] == "active"
