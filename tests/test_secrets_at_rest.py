"""Secrets that do not linger: erased once delivered, files for the service's user only."""
from __future__ import annotations

import json
import os
import stat
from datetime import timedelta

from sqlalchemy import select

from service.domain.delivery import ERASED, deliver_batch, export_letters
from service.observe.decision_log import DecisionLog
from service.storage.database import Database
from service.storage.models import Notification
from tests.fixtures.http import ADDRESS
from tests.fixtures.smtp import configured


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_delivered_and_exported_secrets_are_erased_and_the_outbox_shows_only_that_they_were_sent(
        api, database, config, clock, smtp, tmp_path):  # noqa: F811
    """R10, R12, R20: activation letters, registration and recovery emails keep no code after delivery."""
    handler, port = smtp
    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    p.register("mara", address_id="CORR")
    h = api("ahw")
    h.call("POST", "/organizations", {"key": "TIN-1", "name": "Practice"}, expect=201)
    h.call("POST", "/organizations/TIN-1/admins", {"username": "kim", "first_name": "Kim", "last_name": "Lee",
                                                  "email": "kim@example.org", "password": "temporary pass 1",
                                                  "accepted_terms": True}, expect=201)
    kim = h.first_sign_in("kim", "temporary pass 1")
    h.register("uma", org="TIN-1", password="long enough pass")
    h.act(kim, "uma", "enable")
    h.act(kim, "uma", "send-registration-email")
    with database.sessions() as session:
        code = session.scalar(select(Notification.payload).where(Notification.template == "complete_registration"))
    h.call("POST", "/registrations/confirm", {"username": "uma", "code": code["registration_code"]}, expect=200)
    h.act(kim, "uma", "send-password-recovery")
    with database.sessions() as session:
        before = {n.template: dict(n.payload) for n in session.scalars(select(Notification))}
    secrets = [before["activation_letter"]["activation_code"], before["activation_letter"]["temporary_password"],
               before["complete_registration"]["registration_code"], before["password_recovery"]["security_code"]]

    cfg = configured(config, tmp_path, port)
    report = deliver_batch(database, cfg, clock.now() + timedelta(seconds=1), _sender(cfg))
    assert report.letters == 1 and report.sent >= 2
    mailed = "".join(m.as_string() for m in handler.messages)
    assert secrets[2] in mailed and secrets[3] in mailed  # they were delivered ...
    letters = next((tmp_path / cfg.delivery.letters_dir).iterdir()).read_text()
    assert secrets[0] in letters and secrets[1] in letters

    with database.sessions() as session:  # ... and the database no longer holds them
        stored = json.dumps([n.payload for n in session.scalars(select(Notification))])
    assert not any(secret in stored for secret in secrets)
    for portal, template, fields in (("ahcccs", "activation_letter", ("activation_code", "temporary_password")),
                                     ("ahw", "complete_registration", ("registration_code",)),
                                     ("ahw", "password_recovery", ("security_code",))):
        box = (p if portal == "ahcccs" else h).call("GET", "/outbox", expect=200).get_json()["notifications"]
        shown = next(n for n in box if n["template"] == template)
        assert shown["status"] in ("delivered", "exported")
        assert {f: shown["payload"][f] for f in fields} == {f: ERASED for f in fields}
        assert shown["payload"]["username"] in ("mara", "uma")  # what is not secret stays

    # Nor do the database's files: the write-ahead log's older frames held every one of them.
    files = sorted(tmp_path.glob("test.db*"))
    assert "test.db" in [f.name for f in files]
    on_disk = b"".join(f.read_bytes() for f in files)
    assert [secret for secret in secrets if secret.encode() in on_disk] == []


def _sender(cfg):
    from service.transport.smtp import SmtpSender

    return SmtpSender(cfg.delivery.smtp)


def test_a_queued_letter_keeps_its_code_until_exported(database, config, clock, tmp_path):
    from service.domain.notify import OutboxNotifier

    with database.transaction() as session:
        OutboxNotifier().letter(session, "ahcccs", "1 Main St", "activation_letter",
                                {"username": "mara", "activation_code": "ABCD-1234"}, clock.now())
    with database.sessions() as session:
        assert session.scalar(select(Notification.payload))["activation_code"] == "ABCD-1234"
    cfg = config.model_copy(update={"base_dir": tmp_path})
    export_letters(database, cfg, clock.now())
    with database.sessions() as session:
        assert session.scalar(select(Notification.payload)) == {"username": "mara", "activation_code": ERASED}
    folder = tmp_path / cfg.delivery.letters_dir
    assert mode(folder) == 0o700 and [mode(f) for f in folder.iterdir()] == [0o600]


def test_the_embedded_database_and_its_wal_and_shm_are_the_service_users_only(tmp_path, config):
    (tmp_path / "var" / "data").mkdir(parents=True)
    url = f"sqlite:///{tmp_path / 'var' / 'data' / 'portal-authz.db'}"
    database = Database(url)
    database.upgrade_schema()
    with database.transaction() as session:  # a write: the -wal and -shm files exist now
        from service.domain.setup import sync_portals

        sync_portals(session, config)
    folder = tmp_path / "var" / "data"
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["portal-authz.db", "portal-authz.db-shm", "portal-authz.db-wal"]
    assert [mode(f) for f in files] == [0o600, 0o600, 0o600]
    database.dispose()


def test_the_decision_log_is_the_service_users_only(tmp_path):
    from service.config import DecisionLog as Settings

    path = tmp_path / "logs" / "decisions.jsonl"
    log = DecisionLog(Settings(mode="all"), path)
    log.write([{"allowed": True}])
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
