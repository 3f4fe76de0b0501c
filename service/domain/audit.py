"""R27: every administrative change and every decision about it is recorded in the same transaction."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.storage.models import AuditRecord


def record(session: Session, *, portal: str, now: datetime, action: str, outcome: str,
           actor: str | None = None, client: str | None = None, target: str | None = None,
           organization: str | None = None, reasons: tuple[str, ...] | list[str] = (),
           detail: dict | None = None, comment: str | None = None) -> None:
    session.add(AuditRecord(portal_id=portal, occurred_at=now, actor=actor, client=client, action=action,
                            target=target, organization=organization, outcome=outcome,
                            reasons=list(reasons), detail=detail or {}, comment=comment))


def page(session: Session, portal: str, *, since: datetime | None, organization: str | None, account: str | None,
         before: int | None, limit: int) -> tuple[list[AuditRecord], int | None]:
    """R27: recorded changes and decisions, newest first, and the `before` id of the next page (None at the end)."""
    statement = select(AuditRecord).where(AuditRecord.portal_id == portal)
    if since is not None:
        statement = statement.where(AuditRecord.occurred_at >= since)
    if organization:
        statement = statement.where(AuditRecord.organization == organization)
    if account:
        statement = statement.where(or_(AuditRecord.target == account, AuditRecord.actor == account))
    if before:
        statement = statement.where(AuditRecord.id < before)
    rows = list(session.scalars(statement.order_by(AuditRecord.id.desc()).limit(limit + 1)))
    return rows[:limit], rows[limit - 1].id if len(rows) > limit else None
