"""The metrics for what fails quietly: the outbox (from the database at each scrape), delivery attempts and
failures, the sweep's last run (from the database, whichever process swept), and policy reloads."""
from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.domain.delivery import SendFailed, deliver_emails, export_letters
from service.domain.sweep import sweep
from service.policy import Policy, PolicyLoadError
from service.storage.models import Notification
from tests.conftest import ROOT

BROKEN = 'allow(actor, action, resource) if requirement("x", actor, action, resource\n'
ADDED = 'requirement("metrics_test", _actor, _action, _resource) if true;\n'


def scrape(app) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one sample in Prometheus text (None when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def queue(database, channel: str, template: str, now, payload=None) -> None:
    with database.transaction() as session:
        session.add(Notification(portal_id="ahcccs", channel=channel, recipient="someone@example.org",
                                 template=template, payload=payload or {"username": "someone"}, created_at=now,
                                 status="queued"))


@pytest.fixture
def served(config, any_database, policy, clock):
    return create_app(config, database=any_database, policy=policy, clock=clock), any_database


def test_a_waiting_notification_raises_the_outbox_gauges_and_its_delivery_lowers_them(served, config, clock,
                                                                                      tmp_path):
    app, database = served
    text = scrape(app)
    assert sample(text, "portal_authz_outbox_waiting", channel="letter") is None
    assert sample(text, "portal_authz_outbox_oldest_age_seconds", channel="letter") == 0

    queue(database, "letter", "activation_letter", clock.now(), {"username": "a", "activation_code": "X"})
    clock.advance(timedelta(minutes=10))
    queue(database, "letter", "activation_letter", clock.now(), {"username": "b", "activation_code": "Y"})
    text = scrape(app)
    assert sample(text, "portal_authz_outbox_waiting", channel="letter", template="activation_letter") == 2
    assert sample(text, "portal_authz_outbox_oldest_age_seconds", channel="letter") == 600

    metrics = app.extensions["portal_authz_observe"].metrics
    letters_config = config.model_copy(update={"base_dir": tmp_path})
    assert export_letters(database, letters_config, clock.now(), metrics)[0] == 2
    text = scrape(app)
    assert sample(text, "portal_authz_outbox_waiting", channel="letter") is None
    assert sample(text, "portal_authz_outbox_oldest_age_seconds", channel="letter") == 0
    assert sample(text, "portal_authz_delivery_attempts_total", channel="letter") == 2


class Refusing:
    def __init__(self, permanent: bool):
        self.permanent = permanent

    def send(self, message) -> None:
        raise SendFailed("550 5.1.1 no such user" if self.permanent else "421 try later", self.permanent)

    def close(self) -> None:
        pass


def test_a_failing_delivery_counts_by_channel_and_reason(served, config, clock):
    app, database = served
    metrics = app.extensions["portal_authz_observe"].metrics
    queue(database, "email", "password_recovery", clock.now())
    deliver_emails(database, config, clock.now(), Refusing(permanent=False), metrics)
    text = scrape(app)
    assert sample(text, "portal_authz_delivery_attempts_total", channel="email") == 1
    assert sample(text, "portal_authz_delivery_failures_total", channel="email", reason="temporary") == 1
    assert sample(text, "portal_authz_outbox_waiting", channel="email", template="password_recovery") == 1

    clock.advance(timedelta(hours=1))  # past the backoff: tried again and refused for good
    deliver_emails(database, config, clock.now(), Refusing(permanent=True), metrics)
    text = scrape(app)
    assert sample(text, "portal_authz_delivery_attempts_total", channel="email") == 2
    assert sample(text, "portal_authz_delivery_failures_total", channel="email", reason="rejected") == 1
    assert sample(text, "portal_authz_outbox_waiting", channel="email") is None


def test_a_sweep_run_sets_its_timestamps_duration_and_changes(served, config, clock):
    app, database = served
    text = scrape(app)
    assert sample(text, "portal_authz_sweep_last_start_timestamp_seconds") == 0
    assert sample(text, "portal_authz_sweep_changes_total", change="locked") == 0

    sweep(database, config, clock.now())
    text = scrape(app)
    started = sample(text, "portal_authz_sweep_last_start_timestamp_seconds")
    assert started == clock.now().timestamp()
    assert sample(text, "portal_authz_sweep_last_finish_timestamp_seconds") >= started
    assert sample(text, "portal_authz_sweep_last_duration_seconds") > 0

    clock.advance(timedelta(days=1))
    sweep(database, config, clock.now(), portal="qm")
    assert sample(scrape(app), "portal_authz_sweep_last_start_timestamp_seconds") == clock.now().timestamp()


def test_a_broken_reload_counts_a_failure_and_keeps_the_old_version(config, database, clock, tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies, ignore=shutil.ignore_patterns("tests"))
    policy = Policy(policies)
    old = policy.version
    app = create_app(config, database=database, policy=policy, clock=clock)
    text = scrape(app)
    assert sample(text, "portal_authz_policy_info", version=old) == 1
    assert sample(text, "portal_authz_policy_reload_failures_total") == 0

    (policies / "metrics_test.polar").write_text(BROKEN)
    with pytest.raises(PolicyLoadError):
        policy.reload()
    text = scrape(app)
    assert sample(text, "portal_authz_policy_reload_failures_total") == 1
    assert sample(text, "portal_authz_policy_reloads_total") == 0
    assert sample(text, "portal_authz_policy_info", version=old) == 1
    assert [s.labels["version"] for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "portal_authz_policy_info"] == [old]

    (policies / "metrics_test.polar").write_text(ADDED)
    new = policy.reload()
    text = scrape(app)
    assert new != old
    assert sample(text, "portal_authz_policy_reloads_total") == 1
    assert sample(text, "portal_authz_policy_info", version=new) == 1
    assert sample(text, "portal_authz_policy_info", version=old) == 0
    assert sample(text, "portal_authz_policy_last_reload_timestamp_seconds") > 0
