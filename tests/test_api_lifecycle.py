"""Account lifecycle over HTTP, per portal: registration to removal (R1-R13, R21, R25, R27)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.storage.models import AuditRecord
from tests.fixtures.http import ADDRESS, TEMPORARY, outbox

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
                                                  "email": "kim@example.org", "password": TEMPORARY},
           expect=201)
    user = p.register("uma", org="TIN-1", password="long enough pass").get_json()
    assert (user["role"], user["status"]) == ("member", "pending_approval")
    assert outbox(database, "kim@example.org")[-1].template == "account_awaits_approval"
    kim = p.first_sign_in("kim")
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


def primary_user(p, database, org="PIDSL-1"):
    p.call("POST", "/organizations", {"key": org, "name": f"Provider {org}"}, expect=201)
    p.call("POST", f"/organizations/{org}/admins", {"username": f"pu-{org.lower()}", "first_name": "Pat",
                                                   "last_name": "Primary", "email": f"pu@{org.lower()}.org",
                                                   "password": TEMPORARY}, expect=201)
    return p.first_sign_in(f"pu-{org.lower()}")


def subordinate(p, token, username, org="PIDSL-1", permissions=(), expect=201):
    body = {"username": username, "first_name": username.title(), "last_name": "Doe",
            "email": f"{username}@mass.example", "password": TEMPORARY, "permissions": list(permissions)}
    return p.call("POST", f"/organizations/{org}/accounts", body, token=token, expect=expect)


def test_masshealth_primary_user_story(api, database):
    """004: the Primary User creates subordinates, assigns services, links and removes from a provider (R13)."""
    p = api("masshealth")
    primary = primary_user(p, database)
    made = subordinate(p, primary, "jdoe11", permissions=["claims_submission_and_status"]).get_json()
    assert made["status"] == "active"
    assert made["memberships"] == [{"organization": "PIDSL-1", "role": "member", "status": "active",
                                    "permissions": ["claims_submission_and_status"]}]
    unknown = subordinate(p, primary, "kdoe", permissions=["teleport"], expect=403)
    assert [r["code"] for r in unknown.get_json()["reasons"]] == ["permission_unknown"]

    other = primary_user(p, database, org="PIDSL-2")
    linked = p.call("POST", "/organizations/PIDSL-2/links", {"username": "jdoe11"}, token=other, expect=201)
    # The linking organization sees its own link only, never the account's other organizations.
    assert {m["organization"] for m in linked.get_json()["memberships"]} == {"PIDSL-2"}
    again = p.call("POST", "/organizations/PIDSL-2/links", {"username": "jdoe11"}, token=other, expect=409)
    assert again.get_json()["code"] == "already_linked"

    removed = p.act(other, "jdoe11", "remove", organization="PIDSL-2").get_json()
    assert removed["status"] == "active"  # the account lives on where it has other links
    # Current memberships only, and PIDSL-1's is not PIDSL-2's to read: nothing left to show.
    assert removed["memberships"] == []
    own = p.call("GET", "/accounts/jdoe11", token=primary, expect=200).get_json()
    assert {m["organization"]: m["status"] for m in own["memberships"]} == {"PIDSL-1": "active"}
    gone = p.act(primary, "jdoe11", "remove", organization="PIDSL-1").get_json()
    assert gone["status"] == "removed"


def test_delegate_creates_only_with_services_it_holds(api, database):
    """R15: Manage Subordinate Accounts, but no more services than it holds."""
    p = api("masshealth")
    primary = primary_user(p, database)
    subordinate(p, primary, "dele", permissions=["manage_subordinate_accounts", "manage_referrals"])
    dele = p.first_sign_in("dele")
    subordinate(p, dele, "ok1", permissions=["manage_referrals"])
    refused = subordinate(p, dele, "no1", permissions=["claims_submission_and_status"], expect=403)
    assert [r["code"] for r in refused.get_json()["reasons"]] == ["permission_not_held"]
    plain = subordinate(p, primary, "plain").get_json()["username"]
    plain_token = p.first_sign_in(plain)
    assert [r["code"] for r in subordinate(p, plain_token, "no2", expect=403).get_json()["reasons"]] == ["not_admin"]


def test_listing_shows_what_the_actor_may_see(api, database):
    """R24: search by name and email, filter by status, manageable accounts; checked against the policy."""
    p = api("ahw")
    p.call("POST", "/organizations", {"key": "TIN-1", "name": "Practice"}, expect=201)
    p.call("POST", "/organizations/TIN-1/admins", {"username": "kim", "first_name": "Kim", "last_name": "Lee",
                                                  "email": "kim@example.org", "password": TEMPORARY},
           expect=201)
    for name in ("ann", "bea", "cal", "dan"):
        p.register(name, org="TIN-1", password="long enough pass")
    kim = p.first_sign_in("kim")
    p.act(kim, "ann", "enable")
    p.call("POST", "/registrations/confirm", {"username": "ann", "code": "wrong"}, expect=422)

    def names(token, **query):
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        response = p.call("GET", f"/organizations/TIN-1/accounts?{qs}", token=token, expect=200).get_json()
        return [a["username"] for a in response["accounts"]], response["next"]

    assert names(kim) == (["ann", "bea", "cal", "dan", "kim"], None)
    assert names(kim, status="pending_approval") == (["bea", "cal", "dan"], None)
    assert names(kim, status="unverified") == (["ann"], None)
    assert names(kim, q="BEA@example") == (["bea"], None)
    assert names(kim, q="cal smith") == (["cal"], None)
    assert names(kim, manageable="true") == (["ann", "bea", "cal", "dan"], None)
    assert names(kim, limit=2) == (["ann", "bea"], "bea")
    assert names(kim, limit=2, after="bea") == (["cal", "dan"], "dan")
    assert names(kim, limit=2, after="dan") == (["kim"], None)
    assert p.call("GET", "/organizations/TIN-1/accounts?limit=0", token=kim).status_code == 422
    assert p.call("GET", "/organizations/TIN-1/accounts?limit=x", token=kim).status_code == 422

    p.act(kim, "bea", "enable")
    mail = outbox(database, "bea@example.org")
    p.act(kim, "bea", "send-registration-email")
    code = outbox(database, "bea@example.org")[-1].payload["registration_code"]
    p.call("POST", "/registrations/confirm", {"username": "bea", "code": code}, expect=200)
    bea = p.sign_in("bea", "long enough pass")
    assert names(bea) == (["bea"], None)
    assert names(bea, manageable="true") == ([], None)
    assert mail is not None

    # Every listed account is one /v1/authorize lets the actor view, and no other.
    for actor, token in (("kim", kim), ("bea", bea)):
        listed = set(names(token)[0])
        for other in ("ann", "bea", "cal", "dan", "kim"):
            answer = p.client.post("/v1/authorize", json={
                "portal": "ahw", "actor": actor, "action": "view", "resource": {"type": "account", "id": other}},
                headers={"Authorization": f"Bearer {p.key}"}).get_json()
            assert answer["allowed"] == (other in listed), (actor, other)


def test_audit_and_outbox_endpoints(api, database):
    """R27 and the outbox: newest first, filtered, paginated; letters carry the code, emails never."""
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    master = activate_master(p, database)
    p.register("ian")
    p.act(master, "ian", "approve", comment="welcome")
    records = p.call("GET", "/audit?organization=P-1", expect=200).get_json()
    assert records["records"][0]["action"] == "approve" and records["records"][0]["comment"] == "welcome"
    ids = [r["id"] for r in records["records"]]
    assert ids == sorted(ids, reverse=True)
    page = p.call("GET", "/audit?limit=2", expect=200).get_json()
    older = p.call("GET", f"/audit?limit=2&before={page['next']}", expect=200).get_json()
    assert len(page["records"]) == 2 and older["records"][0]["id"] < page["records"][-1]["id"]
    assert {r["target"] for r in p.call("GET", "/audit?account=ian").get_json()["records"]} >= {"ian"}
    assert p.call("GET", "/audit?since=yesterday").status_code == 422
    box = p.call("GET", "/outbox", expect=200).get_json()["notifications"]
    assert [n["channel"] for n in box] == ["letter", "email"]
    assert "activation_code" in box[0]["payload"]
    assert all("activation_code" not in n["payload"] for n in box if n["channel"] == "email")
    assert p.call("GET", "/outbox?to=mara@example.org").get_json()["notifications"][0]["template"] \
        == "account_awaits_approval"


def test_qm_ioc_registration_story(api, database):
    """003/001: business type and region; the masters are emailed and listed in the response (R8, R11)."""
    p = api("qm")
    p.call("POST", "/organizations", {"key": "IOC-7", "name": "IOC Central", "addresses": [ADDRESS],
                                      "business_type": "IOC", "region": "Central"}, expect=201)
    missing = p.register("ioc_ma_na", org="IOC-7", address_id="CORR", expect=422).get_json()
    assert missing["errors"][0]["field"] == "business_type"
    p.register("ioc_ma_na", org="IOC-7", address_id="CORR", business_type="IOC", region="Central")
    letter = outbox(database)[-1].payload
    p.call("POST", "/activations", {"username": "ioc_ma_na", "code": letter["activation_code"],
                                    "temporary_password": letter["temporary_password"],
                                    "new_password": "Valid#Pass2024x"}, expect=200)
    body = p.register("ioc_sa_na", org="IOC-7", business_type="IOC", region="Central").get_json()
    assert body["role"] == "member" and body["status"] == "pending_approval"
    assert body["admins"] == [{"name": "Ioc_Ma_Na Smith", "email": "ioc_ma_na@example.org",
                               "phone": "602-555-0101"}]
    notice = outbox(database, "ioc_ma_na@example.org")[-1]
    assert notice.template == "account_awaits_approval" and notice.payload["username"] == "ioc_sa_na"


def test_email_changes_follow_r21(api, database):
    """R21: members keep their own profile, but only an admin changes a member's email, never its own."""
    p = api("qm")
    p.call("POST", "/organizations", {"key": "Q-1", "name": "Q", "addresses": [ADDRESS], "business_type": "Provider",
                                      "region": "North"}, expect=201)
    p.register("mara", org="Q-1", address_id="CORR", business_type="Provider", region="North")
    letter = outbox(database)[-1].payload
    p.call("POST", "/activations", {"username": "mara", "code": letter["activation_code"],
                                    "temporary_password": letter["temporary_password"],
                                    "new_password": "Valid#Pass2024x"}, expect=200)
    master = p.sign_in("mara")
    p.register("ian", org="Q-1", business_type="Provider", region="North")
    p.act(master, "ian", "approve")
    ian = p.sign_in("ian")
    assert p.call("PATCH", "/accounts/ian", {"phone": "602-555-9999"}, token=ian, expect=200).get_json()["phone"] \
        == "602-555-9999"
    own_email = p.call("PATCH", "/accounts/ian", {"email": "ian@new.example"}, token=ian, expect=403).get_json()
    assert [r["code"] for r in own_email["reasons"]] == ["self_action"]
    changed = p.call("PATCH", "/accounts/ian", {"email": "ian@new.example"}, token=master, expect=200).get_json()
    assert changed["email"] == "ian@new.example"
    mine = p.call("PATCH", "/accounts/mara", {"email": "mara@new.example"}, token=master, expect=403).get_json()
    assert [r["code"] for r in mine["reasons"]] == ["self_action"]
    assert p.call("PATCH", "/accounts/ian", {}, token=master, expect=422).get_json()["errors"][0]["code"] == "empty"


ACTIONS_TO_COMPARE = ["approve", "enable", "disable", "unlock", "upgrade", "downgrade", "remove",
                      "send-password-recovery", "send-registration-email"]


def test_authorize_predicts_what_the_change_endpoint_does(api, database, build):
    """A decision predicts the change: /v1/authorize's answer for an admin action matches the mutation's outcome."""
    p = api("ahw")
    with build("ahw") as world:
        world.organization("TIN-5")
        world.account("boss", memberships={"TIN-5": {"role": "admin"}})
        world.account("boss2", memberships={"TIN-5": {"role": "admin"}})
        world.account("dele", memberships={"TIN-5": {"permissions": ["manage_account", "claims"]}})
        world.account("mem", memberships={"TIN-5": {"permissions": ["claims"]}})
        for status in ("active", "locked", "disabled", "pending_approval", "unverified"):
            for actor in ("boss", "dele", "mem"):
                world.account(f"{actor}-{status[:4]}", status=status, memberships={"TIN-5": {}})
    from tests.fixtures.world import PASSWORD

    compared = 0
    for actor in ("boss", "dele", "mem"):
        token = p.sign_in(actor, PASSWORD)
        for status in ("active", "locked", "disabled", "pending_approval", "unverified"):
            target = f"{actor}-{status[:4]}"
            for path_action in ACTIONS_TO_COMPARE:
                action = path_action.replace("-", "_")
                predicted = p.client.post("/v1/authorize", json={
                    "portal": "ahw", "actor": actor, "action": action,
                    "resource": {"type": "account", "id": target}},
                    headers={"Authorization": f"Bearer {p.key}"}).get_json()
                done = p.act(token, target, path_action, expect=None)
                refused = 409 if [r["code"] for r in predicted["reasons"]] == ["last_admin"] else 403
                assert done.status_code == (200 if predicted["allowed"] else refused), (actor, target, action)
                if not predicted["allowed"]:
                    assert done.get_json()["reasons"] == predicted["reasons"]
                compared += 1
    assert compared == 3 * 5 * len(ACTIONS_TO_COMPARE)


def test_last_admin_is_a_409_conflict(api, database, build):
    """R3 through the contract: breaking the invariant is 409 `last_admin`."""
    p = api("ahw")
    with build("ahw") as world:
        world.organization("TIN-8")
        world.account("solo", memberships={"TIN-8": {"role": "admin"}})
        world.account("helper", memberships={"TIN-8": {}})
        world.account("desk", support=True)
    from tests.fixtures.world import PASSWORD

    desk = p.sign_in("desk", PASSWORD)
    refused = p.act(desk, "solo", "remove", expect=409).get_json()
    assert refused["code"] == "last_admin" and [r["code"] for r in refused["reasons"]] == ["last_admin"]
    assert p.act(desk, "solo", "downgrade", expect=409).get_json()["code"] == "last_admin"
    p.act(desk, "helper", "upgrade")
    p.act(desk, "solo", "remove")


def test_support_reissues_an_expired_activation_code(api, database, clock):
    """R10: only support staff, only for an expired code; the new letter goes to the address on file."""
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    p.call("POST", "/support-staff", {"username": "desk", "first_name": "Service", "last_name": "Desk",
                                      "email": "servicedesk@example.org", "password": "Valid#Pass2024x"}, expect=201)
    p.own_password("desk", temporary="Valid#Pass2024x", own="Own#Help2024x")  # the enroll client chose it
    p.register("mara", address_id="CORR")
    desk = p.sign_in("desk", "Own#Help2024x")
    early = p.call("POST", "/organizations/P-1/activation-codes", {"username": "mara"}, token=desk, expect=422)
    assert early.get_json()["code"] == "activation_code_not_expired"
    clock.advance(timedelta(days=16))
    desk = p.sign_in("desk", "Own#Help2024x")  # the first session lasted hours, not days
    p.call("POST", "/organizations/P-1/activation-codes", {"username": "mara"}, token=desk, expect=201)
    letters = [n for n in outbox(database) if n.channel == "letter"]
    assert len(letters) == 2 and letters[0].payload["activation_code"] != letters[1].payload["activation_code"]
    old = p.call("POST", "/activations", {"username": "mara", "code": letters[0].payload["activation_code"],
                                          "temporary_password": letters[1].payload["temporary_password"],
                                          "new_password": "Valid#Pass2024x"})
    assert old.status_code == 422 and old.get_json()["code"] == "activation_code_invalid"
    p.call("POST", "/activations", {"username": "mara", "code": letters[1].payload["activation_code"],
                                    "temporary_password": letters[1].payload["temporary_password"],
                                    "new_password": "Valid#Pass2024x"}, expect=200)


def test_only_support_reissues_codes(api, database, clock):
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    master = activate_master(p, database)
    denied = p.call("POST", "/organizations/P-1/activation-codes", {"username": "mara"}, token=master, expect=403)
    assert [r["code"] for r in denied.get_json()["reasons"]] == ["support_only"]


def test_audit_records_are_append_only(database, clock):
    from service.domain import audit
    from service.storage.models import AuditRecord

    with database.transaction() as session:
        audit.record(session, portal="ahw", now=clock.now(), action="x", outcome="done")
    with pytest.raises(PermissionError):
        with database.transaction() as session:
            session.scalars(select(AuditRecord)).one().outcome = "changed"
    with pytest.raises(PermissionError):
        with database.transaction() as session:
            session.delete(session.scalars(select(AuditRecord)).one())
    with database.sessions() as session:
        assert session.scalars(select(AuditRecord)).one().outcome == "done"
