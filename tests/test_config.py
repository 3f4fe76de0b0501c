"""config.yaml validation: a bad value stops the service with the key, the value and what was expected."""
from __future__ import annotations

import copy

import pytest
import yaml

from service.config import DATABASE_URL_ENV, ConfigError, load_config, parse_config
from tests.conftest import ROOT

SHIPPED = yaml.safe_load((ROOT / "config.yaml").read_text())


def shipped() -> dict:
    return copy.deepcopy(SHIPPED)


def test_shipped_config_has_the_four_profiles(config):
    assert set(config.portals) == {"ahcccs", "qm", "ahw", "masshealth"}


def test_seed_numbers_live_in_the_config(config):
    """R10, R17-R20, R22, R23: the seeds' numbers, per profile."""
    ahcccs, qm, ahw = config.portals["ahcccs"], config.portals["qm"], config.portals["ahw"]
    assert ahcccs.activation_code_days == 15
    assert ahcccs.password.expiry_days == 45 and qm.password.expiry_days == 45
    assert qm.password.min_length == 9 and qm.password.special_characters == "@!#=$%^&'()*?_~"
    assert qm.lockout.max_failures == 3 and qm.lockout.window_minutes == 15
    assert qm.recovery.code_minutes == 30
    assert (qm.inactivity.lock_days, qm.inactivity.delete_days, qm.inactivity.warning_days) == (60, 120, 5)
    assert ahw.inactivity.disable_days == 90
    assert ahw.comment_max_length == 200


def test_catalogs_and_delegation(config):
    """R14 catalogs and R15 delegating functions."""
    assert config.portals["ahcccs"].catalog == ("claims", "prior_authorizations", "eligibility")
    assert "manage_account" in config.portals["ahw"].catalog
    assert config.portals["ahw"].delegate_permission == "manage_account"
    assert config.portals["masshealth"].delegate_permission == "manage_subordinate_accounts"
    assert config.portals["ahcccs"].delegate_permission is None
    assert config.portals["qm"].business_types == ["Provider", "HealthPlan", "TRBHA", "IOC", "ExternalAgency"]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda c: c["portals"]["qm"]["lockout"].update(max_failures=0),
         ["portals.qm.lockout.max_failures", "greater than or equal to 1", "found 0"]),
        (lambda c: c["portals"]["ahw"]["password"].update(expiry_days="soon"),
         ["portals.ahw.password.expiry_days", "'soon'"]),
        (lambda c: c["portals"]["ahcccs"].update(registraton="x"),
         ["portals.ahcccs.registraton", "unknown key"]),
        (lambda c: c["portals"]["ahcccs"].pop("permissions"),
         ["portals.ahcccs.permissions", "missing"]),
        (lambda c: c["portals"]["ahw"].update(delegate_permission="manage_everything"),
         ["portals.ahw", "manage_everything", "not in this portal's permissions"]),
        (lambda c: c["portals"]["ahcccs"].update(registration="walk_in"),
         ["portals.ahcccs.registration", "'walk_in'", "first_registrant_is_admin"]),
        (lambda c: c["portals"]["ahcccs"]["permissions"].update({"Claims!": "x"}),
         ["portals.ahcccs.permissions", "snake_case"]),
        (lambda c: c["testing"].update(clock="sometimes"),
         ["testing.clock", "'sometimes'", "settable"]),
        (lambda c: c["testing"].update(hashing="cheap"),
         ["testing", "hashing: cheap is allowed only together with clock: settable"]),
        (lambda c: c["testing"].update(clock="settable", hashing="fast"), ["testing.hashing", "'fast'", "cheap"]),
        (lambda c: c.update(portals={}), ["portals", "at least 1"]),
        (lambda c: c["demo"].update(portal="nowhere"), ["demo.portal", "nowhere"]),
    ],
)
def test_bad_values_are_named(mutate, fragments):
    data = shipped()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["a", "list"])


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("portals: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config\.yaml is not valid YAML"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "absent.yaml")


def test_database_url_default_is_sqlite_beside_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(shipped()))
    config = load_config(path)
    assert config.database_url == f"sqlite:///{tmp_path / 'portal-authz.db'}"
    assert config.policy_path == tmp_path / "policies"


def test_environment_overrides_database_url(tmp_path, monkeypatch):
    data = shipped()
    data["database"]["url"] = "sqlite:///from-file.db"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert load_config(path).database_url == "sqlite:///from-file.db"
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://db.example/portal")
    assert load_config(path).database_url == "postgresql://db.example/portal"


# ---- secrets from the environment or a file, never necessarily in config.yaml

SECRET_VARIABLES = ("PORTAL_AUTHZ_SMTP_PASSWORD", "PORTAL_AUTHZ_SMTP_USERNAME", DATABASE_URL_ENV)


@pytest.fixture
def clean_environment(monkeypatch):
    for variable in SECRET_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable + "_FILE", raising=False)
    return monkeypatch


def test_the_smtp_credentials_come_from_the_environment(clean_environment):
    clean_environment.setenv("PORTAL_AUTHZ_SMTP_USERNAME", "mailer")
    clean_environment.setenv("PORTAL_AUTHZ_SMTP_PASSWORD", "s3cret pass")
    smtp = load_config(ROOT / "config.yaml").delivery.smtp
    assert (smtp.username, smtp.password) == ("mailer", "s3cret pass")


def test_each_secret_comes_from_a_file_named_by_its_variable_with_FILE(clean_environment, tmp_path):
    (tmp_path / "smtp").write_text("from a file\n")
    (tmp_path / "url").write_text(f"sqlite:///{tmp_path / 'mounted.db'}\n")
    clean_environment.setenv("PORTAL_AUTHZ_SMTP_PASSWORD_FILE", str(tmp_path / "smtp"))
    clean_environment.setenv(DATABASE_URL_ENV + "_FILE", str(tmp_path / "url"))
    config = load_config(ROOT / "config.yaml")
    assert config.delivery.smtp.password == "from a file"
    assert config.database_url == f"sqlite:///{tmp_path / 'mounted.db'}"


def test_a_secret_set_twice_or_unreadable_stops_the_service_without_showing_it(clean_environment, tmp_path):
    clean_environment.setenv("PORTAL_AUTHZ_SMTP_PASSWORD", "shown-nowhere")
    clean_environment.setenv("PORTAL_AUTHZ_SMTP_PASSWORD_FILE", str(tmp_path / "smtp"))
    with pytest.raises(ConfigError, match="PORTAL_AUTHZ_SMTP_PASSWORD and PORTAL_AUTHZ_SMTP_PASSWORD_FILE") as twice:
        load_config(ROOT / "config.yaml")
    assert "shown-nowhere" not in str(twice.value)
    clean_environment.delenv("PORTAL_AUTHZ_SMTP_PASSWORD")
    with pytest.raises(ConfigError, match=r"PORTAL_AUTHZ_SMTP_PASSWORD_FILE: cannot read .*smtp"):
        load_config(ROOT / "config.yaml")
    (tmp_path / "smtp").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(ROOT / "config.yaml")
