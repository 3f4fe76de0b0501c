"""PostgreSQL plans the decision's facts statement once per connection, not at every execution.

psycopg prepares a statement after `prepare_threshold` executions; PostgreSQL then uses a generic plan only
when its estimate is close to a custom plan's. With the statement's own constants ('admin', 'active', the
branches' tags) sent as parameters, the generic estimates read an average selectivity (skewed here, as in a
portal: most accounts active, two admins in an organization of a hundred) and PostgreSQL planned every
execution again, about five times the statement's own execution time (bench/README.md).
`pg_prepared_statements` counts which plans a prepared statement used on its connection.
"""
from __future__ import annotations

import uuid

from sqlalchemy import text

from bench import mixed
from service.app import create_app
from service.storage.database import Database


def test_the_facts_statement_gets_a_generic_plan(postgres_server, config, policy):
    url = postgres_server.create_database(f"plans_{uuid.uuid4().hex[:12]}")
    population = mixed.people(3000)
    key, _ = mixed.seed(url, config, population)
    database = Database(url)
    try:
        with database.reading() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
        client = create_app(config, database=database, policy=policy).test_client()
        asked = [q for q in mixed.questions(population, 400) if q.target is None][:40]
        for q in asked:  # a different person each time: the statement runs whatever the policy's memo holds
            response = client.post("/v1/authorize", json=mixed.portal_body(q), headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, response.get_json()
        with database.reading() as connection:  # the pool hands back the connection last used (LIFO)
            plans = connection.execute(text(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%AS kind%'")).all()
    finally:
        database.dispose()
    assert plans, "the facts statement was never prepared"
    generic, custom = max(plans)
    assert generic >= 30 and custom <= 5, plans
