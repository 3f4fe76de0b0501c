"""Shared fixtures: the shipped config, a fresh SQLite database per test, the app and a client key."""
from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from hypothesis import settings
from sqlalchemy import event
from sqlalchemy.engine import Engine

from service.app import create_app
from service.clock import FixedClock
from service.config import load_config
from service.domain import clients, passwords
from service.domain.setup import sync_portals
from service.policy import Policy
from service.storage.database import Database
from tests.fixtures import world
from tests.fixtures.world import World

# The browser is one session fixture of the process (tests.fixtures.browser): two Playwright instances in one
# process refuse to start, so no module imports the fixture itself.
pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.http", "tests.fixtures.smtp", "tests.fixtures.clients",
                  "tests.fixtures.browser"]

# CI explores the same generated cases every run, so a landing never hangs on a lucky draw;
# local runs keep exploring new ones (and Hypothesis remembers failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

# The module's own hasher (production cost), kept for the tests about production hashing.
PRODUCTION_HASHER = passwords._hasher


# The files that take longest, longest first (bench/README.md, "Test suite time"). `scripts/test` runs the workers
# with --no-loadscope-reorder, so they take these first and finish together, instead of one worker running the
# last long file alone at the end. The sort is stable: other files keep their order, each file stays together.
# The property tests that draw afresh each run (test_canonical_memo.py, test_generated_clauses.py) vary most from
# run to run, so they go early too, where a slow draw is evened out by the files still to hand out.
# Files that start servers or other processes (test_serve_stop.py, test_typescript_client.py, ...) are listed too:
# left in collection order they came last, and one worker ran the last of them alone.
LONGEST_FIRST = ("test_invariants.py", "test_invariants_seeded.py", "test_policy_tables.py", "test_canonical_memo.py",
                 "test_contract_fuzz.py", "test_serve_stop.py", "test_fast_path.py", "test_features.py",
                 "test_typescript_client.py", "test_policy_workbench.py", "test_polar_compile.py", "test_catalog.py",
                 "test_serve_delivery.py", "test_python_client.py", "test_authzen_search.py", "test_policy_reload.py",
                 "test_generated_clauses.py", "test_concurrency.py", "test_console_browser.py", "test_head_counts.py",
                 "test_observability.py", "test_contention_live.py", "test_client_keys_across_processes.py",
                 "test_roster_search.py", "test_demo.py", "test_sweep.py", "test_across_processes.py",
                 "test_password_rules.py", "test_roster_visibility.py", "test_api_decisions.py", "test_remedies.py",
                 "test_policy_properties.py")


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def argon2_at_test_cost():
    """Argon2 at the cost a QA server uses (`testing.hashing: cheap`, passwords.CHEAP) for the whole session, the
    personas' shared hash and the timing equalizer included. At production cost every hash or verification is
    about 0.2 s of CPU (one API test file spent 49 s in argon2); the tests are about decisions and the same work on
    every path, not the hash's cost. Servers started as processes hash at their own config's cost, but verify the
    personas' hashes at the cost stored in them. Tests about production hashing restore PRODUCTION_HASHER."""
    with pytest.MonkeyPatch.context() as patch:
        cheap = PasswordHasher(**passwords.CHEAP)
        patch.setattr(passwords, "_hasher", cheap)
        patch.setattr(passwords, "DUMMY_HASH", cheap.hash(passwords.EQUALIZER))
        patch.setattr(world, "_HASH", None)  # hashed again, cheaply, on first use
        yield


@event.listens_for(Engine, "connect")
def _sqlite_without_fsync(dbapi_connection, _record) -> None:
    """The tests' SQLite files skip fsync (as the tests' PostgreSQL runs with fsync=off): a commit otherwise waits
    about 5 ms for the disk, thousands of times a run. Durability against power loss is not what any test checks;
    a process killed mid-write loses nothing the operating system already has."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=OFF")


@pytest.fixture(scope="session")
def config():
    return load_config(ROOT / "config.yaml")


@pytest.fixture(scope="session")
def policy(config):
    return Policy(config.policy_path)


@pytest.fixture
def clock():
    return FixedClock(START)


def prepared_database(url: str, config) -> Database:
    database = Database(url)
    database.upgrade_schema()
    with database.transaction() as session:
        sync_portals(session, config)
    return database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory, config) -> Path:
    """One SQLite file migrated to head with the shipped portals, for the session: a test's database is a
    copy of it (a millisecond) instead of a migration of its own (about 0.3 s, paid by hundreds of tests).
    The write-ahead log is folded into the file first, so the file alone is the whole database."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    database = prepared_database(f"sqlite:///{path}", config)
    database.forget_overwritten()
    database.dispose()
    return path


def copied_database(template: Path, path: Path) -> Database:
    """A fresh database at `path`: a copy of the migrated template (its mode, 0600, comes with it)."""
    shutil.copy(template, path)
    return Database(f"sqlite:///{path}")


@pytest.fixture
def database(tmp_path, sqlite_template):
    database = copied_database(sqlite_template, tmp_path / "test.db")
    yield database
    database.dispose()


@pytest.fixture
def app(config, database, policy, clock):
    return create_app(config, database=database, policy=policy, clock=clock)


@pytest.fixture
def client(app):
    return app.test_client()


def make_key(database: Database, scopes: tuple[str, ...], now: datetime) -> str:
    with database.transaction() as session:
        return clients.create_client(session, "test-" + "-".join(scopes), scopes, now)


@pytest.fixture
def authorize_key(database, clock):
    return make_key(database, ("authorize",), clock.now())


@pytest.fixture
def build(database, clock):
    """Write a world of organizations and personas: `with build("ahw") as world: ...`."""
    from contextlib import contextmanager

    @contextmanager
    def _build(portal: str):
        with database.transaction() as session:
            yield World(session, portal, clock.now())

    return _build


@pytest.fixture
def clinic(build):
    """The decision tests' small world (ahw, organization TIN-1): `biller`, a member granted `claims`; `manager`, its
    admin; `newbie`, waiting for approval. A module with a world of its own defines its own `clinic`."""
    with build("ahw") as world:
        world.organization("TIN-1")
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("newbie", status="pending_approval", memberships={"TIN-1": {}})
    return "ahw"


@pytest.fixture
def decision_clinic(build):
    """The decision endpoints' larger world (ahw): in TIN-1 two Account Managers, a delegate with Manage Account,
    a member with claims, a locked member with claims, `newbie` waiting for approval; `stranger`, an admin of
    TIN-2; `twofold`, a member of both; a support account. /v1 and AuthZEN's tests ask about the same people."""
    with build("ahw") as world:
        world.organization("TIN-1")
        world.organization("TIN-2")
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("manager2", memberships={"TIN-1": {"role": "admin"}})
        world.account("delegate", memberships={"TIN-1": {"permissions": ["manage_account", "claims"]}})
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("locked", status="locked", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("newbie", status="pending_approval", memberships={"TIN-1": {}})
        world.account("stranger", memberships={"TIN-2": {"role": "admin"}})
        world.account("twofold", memberships={"TIN-1": {}, "TIN-2": {}})
        world.account("support", support=True)
    return "ahw"


@pytest.fixture
def cli_config(tmp_path, monkeypatch):
    """A config file of our own pointing at the repo's policies and a SQLite file in tmp_path."""
    import yaml

    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["policy_dir"] = str(ROOT / "policies")
    data["database"]["url"] = f"sqlite:///{tmp_path / 'cli.db'}"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("PORTAL_AUTHZ_DATABASE_URL", raising=False)
    return path


@pytest.fixture
def seeded(cli_config):
    """The CLI's database with a masshealth practice: its Primary User, a subordinate holding claims, and a
    disabled subordinate; plus an `authorize` client key. Yields (config, database, key)."""
    from service.cli import prepare_database
    from service.clock import SystemClock
    from service.config import load_config
    from service.domain import clients
    from tests.fixtures.world import World

    config = load_config(cli_config)
    database = prepare_database(config)
    with database.transaction() as session:
        world = World(session, "masshealth", SystemClock().now())
        world.account("primary", memberships={"PIDSL-1": {"role": "admin"}})
        world.account("sub", memberships={"PIDSL-1": {"permissions": ["claims_submission_and_status"]}})
        world.account("gone", memberships={"PIDSL-1": {}}, status="disabled")
        key = clients.create_client(session, "t", ("authorize",), SystemClock().now())
    yield config, database, key
    database.dispose()


@pytest.fixture
def cli(capsys):
    """Run `portal-authz ARGV...` in-process: (exit code, stdout, stderr)."""
    from service.cli import main

    def run(*argv) -> tuple[int, str, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run
