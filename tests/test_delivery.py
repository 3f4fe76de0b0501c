"""The delivery worker against a real SMTP server on loopback (aiosmtpd)."""
from __future__ import annotations

import json
import smtplib
import threading
import time
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from service.domain.delivery import claim_emails, deliver_batch, message_id
from service.transport.smtp import SmtpSender, permanent_rejection
from service.domain.notify import OutboxNotifier
from service.storage.models import Notification
from tests.fixtures.postgres import free_port
from tests.fixtures.smtp import FROM, Collector, configured, start_smtp

def queue_emails(database, now, count: int, portal: str = "ahcccs") -> list[int]:
    with database.transaction() as session:
        for i in range(count):
            OutboxNotifier().email(session, portal, f"user{i}@example.test", "password_recovery",
                                   {"username": f"user{i}", "code": f"C{i:04d}"}, now)
    return all_ids(database)


def all_ids(database) -> list[int]:
    with database.sessions() as session:
        return list(session.scalars(select(Notification.id).order_by(Notification.id)))


def rows(database) -> dict[int, Notification]:
    with database.sessions() as session:
        return {row.id: row for row in session.scalars(select(Notification))}


def expected_ids(ids, portal="ahcccs") -> set[str]:
    return {message_id(i, portal, FROM) for i in ids}


def test_queued_emails_are_delivered_as_plain_text_and_marked(database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port)
    ids = queue_emails(database, clock.now(), 3)
    report = deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp))
    assert (report.sent, report.failed, report.retried, report.letters) == (3, 0, 0, 0)
    assert sorted(handler.ids()) == sorted(expected_ids(ids))
    first = next(m for m in handler.messages if m["To"] == "user0@example.test")
    assert first.get_content_type() == "text/plain" and not first.is_multipart()
    assert first["From"] == FROM and first["Subject"] == "Password recovery"
    assert "code: C0000" in first.get_payload(decode=True).decode()
    for row in rows(database).values():
        assert row.status == "delivered" and row.delivered_at == clock.now()
        assert row.leased_until is None and row.attempts == 0
    # nothing is due any more: a second run sends nothing
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).sent == 0
    assert len(handler.messages) == 3


def test_a_4xx_reply_is_retried_with_doubling_backoff_then_failed(database, config, clock, tmp_path):
    handler = Collector(refuse="451 4.3.0 mailbox busy, try again later")
    controller = start_smtp(handler)
    try:
        cfg = configured(config, tmp_path, controller.port, max_attempts=3, backoff_seconds=60)
        [nid] = queue_emails(database, clock.now(), 1)
        start = clock.now()

        report = deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp))
        assert (report.sent, report.retried, report.failed) == (0, 1, 0)
        row = rows(database)[nid]
        assert row.status == "queued" and row.attempts == 1
        assert row.next_attempt_at == start + timedelta(seconds=60)
        assert row.last_error == "SMTPRecipientsRefused: 451 4.3.0 mailbox busy, try again later"

        clock.advance(timedelta(seconds=59))  # not yet due
        assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).retried == 0
        assert rows(database)[nid].attempts == 1

        clock.advance(timedelta(seconds=1))
        assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).retried == 1
        row = rows(database)[nid]
        assert row.attempts == 2 and row.next_attempt_at == clock.now() + timedelta(seconds=120)

        clock.advance(timedelta(seconds=119))
        assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).failed == 0
        clock.advance(timedelta(seconds=1))
        report = deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp))
        assert (report.sent, report.retried, report.failed) == (0, 0, 1)
        row = rows(database)[nid]
        assert row.status == "failed" and row.attempts == 3 and row.delivered_at is None
        assert "451" in row.last_error

        clock.advance(timedelta(days=1))  # a failed email is never tried again
        assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).counts() == {
            "sent": 0, "failed": 0, "retried": 0, "letters": 0}
        assert handler.messages == []
    finally:
        controller.stop()


def test_a_closed_port_is_a_retry_not_a_loss(database, config, clock, tmp_path, smtp):
    handler, port = smtp
    closed = configured(config, tmp_path, free_port())
    [nid] = queue_emails(database, clock.now(), 1)
    assert deliver_batch(database, closed, clock.now(), SmtpSender(closed.delivery.smtp)).retried == 1
    assert rows(database)[nid].status == "queued"
    clock.advance(timedelta(seconds=60))
    working = configured(config, tmp_path, port)
    assert deliver_batch(database, working, clock.now(), SmtpSender(working.delivery.smtp)).sent == 1
    row = rows(database)[nid]
    assert row.status == "delivered" and row.attempts == 1
    assert handler.ids() == [message_id(nid, "ahcccs", FROM)]


def test_a_5xx_rejection_fails_that_message_at_once_and_the_batch_goes_on(database, config, clock, tmp_path):
    handler = Collector(rcpt_replies={"user1@example.test": "550 5.1.1 <user1@example.test>: no such user"},
                        data_replies={"code: C0002": "554 5.7.1 message content rejected"})
    controller = start_smtp(handler)
    try:
        cfg = configured(config, tmp_path, controller.port, max_attempts=5, backoff_seconds=60)
        ids = queue_emails(database, clock.now(), 4)
        report = deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp))
        assert (report.sent, report.retried, report.failed) == (2, 0, 2)
        state = rows(database)
        refused, rejected = state[ids[1]], state[ids[2]]
        assert refused.status == "failed" and refused.attempts == 1 and refused.next_attempt_at is None
        assert refused.last_error == "SMTPRecipientsRefused: 550 5.1.1 <user1@example.test>: no such user"
        assert rejected.status == "failed" and rejected.attempts == 1
        assert rejected.last_error == "SMTPDataError: 554 5.7.1 message content rejected"
        assert refused.leased_until is None and rejected.leased_until is None
        assert {state[ids[0]].status, state[ids[3]].status} == {"delivered"}
        assert sorted(handler.ids()) == sorted(expected_ids([ids[0], ids[3]]))

        clock.advance(timedelta(days=1))  # never tried again
        assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).counts() == {
            "sent": 0, "failed": 0, "retried": 0, "letters": 0}
        assert rows(database)[ids[1]].attempts == 1 and len(handler.messages) == 2
    finally:
        controller.stop()


@pytest.mark.parametrize("exc, permanent", [
    (smtplib.SMTPRecipientsRefused({"a@x.test": (550, b"5.1.1 no such user")}), "550 5.1.1 no such user"),
    (smtplib.SMTPRecipientsRefused({"a@x.test": (553, b"bad"), "b@x.test": (554, b"worse")}), "553 bad; 554 worse"),
    (smtplib.SMTPRecipientsRefused({"a@x.test": (550, b"no"), "b@x.test": (450, b"later")}), None),
    (smtplib.SMTPRecipientsRefused({"a@x.test": (421, b"closing")}), None),
    (smtplib.SMTPSenderRefused(552, b"5.3.4 message too big", FROM), "552 5.3.4 message too big"),
    (smtplib.SMTPSenderRefused(451, b"4.3.0 later", FROM), None),
    (smtplib.SMTPDataError(554, b"5.7.1 rejected"), "554 5.7.1 rejected"),
    (smtplib.SMTPDataError(452, b"4.3.1 full"), None),
    # 5xx to the session, not to the message: the server or our settings are wrong, so retry
    (smtplib.SMTPConnectError(554, b"no service"), None),
    (smtplib.SMTPHeloError(501, b"bad helo"), None),
    (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), None),
    (smtplib.SMTPResponseException(502, b"STARTTLS not implemented"), None),
    (smtplib.SMTPServerDisconnected("gone"), None),
    (ConnectionRefusedError(111, "refused"), None),
    (TimeoutError("timed out"), None),
])
def test_which_failures_are_permanent(exc, permanent):
    assert permanent_rejection(exc) == permanent


class CrashingSender(SmtpSender):
    """Hands the first message to the server, then the worker dies before recording it."""

    def __init__(self, smtp, crash_after: int):
        super().__init__(smtp)
        self.crash_after, self.sent = crash_after, 0

    def send(self, message):
        super().send(message)
        self.sent += 1
        if self.sent == self.crash_after:
            raise KeyboardInterrupt


def test_a_crash_mid_batch_loses_nothing_and_the_resend_has_the_same_message_id(
        database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port, lease_seconds=300)
    ids = queue_emails(database, clock.now(), 4)
    with pytest.raises(KeyboardInterrupt):
        deliver_batch(database, cfg, clock.now(), CrashingSender(cfg.delivery.smtp, crash_after=1))
    assert len(handler.messages) == 1
    state = rows(database)
    assert state[ids[0]].status == "sending"  # in flight: outcome unknown, kept under its lease
    assert all(state[i].status == "queued" for i in ids[1:])  # untried: given back at once

    report = deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp))
    assert report.sent == 3
    clock.advance(timedelta(seconds=299))
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).sent == 0
    clock.advance(timedelta(seconds=1))
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).sent == 1

    received = handler.ids()
    assert set(received) == expected_ids(ids)  # nothing lost
    assert len(received) == len(ids) + 1
    assert [m for m in received if received.count(m) > 1] == [message_id(ids[0], "ahcccs", FROM)] * 2
    assert all(row.status == "delivered" for row in rows(database).values())


def test_a_killed_workers_claims_come_back_after_the_lease(database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port, lease_seconds=300)
    ids = queue_emails(database, clock.now(), 2)
    assert [c.id for c in claim_emails(database, cfg, clock.now())] == ids  # then the process is killed
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).sent == 0
    clock.advance(timedelta(seconds=300))
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).sent == 2
    assert sorted(handler.ids()) == sorted(expected_ids(ids))
    for row in rows(database).values():  # the expired lease counted as one attempt; the send cleared the error
        assert row.status == "delivered" and row.attempts == 1 and row.last_error is None


def test_a_lease_that_expires_max_attempts_times_fails_the_message(database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port, max_attempts=3, lease_seconds=300)
    [nid] = queue_emails(database, clock.now(), 1)
    for attempt in range(3):  # a worker claims it and dies before recording anything, three times
        [claimed] = claim_emails(database, cfg, clock.now())
        assert claimed.id == nid and claimed.attempts == attempt
        row = rows(database)[nid]
        assert row.status == "sending" and row.attempts == attempt
        assert row.last_error == (None if attempt == 0 else "lease expired without a result")
        clock.advance(timedelta(seconds=299))
        assert claim_emails(database, cfg, clock.now()) == []  # still under the lease
        clock.advance(timedelta(seconds=1))

    report = deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp))
    assert (report.sent, report.failed, report.retried) == (0, 1, 0)
    row = rows(database)[nid]
    assert row.status == "failed" and row.attempts == 3 and row.leased_until is None
    assert row.last_error == "lease expired without a result; failed after 3 attempts"
    clock.advance(timedelta(days=1))
    assert claim_emails(database, cfg, clock.now()) == []
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).counts() == {
        "sent": 0, "failed": 0, "retried": 0, "letters": 0}
    assert handler.messages == []


class PoisonSender(SmtpSender):
    """The worker dies (as from a segfault or the OOM killer) whenever it tries to send one recipient."""

    def __init__(self, smtp, poison: str):
        super().__init__(smtp)
        self.poison = poison

    def send(self, message):
        if message["To"] == self.poison:
            raise SystemExit("worker died")
        super().send(message)


def test_a_poison_message_stops_being_claimed_and_the_others_still_go(database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port, max_attempts=2, lease_seconds=300)
    poison, other = queue_emails(database, clock.now(), 2)
    for _ in range(2):
        with pytest.raises(SystemExit):
            deliver_batch(database, cfg, clock.now(), PoisonSender(cfg.delivery.smtp, "user0@example.test"))
        clock.advance(timedelta(seconds=300))
    assert rows(database)[other].status == "queued"  # untried, given back each time
    report = deliver_batch(database, cfg, clock.now(), PoisonSender(cfg.delivery.smtp, "user0@example.test"))
    assert (report.sent, report.failed) == (1, 1)
    state = rows(database)
    assert state[poison].status == "failed" and state[poison].attempts == 2
    assert state[other].status == "delivered" and state[other].attempts == 0
    assert handler.ids() == [message_id(other, "ahcccs", FROM)]


class SlowSender(SmtpSender):
    def send(self, message):
        time.sleep(0.01)
        super().send(message)


def test_concurrent_workers_never_send_the_same_email_twice(any_database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port, batch_size=5)
    ids = queue_emails(any_database, clock.now(), 40)
    barrier = threading.Barrier(4)
    reports, errors = [], []

    def worker():
        try:
            barrier.wait()
            while True:
                report = deliver_batch(any_database, cfg, clock.now(), SlowSender(cfg.delivery.smtp))
                reports.append(report)
                if report.sent == 0:
                    return
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    received = handler.ids()
    assert sorted(received) == sorted(expected_ids(ids))  # each exactly once
    assert sum(r.sent for r in reports) == 40
    assert sum(1 for r in reports if r.sent) > 1  # the work really was shared
    assert all(row.status == "delivered" for row in rows(any_database).values())


def test_activation_codes_never_leave_by_email(database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port)
    with database.transaction() as session:  # written behind the notifier's back
        session.add(Notification(portal_id="ahcccs", channel="email", recipient="a@example.test",
                                 template="activation_letter", payload={"activation_code": "SECRET"},
                                 created_at=clock.now(), status="queued"))
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).failed == 1
    assert handler.messages == []
    assert rows(database).popitem()[1].status == "failed"


def test_letters_are_exported_to_one_jsonl_batch_file_and_marked(database, config, clock, smtp, tmp_path):
    handler, port = smtp
    cfg = configured(config, tmp_path, port, letters_dir="out/letters")
    with database.transaction() as session:
        notifier = OutboxNotifier()
        notifier.letter(session, "ahcccs", "1 Main St, Phoenix, AZ 85001", "activation_letter",
                        {"organization": "ORG1", "activation_code": "ABCD-1234"}, clock.now())
        notifier.letter(session, "qm", "2 Side St, Tucson, AZ 85701", "activation_letter",
                        {"organization": "ORG2", "activation_code": "WXYZ-9876"}, clock.now())
    queue_emails(database, clock.now(), 1)

    report = deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp))
    assert (report.letters, report.sent) == (2, 1)
    assert len(handler.messages) == 1 and "ABCD" not in handler.messages[0].as_string()
    folder = tmp_path / "out" / "letters"
    files = list(folder.iterdir())
    assert [f.name for f in files] == ["letters-20260105T090000Z-1.jsonl"]  # no temp file left behind
    assert files[0].stat().st_mode & 0o077 == 0  # activation codes: owner-only
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [(l["portal"], l["address"], l["payload"]["activation_code"]) for l in lines] == [
        ("ahcccs", "1 Main St, Phoenix, AZ 85001", "ABCD-1234"), ("qm", "2 Side St, Tucson, AZ 85701", "WXYZ-9876")]
    letter_rows = [r for r in rows(database).values() if r.channel == "letter"]
    assert {r.status for r in letter_rows} == {"exported"}
    assert {l["notification_id"] for l in lines} == {r.id for r in letter_rows}

    # a second run in the same second exports nothing; a new letter goes to a new file, never overwriting
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).letters == 0
    with database.transaction() as session:
        OutboxNotifier().letter(session, "ahcccs", "3 Elm St", "activation_letter", {"activation_code": "Q"},
                                clock.now())
    assert deliver_batch(database, cfg, clock.now(), SmtpSender(cfg.delivery.smtp)).letters == 1
    assert sorted(f.name for f in folder.iterdir()) == ["letters-20260105T090000Z-1.jsonl",
                                                        "letters-20260105T090000Z-2.jsonl"]


def test_delivery_config_defaults_and_strictness(config):
    from service.config import ConfigError, parse_config

    assert config.delivery.max_attempts == 5 and config.delivery.smtp.port == 25
    assert config.letters_path == (config.base_dir / "letters").resolve()
    data = yaml.safe_load((config.base_dir / "config.yaml").read_text())
    data["delivery"] = {"smtp": {"hots": "x"}}
    with pytest.raises(ConfigError, match="delivery.smtp.hots: unknown key"):
        parse_config(data)


def cli_with_smtp(cli_config, port: int, tmp_path):
    data = yaml.safe_load(cli_config.read_text())
    data["delivery"] = {"smtp": {"host": "127.0.0.1", "port": port}, "letters_dir": str(tmp_path / "letters")}
    cli_config.write_text(yaml.safe_dump(data))
    from service.cli import prepare_database
    from service.clock import SystemClock
    from service.config import load_config

    database = prepare_database(load_config(cli_config))
    ids = queue_emails(database, SystemClock().now(), 2)
    return database, ids


def test_cli_deliver_once(cli_config, cli, smtp, tmp_path):
    handler, port = smtp
    database, ids = cli_with_smtp(cli_config, port, tmp_path)
    code, out, err = cli("deliver", "--once", "--config", str(cli_config))
    assert code == 0, err
    assert out.strip() == "sent=2 failed=0 retried=0 letters=0"
    assert sorted(handler.ids()) == sorted(expected_ids(ids))
    assert {row.status for row in rows(database).values()} == {"delivered"}
    database.dispose()


def test_cli_deliver_loop_stops_cleanly_on_ctrl_c(cli_config, cli, smtp, tmp_path, monkeypatch):
    handler, port = smtp
    database, ids = cli_with_smtp(cli_config, port, tmp_path)
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    code, out, err = cli("deliver", "--interval", "7", "--config", str(cli_config))
    assert code == 0 and naps == [7.0, 7.0] and "stopped" in err
    assert out.splitlines() == ["sent=2 failed=0 retried=0 letters=0", "sent=0 failed=0 retried=0 letters=0"]
    assert len(handler.messages) == 2
    database.dispose()
