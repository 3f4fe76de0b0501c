"""R27: every administrative change and every decision about it is recorded in the same transaction."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from service.storage.models import AuditRecord


def record(session: Session, *, portal: str, now: datetime, action: str, outcome: str,
           actor: str | None = None, client: str | None = None, target: str | None = None,
           organization: str | None = None, reasons: tuple[str, ...] | list[str] = (),
           detail: dict | None = None, comment: str | None = None) -> None:
    session.add(AuditRecord(portal_id=portal, occurred_at=now, actor=actor, client=client, action=action,
                            target=target, organization=organization, outcome=outcome,
                            reasons=list(reasons), detail=detail or {}, comment=comment))
