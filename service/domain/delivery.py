"""Delivery: sends queued emails through a transport (service/transport/smtp.py) and exports letters for
the print vendor.

Emails are claimed before they are sent: a short transaction marks a batch
"sending" with a lease (`leased_until`). Two workers never claim the same row
(PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE serializes the
claims), and a worker that dies mid-batch leaves its claims to expire, after
which they are claimed again. Each outcome is written in its own transaction
right after the send, so at most the one message in flight when a worker dies
can be sent twice; it carries the same Message-ID both times, derived from the
notification id, so the receiving side can recognise the duplicate.

An attempt ends one of three ways. Delivered. A permanent rejection (a 5xx reply
to this message's MAIL FROM, RCPT TO or DATA): failed at once, never retried.
Anything else (a 4xx reply, a refused connection, a timeout, a 5xx to the
session itself: greeting, EHLO, STARTTLS, AUTH): retried with doubling backoff
until `max_attempts`. A lease that runs out without an outcome (the worker died
mid-send) also counts as an attempt, taken when the row is next claimed, so a
message that kills the worker every time is failed after `max_attempts` claims
instead of being retried forever.

Letters are written to one JSON Lines file per run (temp name, fsync, then
linked into place without overwriting) and marked "exported" in the same
transaction that selected them. Activation codes travel only in letters.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import or_, select, update

from service.config import Config
from service.storage.database import Database
from service.storage.models import Notification

log = logging.getLogger(__name__)

QUEUED, SENDING, DELIVERED, FAILED, EXPORTED = "queued", "sending", "delivered", "failed", "exported"

# The fields of a payload that are secrets. Once a notification reaches a final state
# (delivered, exported, failed for good) they are erased from the stored payload in the transaction
# that records it: the outbox then shows that they were sent, not what.
SECRET_FIELDS = frozenset({"activation_code", "temporary_password", "registration_code", "security_code",
                           "password", "code", "token"})
ERASED = "[erased]"


WITHHELD = "[withheld]"


def erase_secrets(payload: dict | None) -> dict:
    """The payload with every secret field's value replaced by "[erased]"."""
    return {key: ERASED if key in SECRET_FIELDS else value for key, value in (payload or {}).items()}


def withhold_secrets(payload: dict | None) -> dict:
    """The payload as the outbox shows it where the service delivers: a secret still waiting is "[withheld]"
    (one already erased stays "[erased]"), so a reader learns that a code was issued, never the code."""
    return {key: (value if value == ERASED else WITHHELD) if key in SECRET_FIELDS else value
            for key, value in (payload or {}).items()}


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    letters: int = 0

    def counts(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "retried": self.retried, "letters": self.letters}


@dataclass(frozen=True)
class Claimed:
    """A claimed email, detached from any session."""

    id: int
    portal_id: str
    recipient: str
    template: str
    payload: dict
    created_at: datetime
    attempts: int


class SendFailed(Exception):
    """A transport's failure to hand a message over: `error` for `last_error`, and whether the receiving
    side refused this very message for good (failed at once) or anything else happened (retried)."""

    def __init__(self, error: str, permanent: bool):
        super().__init__(error)
        self.error, self.permanent = error, permanent


class Sender(Protocol):
    """A transport (service/transport/smtp.py): hands over one rendered message or raises SendFailed."""

    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


class DeliveryObserver(Protocol):
    """Told of every attempt to hand a notification over and of every failed one (service/observe's metrics).

    Failure reasons: `rejected` (the receiving side refused this message for good), `temporary` (anything
    retried: a 4xx, a refused connection, a timeout), `lease_expired` (a worker died mid-send), `refused`
    (an activation code in an email, which is never sent), `export` (the letters file could not be written).
    """

    def delivery_attempt(self, channel: str, count: int = 1) -> None: ...

    def delivery_failure(self, channel: str, reason: str, count: int = 1) -> None: ...


class _Unobserved:
    def delivery_attempt(self, channel: str, count: int = 1) -> None:
        pass

    def delivery_failure(self, channel: str, reason: str, count: int = 1) -> None:
        pass


def message_id(notification_id: int, portal_id: str, from_address: str) -> str:
    """Stable per notification: a resend after a crash carries the same Message-ID."""
    domain = from_address.rpartition("@")[2] or "portal-authz.local"
    return f"<notification-{notification_id}.{portal_id}@{domain}>"


def render(claimed: Claimed, from_address: str) -> EmailMessage:
    """Plain text only: a subject from the template name and the payload as `key: value` lines."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = claimed.recipient
    message["Subject"] = claimed.template.replace("_", " ").capitalize()
    message["Date"] = format_datetime(claimed.created_at)
    message["Message-ID"] = message_id(claimed.id, claimed.portal_id, from_address)
    lines = [f"Portal: {claimed.portal_id}", ""]
    lines += [f"{key}: {value}" for key, value in sorted(claimed.payload.items())]
    message.set_content("\n".join(lines) + "\n")
    return message


def _due(channel: str, now: datetime):
    return (
        Notification.channel == channel,
        or_(Notification.status == QUEUED,
            (Notification.status == SENDING) & (Notification.leased_until <= now)),
        or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
    )


def claim_emails(database: Database, config: Config, now: datetime) -> list[Claimed]:
    """Mark a batch of due emails "sending" with a lease, in one short transaction."""
    return _claim(database, config, now, _Unobserved())[0]


def _claim(database: Database, config: Config, now: datetime,
           observer: DeliveryObserver) -> tuple[list[Claimed], int]:
    """Claim a batch; also returns how many rows were failed instead because their leases ran out too often.

    A row still "sending" after its lease was claimed by a worker that never recorded an outcome:
    that claim counts as a failed attempt. Once the attempts reach `max_attempts` the row is failed
    here rather than claimed (and sent) again.
    """
    settings = config.delivery
    query = select(Notification).where(*_due("email", now)).order_by(Notification.id).limit(settings.batch_size)
    if not database.is_sqlite:
        query = query.with_for_update(skip_locked=True)
    with database.transaction() as session:
        rows = session.scalars(query).all()
        fresh, expired, exhausted, claimed = [], [], [], []
        for r in rows:
            attempts = r.attempts
            if r.status == SENDING:  # the previous claim's lease ran out without an outcome
                attempts += 1
                if attempts >= settings.max_attempts:
                    exhausted.append((r.id, attempts, r.payload))
                    continue
                expired.append(r.id)
            else:
                fresh.append(r.id)
            claimed.append(Claimed(r.id, r.portal_id, r.recipient, r.template, dict(r.payload or {}),
                                   r.created_at, attempts))
        lease = now + timedelta(seconds=settings.lease_seconds)
        for ids, values in ((fresh, dict(status=SENDING, leased_until=lease)),
                            (expired, dict(status=SENDING, leased_until=lease, attempts=Notification.attempts + 1,
                                           last_error="lease expired without a result"))):
            if ids:
                session.execute(update(Notification).where(Notification.id.in_(ids)).values(**values)
                                .execution_options(synchronize_session=False))
        for notification_id, attempts, payload in exhausted:  # rare: one statement each, with its own count
            error = f"lease expired without a result; failed after {attempts} attempts"
            session.execute(update(Notification).where(Notification.id == notification_id)
                            .values(status=FAILED, leased_until=None, attempts=attempts, last_error=error,
                                    payload=erase_secrets(payload))
                            .execution_options(synchronize_session=False))
            log.warning("notification %s: %s", notification_id, error)
    expired_claims = len(expired) + len(exhausted)
    if expired_claims:  # each was an attempt whose worker died before recording it
        observer.delivery_attempt("email", expired_claims)
        observer.delivery_failure("email", "lease_expired", expired_claims)
    return claimed, len(exhausted)


def _finish(database: Database, notification_id: int, **values) -> None:
    # Only a row still under our claim is changed (status "sending"); the lease guards ownership.
    with database.transaction() as session:
        session.execute(update(Notification)
                        .where(Notification.id == notification_id, Notification.status == SENDING)
                        .values(leased_until=None, **values)
                        .execution_options(synchronize_session=False))


def _release(database: Database, ids: list[int]) -> None:
    """Give back claims that were never tried (a clean stop), so they need not wait for the lease."""
    if not ids:
        return
    with database.transaction() as session:
        session.execute(update(Notification)
                        .where(Notification.id.in_(ids), Notification.status == SENDING)
                        .values(status=QUEUED, leased_until=None)
                        .execution_options(synchronize_session=False))


def deliver_emails(database: Database, config: Config, now: datetime, sender: Sender,
                   observer: DeliveryObserver | None = None) -> DeliveryReport:
    settings = config.delivery
    observer = observer or _Unobserved()
    claimed, failed = _claim(database, config, now, observer)
    sent = retried = 0
    position = 0
    try:
        for position, item in enumerate(claimed):
            observer.delivery_attempt("email")
            if "activation_code" in item.payload:  # R10: never by email, whatever wrote the row
                _finish(database, item.id, status=FAILED, attempts=item.attempts + 1,
                        last_error="refused: an activation code is only sent by letter",
                        payload=erase_secrets(item.payload))
                observer.delivery_failure("email", "refused")
                failed += 1
                continue
            try:
                sender.send(render(item, settings.smtp.from_address))
            except Exception as exc:  # noqa: BLE001 - any other failure to hand over is retried
                attempts = item.attempts + 1
                permanent = isinstance(exc, SendFailed) and exc.permanent
                error = exc.error if isinstance(exc, SendFailed) else f"{type(exc).__name__}: {exc}"[:2000]
                observer.delivery_failure("email", "rejected" if permanent else "temporary")
                if permanent:
                    _finish(database, item.id, status=FAILED, attempts=attempts, last_error=error,
                            payload=erase_secrets(item.payload))
                    failed += 1
                    log.warning("notification %s: permanently rejected: %s", item.id, error)
                    continue
                if attempts >= settings.max_attempts:
                    _finish(database, item.id, status=FAILED, attempts=attempts, last_error=error,
                            payload=erase_secrets(item.payload))
                    failed += 1
                else:
                    delay = timedelta(seconds=settings.backoff_seconds * 2 ** (attempts - 1))
                    _finish(database, item.id, status=QUEUED, attempts=attempts, next_attempt_at=now + delay,
                            last_error=error)
                    retried += 1
                log.warning("notification %s: attempt %s failed: %s", item.id, attempts, error)
                continue
            _finish(database, item.id, status=DELIVERED, delivered_at=now, last_error=None,
                    payload=erase_secrets(item.payload))
            sent += 1
    except BaseException:
        # Stopping (Ctrl-C) or crashing mid-send: the message in flight may or may not have gone,
        # so it keeps its lease and is retried after it; the untried rest is given back now.
        try:
            _release(database, [c.id for c in claimed[position + 1:]])
        except Exception:  # noqa: BLE001 - the leases expire anyway
            log.exception("could not release unsent claims; they return after the lease")
        raise
    finally:
        sender.close()
    if sent or failed:  # secrets were erased: not even the -wal file keeps them
        database.forget_overwritten()
    return DeliveryReport(sent=sent, failed=failed, retried=retried)


def _letter_line(row: Notification) -> str:
    return json.dumps({"notification_id": row.id, "portal": row.portal_id, "template": row.template,
                       "address": row.recipient, "payload": row.payload or {},
                       "created_at": row.created_at.isoformat()}, sort_keys=True, ensure_ascii=False)


def _write_batch(directory: Path, now: datetime, lines: list[str]) -> Path:
    """Write to a temp file, fsync, then link it to a name not yet taken (never overwrites)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # letters carry codes: the service user's only
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    fd, temp = tempfile.mkstemp(prefix=".letters-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600 (activation codes)
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        n = 1
        while True:
            final = directory / f"letters-{stamp}-{n}.jsonl"
            try:
                os.link(temp, final)  # atomic and fails if the name exists
                break
            except FileExistsError:
                n += 1
    finally:
        os.unlink(temp)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def export_letters(database: Database, config: Config, now: datetime,
                   observer: DeliveryObserver | None = None) -> tuple[int, Path | None]:
    """One mailing batch file per run; the rows are marked "exported" only once the file is in place.

    If the commit fails after the file is written, the next run exports those letters again;
    each line carries `notification_id` so the vendor can drop the repeat.
    """
    query = (select(Notification).where(Notification.channel == "letter", Notification.status == QUEUED)
             .order_by(Notification.id))
    if not database.is_sqlite:
        query = query.with_for_update(skip_locked=True)
    with database.transaction() as session:
        rows = session.scalars(query).all()
        if not rows:
            return 0, None
        observer = observer or _Unobserved()
        observer.delivery_attempt("letter", len(rows))
        try:
            path = _write_batch(config.letters_path, now, [_letter_line(row) for row in rows])
        except OSError:
            observer.delivery_failure("letter", "export", len(rows))
            raise
        for row in rows:  # the file has the secrets now; the database keeps only that they were sent
            row.status, row.delivered_at, row.attempts = EXPORTED, now, row.attempts + 1
            row.payload = erase_secrets(row.payload)
    database.forget_overwritten()  # not even the -wal file keeps the erased secrets
    return len(rows), path


def deliver_batch(database: Database, config: Config, now: datetime, sender: Sender,
                  observer: DeliveryObserver | None = None) -> DeliveryReport:
    """Export due letters, then send one batch of due emails."""
    letters, _ = export_letters(database, config, now, observer)
    report = deliver_emails(database, config, now, sender, observer)
    return DeliveryReport(sent=report.sent, failed=report.failed, retried=report.retried, letters=letters)
