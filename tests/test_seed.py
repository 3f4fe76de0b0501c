"""`portal-authz seed FILE`: a test server's organizations, accounts, grants and client keys from YAML, all or
nothing, and never into a database that already holds data unless asked."""
from __future__ import annotations

import json

import pytest
import yaml
from argon2 import PasswordHasher
from sqlalchemy import func, select

from service.domain import passwords
from service.domain.seed import SeedError, parse, seed
from service.storage.models import Account, AuditRecord, ClientKey, Grant, Membership, Organization
from tests.conftest import START

DOCUMENT = {
    "portal": "ahcccs",
    "organizations": [{"key": "PROV-0042", "name": "Sunrise Family Clinic"}, {"key": "PROV-0043"}],
    "accounts": [
        {"username": "sam.staff", "password": "Correct#Horse7Battery",
         "memberships": [{"organization": "PROV-0042", "permissions": ["claims"]}]},
        {"username": "ada.admin", "memberships": [{"organization": "PROV-0042", "role": "admin"}]},
        {"username": "gus.gone", "status": "disabled", "memberships": [{"organization": "PROV-0043"}]},
    ],
    "clients": [{"name": "caller", "scopes": ["authorize", "manage"]}],
}


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Seeded passwords hashed at the test suite's cost; this process's hasher comes back afterwards."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(**passwords.CHEAP))


def counts(database) -> dict[str, int]:
    with database.sessions() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (Organization, Account, Membership, Grant, ClientKey)}


def audit_records(database) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditRecord))


def test_seed_writes_the_whole_document(any_database, config):
    with any_database.transaction() as session:
        result = seed(session, config, parse(DOCUMENT), START, actor="ops")
    assert (result.organizations, result.accounts, result.memberships, result.grants) == (2, 3, 3, 1)
    assert list(result.client_keys) == ["caller"] and result.client_keys["caller"].startswith("pak_")
    with any_database.sessions() as session:
        sam = session.scalar(select(Account).where(Account.username == "sam.staff"))
        assert passwords.verify_secret(sam.password_hash, "Correct#Horse7Battery")
        ada = session.scalar(select(Account).where(Account.username == "ada.admin"))
        assert not passwords.verify_secret(ada.password_hash, "")  # no password given: none signs in
        assert session.scalar(select(Account.status).where(Account.username == "gus.gone")) == "disabled"
    assert counts(any_database) == {"Organization": 2, "Account": 3, "Membership": 3, "Grant": 1, "ClientKey": 1}
    with any_database.sessions() as session:  # who seeded what, and the key as `clients add` records one
        records = {(r.portal_id, r.action): r for r in session.scalars(select(AuditRecord))}
    seeded = records[("ahcccs", "seed")]
    assert seeded.actor == "ops" and seeded.detail == {
        "via": "cli", "organizations": ["PROV-0042", "PROV-0043"], "accounts": ["sam.staff", "ada.admin", "gus.gone"]}
    assert records[("*", "client_key_add")].target == "caller"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["accounts"][0]["memberships"][0].update(permissions=["teleport"]),
     "accounts.0 ('sam.staff').memberships.0: permission(s) ['teleport'] not in the catalog of portal 'ahcccs'"),
    (lambda d: d.update(portal="nowhere"), "organizations.0: unknown portal 'nowhere'"),
    (lambda d: d["accounts"][1]["memberships"][0].update(organization="PROV-9999"),
     "accounts.1 ('ada.admin').memberships.0: no organization 'PROV-9999' in portal 'ahcccs'"),
    (lambda d: d["accounts"].append({"username": "SAM.staff"}), "accounts.3 ('SAM.staff'): username already exists"),
    (lambda d: d["clients"].append({"name": "caller", "scopes": ["authorize"]}),
     "clients.1: client 'caller' already exists"),
    (lambda d: d["clients"][0].update(scopes=["root"]), "clients.0: scopes must be a comma-separated subset"),
])
def test_a_wrong_entry_is_named_and_nothing_is_written(any_database, config, change, message):
    document = json.loads(json.dumps(DOCUMENT))
    change(document)
    with pytest.raises(SeedError) as raised:
        with any_database.transaction() as session:
            seed(session, config, parse(document), START, actor="ops")
    assert message in str(raised.value)
    assert counts(any_database) == {"Organization": 0, "Account": 0, "Membership": 0, "Grant": 0, "ClientKey": 0}
    assert audit_records(any_database) == 0


@pytest.mark.parametrize("document, message", [
    ({"accounts": [{"username": "x", "status": "sleeping"}]}, "accounts.0.status"),
    ({"accounts": [{"username": "x", "memberships": [{"organization": "A", "role": "owner"}]}]},
     "accounts.0.memberships.0.role"),
    ({"organisations": []}, "organisations: Extra inputs are not permitted"),
    (["not", "a", "mapping"], "invalid seed document"),
])
def test_a_document_of_the_wrong_shape_is_refused_by_field(document, message):
    with pytest.raises(SeedError, match="invalid seed document") as raised:
        parse(document)
    assert message in str(raised.value)


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(DOCUMENT))
    return path


def test_the_command_seeds_an_empty_database_prints_the_keys_and_the_decision_follows(cli_config, cli, seed_file):
    code, out, err = cli("--config", str(cli_config), "seed", str(seed_file))
    assert code == 0, err
    printed = json.loads(out)
    assert printed["accounts"] == 3 and printed["client_keys"]["caller"].startswith("pak_")
    assert "shown only once" in err
    assert cli("--config", str(cli_config), "check", "--portal", "ahcccs", "--actor", "sam.staff", "--action",
               "claims", "--resource", "organization:PROV-0042")[0] == 0
    assert cli("--config", str(cli_config), "check", "--portal", "ahcccs", "--actor", "gus.gone", "--action",
               "view", "--resource", "organization:PROV-0043")[0] == 1


def test_the_command_refuses_a_database_that_holds_data_unless_forced(cli_config, cli, seed_file, tmp_path):
    assert cli("--config", str(cli_config), "clients", "add", "existing", "--scopes", "authorize")[0] == 0
    code, out, err = cli("--config", str(cli_config), "seed", str(seed_file))
    assert (code, out) == (1, "")
    assert "already holds organizations or client keys; nothing written (--force adds to them)" in err
    code, out, err = cli("--config", str(cli_config), "seed", "--force", str(seed_file))
    assert code == 0, err
    assert json.loads(out)["organizations"] == 2
    code, out, err = cli("--config", str(cli_config), "seed", "--force", str(seed_file))
    assert code == 1 and "organization 'PROV-0042' already exists in portal 'ahcccs'" in err


@pytest.mark.parametrize("text, message", [
    ("portal: [unclosed", "is not valid YAML"),
    ("accounts: [{username: x, colour: blue}]", "accounts.0.colour: Extra inputs are not permitted"),
])
def test_the_command_names_a_bad_file_in_one_message(cli_config, cli, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, out, err = cli("--config", str(cli_config), "seed", str(path))
    assert code == 2 and out == "" and message in err and "Traceback" not in err
    assert cli("--config", str(cli_config), "seed", str(tmp_path / "missing.yaml"))[2].startswith(
        "portal-authz: seed: cannot read")
