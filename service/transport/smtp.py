"""The SMTP transport: hands rendered messages to the configured server, one connection per batch.

It sits behind the domain's `Sender` interface (service/domain/delivery.py): the domain decides what is
sent and what a failure means for the notification; this module speaks SMTP and says whether the server
refused this very message for good (`SendFailed.permanent`) or anything else went wrong (retried).
"""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

from service.config import Smtp
from service.domain.delivery import SendFailed


class SmtpSender:
    """Hands messages to the configured SMTP server; one connection reused for a batch."""

    def __init__(self, smtp: Smtp):
        self._settings = smtp
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        try:
            if s.starttls:
                connection.starttls()
            if s.username:
                connection.login(s.username, s.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def send(self, message: EmailMessage) -> None:
        try:
            if self._connection is None:
                self._connection = self._connect()
            self._connection.send_message(message)
        except BaseException as exc:
            self.close()  # a refused or broken session is not reused
            if isinstance(exc, (smtplib.SMTPException, OSError)):
                raise SendFailed(describe(exc), permanent_rejection(exc) is not None) from exc
            raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def permanent_rejection(exc: BaseException) -> str | None:
    """The server's 5xx reply ("550 5.1.1 ...") if it permanently refused this message, else None.

    Only replies to the message's own MAIL FROM (SMTPSenderRefused), RCPT TO (SMTPRecipientsRefused,
    every recipient 5xx) and DATA (SMTPDataError) count. A 5xx to the session (greeting, EHLO,
    STARTTLS, AUTH) says the server or our settings are wrong, not the message, so it stays a retry
    like 4xx replies, connection errors and timeouts.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        if replies and all(500 <= code <= 599 for code, _ in replies):
            return "; ".join(_reply(code, text) for code, text in replies)
        return None
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) and 500 <= exc.smtp_code <= 599:
        return _reply(exc.smtp_code, exc.smtp_error)
    return None


def describe(exc: BaseException) -> str:
    """`last_error`: the exception's name and, for an SMTP reply, its code and text."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        detail = "; ".join(_reply(code, text) for code, text in exc.recipients.values())
    elif isinstance(exc, smtplib.SMTPResponseException):
        detail = _reply(exc.smtp_code, exc.smtp_error)
    else:
        detail = str(exc)
    return f"{type(exc).__name__}: {detail}"[:2000]
