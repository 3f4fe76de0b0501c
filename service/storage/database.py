"""Engine, sessions and schema upgrades for SQLite (embedded) and PostgreSQL (production)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Foreign keys on, WAL so readers don't block the writer, wait for locks, overwrite deleted content."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Issue 18 item 4: erased secrets (delivered notifications' codes) are overwritten, not left in free space.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def private_sqlite_file(url: str) -> None:
    """Issue 18 item 4: create the embedded database readable by the service's user only.

    The file is created here, 0600, before SQLite opens it; SQLite gives its -wal and -shm files the
    database file's mode. An existing file keeps its mode; a missing directory stays missing (the
    database is then unavailable, as /readyz reports).
    """
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    target = Path(path)
    if target.exists() or not target.parent.is_dir():
        return
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def make_engine(url: str) -> Engine:
    """One engine per process; pool sizes suit a few threads per worker."""
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


class Database:
    """The injected database: an engine and its session factory."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls everything back on error.

        On SQLite the write lock is taken at the start (BEGIN IMMEDIATE), so two
        writers serialize instead of both reading a count and both acting on it.
        """
        with self.sessions() as session, session.begin():
            if self.is_sqlite:
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    def upgrade_schema(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database)."""
        from alembic import command

        command.upgrade(alembic_config(self.engine), "head")

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("accounts")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(engine: Engine):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg
