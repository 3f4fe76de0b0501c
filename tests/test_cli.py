"""The portal-authz command line: clients add, check (same answer as /v1/authorize), policy test, serve errors."""
from __future__ import annotations

import pytest
import yaml

from service.domain import clients
from tests.conftest import ROOT


def test_clients_add_prints_a_key_once_and_stores_only_a_digest(cli_config, cli):
    from service.clock import SystemClock
    from service.config import load_config
    from service.storage.database import Database
    from service.storage.models import ClientKey

    code, out, err = cli("clients", "add", "claims-gateway", "--scopes", "authorize,manage",
                         "--config", str(cli_config))
    assert code == 0
    key = out.strip()
    assert key.startswith("pak_") and "shown only once" in err
    database = Database(load_config(cli_config).database_url)
    with database.sessions() as session:
        stored = session.query(ClientKey).one()
        assert stored.name == "claims-gateway" and stored.scopes == "authorize,manage"
        assert key.split("_", 2)[2] not in stored.secret_digest
        assert clients.authenticate(session, key, SystemClock().now()).name == "claims-gateway"
    database.dispose()


def test_clients_add_refuses_unknown_scopes(cli_config, cli):
    code, _, err = cli("clients", "add", "x", "--scopes", "authorize,admin", "--config", str(cli_config))
    assert code == 2 and "subset of authorize, manage, enroll" in err


def test_bad_config_stops_with_a_message(tmp_path, cli):
    path = tmp_path / "config.yaml"
    path.write_text("portals:\n  ahcccs: {name: 5}\n")
    code, _, err = cli("check", "--portal", "ahcccs", "--actor", "a", "--action", "claims",
                       "--resource", "organization:X", "--config", str(path))
    assert code == 2 and "portals.ahcccs.roles: required key is missing" in err


QUESTIONS = [
    ("sub", "claims_submission_and_status", "organization:PIDSL-1", None),
    ("sub", "manage_referrals", "organization:PIDSL-1", None),
    ("sub", "remove", "account:primary", None),
    ("primary", "grant", "account:sub", "manage_referrals"),
    ("ghost", "view", "organization:PIDSL-1", None),
]


@pytest.mark.parametrize(("actor", "action", "resource", "permission"), QUESTIONS)
def test_check_gives_the_same_answer_as_the_api(seeded, cli_config, cli, actor, action, resource, permission):
    from service.app import create_app

    config, database, key = seeded
    argv = ["check", "--portal", "masshealth", "--actor", actor, "--action", action, "--resource", resource,
            "--config", str(cli_config)]
    if permission:
        argv += ["--permission", permission]
    code, out, _ = cli(*argv)

    kind, ident = resource.split(":")
    body = {"portal": "masshealth", "actor": actor, "action": action, "resource": {"type": kind, "id": ident}}
    if permission:
        body["context"] = {"permission": permission}
    answer = create_app(config, database=database).test_client().post(
        "/v1/authorize", json=body, headers={"Authorization": f"Bearer {key}"}).get_json()

    assert code == (0 if answer["allowed"] else 1)
    assert out.splitlines()[0].startswith("allowed" if answer["allowed"] else "denied")
    printed = [line.strip().split(":")[0] for line in out.splitlines()[1:]]
    assert printed == [r["code"] for r in answer["reasons"]]


def test_check_unknown_organization_is_an_error(seeded, cli_config, cli):
    code, _, err = cli("check", "--portal", "masshealth", "--actor", "sub", "--action", "view",
                       "--resource", "organization:NOPE", "--config", str(cli_config))
    assert code == 2 and "no organization 'NOPE'" in err


def test_check_resource_syntax(cli_config, cli):
    code, _, err = cli("check", "--portal", "masshealth", "--actor", "sub", "--action", "view",
                       "--resource", "PIDSL-1", "--config", str(cli_config))
    assert code == 2 and "organization:<key> or account:<username>" in err


def test_policy_test_passes_on_the_shipped_policy(cli_config, cli):
    code, out, _ = cli("policy", "test", "--config", str(cli_config))
    assert code == 0, out
    assert " 0 failed" in out


def test_policy_test_fails_on_a_broken_policy(tmp_path, cli_config, cli):
    broken = tmp_path / "policies"
    (broken / "tests").mkdir(parents=True)
    for path in (ROOT / "policies").glob("*.polar"):
        text = path.read_text().replace('m.role = "admin";', 'm.role = "member";')
        (broken / path.name).write_text(text)
    for path in (ROOT / "policies" / "tests").glob("*.yaml"):
        (broken / "tests" / path.name).write_text(path.read_text())
    data = yaml.safe_load(cli_config.read_text())
    data["policy_dir"] = str(broken)
    cli_config.write_text(yaml.safe_dump(data))
    code, out, _ = cli("policy", "test", "--config", str(cli_config))
    assert code == 1
    assert "FAIL" in out and "expected allow" in out.lower().replace("expected: allow", "expected allow")


def test_serve_refuses_a_policy_that_does_not_load(tmp_path, cli_config, cli):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.polar").write_text("allow(\n")
    data = yaml.safe_load(cli_config.read_text())
    data["policy_dir"] = str(tmp_path / "bad")
    cli_config.write_text(yaml.safe_dump(data))
    code, _, err = cli("serve", "--config", str(cli_config), "--port", "1")
    assert code == 2 and "does not load" in err


# --- Every argument is checked as it is read: one line on stderr, exit 2, no traceback -----------------------

BAD_ARGUMENTS = {
    "duration out of range": (("clients", "rotate", "gateway", "--grace", "999999999d"), "longer than 3650 days"),
    "duration too large for a number": (("clients", "add", "gateway", "--scopes", "authorize", "--expires",
                                         "99999999999999999999w"), "longer than 3650 days"),
    "duration not a duration": (("clients", "rotate", "gateway", "--expires", "soon"), "is not a duration"),
    "negative duration": (("clients", "rotate", "gateway", "--grace=-5d"), "is not a duration"),
    "client name": (("clients", "add", "bad name", "--scopes", "authorize"), "client names are 1-100"),
    "client name to revoke": (("clients", "revoke", "x" * 101), "client names are 1-100"),
    "scopes": (("clients", "add", "gateway", "--scopes", "authorize,root"), "subset of authorize, manage, enroll"),
    "no scopes": (("clients", "add", "gateway", "--scopes", ","), "subset of authorize, manage, enroll"),
    "key id": (("clients", "revoke", "gateway", "--key-id", "zz"), "16 hex digits"),
    "port too large": (("serve", "--port", "99999"), "port must be 1-65535"),
    "port negative": (("serve", "--port", "-1"), "port must be 1-65535"),
    "port not a number": (("serve", "--port", "eighty"), "is not a whole number"),
    "reload port": (("policy", "reload", "--port", "0"), "port must be 1-65535"),
    "workers": (("serve", "--workers", "0"), "workers must be 1-256"),
    "threads": (("serve", "--threads", "-3"), "threads must be 1-1024"),
    "diff jobs": (("policy", "diff", "policies", "--jobs", "0"), "jobs must be 1-256"),
    "host": (("serve", "--host", "a b"), "without spaces"),
    "interval negative": (("deliver", "--interval", "-1"), "seconds must be more than 0"),
    "interval not finite": (("deliver", "--interval", "nan"), "seconds must be more than 0"),
    "portal id": (("sweep", "--portal", "NOPE!"), "a portal id is"),
    "unknown command": (("launch",), "invalid choice"),
    "missing subcommand": (("clients",), "required"),
    "missing option": (("clients", "add", "gateway"), "required: --scopes"),
}


@pytest.mark.parametrize("argv, says", list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
def test_a_bad_argument_is_one_line_and_exit_2(cli_config, cli, argv, says):
    code, out, err = cli(*argv, "--config", str(cli_config))
    assert code == 2, (code, out, err)
    assert err.startswith("portal-authz: ") and err.count("\n") == 1 and says in err, err
    assert "Traceback" not in err and out == ""


def test_durations_within_range_are_taken(cli_config, cli):
    code, out, err = cli("clients", "add", "gateway", "--scopes", "authorize", "--expires", "3650d",
                         "--config", str(cli_config))
    assert code == 0 and out.startswith("pak_"), err
    code, out, err = cli("clients", "rotate", "gateway", "--grace", "P2W", "--config", str(cli_config))
    assert code == 0 and out.startswith("pak_"), err
