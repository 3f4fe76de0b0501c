"""`portal-authz clients list/revoke/rotate/add --expires`, run as the real command,
then the keys presented to the service; audit of every key operation, counts in /metrics, last use.

The command measures time on the system clock (the config's clock is `system`); the app under test
gets a FixedClock started at the same moment, moved to judge expiry and grace periods.
"""
from __future__ import annotations

import json
import os
import pwd
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from service.app import create_app
from service.clock import FixedClock
from service.config import load_config
from service.domain import clients
from service.storage.database import Database
from service.storage.models import AuditRecord, ClientKey
from tests.fixtures.world import World

OS_USER = pwd.getpwuid(os.geteuid()).pw_name
QUESTION = {"portal": "ahcccs", "actor": "nobody", "action": "claims",
            "resource": {"type": "organization", "id": "ORG-1"}}


@pytest.fixture
def service(cli_config):
    """The app over the command's database, its FixedClock a little after the commands ran."""
    from service.cli import prepare_database

    config = load_config(cli_config)
    database = prepare_database(config)
    clock = FixedClock(datetime.now(timezone.utc) + timedelta(seconds=5))
    with database.transaction() as session:
        World(session, "ahcccs", clock.now()).organization("ORG-1")
    app = create_app(config, database=database, clock=clock)
    yield app, database, clock
    database.dispose()


def run(cli, cli_config, *argv):
    return cli("clients", *argv, "--config", str(cli_config))


def add(cli, cli_config, name, scopes="authorize", *extra) -> str:
    code, out, err = run(cli, cli_config, "add", name, "--scopes", scopes, *extra)
    assert code == 0, err
    return out.strip()


def status(app, key) -> int:
    return app.test_client().post("/v1/authorize", json=QUESTION, headers={"Authorization": f"Bearer {key}"}).status_code


def refusal(app, key) -> dict:
    response = app.test_client().post("/v1/authorize", json=QUESTION, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    return response.get_json()


def listed(cli, cli_config) -> dict[str, list[dict]]:
    code, out, _ = run(cli, cli_config, "list", "--json")
    assert code == 0
    by_name: dict[str, list[dict]] = {}
    for entry in json.loads(out):
        by_name.setdefault(entry["name"], []).append(entry)
    return by_name


def test_list_shows_name_scopes_dates_and_state_never_the_secret(cli, cli_config, service):
    app, _, _ = service
    claims = add(cli, cli_config, "claims-gateway", "authorize,manage")
    enrol = add(cli, cli_config, "enrolment", "enroll", "--expires", "30d")
    assert status(app, claims) == 200  # a first use, recorded

    code, table, _ = run(cli, cli_config, "list")
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "KEY", "ID", "SCOPES", "STATE", "CREATED", "LAST", "USED", "EXPIRES"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["claims-gateway", claims.split("_")[1], "authorize,manage", "active"],
        ["enrolment", enrol.split("_")[1], "enroll", "active"]]
    entries = listed(cli, cli_config)
    gateway, = entries["claims-gateway"]
    assert set(gateway) == {"name", "key_id", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at",
                            "state"}
    assert gateway["scopes"] == ["authorize", "manage"] and gateway["expires_at"] is None
    assert gateway["last_used_at"] is not None and entries["enrolment"][0]["last_used_at"] is None
    expires = datetime.fromisoformat(entries["enrolment"][0]["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.fromisoformat(entries["enrolment"][0]["created_at"]) \
        <= timedelta(days=30)
    _, out_json, _ = run(cli, cli_config, "list", "--json")
    for key in (claims, enrol):
        secret = key.split("_", 2)[2]
        assert secret not in table and secret not in out_json
        assert clients._digest(secret) not in table + out_json


def test_revoke_refuses_the_very_next_request_like_an_unknown_key(cli, cli_config, service):
    app, _, _ = service
    key = add(cli, cli_config, "leaky")
    other = add(cli, cli_config, "other")
    assert status(app, key) == 200
    unknown = refusal(app, "pak_0000000000000000_" + "x" * 43)

    code, out, _ = run(cli, cli_config, "revoke", "leaky")
    assert code == 0 and key.split("_")[1] in out
    assert refusal(app, key) == unknown  # revoked looks exactly like unknown: 401 unauthenticated
    assert unknown["code"] == "unauthenticated"
    assert status(app, other) == 200
    assert listed(cli, cli_config)["leaky"][0]["state"] == "revoked"
    assert run(cli, cli_config, "revoke", "leaky")[0] == 0  # again: nothing left to revoke, still the client


def test_revoke_of_an_unknown_client_exits_1(cli, cli_config):
    add(cli, cli_config, "known")
    code, _, err = run(cli, cli_config, "revoke", "unknown")
    assert code == 1 and "no client 'unknown'" in err
    code, _, err = run(cli, cli_config, "revoke", "known", "--key-id", "feedfacefeedface")
    assert code == 1 and "key id" in err


def test_revoke_one_key_id_leaves_the_others(cli, cli_config, service):
    app, _, _ = service
    old = add(cli, cli_config, "svc")
    code, out, _ = run(cli, cli_config, "rotate", "svc", "--grace", "1h")
    new = out.strip()
    assert code == 0 and status(app, old) == status(app, new) == 200
    assert run(cli, cli_config, "revoke", "svc", "--key-id", old.split("_")[1])[0] == 0
    assert status(app, old) == 401 and status(app, new) == 200


def test_rotate_with_a_grace_period_then_only_the_new_key(cli, cli_config, service):
    app, _, clock = service
    old = add(cli, cli_config, "claims-gateway", "authorize,manage")
    code, out, err = run(cli, cli_config, "rotate", "claims-gateway", "--grace", "15m")
    assert code == 0
    new = out.strip()
    assert new.startswith("pak_") and new != old and "shown only once" in err
    entries = listed(cli, cli_config)["claims-gateway"]
    assert [e["scopes"] for e in entries] == [["authorize", "manage"]] * 2
    assert [e["state"] for e in entries] == ["active", "active"]
    assert status(app, old) == status(app, new) == 200
    clock.advance(timedelta(minutes=14))
    assert status(app, old) == status(app, new) == 200
    clock.advance(timedelta(minutes=1))
    assert status(app, old) == 401 and status(app, new) == 200


def test_rotate_without_grace_stops_the_old_key_at_once(cli, cli_config, service):
    app, _, _ = service
    old = add(cli, cli_config, "svc")
    code, out, err = run(cli, cli_config, "rotate", "svc")
    assert code == 0 and "stop now" in err
    assert status(app, old) == 401 and status(app, out.strip()) == 200
    assert [e["state"] for e in listed(cli, cli_config)["svc"]] == ["revoked", "active"]


def test_rotate_keeps_the_life_the_old_key_was_given_unless_told_otherwise(cli, cli_config, service):
    app, _, clock = service
    old = add(cli, cli_config, "svc", "authorize", "--expires", "90d")
    code, out, err = run(cli, cli_config, "rotate", "svc", "--grace", "1h")
    assert code == 0 and ", expires " in err
    new = out.strip()
    entries = listed(cli, cli_config)["svc"]
    lives = [datetime.fromisoformat(e["expires_at"]) - datetime.fromisoformat(e["created_at"]) for e in entries]
    assert lives[1] == timedelta(days=90)
    clock.advance(timedelta(days=89))
    assert status(app, old) == 401 and status(app, new) == 200
    clock.advance(timedelta(days=1, minutes=10))
    assert status(app, new) == 401

    code, out, _ = run(cli, cli_config, "rotate", "svc", "--expires", "7d")  # told otherwise
    assert code == 0
    newest = listed(cli, cli_config)["svc"][-1]
    assert datetime.fromisoformat(newest["expires_at"]) - datetime.fromisoformat(newest["created_at"]) \
        == timedelta(days=7)


def test_rotate_needs_a_working_key(cli, cli_config):
    assert run(cli, cli_config, "rotate", "ghost")[0] == 1
    add(cli, cli_config, "gone")
    run(cli, cli_config, "revoke", "gone")
    code, _, err = run(cli, cli_config, "rotate", "gone")
    assert code == 1 and "no working key" in err


def test_an_expired_key_is_refused_with_the_same_401(cli, cli_config, service):
    app, _, clock = service
    key = add(cli, cli_config, "short-lived", "authorize", "--expires", "1h")
    unknown = refusal(app, "pak_0000000000000000_" + "x" * 43)
    clock.advance(timedelta(minutes=59))
    assert status(app, key) == 200
    clock.advance(timedelta(minutes=1))
    assert refusal(app, key) == unknown


def test_a_name_with_a_working_key_is_not_added_twice(cli, cli_config):
    add(cli, cli_config, "svc")
    code, _, err = run(cli, cli_config, "add", "svc", "--scopes", "enroll")
    assert code == 1 and "clients rotate svc" in err
    run(cli, cli_config, "revoke", "svc")
    add(cli, cli_config, "svc", "enroll")  # a revoked client may be added again


@pytest.mark.parametrize("name", ["", " svc", "svc gateway", "svc\n", "x" * 101])
def test_client_names_are_short_words(cli, cli_config, name):
    code, _, err = run(cli, cli_config, "add", name, "--scopes", "authorize")
    assert code == 2 and "client names are" in err


@pytest.mark.parametrize("argv", [("add", "x", "--scopes", "authorize", "--expires", "soon"),
                                  ("add", "x", "--scopes", "authorize", "--expires", "0"),
                                  ("rotate", "x", "--grace", "-5m")])
def test_bad_durations_exit_2(cli, cli_config, argv):
    code, _, err = run(cli, cli_config, *argv)
    assert code == 2 and "--" in err


def test_durations():
    parse = clients.parse_duration
    assert [parse(t) for t in ("90s", "15m", "24h", "7d", "2w", "0", "PT1H", "P30D")] == [
        timedelta(seconds=90), timedelta(minutes=15), timedelta(hours=24), timedelta(days=7), timedelta(weeks=2),
        timedelta(0), timedelta(hours=1), timedelta(days=30)]
    for bad in ("", "5", "1y", "P1M", "-5m", "PT"):
        with pytest.raises(ValueError):
            parse(bad)


def test_every_key_operation_is_audited_with_the_operating_system_user(cli, cli_config):
    key = add(cli, cli_config, "svc", "authorize", "--expires", "2w")
    run(cli, cli_config, "rotate", "svc", "--grace", "1h")
    run(cli, cli_config, "revoke", "svc")
    database = Database(load_config(cli_config).database_url)
    with database.sessions() as session:
        records = session.scalars(select(AuditRecord).order_by(AuditRecord.id)).all()
        key_ids = session.scalars(select(ClientKey.key_id).order_by(ClientKey.id)).all()
    database.dispose()
    assert [(r.portal_id, r.action, r.actor, r.target, r.outcome) for r in records] == [
        ("*", "client_key_add", OS_USER, "svc", "done"),
        ("*", "client_key_rotate", OS_USER, "svc", "done"),
        ("*", "client_key_revoke", OS_USER, "svc", "done")]
    add_detail, rotate_detail, revoke_detail = (r.detail for r in records)
    assert add_detail["key_id"] == key.split("_")[1] == key_ids[0] and add_detail["scopes"] == ["authorize"]
    assert rotate_detail["old_key_ids"] == [key_ids[0]] and rotate_detail["key_id"] == key_ids[1]
    assert rotate_detail["grace_seconds"] == 3600
    assert sorted(revoke_detail["key_ids"]) == sorted(key_ids)
    assert all(r.detail["via"] == "cli" for r in records)
    text = json.dumps([r.detail for r in records])
    assert key.split("_", 2)[2] not in text


def _sample(metrics_text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", metrics_text, re.MULTILINE)
    assert match, (name, labels, metrics_text)
    return float(match.group(1))


def test_metrics_count_key_operations_states_and_refusals(cli, cli_config, service):
    app, _, clock = service
    key = add(cli, cli_config, "a")
    add(cli, cli_config, "b", "authorize", "--expires", "1h")
    run(cli, cli_config, "rotate", "a", "--grace", "1h")
    run(cli, cli_config, "revoke", "a", "--key-id", key.split("_")[1])
    client = app.test_client()
    client.post("/v1/authorize", json=QUESTION, headers={"Authorization": f"Bearer {key}"})  # revoked
    client.post("/v1/authorize", json=QUESTION, headers={"Authorization": "Bearer nonsense"})
    client.post("/v1/authorize", json=QUESTION)
    clock.advance(timedelta(hours=2))  # b expires
    text = client.get("/metrics").get_data(as_text=True)
    assert _sample(text, "portal_authz_client_key_operations_total", 'operation="add"') == 2
    assert _sample(text, "portal_authz_client_key_operations_total", 'operation="rotate"') == 1
    assert _sample(text, "portal_authz_client_key_operations_total", 'operation="revoke"') == 1
    assert _sample(text, "portal_authz_client_keys", 'state="active"') == 1
    assert _sample(text, "portal_authz_client_keys", 'state="expired"') == 1
    assert _sample(text, "portal_authz_client_keys", 'state="revoked"') == 1
    for reason in ("revoked", "malformed", "missing"):
        assert _sample(text, "portal_authz_client_refusals_total", f'reason="{reason}"') == 1


def test_last_use_is_written_at_most_once_a_minute_not_per_request(cli, cli_config, service):
    app, database, clock = service
    key = add(cli, cli_config, "busy")
    writes = []

    @event.listens_for(database.engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, *_):
        if statement.lstrip().upper().startswith("UPDATE CLIENT_KEYS"):
            writes.append(statement)

    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}

    def burst(n=20):
        for _ in range(n):
            assert client.post("/v1/authorize", json=QUESTION, headers=headers).status_code == 200

    def last_used():
        with database.sessions() as session:
            return session.scalar(select(ClientKey.last_used_at).where(ClientKey.name == "busy"))

    burst()
    first = clock.now()
    assert len(writes) == 1 and last_used() == first
    clock.advance(timedelta(seconds=59))
    burst()
    assert len(writes) == 1 and last_used() == first
    clock.advance(timedelta(seconds=1))
    burst()
    assert len(writes) == 2 and last_used() == clock.now()
    assert listed(cli, cli_config)["busy"][0]["last_used_at"] == clock.now().isoformat(timespec="seconds")
