"""The outbox hands an `enroll` key no secret unless the calling service delivers (delivery.by_caller): by
default a pending activation letter shows that a code was issued, never the code, which stays stored for
`portal-authz deliver` to print."""
from __future__ import annotations

import pytest

from service.app import create_app
from service.config import ConfigError, parse_config
from service.domain.delivery import WITHHELD
from tests.conftest import make_key
from tests.fixtures.http import ADDRESS, Portal, outbox

SECRETS = ("activation_code", "temporary_password")


def with_settings(config, by_caller=None, clock="system"):
    return config.model_copy(update={
        "delivery": config.delivery.model_copy(update={"by_caller": by_caller}),
        "testing": config.testing.model_copy(update={"clock": clock})})


def letter_shown(config, database, policy, clock) -> dict:
    app = create_app(config, database=database, policy=policy, clock=clock)
    p = Portal(app.test_client(), make_key(database, ("manage", "enroll"), clock.now()), "ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    p.register("mara", address_id="CORR")
    box = p.call("GET", "/outbox", expect=200).get_json()["notifications"]
    return next(n for n in box if n["template"] == "activation_letter")["payload"]


def test_by_default_the_outbox_withholds_the_secrets_and_keeps_them_for_delivery(config, database, policy, clock):
    shown = letter_shown(with_settings(config), database, policy, clock)
    assert {field: shown[field] for field in SECRETS} == {field: WITHHELD for field in SECRETS}
    assert shown["username"] == "mara"  # what is not secret stays
    [stored] = [n.payload for n in outbox(database) if n.template == "activation_letter"]
    assert all(stored[field] not in ("", WITHHELD) for field in SECRETS)  # still there for the letter


@pytest.mark.parametrize(("by_caller", "clock_setting"), [(True, "system"), (None, "settable")],
                         ids=["by_caller", "settable-clock"])
def test_where_the_caller_delivers_the_outbox_shows_the_secrets(config, database, policy, clock, by_caller,
                                                                clock_setting):
    shown = letter_shown(with_settings(config, by_caller, clock_setting), database, policy, clock)
    [stored] = [n.payload for n in outbox(database) if n.template == "activation_letter"]
    assert {field: shown[field] for field in SECRETS} == {field: stored[field] for field in SECRETS}


def test_by_caller_false_withholds_even_on_a_settable_clock(config, database, policy, clock):
    shown = letter_shown(with_settings(config, False, "settable"), database, policy, clock)
    assert shown["activation_code"] == WITHHELD


def test_the_caller_and_serve_cannot_both_deliver(config):
    import yaml

    from tests.conftest import ROOT

    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["delivery"] = {"by_caller": True, "in_serve": True}
    with pytest.raises(ConfigError, match="by_caller"):
        parse_config(data, ROOT)


def test_serve_deliver_is_refused_where_the_caller_delivers(cli, tmp_path):
    from tests.fixtures.postgres import free_port
    from tests.fixtures.servers import server_config

    config = server_config(tmp_path, delivery={"by_caller": True})
    code, _, err = cli("serve", "--deliver", "--port", str(free_port()), "--config", str(config))
    assert code == 2 and "delivery.by_caller is true" in err
    assert not list(tmp_path.glob("*.db"))  # refused before the database was touched
