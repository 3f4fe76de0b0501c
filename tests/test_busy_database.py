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
from tests.fixtures.http import WRONG


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
