"""A decision on PostgreSQL without pre-ping, BEGIN or ROLLBACK, and still fresh and safe.

The decision API runs here on a real PostgreSQL (tests/fixtures/postgres.py): the `database`
fixture that `app`, `client`, `authorize_key` and `build` use is the PostgreSQL one.
"""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import delete, event, select

from service.storage.models import Grant, Membership

pytestmark = pytest.mark.postgres


@pytest.fixture
def database(pg_database):
    return pg_database


@pytest.fixture
def ask(client, authorize_key, build):
    with build("ahw") as world:
        world.organization("TIN-1")
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})

    def _ask(action="claims"):
        return client.post("/v1/authorize", headers={"Authorization": f"Bearer {authorize_key}"},
                           json={"portal": "ahw", "actor": "biller", "action": action,
                                 "resource": {"type": "organization", "id": "TIN-1"}})

    return _ask


def _kill_other_backends(url: str) -> int:
    """What a server restart or an idle timeout does to a pooled connection: the server closes it."""
    with psycopg.connect(url, autocommit=True) as admin:
        return len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())


def test_a_decision_is_one_statement_in_autocommit(ask, database):
    """Decisions read fresh rows; the request's reads run in autocommit (no BEGIN/ROLLBACK trips), and the
    client key is read in the facts statement: one round trip per decision."""
    assert ask().get_json()["allowed"] is True
    seen = []

    def record(conn, _cursor, statement, *_args):
        seen.append((conn.connection.dbapi_connection.autocommit, statement.split()[0]))

    for engine in database.engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        assert ask().get_json()["allowed"] is True
    finally:
        for engine in database.engines:
            event.remove(engine, "before_cursor_execute", record)
    assert seen == [(True, "SELECT")]  # the client key and every fact in one statement


def test_an_authzen_evaluation_is_one_statement_in_autocommit(ask, client, authorize_key, database):
    """AuthZEN's Access Evaluation reads its client key in its facts statement too: one round trip."""
    body = {"subject": {"type": "account", "id": "biller"}, "action": {"name": "claims"},
            "resource": {"type": "organization", "id": "TIN-1"}}
    headers = {"Authorization": f"Bearer {authorize_key}"}
    assert client.post("/authzen/ahw/access/v1/evaluation", json=body, headers=headers).get_json()["decision"] is True
    seen = []

    def record(conn, _cursor, statement, *_args):
        seen.append((conn.connection.dbapi_connection.autocommit, statement.split()[0], "client_keys" in statement))

    for engine in database.engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        answer = client.post("/authzen/ahw/access/v1/evaluation", json=body, headers=headers).get_json()
    finally:
        for engine in database.engines:
            event.remove(engine, "before_cursor_execute", record)
    assert answer["decision"] is True
    assert seen == [(True, "SELECT", True)]


def test_reads_stay_in_autocommit_and_changes_do_not(database):
    """The reads' pool opens its connections in autocommit and nothing resets them at checkin; the changes'
    pool never hands out an autocommit connection, before or after a read."""
    assert database.read_engine is not database.engine
    for _ in range(2):
        with database.reading() as connection:
            assert connection.connection.dbapi_connection.autocommit is True
            connection.exec_driver_sql("SELECT 1").all()
            assert connection.connection.dbapi_connection.info.transaction_status == 0  # idle: no BEGIN sent
        with database.transaction() as session:
            assert session.connection().connection.dbapi_connection.autocommit is False


def test_a_pooled_connection_closed_by_the_server_is_retried_once(ask, database):
    """Without pre-ping a dead pooled connection costs one retry, never a failed request."""
    assert ask().get_json()["allowed"] is True
    assert _kill_other_backends(database.url.replace("postgresql+psycopg://", "postgresql://")) >= 1
    response = ask()
    assert response.status_code == 200, response.get_data(True)
    assert response.get_json()["allowed"] is True


def test_a_revoked_grant_is_denied_by_the_next_decision_after_a_retry(ask, database):
    """R19: the retry reads fresh facts too; a grant revoked while the connection was dead is denied."""
    assert ask().get_json()["allowed"] is True
    _kill_other_backends(database.url)
    with database.transaction() as session:
        link = session.scalars(select(Membership.id)).one()
        session.execute(delete(Grant).where(Grant.membership_id == link))
    answer = ask().get_json()
    assert answer["allowed"] is False


def test_a_connection_idle_in_the_pool_is_pinged_before_use(database, monkeypatch):
    """Any other reader (metrics, the CLI) gets a live connection after idling: only idle ones are pinged."""
    from sqlalchemy import text

    import service.storage.database as storage

    with database.sessions() as session, database.reads() as reads:
        assert session.execute(text("SELECT 1")).scalar() == 1
        assert reads.execute(text("SELECT 1")).scalar() == 1
    assert _kill_other_backends(database.url) >= 2  # one pooled connection of each pool
    monkeypatch.setattr(storage, "IDLE_PING_SECONDS", 0.0)
    with database.sessions() as session:
        assert session.execute(text("SELECT 2")).scalar() == 2
    with database.reads() as session:
        assert session.execute(text("SELECT 3")).scalar() == 3


@pytest.mark.parametrize("question", ["organization", "account"])
def test_the_facts_statement_reads_organizations_by_index_in_a_large_portal(database, build, question):
    """At 5,000 organizations in the portal, the generic plan PostgreSQL keeps for the prepared facts
    statement looks organizations up by index; it once scanned every organization of the portal (an `OR` of the
    asked keys and the targets' organizations; its cost is in bench/README.md)."""
    from service.storage.facts import FACTS

    with build("ahw") as world:
        world.organization("TIN-1")
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
    values = {"portal": "ahw", "usernames": ["biller"], "key_id": "none",
              "organizations": ["TIN-1"] if question == "organization" else [],
              "targets": ["biller"] if question == "account" else []}
    with database.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        raw.execute("INSERT INTO organizations (portal_id, key, name, created_at) "
                    "SELECT 'ahw', 'ORG-' || g, 'Organization ' || g, now() FROM generate_series(1, 5000) g")
        raw.execute("ANALYZE organizations")
        raw.execute("SET plan_cache_mode = force_generic_plan")
        shape = FACTS._shape(connection.dialect, values)
        plan = [row[0] for row in raw.execute("EXPLAIN (ANALYZE, COSTS OFF) " + shape.sql,
                                              FACTS._parameters(shape, values)).fetchall()]
        connection.rollback()
    scans = [line for line in plan if " on organizations" in line]
    assert scans and not [line for line in scans if "Seq Scan" in line], "\n".join(plan)
    removed = [int(line.split(":")[1]) for line in plan if "Rows Removed by Filter" in line]
    assert max(removed, default=0) < 100, "\n".join(plan)
