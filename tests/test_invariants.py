"""The stateful invariant search (tests/invariants.py) on SQLite and PostgreSQL.

Sequences per run: PORTAL_AUTHZ_INVARIANT_EXAMPLES (default 100 on SQLite, 30 on PostgreSQL, each up to
PORTAL_AUTHZ_INVARIANT_STEPS steps, default 25). Set them to thousands for a long search. Argon2 runs with
its cheapest parameters here: the search is about sequences of decisions, not the hash's cost. That the search
can fail, with a clause of the policy dropped, is tests/test_invariants_seeded.py.
"""
from __future__ import annotations

import os
import shutil
import uuid

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from service.domain import passwords
from service.storage.database import Database
from tests.conftest import copied_database
from tests.fixtures import world
from tests.invariants import PortalMachine

EXAMPLES = {"sqlite": int(os.environ.get("PORTAL_AUTHZ_INVARIANT_EXAMPLES", 100)),
            "postgres": int(os.environ.get("PORTAL_AUTHZ_INVARIANT_EXAMPLES", 30))}
STEPS = int(os.environ.get("PORTAL_AUTHZ_INVARIANT_STEPS", 25))


@pytest.fixture
def cheap_argon2(monkeypatch):
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", fast)
    monkeypatch.setattr(world, "_HASH", fast.hash(world.PASSWORD))


@pytest.fixture
def sqlite_databases(tmp_path, sqlite_template):
    """The search's one database (so one app serves every sequence): each sequence starts from a copy of the
    session's migrated file, written over the last sequence's with no connection open and its write-ahead
    log gone."""
    path, made = tmp_path / "search.db", []

    def make():
        if not made:
            made.append(copied_database(sqlite_template, path))
            return made[0]
        closed(made[0])
        for log in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            log.unlink(missing_ok=True)
        shutil.copy(sqlite_template, path)
        return made[0]

    yield make
    for database in made:
        database.dispose()


@pytest.fixture
def postgres_databases(postgres_server, pg_template):
    """The search's one database (so one app serves every sequence): each sequence starts from a database
    copied from the session's migrated template (CREATE DATABASE ... TEMPLATE) under the same name, the last
    sequence's dropped first with no connection open."""
    name, made = f"run_{uuid.uuid4().hex[:12]}", []

    def make():
        if made:
            closed(made[0])
            postgres_server.drop_database(name)
        url = postgres_server.create_database(name, template=pg_template)
        if not made:
            made.append(Database(url))
        return made[0]

    yield make
    for database in made:
        database.dispose()
    postgres_server.drop_database(name)


def closed(database: Database) -> None:
    """The pool's connections closed, and none still checked out: the next connection sees the reset database."""
    assert database.engine.pool.checkedout() == 0, "a connection of the last sequence is still open"
    database.dispose()


def run_machine(make_database, config, policy, clock, examples, portals=("masshealth", "ahw"), shrink=True,
                ran: dict | None = None):
    """Run the search; `ran` (returned) counts what it did, also when it stops at a violation."""
    ran = {} if ran is None else ran
    machine = type("Machine", (PortalMachine,), {"make_database": staticmethod(make_database), "config": config,
                                                  "policy": policy, "clock": clock, "portals": portals,
                                                  "ran": ran, "apps": {}})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None, derandomize=True,
        phases=tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate),
        suppress_health_check=list(HealthCheck)))
    return ran


def report(ran, backend):
    print(f"\ninvariant search on {backend}: {ran.get('sequences', 0)} sequences, {ran.get('steps', 0)} steps, "
          f"{ran.get('calls', 0)} API calls, {ran.get('snapshots', 0)} snapshots, {ran.get('recoveries', 0)} recoveries from a changed inbox, portals {sorted(ran.get('portals', ()))}")
    outcomes = ran.get("outcomes", {})
    print("access requests: " + ", ".join(f"{method} {kind} {status}: {n}" for (method, kind, status), n in
                                          sorted(outcomes.items(), key=str)
                                          if kind in ("access-requests", "approve", "decline")))


def searched_deep(ran, backend):
    """Report a search, and fail one that never reached deep states: both portals, sequences longer than
    their seed, the change-email-then-recover chain completed at least once, and an access request decided."""
    report(ran, backend)
    assert ran["portals"] == {"masshealth", "ahw"} and ran["steps"] > ran["sequences"]
    assert ran.get("recoveries", 0) > 0, "the search never completed the change-email-then-recover chain"
    assert ran.get("access_decisions", 0) > 0, "the search never approved nor declined an access request"


@pytest.mark.R1
@pytest.mark.R3
@pytest.mark.R15
def test_no_sequence_breaks_the_invariants_on_sqlite(sqlite_databases, config, policy, clock, cheap_argon2):
    searched_deep(run_machine(sqlite_databases, config, policy, clock, EXAMPLES["sqlite"]), "sqlite")


@pytest.mark.postgres
@pytest.mark.R1
@pytest.mark.R3
@pytest.mark.R15
def test_no_sequence_breaks_the_invariants_on_postgresql(postgres_databases, config, policy, clock, cheap_argon2):
    searched_deep(run_machine(postgres_databases, config, policy, clock, EXAMPLES["postgres"]), "postgresql")
