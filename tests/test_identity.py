"""Identities that cannot be borrowed, tried over HTTP as an attacker would.

Each test failed on main before the change it covers.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from service.storage.models import Account, AuditRecord
from tests.conftest import make_key
from tests.fixtures.http import ADDRESS, TEMPORARY, Portal, outbox

OWN = "long enough pass"


@pytest.fixture
def api(client, database, clock):
    key = make_key(database, ("authorize", "manage", "enroll"), clock.now())
    return lambda portal: Portal(client, key, portal)


def designate(p, org, username, expect=201, **extra):
    body = {"username": username, "first_name": username.title(), "last_name": "Lee",
            "email": f"{username.lower()}@{org.lower()}.example", "password": TEMPORARY, **extra}
    return p.call("POST", f"/organizations/{org}/admins", body, expect=expect)


def sign_in_reply(p, username, password, **extra):
    return p.call("POST", "/sessions", {"username": username, "password": password, **extra})


def authorize(p, actor, action, org):
    return p.client.post("/v1/authorize", json={"portal": p.portal, "actor": actor, "action": action,
                                                "resource": {"type": "organization", "id": org}},
                         headers={"Authorization": f"Bearer {p.key}"}).get_json()


def audit_of(database, action):
    with database.sessions() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.action == action)
                                    .order_by(AuditRecord.id)))


# --- item 1: designating an admin never adopts an existing account ----------------------------------

def test_payer_setting_up_a_squatted_name_is_409_and_the_squatter_gains_nothing(api, database):
    """R6, R12: an attacker holds `jsmith` in its own practice; the payer sets up "JSmith" for a victim TIN."""
    p = api("ahw")
    for tin in ("TIN-ATTACK", "TIN-VICTIM"):
        p.call("POST", "/organizations", {"key": tin, "name": tin}, expect=201)
    designate(p, "TIN-ATTACK", "jsmith", accepted_terms=True)
    taken = designate(p, "TIN-VICTIM", "JSmith", expect=409, accepted_terms=True)
    assert taken.get_json()["code"] == "username_taken"
    assert p.call("GET", "/organizations/TIN-VICTIM", expect=200).get_json()["admins"] == []
    attacker = p.first_sign_in("jsmith")
    assert authorize(p, "jsmith", "health_records", "TIN-VICTIM")["allowed"] is False
    memberships = p.call("GET", "/accounts/jsmith", token=attacker, expect=200).get_json()["memberships"]
    assert [m["organization"] for m in memberships] == ["TIN-ATTACK"]
    # Naming the existing account explicitly does not help either: it is not a member of the victim.
    named = designate(p, "TIN-VICTIM", "jsmith", expect=409, existing_account=True, password=None,
                      first_name=None, last_name=None, email=None)
    assert named.get_json()["code"] == "not_in_organization"
    assert [r.organization for r in audit_of(database, "designate_admin")] == ["TIN-ATTACK"]


def practice_with_a_verified_user(api, database):
    """ahw TIN-1 with its Account Manager kim (signed in) and uma, a User who completed registration (R12)."""
    p = api("ahw")
    p.call("POST", "/organizations", {"key": "TIN-1", "name": "Practice"}, expect=201)
    designate(p, "TIN-1", "kim", accepted_terms=True)
    kim = p.first_sign_in("kim")
    p.register("uma", org="TIN-1", password=OWN)
    p.act(kim, "uma", "enable")
    p.act(kim, "uma", "send-registration-email")
    code = outbox(database, "uma@example.org")[-1].payload["registration_code"]
    p.call("POST", "/registrations/confirm", {"username": "uma", "code": code}, expect=200)
    return p, kim


def test_naming_an_existing_member_upgrades_it_and_is_audited_as_an_upgrade(api, database):
    """R4: support makes an existing member of the organization its admin, explicitly."""
    p, kim = practice_with_a_verified_user(api, database)

    with_details = p.call("POST", "/organizations/TIN-1/admins",
                          {"username": "uma", "existing_account": True, "password": "Attacker#Pass99"}, expect=422)
    assert [e["field"] for e in with_details.get_json()["errors"]] == ["password"]
    made = p.call("POST", "/organizations/TIN-1/admins", {"username": "UMA", "existing_account": True}, expect=201)
    assert made.get_json()["role"] == "admin"
    admins = p.call("GET", "/organizations/TIN-1", expect=200).get_json()["admins"]
    assert [a["username"] for a in admins] == ["kim", "uma"]
    record = audit_of(database, "designate_admin")[-1]
    assert (record.target, record.organization, record.detail["upgraded"]) == ("uma", "TIN-1", True)
    again = p.call("POST", "/organizations/TIN-1/admins", {"username": "uma", "existing_account": True}, expect=409)
    assert again.get_json()["code"] == "already_admin"
    unknown = p.call("POST", "/organizations/TIN-1/admins", {"username": "nobody", "existing_account": True})
    assert unknown.status_code == 404


def test_only_an_active_member_is_made_an_admin(api, database):
    """R2: a locked member is not upgraded (found by tests/invariants.py), as `upgrade` refuses."""
    p, kim = practice_with_a_verified_user(api, database)
    for _ in range(3):
        p.call("POST", "/sessions", {"username": "uma", "password": "not the password"})
    locked = p.call("POST", "/organizations/TIN-1/admins", {"username": "uma", "existing_account": True}, expect=409)
    assert locked.get_json()["code"] == "target_status"
    p.act(kim, "uma", "unlock")
    p.call("POST", "/organizations/TIN-1/admins", {"username": "uma", "existing_account": True}, expect=201)


# --- item 2: a password someone else chose is temporary ---------------------------------------------

def test_a_designated_admin_must_set_its_own_password_before_acting(api, database):
    """R16, R18: the payer's password is `password_expired` at sign-in and in /v1/authorize until changed."""
    p = api("ahw")
    p.call("POST", "/organizations", {"key": "TIN-1", "name": "Practice"}, expect=201)
    designate(p, "TIN-1", "kim", accepted_terms=True)
    refused = sign_in_reply(p, "kim", TEMPORARY)
    assert refused.status_code == 401 and refused.get_json()["code"] == "password_expired"
    denied = authorize(p, "kim", "claims", "TIN-1")
    assert denied["allowed"] is False and "password_expired" in [r["code"] for r in denied["reasons"]]
    same = p.call("PUT", "/accounts/kim/password", {"current_password": TEMPORARY, "new_password": TEMPORARY})
    assert same.status_code == 422  # the owner's own password is a new one
    p.own_password("kim")
    assert sign_in_reply(p, "kim", TEMPORARY).status_code == 401  # the payer's password no longer works
    assert sign_in_reply(p, "kim", OWN).status_code == 201
    assert authorize(p, "kim", "claims", "TIN-1")["allowed"] is True


def _subordinate_made_by_its_primary_user(api):
    """A masshealth provider whose Primary User `pu` created the subordinate `jdoe` with a password it chose."""
    p = api("masshealth")
    p.call("POST", "/organizations", {"key": "PIDSL-1", "name": "Provider"}, expect=201)
    designate(p, "PIDSL-1", "pu", accepted_terms=True)
    primary = p.first_sign_in("pu")
    body = {"username": "jdoe", "first_name": "J", "last_name": "Doe", "email": "jdoe@mass.example",
            "password": TEMPORARY, "permissions": ["claims_submission_and_status"]}
    p.call("POST", "/organizations/PIDSL-1/accounts", body, token=primary, expect=201)
    return p, primary


def test_a_subordinate_must_set_its_own_password_so_its_primary_user_cannot_be_it(api, database):
    """R13: the Primary User chose the subordinate's password; the subordinate replaces it at first sign-in."""
    p, primary = _subordinate_made_by_its_primary_user(api)
    refused = sign_in_reply(p, "jdoe", TEMPORARY, accepted_terms=True)
    assert refused.status_code == 401 and refused.get_json()["code"] == "password_expired"
    denied = authorize(p, "jdoe", "claims_submission_and_status", "PIDSL-1")
    assert "password_expired" in [r["code"] for r in denied["reasons"]]
    p.first_sign_in("jdoe")
    assert authorize(p, "jdoe", "claims_submission_and_status", "PIDSL-1")["allowed"] is True


# --- item 7: R7 for every way an account comes to exist; the reissued letter's address -------------

def test_a_designated_admin_without_accepted_terms_accepts_them_at_first_sign_in(api, database):
    """R7: stored as not accepted; sign-in is 401 terms_not_accepted until it sends accepted_terms: true."""
    p = api("ahw")
    p.call("POST", "/organizations", {"key": "TIN-1", "name": "Practice"}, expect=201)
    designate(p, "TIN-1", "kim")
    designate(p, "TIN-1", "lou", accepted_terms=True)
    with database.sessions() as session:
        accepted = dict(session.execute(select(Account.username, Account.terms_accepted_at)).all())
    assert accepted["kim"] is None and accepted["lou"] is not None
    p.own_password("kim")
    refused = sign_in_reply(p, "kim", OWN)
    assert refused.status_code == 401 and refused.get_json()["code"] == "terms_not_accepted"
    assert sign_in_reply(p, "kim", OWN, accepted_terms=False).get_json()["code"] == "terms_not_accepted"
    assert sign_in_reply(p, "kim", OWN, accepted_terms=True).status_code == 201
    assert sign_in_reply(p, "kim", OWN).status_code == 201  # accepted once, not asked again
    p.own_password("lou")
    assert sign_in_reply(p, "lou", OWN).status_code == 201  # accepted when set up
    assert [r.actor for r in audit_of(database, "accept_terms")] == ["kim"]
    wrong = sign_in_reply(p, "kim", "not the password", accepted_terms=True)
    assert wrong.get_json()["code"] == "invalid_credentials"


def test_a_masshealth_subordinate_accepts_the_vg_terms_at_first_sign_in(api, database):
    """004: "prompted to agree with the VG Terms and Conditions upon initial sign-in" (R7)."""
    p = api("masshealth")
    p.call("POST", "/organizations", {"key": "PIDSL-1", "name": "Provider"}, expect=201)
    designate(p, "PIDSL-1", "pu", accepted_terms=True)
    primary = p.first_sign_in("pu")
    body = {"username": "jdoe", "first_name": "J", "last_name": "Doe", "email": "jdoe@mass.example",
            "password": TEMPORARY}
    p.call("POST", "/organizations/PIDSL-1/accounts", body, token=primary, expect=201)
    p.own_password("jdoe")
    refused = sign_in_reply(p, "jdoe", OWN)
    assert refused.status_code == 401 and refused.get_json()["code"] == "terms_not_accepted"
    assert sign_in_reply(p, "jdoe", OWN, accepted_terms=True).status_code == 201


def test_the_terms_bind_every_decision_not_only_the_sign_in(api, database):
    """R7: acceptance is a fact the policy reads. Before it, /v1/authorize denies the account with
    `terms_not_accepted` (its own password set or not), and its Primary User cannot make it an admin."""
    p, primary = _subordinate_made_by_its_primary_user(api)
    p.own_password("jdoe")
    denied = authorize(p, "jdoe", "claims_submission_and_status", "PIDSL-1")
    assert (denied["allowed"], [r["code"] for r in denied["reasons"]]) == (False, ["terms_not_accepted"])
    upgrade = p.act(primary, "jdoe", "upgrade", expect=403)
    assert [r["code"] for r in upgrade.get_json()["reasons"]] == ["target_terms_not_accepted"]
    assert sign_in_reply(p, "jdoe", OWN, accepted_terms=True).status_code == 201
    assert authorize(p, "jdoe", "claims_submission_and_status", "PIDSL-1")["allowed"] is True
    assert p.act(primary, "jdoe", "upgrade").get_json()["memberships"][0]["role"] == "admin"


# --- item 6: only an active admin counts as an admin ------------------------------------------------

@pytest.mark.parametrize("portal", ["ahcccs", "qm"])
def test_a_master_who_never_activated_receives_no_registrants_data(api, database, portal):
    """R8, R11: a pending master is not listed to later registrants and gets no approval notice."""
    p = api(portal)
    extra = {"business_type": "Provider", "region": "Central"} if portal == "qm" else {}
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS], **extra}, expect=201)
    first = p.register("mallory", address_id="CORR", **extra).get_json()
    assert first["status"] == "pending_activation"
    later = p.register("ian", **extra).get_json()
    assert (later["role"], later["admins"]) == ("member", [])
    assert [n.template for n in outbox(database, "mallory@example.org")] == []
    org = p.call("GET", "/organizations/P-1", expect=200).get_json()
    assert org["warnings"] == ["no_active_admin"]


def test_a_reissued_letter_goes_to_the_address_the_master_chose(api, database, clock):
    """R9, R10: the reissued activation letter follows the master's choice, not the first address on file."""
    from datetime import timedelta

    p = api("ahcccs")
    office = {**ADDRESS, "id": "OFFICE", "line1": "1 First Ave"}
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [office, ADDRESS]}, expect=201)
    p.call("POST", "/support-staff", {"username": "desk", "first_name": "Service", "last_name": "Desk",
                                      "email": "servicedesk@example.org", "password": "Valid#Pass2024x"}, expect=201)
    p.own_password("desk", temporary="Valid#Pass2024x", own="Own#Help2024x")  # the enroll client chose it
    p.register("mara", address_id="CORR")
    clock.advance(timedelta(days=16))
    desk = p.sign_in("desk", "Own#Help2024x")
    p.call("POST", "/organizations/P-1/activation-codes", {"username": "mara"}, token=desk, expect=201)
    letters = [n.recipient for n in outbox(database) if n.channel == "letter"]
    assert letters == ["801 E Jefferson St, Phoenix, AZ 85034"] * 2


# --- item 3: usernames that cannot be borrowed ------------------------------------------------------

LOOK_ALIKES = {
    "cyrillic у for y": "mh.pу",          # U+0443
    "upper case fullwidth": "ＭＨ.ＰＹ",
    "rn for m": "rnh.py",
}


@pytest.mark.parametrize("twin", list(LOOK_ALIKES.values()), ids=list(LOOK_ALIKES))
@pytest.mark.parametrize("route", ["support-staff", "admins", "subordinate"])
def test_a_look_alike_of_an_existing_name_is_username_taken_on_every_route(api, database, route, twin):
    """R6: NFKC, case folding and the UTS #39 skeleton: a twin of `mh.py` is 409 username_taken."""
    p = api("masshealth")
    p.call("POST", "/organizations", {"key": "PIDSL-1", "name": "Provider"}, expect=201)
    designate(p, "PIDSL-1", "mh.py", accepted_terms=True)
    person = {"username": twin, "first_name": "Eve", "last_name": "Twin", "email": "eve@evil.example"}
    if route == "support-staff":
        reply = p.call("POST", "/support-staff", {**person, "password": "Valid#Pass2024x"})
    elif route == "admins":
        reply = p.call("POST", "/organizations/PIDSL-1/admins", {**person, "password": TEMPORARY})
    else:
        designate(p, "PIDSL-1", "boss", accepted_terms=True)
        token = p.first_sign_in("boss")
        reply = p.call("POST", "/organizations/PIDSL-1/accounts", {**person, "password": TEMPORARY}, token=token)
        if reply.status_code == 422:  # the contract's ASCII pattern refuses the non-ASCII twins first
            assert not twin.isascii()
            return
    assert reply.status_code == 409 and reply.get_json()["code"] == "username_taken", reply.get_json()


# The name as typed has a skeleton of its own: case folding turns a capital I into i, not the l it looks like;
# ICU maps 0 to a capital O; a dot above i hardly shows. Existing name -> look-alikes that must be refused.
TYPED_LOOK_ALIKES = [("lola.bolt", "IoIa.boIt"), ("lola.bolt", "Iola.bolt"), ("lola.bolt", "l0la.b0lt"),
                     ("lola.bolt", "L0LA.B0LT"), ("help.desk", "heIp.desk"), ("jsmith", "jsmi\u0307th"),
                     ("IoIa.boIt", "lola.bolt")]


@pytest.mark.parametrize(("existing", "twin"), TYPED_LOOK_ALIKES, ids=[t for _, t in TYPED_LOOK_ALIKES])
@pytest.mark.parametrize("route", ["support-staff", "admins", "registration"])
def test_a_look_alike_as_typed_is_username_taken(api, database, route, existing, twin):
    """R6: the UTS #39 skeleton of the name as typed and of its folded form; a clash with either is 409."""
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    p.call("POST", "/support-staff", {"username": existing, "first_name": "Help", "last_name": "Desk",
                                      "email": "first@example.org", "password": "Valid#Pass2024x"}, expect=201)
    person = {"username": twin, "first_name": "Eve", "last_name": "Twin", "email": "eve@evil.example"}
    if route == "support-staff":
        reply = p.call("POST", "/support-staff", {**person, "password": "Valid#Pass2024x"})
    elif route == "admins":
        reply = p.call("POST", "/organizations/P-1/admins", {**person, "password": TEMPORARY})
    else:
        reply = p.register(twin, org="P-1", expect=None, address_id="CORR")
        if reply.status_code == 422:  # the contract's ASCII pattern refuses the non-ASCII twins first
            assert not twin.isascii()
            return
    assert reply.status_code == 409 and reply.get_json()["code"] == "username_taken", reply.get_json()


def test_names_that_only_share_letters_are_not_look_alikes(api, database):
    p = api("ahcccs")
    for name in ("lola.bolt", "lolita.bolt", "ian", "jsmith2", "help.desk2"):
        p.call("POST", "/support-staff", {"username": name, "first_name": "Help", "last_name": name.title(),
                                          "email": f"{name}@example.org", "password": "Valid#Pass2024x"}, expect=201)


@pytest.mark.parametrize("name", ["mh.py\u200b", "\u200dmh", "mh\u202epy", "mh py", "a\u2060b", "x\ufe0f"])
def test_invisible_and_format_characters_are_refused_with_a_clear_422(api, database, name):
    p = api("ahw")
    reply = p.call("POST", "/support-staff", {"username": name, "first_name": "Eve", "last_name": "Twin",
                                              "email": "eve@evil.example", "password": "Valid#Pass2024x"})
    assert reply.status_code == 422, reply.get_json()
    assert [(e["field"], e["code"]) for e in reply.get_json()["errors"]] == [("username", "invalid_username")]


def test_sign_in_and_lookups_use_the_normalised_name(api, database):
    """A fullwidth or upper-case spelling names the same account; a Cyrillic twin names none."""
    p = api("ahw")
    p.call("POST", "/organizations", {"key": "TIN-1", "name": "Practice"}, expect=201)
    designate(p, "TIN-1", "ｋｉｍ.ｌｅｅ", accepted_terms=True)
    assert p.call("GET", "/organizations/TIN-1", expect=200).get_json()["admins"][0]["username"] == "kim.lee"
    p.own_password("KIM.LEE")
    token = p.sign_in("ＫＩＭ.ＬＥＥ", OWN)
    assert p.call("GET", "/accounts/Kim.Lee", token=token, expect=200).get_json()["username"] == "kim.lee"
    assert sign_in_reply(p, "kim.lее", OWN).get_json()["code"] == "invalid_credentials"  # Cyrillic е
    assert authorize(p, "ｋｉｍ.ｌｅｅ", "claims", "TIN-1")["allowed"] is True


def test_migration_0008_backfills_keys_and_skeletons_and_flags_look_alikes(tmp_path):
    """Accounts stored before 0008 get NFKC keys and skeletons; a later look-alike gets none (warned)."""
    from datetime import datetime, timezone

    from alembic import command
    from sqlalchemy import insert

    from service.kernel import usernames
    from service.storage.database import Database, alembic_config

    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(database.engine), "0005")
    now = datetime(2026, 1, 5, tzinfo=timezone.utc)
    with database.engine.begin() as connection:
        connection.execute(insert(Account.metadata.tables["portals"]), [{"id": "ahw", "name": "AHW"}])
        accounts = Account.__table__
        rows = [("mh.py", "mh.py"), ("ＫＩＭ", "ｋｉｍ"), ("mh.pу", "mh.pу")]  # old keys: strip().casefold()
        connection.execute(insert(accounts), [
            {"portal_id": "ahw", "username": name, "username_key": key, "first_name": "A", "last_name": "B",
             "email": f"{i}@x.example", "email_key": f"{i}@x.example", "status": "active", "is_support": False,
             "created_at": now} for i, (name, key) in enumerate(rows)])
    # 0008 only: the columns of later revisions (other branches) are not there yet.
    command.upgrade(alembic_config(database.engine), "0008")
    with database.engine.connect() as connection:
        stored = {r.username: (r.username_key, r.username_skeleton)
                  for r in connection.execute(select(accounts.c.username, accounts.c.username_key,
                                                     accounts.c.username_skeleton))}
    assert stored["ＫＩＭ"] == ("kim", usernames.skeleton("kim"))
    assert stored["mh.py"] == ("mh.py", usernames.skeleton("mh.py"))
    assert stored["mh.pу"] == ("mh.pу", None)  # the younger twin: flagged, not renamed
    database.dispose()


def test_designating_an_existing_member_follows_the_policys_upgrade(database, config, clock, build, tmp_path):
    """Which statuses an existing member is made an admin in is the policy's `status_allows("upgrade")`, not a
    second list: a policy that lets a locked member be upgraded lets support designate it too."""
    from service.domain import organizations
    from tests.fixtures.policies import widened_policy

    widened = widened_policy(tmp_path / "widened", 'status_allows("upgrade", target: TargetAccount) if\n'
                                                   '    target.status = "locked" and target.role = "member";')
    with build("ahw") as world:
        world.account("kim", memberships={"TIN-1": {"role": "admin"}})
        world.account("uma", status="locked", memberships={"TIN-1": {}})
    with database.transaction() as session:
        account = organizations.designate_admin(
            session, config.portal("ahw"), "ahw", "TIN-1", username="uma", first_name=None, last_name=None,
            email=None, phone=None, password=None, now=clock.now(), client="test", policy=widened,
            existing_account=True)
        assert [m.role for m in account.memberships] == ["admin"]
