"""The notifier: queues emails and letters in the outbox, inside the caller's transaction.

Nothing is sent from a request; a delivery worker reads the outbox. So a change
and the notice of it are committed together or not at all.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.storage.models import Notification


class Notifier(Protocol):
    def email(self, session: Session, portal: str, to: str, template: str, payload: dict, now: datetime) -> None: ...

    def letter(self, session: Session, portal: str, to: str, template: str, payload: dict, now: datetime) -> None: ...


class OutboxNotifier:
    def email(self, session, portal, to, template, payload, now):
        if "activation_code" in payload:
            raise ValueError("an activation code is never sent by email (R10), only by letter")
        session.add(Notification(portal_id=portal, channel="email", recipient=to, template=template,
                                 payload=payload, created_at=now, status="queued"))

    def letter(self, session, portal, to, template, payload, now):
        session.add(Notification(portal_id=portal, channel="letter", recipient=to, template=template,
                                 payload=payload, created_at=now, status="queued"))


def queued(session: Session, portal: str, *, to: str | None, limit: int) -> list[Notification]:
    """The portal's notifications, oldest first; `to` filters by recipient."""
    statement = select(Notification).where(Notification.portal_id == portal)
    if to:
        statement = statement.where(Notification.recipient == to)
    return list(session.scalars(statement.order_by(Notification.id).limit(limit)))
