"""A database too busy to take a change answers 503 with Retry-After, never 500; argon2 runs ahead of the lock.

The live half (fifty parallel changes on a 4-worker SQLite server) is tests/test_contention_live.py.
Here: the answer when a lock wait does expire, on every kind of busy the two databases report, and
what the work done ahead of the write lock may and may not be reused for.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager

import psycopg.errors
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.domain import passwords
from service.storage.database import Database, busy
from service.storage.models import AuditRecord, FailedSignIn
from tests.fixtures.http import ADDRESS, WRONG


def _sqlalchemy(original: Exception) -> OperationalError:
    return OperationalError("BEGIN IMMEDIATE", {}, original)


@pytest.mark.parametrize("original", [sqlite3.OperationalError("database is locked"),
                                      psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
                                      psycopg.errors.SerializationFailure("could not serialize access"),
                                      psycopg.errors.DeadlockDetected("deadlock detected")],
                         ids=["sqlite locked", "pg lock timeout", "pg serialization", "pg deadlock"])
def test_busy_names_every_wait_that_gave_up(original):
    assert busy(_sqlalchemy(original))


@pytest.mark.parametrize("original", [sqlite3.OperationalError("no such table: accounts"),
                                      psycopg.errors.UndefinedTable("relation does not exist"), ValueError("x")])
def test_busy_is_not_any_other_error(original):
    assert not busy(_sqlalchemy(original)) and not busy(original)


def lock_everything(monkeypatch):
    """From now on every write transaction finds the database locked, as when SQLite's busy_timeout runs out."""
    real = Database.transaction

    @contextmanager
    def refused(self):
        with real(self) as session:
            raise _sqlalchemy(sqlite3.OperationalError("database is locked"))
            yield session  # pragma: no cover - never reached

    monkeypatch.setattr(Database, "transaction", refused)


def test_a_sign_in_that_cannot_get_the_write_lock_is_503_with_retry_after(api, build, database, monkeypatch):
    with build("ahcccs") as world:
        world.account("ian", memberships={"ORG-1": {}})
    lock_everything(monkeypatch)
    answer = api("ahcccs").call("POST", "/sessions", {"username": "ian", "password": WRONG})
    assert answer.status_code == 503
    assert answer.mimetype == "application/problem+json"
    assert answer.headers["Retry-After"] == "1"
    assert answer.get_json()["code"] == "database_busy"
    with database.sessions() as session:  # nothing half-written
        assert session.scalar(select(func.count()).select_from(FailedSignIn)) == 0
        assert session.scalar(select(func.count()).select_from(AuditRecord).where(AuditRecord.action == "sign_in")) == 0


def test_an_admin_action_that_cannot_get_the_write_lock_is_503(api, build, monkeypatch):
    with build("ahcccs") as world:
        world.account("ian", memberships={"ORG-1": {}})
    lock_everything(monkeypatch)
    answer = api("ahcccs").call("POST", "/accounts/ian/unlock", {}, token="any")
    assert (answer.status_code, answer.get_json()["code"], answer.headers["Retry-After"]) == (503, "database_busy", "1")


def test_a_verification_done_ahead_is_reused_only_for_the_same_hash_and_secret(monkeypatch):
    real = passwords._verify
    made: list[tuple[str, str]] = []
    monkeypatch.setattr(passwords, "_verify", lambda stored, secret: made.append((stored, secret)) or real(stored, secret))
    first, second = passwords._hasher.hash("old pass"), passwords._hasher.hash("new pass")
    with passwords.worked_ahead():
        assert passwords.verify_secret(first, "old pass") is True  # ahead of the lock
        assert passwords.verify_secret(first, "old pass") is True  # inside: reused
        assert passwords.verify_secret(second, "old pass") is False  # the password changed in between: verified anew
    assert made == [(first, "old pass"), (second, "old pass")]
    assert passwords.verify_secret(first, "old pass") is True and len(made) == 3  # outside a scope nothing is kept


def test_a_hash_or_code_made_ahead_is_used_once():
    with passwords.worked_ahead():
        passwords.hash_ahead("chosen pass")
        ahead = passwords.hash_secret("chosen pass")
        again = passwords.hash_secret("chosen pass")
    assert ahead != again  # a second hash of the same secret is a fresh one (its own salt)
    assert passwords._hasher.verify(ahead, "chosen pass") and passwords._hasher.verify(again, "chosen pass")

    def draw() -> str:
        return "ABCDEFGHJK"

    with passwords.worked_ahead():
        passwords.draw_ahead(draw)
        code, code_hash = passwords.fresh_secret(draw)
        assert code == "ABCDEFGHJK" and passwords._hasher.verify(code_hash, code)
        later, later_hash = passwords.fresh_secret(draw)  # none left: made now
        assert later_hash != code_hash and passwords._hasher.verify(later_hash, later)


def test_no_argon2_runs_inside_a_write_transaction(api, database, monkeypatch):
    """Registration (first and later), activation, sign-in (wrong and right), password change, recovery
    request and confirmation, an admin's send-password-recovery: their argon2 work all runs before the
    write transaction, so the write lock is never held through it."""
    from service.storage.models import Notification

    inside: list[str] = []
    depth = [0]
    real_transaction = Database.transaction

    @contextmanager
    def counted(self):
        with real_transaction(self) as session:
            depth[0] += 1
            try:
                yield session
            finally:
                depth[0] -= 1

    class Watching:
        def __init__(self, real):
            self.real = real

        def hash(self, secret):
            if depth[0]:
                inside.append("hash")
            return self.real.hash(secret)

        def verify(self, stored, secret):
            if depth[0]:
                inside.append("verify")
            return self.real.verify(stored, secret)

    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    monkeypatch.setattr(Database, "transaction", counted)
    monkeypatch.setattr(passwords, "_hasher", Watching(passwords._hasher))

    p.register("mara", address_id="CORR")  # the first registrant: a temporary password and an activation code
    with database.sessions() as session:
        letter = session.scalar(select(Notification.payload).where(Notification.template == "activation_letter"))
    p.call("POST", "/activations", {"username": "mara", "code": letter["activation_code"],
                                    "temporary_password": letter["temporary_password"],
                                    "new_password": "Own#Letter2024x"}, expect=200)
    mara = p.sign_in("mara", "Own#Letter2024x", accepted_terms=True)
    p.register("ian")  # a later registrant: its own password and security answers
    p.act(mara, "ian", "approve")
    assert p.call("POST", "/sessions", {"username": "ian", "password": WRONG}).status_code == 401
    p.call("PUT", "/accounts/ian/password", {"current_password": "Valid#Pass2024x",
                                             "new_password": "Brand#New42Pass"}, expect=200)
    p.call("POST", "/password-recoveries", {"username": "ian", "answers": ["123 Oak St.", "opal"]}, expect=202)
    p.act(mara, "ian", "send-password-recovery")
    with database.sessions() as session:
        code = session.scalars(select(Notification.payload).where(Notification.template == "password_recovery")
                               .order_by(Notification.id.desc())).first()["security_code"]
    p.call("POST", "/password-recoveries/confirm", {"username": "ian", "code": code,
                                                    "new_password": "Other#New42Pass"}, expect=200)
    assert inside == []
