"""One fact path. A decision reads its facts in one statement; a change takes the
organization lock, asks exactly what /v1/authorize asks (the same Decider, the same one-statement
loader), then applies and writes audit and outbox in the same transaction. Counted on both databases.

R5 (admin actions), R1 (authority over the account's reach), R3 (the lock serializes admin changes).
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, func, select

from service.clock import FixedClock
from service.domain import administration
from service.domain.decisions import Decider, Question, Resource
from service.domain.notify import OutboxNotifier
from service.policy import Policy
from service.storage.facts import find_account
from service.storage.models import FailedSignIn
from tests.fixtures.statements import statements
from tests.fixtures.world import World

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
DECISION_MAX = 2
ADMIN_ACTION_MAX = 8  # lock, facts, target row, write, audit, outbox


@pytest.fixture
def clinic(any_database):
    with any_database.transaction() as session:
        w = World(session, "ahcccs", NOW)
        w.account("boss", memberships={"ORG1": {"role": "admin"}, "ORG2": {"role": "admin"}})
        w.account("nurse", memberships={"ORG1": {"permissions": ["claims"]}})
        w.account("newbie", status="pending_approval", memberships={"ORG1": {}, "ORG2": {}})
        w.account("clerk", memberships={"ORG1": {"permissions": ["eligibility"]}})
    return any_database


def _context(session, config, policy):
    return administration.Context(session, config.portal("ahcccs"), "ahcccs", policy, OutboxNotifier(),
                                  FixedClock(NOW).now(), None)


def test_a_decision_reads_its_facts_in_at_most_two_statements(clinic, config):
    policy = Policy(config.policy_path)
    with clinic.sessions() as session:
        decider = Decider(session, config.portal("ahcccs"), policy, "ahcccs", NOW)
        with statements(clinic) as organization_question:
            assert decider.decide("nurse", Question("claims", Resource("organization", "ORG1"))).allowed
        with statements(clinic) as account_question:
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
        with statements(clinic) as sent:
            outcome = administration.perform(ctx, boss, action, "newbie", "ORG1", None)
            session.flush()
        assert outcome.decision.allowed, outcome.decision
    print(f"\n{clinic.engine.dialect.name} {action}: {len(sent)} statements")
    assert len(sent) <= ADMIN_ACTION_MAX, "\n".join(sent)


def test_a_denied_admin_action_writes_only_its_audit_record(clinic, config):
    policy = Policy(config.policy_path)
    with clinic.transaction() as session:
        nurse = find_account(session, "ahcccs", "nurse")
        ctx = _context(session, config, policy)
        with statements(clinic) as sent:
            outcome = administration.perform(ctx, nurse, "approve", "newbie", "ORG1", None)
            session.flush()
        assert not outcome.decision.allowed
    print(f"\n{clinic.engine.dialect.name} denied approve: {len(sent)} statements")
    assert len(sent) <= ADMIN_ACTION_MAX, "\n".join(sent)


# --- A whole admin action over HTTP: key check, session check, decision, change and the answer ------------

# Counted as the database sees them: statements plus BEGIN/COMMIT/ROLLBACK. Approve: at most 12, the budget set
# for it; the others at what they cost on PostgreSQL, so that none creeps back up (bench/README.md has the figures).
HTTP_BUDGET = {"approve": 12, "enable": 12, "disable": 14, "unlock": 14, "remove": 16, "upgrade": 12, "grant": 13}


def _in_transaction(conn) -> bool:
    driver = conn.connection.dbapi_connection
    if conn.engine.dialect.name == "sqlite":
        return driver.in_transaction
    import psycopg

    return driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


@contextmanager
def round_trips(database):
    """Every message the database receives from the engine: each statement, the BEGIN psycopg sends before the
    first statement of a transaction, and a COMMIT or ROLLBACK that ends one (the driver sends neither on a
    connection with no transaction open). SQLite's BEGIN IMMEDIATE is a statement of its own."""
    seen: list[str] = []

    def statement(conn, cursor, text, *_):
        postgres = conn.engine.dialect.name != "sqlite"
        if postgres and not conn.connection.dbapi_connection.autocommit and not _in_transaction(conn):
            seen.append("BEGIN")
        seen.append(" ".join(text.split())[:80])

    def ending(name):
        def record(conn, *_):
            if _in_transaction(conn):
                seen.append(name)
        return record

    hooks = [("before_cursor_execute", statement), ("commit", ending("COMMIT")), ("rollback", ending("ROLLBACK"))]
    for name, hook in hooks:
        event.listen(database.engine, name, hook)
    try:
        yield seen
    finally:
        for name, hook in hooks:
            event.remove(database.engine, name, hook)


@pytest.fixture
def database(any_database):
    """The app and its client run on the parametrized database (SQLite, then PostgreSQL)."""
    return any_database


@pytest.fixture
def admin_api(clinic, client, clock):
    from tests.conftest import make_key
    from tests.fixtures.world import PASSWORD

    with clinic.transaction() as session:
        find_account(session, "ahcccs", "boss").password_changed_at = clock.now()
        find_account(session, "ahcccs", "nurse").password_changed_at = clock.now()
    key = make_key(clinic, ("manage",), clock.now())
    auth = {"Authorization": f"Bearer {key}"}
    signed = client.post("/v1/portals/ahcccs/sessions", json={"username": "boss", "password": PASSWORD},
                         headers=auth)
    assert signed.status_code == 201, signed.get_json()
    return {**auth, "X-Session-Token": signed.get_json()["token"]}


HTTP_CASES = {  # action: (the target's status before, the path, the body)
    "approve": ("pending_approval", "approve", None),
    "enable": ("disabled", "enable", None),
    "disable": ("active", "disable", None),
    "unlock": ("locked", "unlock", None),
    "remove": ("active", "remove", None),
    "upgrade": ("active", "upgrade", None),
    "grant": ("active", "permissions", {"permissions": ["claims", "eligibility"]}),
}


@pytest.mark.parametrize("action", list(HTTP_CASES))
def test_an_admin_action_over_http_stays_within_its_round_trips(clinic, client, admin_api, action, monkeypatch):
    """A whole admin action over HTTP: the key, the session, the lock, the decision, the change, audit and the
    answer. (The pool's ping of a connection left idle is the pool's, not the request's: none here.)"""
    import service.storage.database as storage

    monkeypatch.setattr(storage, "IDLE_PING_SECONDS", float("inf"))
    status, path, body = HTTP_CASES[action]
    with clinic.transaction() as session:
        find_account(session, "ahcccs", "clerk").status = status
    method = "PUT" if action == "grant" else "POST"
    with round_trips(clinic) as seen:
        response = client.open(f"/v1/portals/ahcccs/accounts/clerk/{path}", method=method, json=body,
                               headers=admin_api)
    assert response.status_code == 200, response.get_json()
    print(f"\n{clinic.engine.dialect.name} {action} over HTTP: {len(seen)} round trips\n  " + "\n  ".join(seen))
    assert len(seen) <= HTTP_BUDGET[action], "\n".join(seen)


# --- Sign-in: the account's own row, read once ahead and once under its lock ---------------------------------

def _reads(seen: list[str]) -> list[str]:
    return [" ".join(text.split()) for text in seen if text.lstrip().startswith("SELECT")]


# Reads of the accounts table: the sign-in's two by username (ahead, then under the lock), then a refusal's record
# in its own transaction: the username looked up, and a known account's row locked to count the failure (R19);
# an unknown username's refusal makes the same reads against no account.
SIGN_IN_ACCOUNT_READS = {("boss", "right"): 2, ("boss", "wrong"): 2 + 2, ("nobody", "wrong"): 2 + 2}


@pytest.mark.parametrize("who, password", list(SIGN_IN_ACCOUNT_READS))
def test_a_sign_in_reads_the_account_row_once_ahead_and_once_under_its_lock(clinic, client, clock, who, password):
    """A sign-in decides on the account's row alone (hash, status, password age, terms): ahead of the write
    transaction it reads the row for the argon2 work, inside it reads the row again under its lock, and it
    never loads the memberships, grants or organizations of the account (boss has two links). A right password,
    a wrong one and an unknown username read alike up to the answer: one statement, then one verification."""
    from tests.conftest import make_key
    from tests.fixtures.world import PASSWORD

    with clinic.transaction() as session:
        find_account(session, "ahcccs", "boss").password_changed_at = clock.now()
    auth = {"Authorization": f"Bearer {make_key(clinic, ('manage',), clock.now())}"}
    with statements(clinic) as seen:
        response = client.post("/v1/portals/ahcccs/sessions", headers=auth, json={
            "username": who, "password": PASSWORD if password == "right" else "Not#The#Password1"})
    assert response.status_code == (201 if password == "right" else 401), response.get_json()
    reads = _reads(seen)
    print(f"\n{clinic.engine.dialect.name} sign-in ({who}, {password}): {len(reads)} reads\n  "
          + "\n  ".join(r[:100] for r in reads))
    assert not [r for r in reads if " FROM memberships" in r or " FROM grants" in r or " FROM organizations" in r], reads
    account_reads = [r for r in reads if " FROM accounts" in r]
    assert len(account_reads) == SIGN_IN_ACCOUNT_READS[who, password], account_reads
    assert all("username_key" in r for r in account_reads[:2]), account_reads
    if clinic.engine.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE already holds the write lock
        assert "FOR UPDATE" in account_reads[1] and "FOR UPDATE" not in account_reads[0], account_reads


def test_an_unknown_usernames_refusal_sends_the_statements_of_a_known_accounts_but_the_failures_row(clinic, client,
                                                                                                    clock):
    """No enumeration by timing: a wrong password for an existing active account counts a failure (R19: its row
    locked, the window cleaned and counted, the failure inserted); an unknown username's refusal sends the same
    statements, in the same order, against no account, and writes no failure row. Only that insert differs."""
    from tests.conftest import make_key

    auth = {"Authorization": f"Bearer {make_key(clinic, ('manage',), clock.now())}"}
    sent = {}
    for who in ("boss", "nobody"):
        with statements(clinic) as seen:
            response = client.post("/v1/portals/ahcccs/sessions", headers=auth,
                                   json={"username": who, "password": "Not#The#Password1"})
        assert response.status_code == 401 and response.get_json()["code"] == "invalid_credentials"
        sent[who] = [" ".join(s.split()) for s in seen if "client_keys" not in s]  # the key's first use: once
    failures = [s for s in sent["boss"] if s.upper().startswith("INSERT INTO FAILED_SIGN_INS")]
    assert len(failures) == 1
    assert [s for s in sent["boss"] if s not in failures] == sent["nobody"], (sent["boss"], sent["nobody"])
    with clinic.transaction() as session:
        assert session.scalar(select(func.count()).select_from(FailedSignIn)) == 1  # boss's, none for nobody
