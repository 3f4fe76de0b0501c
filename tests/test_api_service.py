"""Health, readiness, the OpenAPI document and the settable test clock."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import event

from service.app import create_app
from service.clock import SettableClock
from service.policy import Policy
from tests.conftest import PRODUCTION_HASHER, ROOT, make_key


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_reports_the_policy_version(client, policy):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["policy_version"] == policy.version


def test_readyz_is_503_when_the_database_is_gone(config, policy, clock, tmp_path):
    from service.storage.database import Database

    broken = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    app = create_app(config, database=broken, policy=policy, clock=clock)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"


def test_policy_version_is_a_hash_of_the_files(tmp_path, policy):
    for path in (ROOT / "policies").glob("*.polar"):
        (tmp_path / path.name).write_text(path.read_text())
    assert Policy(tmp_path).version == policy.version
    extra = tmp_path / "portal.polar"
    extra.write_text(extra.read_text() + "\n# a comment changes the version\n")
    assert Policy(tmp_path).version != policy.version


def test_a_policy_that_does_not_load_is_an_error(tmp_path):
    from service.policy import PolicyLoadError

    (tmp_path / "broken.polar").write_text("allow(actor, action, resource) if oops(;\n")
    with pytest.raises(PolicyLoadError, match="does not load"):
        Policy(tmp_path)
    with pytest.raises(PolicyLoadError, match="no .polar files"):
        Policy(tmp_path / "empty")


def test_failed_reload_keeps_the_running_policy(tmp_path, policy):
    from service.policy import PolicyLoadError

    for path in (ROOT / "policies").glob("*.polar"):
        (tmp_path / path.name).write_text(path.read_text())
    running = Policy(tmp_path)
    (tmp_path / "portal.polar").write_text("allow(x if\n")
    with pytest.raises(PolicyLoadError):
        running.reload()
    assert running.version == policy.version


def test_openapi_documents_every_route(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"} if rule.endpoint != "static"
              and not rule.endpoint.startswith("console")}  # the console's HTML pages are not the API
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented


def test_openapi_schemas_are_the_validating_models(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    authorize = schemas["AuthorizeRequest"]
    assert set(authorize["required"]) == {"portal", "actor", "action", "resource"}
    assert authorize["additionalProperties"] is False
    assert schemas["BatchRequest"]["properties"]["checks"]["maxItems"] == 100
    assert document["paths"]["/v1/authorize"]["post"]["x-scope"] == "authorize"


def test_clock_route_is_absent_unless_settable(client):
    assert client.post("/_testing/clock", json={"advance": "P1D"}).status_code == 404


@pytest.fixture
def settable(config, database, policy):
    testing_config = config.model_copy(update={"testing": config.testing.model_copy(update={"clock": "settable"})})
    app = create_app(testing_config, database=database, policy=policy)
    return app.test_client(), app.extensions["portal_authz"].clock


def test_settable_clock_moves_for_every_worker(settable, database):
    client, clock = settable
    assert isinstance(clock, SettableClock)
    moved = client.post("/_testing/clock", json={"now": "2026-03-01T08:00:00+00:00"})
    assert moved.status_code == 200 and moved.get_json()["now"] == "2026-03-01T08:00:00+00:00"
    assert client.post("/_testing/clock", json={"advance": "P16D"}).get_json()["now"] == "2026-03-17T08:00:00+00:00"
    assert client.post("/_testing/clock", json={"advance": "PT15M"}).get_json()["now"] == "2026-03-17T08:15:00+00:00"
    # Another process reads the same moment from the database.
    assert SettableClock(database).now().isoformat() == "2026-03-17T08:15:00+00:00"


def test_the_settable_clock_is_read_in_one_statement_without_an_orm_session(any_database, monkeypatch):
    """Every request of a QA server reads the clock two or three times: one statement on a read connection."""
    clock = SettableClock(any_database)
    assert clock.now().tzinfo is not None  # real time until first set
    clock.set(datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc))
    statements = []
    for engine in any_database.engines:
        event.listen(engine, "before_cursor_execute", lambda _c, _k, statement, *_: statements.append(statement))

    def no_session():
        raise AssertionError("the clock opened an ORM session")

    monkeypatch.setattr(any_database, "sessions", no_session)
    assert clock.now() == datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
    assert len(statements) == 1 and "frozen_at" in statements[0]


@pytest.mark.parametrize(
    "body",
    [{"advance": "16 days"}, {"now": "yesterday"}, {"now": "2026-03-01T08:00:00"}, {}, {"advance": "P1D", "now": "x"},
     {"advance": "P1M"}],
)
def test_settable_clock_rejects_bad_input(settable, body):
    client, _ = settable
    response = client.post("/_testing/clock", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


# --- testing.hashing: cheap argon2 on a QA server ------------------------------------------------------

def _support_staff_hash(app, database, clock, username: str) -> str:
    """Create a support account through the API and read the argon2 hash the server stored for it."""
    from sqlalchemy import select

    from service.storage.models import Account

    key = make_key(database, ("enroll",), clock.now())
    body = {"username": username, "first_name": "Help", "last_name": "Desk", "email": f"{username}@example.org",
            "password": "Qa-Server-Pass-2026!"}
    response = app.test_client().post("/v1/portals/qm/support-staff", json=body,
                                      headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.get_json()
    with database.transaction() as session:
        return session.scalar(select(Account.password_hash).where(Account.username == username))


def test_a_qa_server_with_cheap_hashing_stores_cheap_hashes(config, database, policy, clock, monkeypatch):
    from service.domain import passwords

    # The module's own hasher (the suite hashes at test cost); this process's test-cost hasher comes back after
    # the test (the app factory switches it for the process).
    monkeypatch.setattr(passwords, "_hasher", PRODUCTION_HASHER)
    monkeypatch.setattr(passwords, "DUMMY_HASH", None)  # as at import: made at the first verification
    assert "$m=65536,t=3,p=4$" in passwords.timing_equalizer()
    production = _support_staff_hash(create_app(config, database=database, policy=policy, clock=clock),
                                     database, clock, "help.prod")
    assert "$m=65536,t=3,p=4$" in production
    qa = config.model_copy(update={"testing": config.testing.model_copy(update={"clock": "settable",
                                                                                "hashing": "cheap"})})
    cheap = _support_staff_hash(create_app(qa, database=database, policy=policy, clock=clock), database, clock,
                                "help.qa")
    assert cheap.startswith("$argon2id$") and "$m=1024,t=1,p=1$" in cheap
    assert "$m=1024,t=1,p=1$" in passwords.DUMMY_HASH  # an unknown username costs what a known one does
