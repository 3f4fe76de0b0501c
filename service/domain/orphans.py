"""R3, R4: an organization left with active members and no active admin is reported to support staff at once.

R3 refuses every administrative change that would leave an organization so. Three paths still can, on
purpose: the inactivity sweep (R22, R23) and the sign-in lockout (R19) act on an idle or attacked admin
account for the account's own safety, and refusing them would keep a risky account open; support
staff acting where no rule forbids it. When any of them leaves an organization with active members and
no active admin, the same transaction queues an email to every active support account of the portal
(R4: support staff designate a new admin) and writes an audit record; `GET .../organizations/{org}`
reports `no_active_admin` from then on.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from service.domain import audit
from service.domain.notify import Notifier, OutboxNotifier
from service.kernel.catalog import Status
from service.kernel.facts import ADMIN
from service.storage.models import Account, Membership, Organization

TEMPLATE = "organization_without_admin"


def _active(role_condition):
    return (select(Membership.organization_id)
            .join(Account, Account.id == Membership.account_id)
            .where(role_condition, Membership.status == Status.ACTIVE, Account.status == Status.ACTIVE))


def orphaned(session: Session, organization_ids: Iterable[int]) -> set[int]:
    """The given organizations that have an active member and no active admin."""
    ids = sorted(set(organization_ids))
    if not ids:
        return set()
    admins = _active(Membership.role == ADMIN).where(Membership.organization_id == Organization.id)
    members = _active(Membership.role != ADMIN).where(Membership.organization_id == Organization.id)
    return set(session.scalars(select(Organization.id).where(
        Organization.id.in_(ids), ~exists(admins), exists(members))))


def admin_organizations(session: Session, account_ids) -> set[int]:
    """The organizations where any of these accounts has an active admin link: what their change may orphan."""
    return set(session.scalars(select(Membership.organization_id).where(
        Membership.account_id.in_(account_ids), Membership.role == ADMIN, Membership.status == Status.ACTIVE)))


def support_staff(session: Session, portal: str) -> list[Account]:
    """The portal's active support accounts: who is told (R4)."""
    return list(session.scalars(select(Account).where(
        Account.portal_id == portal, Account.is_support.is_(True), Account.status == Status.ACTIVE)
        .order_by(Account.username_key)))


def report_new_orphans(session: Session, portal: str, organization_ids: Iterable[int], before: set[int],
                       now: datetime, cause: str, client: str | None = None,
                       notifier: Notifier | None = None, support: list[Account] | None = None) -> list[str]:
    """Notify support of every organization orphaned now that was not before; returns their keys.

    `support`: who to tell, when it must be read before the change (the sweep may disable idle support
    accounts in the same run; their people still read their mail). Default: the active ones now.
    """
    notifier = notifier or OutboxNotifier()
    session.flush()
    new = orphaned(session, organization_ids) - before
    if not new:
        return []
    keys = list(session.scalars(select(Organization.key).where(Organization.id.in_(new)).order_by(Organization.key)))
    support = support_staff(session, portal) if support is None else support
    for key in keys:
        for person in support:
            notifier.email(session, portal, person.email, TEMPLATE,
                           {"organization": key, "cause": cause, "rule": "R3, R4",
                            "what_to_do": "designate a new admin: POST .../organizations/{org}/admins"}, now)
        audit.record(session, portal=portal, now=now, action="no_active_admin", outcome="reported", client=client,
                     organization=key, reasons=["no_active_admin"],
                     detail={"cause": cause, "support_notified": [p.username for p in support]})
    return keys
