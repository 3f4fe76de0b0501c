"""On PostgreSQL the direct statement runs on its pooled connection's own cursor, kept across checkouts
(service/storage/direct.py): the same answers, one cursor per DBAPI connection, and a cursor that saw an error
never used again. SQLite's statements each take a cursor of their own (reusing one cost more than it saved)."""
from __future__ import annotations

import pytest
from sqlalchemy import event, literal_column, select, table
from sqlalchemy.exc import DBAPIError

from service.storage.direct import DirectStatement
from service.storage.facts import FACTS, load_facts
from tests.fixtures.world import World

VALUES = {"portal": "ahw", "usernames": ["biller"], "organizations": ["TIN-1"], "targets": [], "key_id": None}
BROKEN = DirectStatement(lambda _values: select(literal_column("1")).select_from(table("gone")), (), lambda _d: {})


@pytest.fixture
def db(any_database, clock):
    with any_database.transaction() as session:
        world = World(session, "ahw", clock.now())
        world.organization("TIN-1")
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
    return any_database


@pytest.fixture
def cursors(db):
    """The cursor of every statement run on the reads' engine (kept: a freed cursor's id could be reused)."""
    seen = []

    def record(_conn, cursor, *_args):
        seen.append(cursor)

    event.listen(db.read_engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.read_engine, "before_cursor_execute", record)


def test_one_pooled_connection_runs_every_direct_statement_on_one_cursor(db, cursors):
    answers = []
    for _ in range(3):  # three checkouts of the pool's one connection
        with db.reading() as connection:
            answers.append(load_facts(connection, "ahw", {"biller"}, {"TIN-1"}))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0].account("biller").memberships[0].permissions == ("claims",)
    assert len(cursors) == 3
    if db.is_sqlite:
        assert cursors[0] is not cursors[1] and cursors[1] is not cursors[2]
    else:
        assert cursors[0] is cursors[1] is cursors[2]


def test_a_cursor_that_saw_an_error_is_not_used_again(db, cursors):
    with db.reading() as connection:
        FACTS.rows(connection, VALUES)
        with pytest.raises(DBAPIError):
            BROKEN.rows(connection, {})
        if connection.in_transaction():  # SQLite: the failed statement's transaction, as any caller ends it
            connection.rollback()
        rows = FACTS.rows(connection, VALUES)
    assert rows and len(cursors) == 3
    assert (cursors[0] is cursors[1]) is not db.is_sqlite and cursors[2] is not cursors[1]


def test_a_connection_the_pool_replaced_gets_its_own_cursor(db, cursors):
    with db.reading() as connection:
        FACTS.rows(connection, VALUES)
        connection.invalidate()  # what a dead connection found by a statement comes to
    with db.reading() as connection:
        assert FACTS.rows(connection, VALUES)
    assert len(cursors) == 2 and cursors[0] is not cursors[1]
