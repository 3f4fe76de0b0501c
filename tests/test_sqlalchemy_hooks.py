"""The three private SQLAlchemy hooks the hot path relies on, pinned: an upgrade that changes them fails here.

service/storage/direct.py runs the decision's statement on the driver itself and keeps what SQLAlchemy
would have done around it: statement events fire only when a listener exists (`Connection._has_events`,
`Engine._has_events`), and a driver error is translated as SQLAlchemy translates it, invalidating a
dead connection and the pool's older ones (`Connection._handle_dbapi_exception`); service/storage/database.py
pings a connection that sat idle in the pool as pre-ping does (`Dialect._do_ping_w_event`). SQLAlchemy
offers no public API for either without its whole execution machinery (the cost the direct statement
removes). Each is checked by what it must do, on SQLite, so the check runs everywhere.
"""
from __future__ import annotations

import inspect
import sqlite3

import pytest
from sqlalchemy import event, literal_column, select, table
from sqlalchemy.exc import DBAPIError

from service.storage.database import Database
from service.storage.direct import DirectStatement
from service.storage.facts import FACTS


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'hooks.db'}")
    database.upgrade_schema()
    yield database
    database.dispose()


VALUES = {"portal": "ahw", "usernames": ["someone"], "organizations": [], "targets": [], "key_id": None}


def test_the_private_names_and_signatures_are_those_direct_and_database_call():
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.default import DefaultDialect

    assert list(inspect.signature(Connection._handle_dbapi_exception).parameters)[:6] == [
        "self", "e", "statement", "parameters", "cursor", "context"]
    assert list(inspect.signature(DefaultDialect._do_ping_w_event).parameters) == ["self", "dbapi_connection"]
    assert isinstance(Connection._has_events, bool) and isinstance(Engine._has_events, bool)


def test_statement_events_fire_exactly_when_a_listener_listens(db):
    seen = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    with db.engine.connect() as connection:
        assert not (connection._has_events or connection.engine._has_events)
        FACTS.rows(connection, VALUES)
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            with db.engine.connect() as listened:
                assert listened._has_events or listened.engine._has_events
                FACTS.rows(listened, VALUES)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert len(seen) == 1 and "accounts" in seen[0]


def test_a_driver_error_on_a_dead_connection_is_translated_and_invalidates_it(db, monkeypatch):
    broken = DirectStatement(lambda _values: select(literal_column("1")).select_from(table("gone")), (),
                             lambda _dialect: {})
    # The driver fails the statement; the dialect says the connection died (as a server restart makes it).
    monkeypatch.setattr(db.engine.dialect, "is_disconnect", lambda *_args: True)
    with db.engine.connect() as connection:
        with pytest.raises(DBAPIError) as raised:
            broken.rows(connection, {})
        assert raised.value.connection_invalidated and connection.invalidated
        assert isinstance(raised.value.orig, sqlite3.OperationalError)


def test_an_idle_connection_that_died_fails_its_ping(db):
    raw = sqlite3.connect(":memory:")
    assert db.engine.dialect._do_ping_w_event(raw) is True
    raw.close()
    assert db.engine.dialect._do_ping_w_event(raw) is False
