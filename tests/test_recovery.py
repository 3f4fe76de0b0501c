"""Self-service password recovery (R20) and the admin-sent recovery email, over HTTP.

The recovery email carries a security code valid for 30 minutes; the code is
one-time and stored hashed. Right or wrong answers, known or unknown user: the
caller hears the same 202.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.storage.models import Account, AuditRecord, OneTimeCode
from tests.conftest import make_key
from tests.fixtures.world import PASSWORD
from tests.fixtures.http import ANSWERS, WRONG, Portal, give_answers, outbox, refused, sign_in, status_of

NEW = "Fresh#Garden42"
@pytest.fixture
def p(client, database, clock, build):
    with build("ahcccs") as world:
        world.organization("P-1")
        world.account("mara", memberships={"P-1": {"role": "admin"}})
        give_answers(world, world.account("ian", memberships={"P-1": {"permissions": ["claims"]}}))
        give_answers(world, world.account("dee", status="disabled", memberships={"P-1": {}}))
    return Portal(client, make_key(database, ("authorize", "manage", "enroll"), clock.now()), "ahcccs")


def recover(p: Portal, username: str, answers=ANSWERS):
    return p.call("POST", "/password-recoveries", {"username": username, "answers": answers})


def confirm(p: Portal, username: str, code: str, new_password: str = NEW):
    return p.call("POST", "/password-recoveries/confirm",
                  {"username": username, "code": code, "new_password": new_password})


def recovery_emails(database, to: str = "ian@example.org"):
    return [n for n in outbox(database, to) if n.template == "password_recovery"]


def code_for(p: Portal, database, username: str = "ian") -> str:
    assert recover(p, username).status_code == 202
    return recovery_emails(database, f"{username}@example.org")[-1].payload["security_code"]


# --- Asking ---------------------------------------------------------------------------------------

def test_right_answers_email_a_code_and_a_link(p, database):
    response = recover(p, "ian")
    assert response.status_code == 202
    [email] = recovery_emails(database)
    assert email.channel == "email"
    assert email.payload["valid_minutes"] == 30
    assert email.payload["link"].startswith("/portals/ahcccs/password-recovery")
    code = email.payload["security_code"]
    with database.sessions() as session:
        stored = session.scalar(select(OneTimeCode).where(OneTimeCode.purpose == "recovery"))
    assert code not in stored.code_hash and stored.code_hash.startswith("$argon2")


@pytest.mark.parametrize("answers", [
    ["123 Oak Street", "opal"],     # R20: not as first typed
    ["123 oak st.", "opal"],        # case matters
    ["123 Oak St. ", "opal"],       # so does a trailing space
    ["opal", "123 Oak St."],        # and the order
    ["123 Oak St."],                # and every question
    ["123 Oak St.", "opal", "x"],
])
def test_answers_must_match_exactly_as_first_typed(p, database, answers):
    right = recover(p, "ian")
    before = len(recovery_emails(database))
    wrong = recover(p, "ian", answers)
    assert (wrong.status_code, wrong.get_json()) == (right.status_code, right.get_json())
    assert len(recovery_emails(database)) == before
    with database.sessions() as session:
        last = session.scalars(select(AuditRecord).where(AuditRecord.action == "request_password_recovery")
                               .order_by(AuditRecord.id.desc())).first()
    assert (last.outcome, last.reasons, last.target) == ("refused", ["wrong_answers"], "ian")


def test_unknown_users_and_disabled_accounts_hear_the_same_and_get_nothing(p, database, monkeypatch):
    import service.domain.passwords as passwords_module

    verifications: list[bool] = []  # argon2 verifications actually made (ahead of the write lock or in it)
    real = passwords_module._verify
    monkeypatch.setattr(passwords_module, "_verify",
                        lambda stored, secret: verifications.append(stored is None) or real(stored, secret))
    known = recover(p, "ian")
    unknown = recover(p, "nobody")
    disabled = recover(p, "dee")
    assert known.get_json() == unknown.get_json() == disabled.get_json()
    assert known.status_code == unknown.status_code == disabled.status_code == 202
    assert verifications == [False, False, True, True, False, False]  # two argon2 verifications each
    assert len(outbox(database)) == 1
    with database.sessions() as session:
        reasons = [r.reasons for r in session.scalars(select(AuditRecord).order_by(AuditRecord.id))
                   if r.action == "request_password_recovery"]
    assert reasons == [[], ["unknown_account"], ["target_status"]]


def test_answers_chosen_at_registration_work(p, database):
    """End to end: registered with QUESTIONS, approved, then recovered with the answers as typed then."""
    p.register("joe")
    mara = p.sign_in("mara", PASSWORD)
    p.act(mara, "joe", "approve")
    assert recover(p, "joe").status_code == 202
    code = recovery_emails(database, "joe@example.org")[-1].payload["security_code"]
    assert confirm(p, "joe", code).status_code == 200
    assert sign_in(p, "joe", NEW).status_code == 201


def test_a_malformed_request_is_422(p):
    response = p.call("POST", "/password-recoveries", {"username": "ian", "answers": []})
    assert (response.status_code, response.get_json()["code"]) == (422, "validation_error")


# --- Confirming -----------------------------------------------------------------------------------

def test_the_code_sets_a_new_password(p, database, clock):
    clock.advance(timedelta(days=44))  # the old password is nearly expired; the new one starts afresh
    code = code_for(p, database)
    clock.advance(timedelta(minutes=10))
    done = confirm(p, "ian", code)
    assert done.status_code == 200, done.get_json()
    assert done.get_json() == {"username": "ian", "status": "active",
                               "password_expires_at": (clock.now() + timedelta(days=45)).isoformat()}
    assert sign_in(p, "ian", NEW).status_code == 201
    assert refused(p, "ian", PASSWORD) == "invalid_credentials"


@pytest.mark.parametrize(("after", "expected"), [
    (timedelta(minutes=29), 200),
    (timedelta(minutes=29, seconds=59), 200),
    (timedelta(minutes=30), "recovery_expired"),
    (timedelta(minutes=31), "recovery_expired"),
])
def test_the_code_is_valid_for_30_minutes(p, database, clock, after, expected):
    code = code_for(p, database)
    clock.advance(after)
    response = confirm(p, "ian", code)
    if expected == 200:
        assert response.status_code == 200, response.get_json()
    else:
        assert (response.status_code, response.get_json()["code"]) == (422, expected)
        assert refused(p, "ian", NEW) == "invalid_credentials"  # the password did not change


def test_a_code_works_once(p, database):
    code = code_for(p, database)
    assert confirm(p, "ian", code).status_code == 200
    again = confirm(p, "ian", code, "Another#Garden43")
    assert (again.status_code, again.get_json()["code"]) == (422, "recovery_invalid")


def test_wrong_codes_and_superseded_codes_are_invalid(p, database):
    first = code_for(p, database)
    second = code_for(p, database)
    for username, code in (("ian", first), ("ian", second.swapcase()), ("ian", "nonsense"), ("nobody", second)):
        response = confirm(p, username, code)
        assert (response.status_code, response.get_json()["code"]) == (422, "recovery_invalid"), (username, code)
    assert confirm(p, "ian", second).status_code == 200


def test_the_new_password_is_not_the_previous_one_and_a_refusal_keeps_the_code(p, database):
    code = code_for(p, database)
    reused = confirm(p, "ian", code, PASSWORD)
    assert (reused.status_code, reused.get_json()["code"]) == (422, "password_policy")
    assert [e["code"] for e in reused.get_json()["errors"]] == ["reused_password"]
    weak = confirm(p, "ian", code, "short")
    assert weak.get_json()["code"] == "password_policy"
    assert confirm(p, "ian", code).status_code == 200


def test_recovery_unlocks_a_locked_account_and_forgets_its_failures(p, database):
    for _ in range(3):
        refused(p, "ian", WRONG)
    assert refused(p, "ian", PASSWORD) == "account_locked"
    code = code_for(p, database)  # a locked account may recover
    assert confirm(p, "ian", code).get_json()["status"] == "active"
    refused(p, "ian", WRONG)  # one failure after recovery does not lock again
    assert status_of(database, "ian") == "active"
    assert sign_in(p, "ian", NEW).status_code == 201
    with database.sessions() as session:
        record = session.scalar(select(AuditRecord).where(AuditRecord.action == "recover_password"))
    assert record.detail == {"unlocked": True}


def test_recovery_ends_the_accounts_sessions(p, database):
    token = p.sign_in("ian", PASSWORD)
    assert confirm(p, "ian", code_for(p, database)).status_code == 200
    assert p.call("DELETE", "/sessions/current", token=token).get_json()["code"] == "invalid_session"


def test_an_admin_sent_recovery_is_confirmed_the_same_way(p, database, clock):
    mara = p.sign_in("mara", PASSWORD)
    p.act(mara, "ian", "send-password-recovery")
    [email] = recovery_emails(database)
    clock.advance(timedelta(minutes=29))
    assert confirm(p, "ian", email.payload["security_code"]).status_code == 200


# --- Portals without security questions -----------------------------------------------------------

def test_without_security_questions_only_an_admin_sends_recovery(client, database, clock, build):
    with build("ahw") as world:
        world.organization("T-1")
        world.account("ada", memberships={"T-1": {"role": "admin"}})
        world.account("bo", memberships={"T-1": {}})
    p = Portal(client, make_key(database, ("manage",), clock.now()), "ahw")
    closed = recover(p, "bo", ["anything"])
    assert (closed.status_code, closed.get_json()["code"]) == (403, "recovery_not_offered")
    assert closed.get_json() == recover(p, "nobody", ["anything"]).get_json()  # about the portal, not the user
    ada = p.sign_in("ada", PASSWORD)
    p.act(ada, "bo", "send-password-recovery")
    code = recovery_emails(database, "bo@example.org")[-1].payload["security_code"]
    assert confirm(p, "bo", code, "a long enough passphrase").status_code == 200
    assert sign_in(p, "bo", "a long enough passphrase").status_code == 201
    with database.sessions() as session:
        assert session.scalar(select(Account.status).where(Account.username == "bo")) == "active"
