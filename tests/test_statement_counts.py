"""Issue 14 item 1: one fact path. A decision reads its facts in one statement; a change takes the
organization lock, asks exactly what /v1/authorize asks (the same Decider, the same one-statement
loader), then applies and writes audit and outbox in the same transaction. Counted on both databases.

R5 (admin actions), R1 (authority over the account's reach), R3 (the lock serializes admin changes).
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from sqlalchemy import event

from service.clock import FixedClock
from service.domain import administration
from service.domain.decisions import Decider, Question, Resource
from service.domain.notify import OutboxNotifier
from service.policy import Policy
from service.storage.facts import find_account
from tests.fixtures.world import World

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
DECISION_MAX = 2
ADMIN_ACTION_MAX = 8  # lock, facts, target row, write, audit, outbox (issue 14)


@contextmanager
def counted(database):
    """Every statement the engine sends while the block runs (BEGIN IMMEDIATE included on SQLite)."""
    seen: list[str] = []

    def count(conn, cursor, statement, *_):
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


@pytest.fixture
def clinic(any_database):
    with any_database.transaction() as session:
        w = World(session, "ahcccs", NOW)
        w.account("boss", memberships={"ORG1": {"role": "admin"}, "ORG2": {"role": "admin"}})
        w.account("nurse", memberships={"ORG1": {"permissions": ["claims"]}})
        w.account("newbie", status="pending_approval", memberships={"ORG1": {}, "ORG2": {}})
    return any_database


def _context(session, config, policy):
    return administration.Context(session, config.portal("ahcccs"), "ahcccs", policy, OutboxNotifier(),
                                  FixedClock(NOW).now(), None)


def test_a_decision_reads_its_facts_in_at_most_two_statements(clinic, config):
    policy = Policy(config.policy_path)
    with clinic.sessions() as session:
        decider = Decider(session, config.portal("ahcccs"), policy, "ahcccs", NOW)
        with counted(clinic) as organization_question:
            assert decider.decide("nurse", Question("claims", Resource("organization", "ORG1"))).allowed
        with counted(clinic) as account_question:
            assert decider.decide("boss", Question("approve", Resource("account", "newbie", "ORG1"))).allowed
    assert len(organization_question) <= DECISION_MAX, organization_question
    assert len(account_question) <= DECISION_MAX, account_question


@pytest.mark.parametrize("action", ["approve", "disable", "remove", "upgrade", "send_registration_email"])
def test_an_admin_action_is_the_decision_plus_a_lock_and_its_writes(clinic, config, action):
    """Approve reaches two organizations (the account is linked to both): two locks, still within 8."""
    policy = Policy(config.policy_path)
    if action in ("disable", "upgrade", "send_registration_email"):
        with clinic.transaction() as session:
            find_account(session, "ahcccs", "newbie").status = "unverified" if action == "send_registration_email" \
                else "active"
    with clinic.transaction() as session:
        boss = find_account(session, "ahcccs", "boss")
        ctx = _context(session, config, policy)
        with counted(clinic) as statements:
            outcome = administration.perform(ctx, boss, action, "newbie", "ORG1", None)
            session.flush()
        assert outcome.decision.allowed, outcome.decision
    print(f"\n{clinic.engine.dialect.name} {action}: {len(statements)} statements")
    assert len(statements) <= ADMIN_ACTION_MAX, "\n".join(statements)


def test_a_denied_admin_action_writes_only_its_audit_record(clinic, config):
    policy = Policy(config.policy_path)
    with clinic.transaction() as session:
        nurse = find_account(session, "ahcccs", "nurse")
        ctx = _context(session, config, policy)
        with counted(clinic) as statements:
            outcome = administration.perform(ctx, nurse, "approve", "newbie", "ORG1", None)
            session.flush()
        assert not outcome.decision.allowed
    print(f"\n{clinic.engine.dialect.name} denied approve: {len(statements)} statements")
    assert len(statements) <= ADMIN_ACTION_MAX, "\n".join(statements)
