"""Engine, sessions and schema upgrades for SQLite (embedded) and PostgreSQL (production)."""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The PostgreSQL advisory lock every schema upgrade holds (any fixed 64-bit number; this one spells "paz-mig").
MIGRATION_LOCK = 0x70617A2D6D6967


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Foreign keys on, WAL so readers don't block the writer, wait for locks, overwrite deleted content."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Erased secrets (delivered notifications' codes) are overwritten, not left in free space
    # (and Database.forget_overwritten clears the -wal file after an erasure).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def private_sqlite_file(url: str) -> None:
    """Create the embedded database readable by the service's user only: it holds hashes and unsent secrets.

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


def make_engine(url: str, *, autocommit: bool = False) -> Engine:
    """One engine per process (two on PostgreSQL: `Database`); pool sizes suit a few threads per worker.

    `autocommit`: every connection is opened in autocommit and stays so (PostgreSQL only), for reads: no
    BEGIN or ROLLBACK round trips, psycopg's prepared statements survive (a ROLLBACK clears them), and
    nothing is set on a connection at checkout or reset at checkin."""
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # No pre-ping on every checkout (a round trip per request): only a connection idle for
    # IDLE_PING_SECONDS is pinged; connections are recycled after RECYCLE_SECONDS; LIFO keeps the hot
    # ones in use; and a connection found dead by a request's first statement is retried once on a
    # fresh one (`retry_once_if_dead`, also at the start of every change in `Database.transaction`).
    # psycopg prepares a statement after PREPARE_THRESHOLD executions on a connection.
    options = {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None} if autocommit else {}
    engine = create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=False, pool_recycle=RECYCLE_SECONDS,
                           pool_use_lifo=True, connect_args={"prepare_threshold": PREPARE_THRESHOLD}, **options)
    _ping_when_idle(engine)
    event.listen(engine, "connect", _postgres_settings)
    return engine


def _postgres_settings(dbapi_connection, _record) -> None:
    """No JIT compilation: the service's statements are short, and JIT's compile time (tens to hundreds of ms)
    is paid whenever a plan's estimated cost passes `jit_above_cost`, which a statement's branches that never
    run count toward too (the roster search's one-time-filtered branches, service/domain/roster.py)."""
    dbapi_connection.execute("SET jit = off")
    dbapi_connection.commit()


RECYCLE_SECONDS = 600
PREPARE_THRESHOLD = 2
IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping only a connection that sat in the pool for IDLE_PING_SECONDS or more.

    Under load connections are checked out again within milliseconds and cost no ping; one that
    was idle (the likeliest to have been closed by a restart or a timeout) is pinged as pre-ping
    did, and a dead one is replaced by the pool (DisconnectionError makes it connect anew). The ping is
    SQLAlchemy's own (private: pinned by tests/test_sqlalchemy_hooks.py).
    """
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection, record) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since >= IDLE_PING_SECONDS:
            if not engine.dialect._do_ping_w_event(dbapi_connection):
                raise DisconnectionError("a pooled connection idle for a while was closed by the server")


def retry_once_if_dead(session: Session | Connection, run: Callable[[], T]) -> T:
    """Run a session's FIRST statement; if its pooled connection turns out dead, once more on a fresh one.

    Without pre-ping a pooled connection may have been closed by the server (restart, idle timeout,
    failover). SQLAlchemy then raises with `connection_invalidated` set and invalidates the pool; the
    statement never ran, so running it again on a new connection changes nothing else. Only for a
    session that has done nothing yet; any other error propagates (the request fails closed).
    """
    try:
        return run()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        session.rollback()
        return run()


# PostgreSQL's SQLSTATEs for a wait that gave up (lock_timeout), a serialization failure and a deadlock.
BUSY_SQLSTATES = {"55P03", "40001", "40P01"}


def busy(exc: BaseException) -> bool:
    """Whether `exc` is the database saying "too busy now, try again": SQLite's lock wait (busy_timeout) ran out,
    or PostgreSQL gave up a lock wait, a serializable transaction or a deadlock. Nothing was written."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    original = exc.orig
    if isinstance(original, sqlite3.OperationalError):
        return "database is locked" in str(original) or "database table is locked" in str(original)
    return getattr(original, "sqlstate", None) in BUSY_SQLSTATES


class Database:
    """The injected database: an engine and its session factory."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A request's reads (key check, facts, listings) on connections that are always in autocommit on
        # PostgreSQL (a second pool): no BEGIN and no ROLLBACK round trips, psycopg's prepared statements
        # survive, and nothing is set or reset per checkout. Each statement reads its own fresh snapshot; a
        # decision's facts are one statement. SQLite's driver opens no transaction for a SELECT: one engine.
        self.read_engine = self.engine if self.is_sqlite else make_engine(url, autocommit=True)
        self.reads = sessionmaker(self.read_engine, expire_on_commit=False)

    def reading(self) -> Connection:
        """One connection for reads without an ORM session, to use in a `with` block: the decision endpoints' lean
        path (service/api/lean.py)."""
        return self.read_engine.connect()

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine (pool) of this database: one on SQLite, the changes' and the reads' on PostgreSQL."""
        return (self.engine,) if self.read_engine is self.engine else (self.engine, self.read_engine)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls everything back on error.

        On SQLite the write lock is taken at the start (BEGIN IMMEDIATE), so two
        writers serialize instead of both reading a count and both acting on it.
        """
        if self.is_sqlite:
            with self.sessions() as session, session.begin():
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                yield session
            return
        with self.sessions() as session:
            # Without pool pre-ping, a change checks its connection itself (BEGIN and one cheap statement,
            # the round trips pre-ping and BEGIN cost before); a dead one is replaced once, before any work.
            retry_once_if_dead(session, lambda: session.connection().exec_driver_sql("SELECT 1"))
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()

    def forget_overwritten(self) -> None:
        """SQLite: move the write-ahead log into the database file and truncate it to nothing.

        Overwritten content (a delivered notification's erased code and temporary password) would
        otherwise stay readable in the -wal file's older frames until the next checkpoint; secure_delete
        clears it from the database file's pages as the checkpoint copies them. A checkpoint that
        readers keep from finishing is only logged: the next erasure (or SQLite's own) completes it.
        PostgreSQL keeps no such file the service controls: nothing to do.
        """
        if not self.is_sqlite:
            return
        with self.engine.connect() as connection:
            busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if busy:
            logging.getLogger(__name__).warning("the write-ahead log could not be truncated now (readers in the way)")

    def upgrade_schema(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database).

        On PostgreSQL under a session advisory lock, held on a connection of its own for the whole upgrade:
        replicas started together (or `portal-authz migrate` beside a starting `serve`) upgrade one at a
        time, and the later ones find the schema at the newest revision and change nothing. The lock ends
        with its connection, so an upgrade that dies holds it no longer than that."""
        from alembic import command

        if self.is_sqlite:
            command.upgrade(alembic_config(self.engine), "head")
            return
        with self.engine.connect() as connection:
            lock = connection.execution_options(isolation_level="AUTOCOMMIT")
            lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                command.upgrade(alembic_config(self.engine), "head")
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("accounts")

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()


def alembic_config(engine: Engine):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg
