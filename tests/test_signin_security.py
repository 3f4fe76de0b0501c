"""Sign-in security over HTTP: lockout (R19), expiry (R18), changing a password, no username probing.

Personas (ahcccs, organization P-1): mara the admin, ian a member with `claims`.
Every password in the world is tests.fixtures.world.PASSWORD, set at the test's start.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service.storage.models import Account, AuditRecord, FailedSignIn
from tests.conftest import make_key
from tests.fixtures.world import PASSWORD
from tests.fixtures.http import WRONG, Portal, refused, sign_in, status_of

NEW = "Fresh#Garden42"
EXPIRY = timedelta(days=45)


@pytest.fixture
def p(client, database, clock, build):
    with build("ahcccs") as world:
        world.organization("P-1")
        world.account("mara", memberships={"P-1": {"role": "admin"}})
        world.account("ian", memberships={"P-1": {"permissions": ["claims"]}})
        world.account("pat", status="pending_approval", memberships={"P-1": {}})
    return Portal(client, make_key(database, ("authorize", "manage", "enroll"), clock.now()), "ahcccs")


def failure_rows(database, username: str | None = None) -> int:
    with database.sessions() as session:
        query = select(func.count()).select_from(FailedSignIn)
        if username is not None:
            query = query.join(Account, Account.id == FailedSignIn.account_id).where(Account.username == username)
        return session.scalar(query)


def audit(database, action: str) -> list[AuditRecord]:
    with database.sessions() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.action == action)
                                    .order_by(AuditRecord.id)))


def change(p: Portal, username: str, current: str, new: str, token: str | None = None):
    return p.call("PUT", f"/accounts/{username}/password", {"current_password": current, "new_password": new},
                  token=token)


# --- Lockout: the window's edge (R19) ------------------------------------------------------------

@pytest.mark.parametrize(("third_after", "locked"), [
    (timedelta(minutes=14, seconds=59), True),   # three within 15 minutes
    (timedelta(minutes=15), False),              # the first has just left the window
])
def test_three_failures_within_15_minutes_lock(p, database, clock, third_after, locked):
    start = clock.now()
    assert refused(p, "ian", WRONG) == "invalid_credentials"
    clock.advance(timedelta(minutes=1))
    assert refused(p, "ian", WRONG) == "invalid_credentials"
    assert status_of(database, "ian") == "active"
    clock.set(start + third_after)
    assert refused(p, "ian", WRONG) == "invalid_credentials"  # the locking failure answers like any other
    assert status_of(database, "ian") == ("locked" if locked else "active")
    if locked:
        assert refused(p, "ian", PASSWORD) == "account_locked"
        [lock] = audit(database, "lock")
        assert (lock.target, lock.reasons, lock.detail["failures"]) == ("ian", ["too_many_failed_sign_ins"], 3)
    else:
        assert sign_in(p, "ian", PASSWORD).status_code == 201
        assert audit(database, "lock") == []


def test_failures_spread_wider_than_the_window_never_lock(p, database, clock):
    for _ in range(6):
        assert refused(p, "ian", WRONG) == "invalid_credentials"
        clock.advance(timedelta(minutes=7, seconds=30))  # two per 15 minutes, never three
    assert status_of(database, "ian") == "active"
    assert failure_rows(database, "ian") <= 2  # what left the window is forgotten


def test_a_successful_sign_in_starts_the_window_afresh(p, database, clock):
    refused(p, "ian", WRONG)
    refused(p, "ian", WRONG)
    assert sign_in(p, "ian", PASSWORD).status_code == 201
    refused(p, "ian", WRONG)
    assert status_of(database, "ian") == "active"
    assert failure_rows(database, "ian") == 1


def test_a_locked_account_refuses_the_right_password_until_an_admin_unlocks(p, database, clock):
    for _ in range(3):
        refused(p, "ian", WRONG)
    assert refused(p, "ian", PASSWORD) == "account_locked"
    assert refused(p, "ian", WRONG) == "invalid_credentials"  # the state is told only to the right password
    assert failure_rows(database, "ian") == 3  # failures on a locked account are not counted

    mara = p.sign_in("mara", PASSWORD)
    assert p.act(mara, "ian", "unlock").get_json()["status"] == "active"
    assert failure_rows(database, "ian") == 0
    refused(p, "ian", WRONG)  # had the window survived the unlock, this fourth failure would lock again
    assert status_of(database, "ian") == "active"
    assert sign_in(p, "ian", PASSWORD).status_code == 201


def test_a_locked_account_loses_its_sessions(p, database):
    token = p.sign_in("ian", PASSWORD)
    for _ in range(3):
        refused(p, "ian", WRONG)
    assert p.call("DELETE", "/sessions/current", token=token).get_json()["code"] == "invalid_session"


def test_only_active_accounts_count_failures(p, database):
    for _ in range(4):
        assert refused(p, "pat", WRONG) == "invalid_credentials"
    assert status_of(database, "pat") == "pending_approval"  # not turned into "locked"
    assert failure_rows(database, "pat") == 0


def test_lockout_is_per_account(p, database):
    for _ in range(3):
        refused(p, "ian", WRONG)
    assert status_of(database, "ian") == "locked"
    assert status_of(database, "mara") == "active"
    assert sign_in(p, "mara", PASSWORD).status_code == 201


# --- No username probing -------------------------------------------------------------------------

def test_unknown_users_and_wrong_passwords_answer_alike(p, database, monkeypatch):
    import service.domain.passwords as passwords_module

    verifications: list[bool] = []  # argon2 verifications actually made (ahead of the write lock or in it)
    real = passwords_module._verify
    monkeypatch.setattr(passwords_module, "_verify",
                        lambda stored, secret: verifications.append(stored is None) or real(stored, secret))

    unknown = sign_in(p, "nobody", WRONG)
    wrong = sign_in(p, "ian", WRONG)
    assert (unknown.status_code, unknown.get_json(), unknown.mimetype) == \
        (wrong.status_code, wrong.get_json(), wrong.mimetype)
    assert verifications == [True, False]  # one argon2 verification each (a dummy hash for the unknown name)

    refused(p, "ian", WRONG)
    refused(p, "ian", WRONG)  # ian is now locked
    locked_wrong = sign_in(p, "ian", WRONG)
    assert (locked_wrong.status_code, locked_wrong.get_json()) == (unknown.status_code, unknown.get_json())
    assert failure_rows(database) == 3  # nothing was written for "nobody"
    assert {tuple(r.reasons) for r in audit(database, "sign_in")} == {("invalid_credentials",)}


def test_usernames_are_case_insensitive_for_the_window(p, database):
    for name in ("ian", "IAN", "Ian"):
        refused(p, name, WRONG)
    assert status_of(database, "ian") == "locked"


# --- Expiry (R18): day 45 -------------------------------------------------------------------------

def authorize(p: Portal, actor: str) -> dict:
    return p.client.post("/v1/authorize", json={"portal": "ahcccs", "actor": actor, "action": "claims",
                                                "resource": {"type": "organization", "id": "P-1"}},
                         headers={"Authorization": f"Bearer {p.key}"}).get_json()


def test_a_password_expires_45_days_after_it_was_set(p, clock):
    set_at = clock.now()
    clock.set(set_at + EXPIRY - timedelta(seconds=1))
    session = sign_in(p, "ian", PASSWORD)
    assert session.status_code == 201
    assert session.get_json()["password_expires_at"] == (set_at + EXPIRY).isoformat()
    assert authorize(p, "ian")["allowed"] is True
    clock.set(set_at + EXPIRY)
    assert refused(p, "ian", PASSWORD) == "password_expired"
    decision = authorize(p, "ian")
    assert (decision["allowed"], [r["code"] for r in decision["reasons"]]) == (False, ["password_expired"])


def test_an_expired_password_is_changed_without_a_session(p, database, clock):
    clock.advance(EXPIRY + timedelta(days=1))
    assert refused(p, "ian", PASSWORD) == "password_expired"
    changed = change(p, "ian", PASSWORD, NEW)
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json() == {"username": "ian", "status": "active",
                                  "password_expires_at": (clock.now() + EXPIRY).isoformat()}
    assert sign_in(p, "ian", NEW).status_code == 201
    assert refused(p, "ian", PASSWORD) == "invalid_credentials"
    assert authorize(p, "ian")["allowed"] is True
    [record] = audit(database, "change_password")
    assert (record.actor, record.target, record.outcome) == ("ian", "ian", "done")


# --- Changing a password --------------------------------------------------------------------------

def test_the_new_password_follows_the_rules_and_is_not_the_previous_one(p):
    reused = change(p, "ian", PASSWORD, PASSWORD)
    assert reused.status_code == 422
    assert reused.get_json()["code"] == "password_policy"
    assert [e["code"] for e in reused.get_json()["errors"]] == ["reused_password"]
    weak = change(p, "ian", PASSWORD, "ian1")
    assert weak.get_json()["code"] == "password_policy"
    assert [e["code"] for e in weak.get_json()["errors"]] == [
        "too_short", "missing_uppercase", "missing_special", "shares_username"]
    assert sign_in(p, "ian", PASSWORD).status_code == 201  # nothing changed


def test_history_of_one_allows_going_back_two_steps(p):
    assert change(p, "ian", PASSWORD, NEW).status_code == 200
    back = change(p, "ian", NEW, PASSWORD)  # PASSWORD is two passwords back now: allowed with history 1
    assert back.status_code == 200, back.get_json()
    assert sign_in(p, "ian", PASSWORD).status_code == 201


def test_a_wrong_current_password_is_a_failed_sign_in(p, database):
    for _ in range(2):
        response = change(p, "ian", WRONG, NEW)
        assert (response.status_code, response.get_json()["code"]) == (401, "invalid_credentials")
    refused(p, "ian", WRONG)  # the third failure, by sign-in, locks
    assert status_of(database, "ian") == "locked"
    locked = change(p, "ian", PASSWORD, NEW)
    assert (locked.status_code, locked.get_json()["code"]) == (401, "account_locked")
    assert [r.reasons for r in audit(database, "change_password")] == [["invalid_credentials"]] * 2 + \
        [["account_locked"]]


def test_an_unknown_account_answers_like_a_wrong_current_password(p):
    unknown = change(p, "nobody", WRONG, NEW)
    wrong = change(p, "ian", WRONG, NEW)
    assert (unknown.status_code, unknown.get_json()) == (wrong.status_code, wrong.get_json())


def test_only_the_account_itself_changes_its_password(p):
    mara = p.sign_in("mara", PASSWORD)
    other = change(p, "ian", PASSWORD, NEW, token=mara)
    assert (other.status_code, other.get_json()["code"]) == (403, "forbidden")
    assert "only the account itself" in other.get_json()["detail"]
    forged = change(p, "ian", PASSWORD, NEW, token="forged")
    assert (forged.status_code, forged.get_json()["code"]) == (401, "invalid_session")
    ian = p.sign_in("ian", PASSWORD)
    assert change(p, "IAN", PASSWORD, NEW, token=ian).status_code == 200
    assert sign_in(p, "ian", NEW).status_code == 201


def test_a_pending_account_cannot_change_its_password(p):
    response = change(p, "pat", PASSWORD, NEW)
    assert (response.status_code, response.get_json()["code"]) == (401, "pending_approval")
