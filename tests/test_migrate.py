"""`portal-authz migrate`, the deployment step: the schema upgrade runs under a PostgreSQL advisory lock, so
processes upgrading one database at once take turns instead of racing the same DDL. Real processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from service.storage.database import MIGRATION_LOCK
from tests.fixtures.servers import ROOT, server_config



@pytest.fixture
def empty_pg(postgres_server):
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


def migrate(config, url: str) -> subprocess.Popen:
    env = {**os.environ, "PORTAL_AUTHZ_DATABASE_URL": url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("PORTAL_AUTHZ_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "service.cli", "--config", str(config), "migrate"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from service.storage.database import alembic_config

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


@pytest.mark.postgres
@pytest.mark.slow
def test_processes_migrating_one_empty_postgresql_at_once_all_succeed(empty_pg, tmp_path):
    config = server_config(tmp_path)
    racers = [migrate(config, empty_pg) for _ in range(3)]
    outcomes = [(*p.communicate(timeout=120), p.returncode) for p in racers]
    outcomes = [(code, out, err) for out, err, code in outcomes]
    assert all(code == 0 for code, _, _ in outcomes), outcomes
    assert all(f"schema at revision {head_revision()}" in out for _, out, _ in outcomes), outcomes
    engine = create_engine(empty_pg.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
                == [head_revision()]
            assert connection.execute(text("SELECT count(*) FROM portals")).scalar() == 4
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_the_upgrade_waits_for_the_advisory_lock(empty_pg, tmp_path):
    """Held elsewhere, the lock keeps `migrate` from touching the schema until it is released."""
    engine = create_engine(empty_pg.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as holder:
            holder = holder.execution_options(isolation_level="AUTOCOMMIT")
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            waiting = migrate(server_config(tmp_path), empty_pg)
            deadline = time.monotonic() + 60
            while not holder.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = :key"), {"key": MIGRATION_LOCK}).scalar():
                assert waiting.poll() is None and time.monotonic() < deadline, waiting.communicate()
                time.sleep(0.1)
            assert not holder.execute(text("SELECT to_regclass('alembic_version')")).scalar()  # nothing yet
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            out, err = waiting.communicate(timeout=120)
            assert waiting.returncode == 0, (out, err)
            assert holder.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    finally:
        engine.dispose()


def test_migrate_upgrades_an_empty_sqlite_file_and_exits(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_AUTHZ_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    code, out, _ = cli("migrate", "--config", str(server_config(tmp_path)))
    assert code == 0 and out.strip() == f"schema at revision {head_revision()}; portals: ahcccs, qm, ahw, masshealth"
    assert (tmp_path / "fresh.db").exists()
