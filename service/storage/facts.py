"""Queries that load the facts a decision needs, as immutable values."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, selectinload

from service.config import PortalProfile
from service.domain.facts import ADMIN, AccountFacts, ActorFacts, MembershipFacts, OrganizationFacts
from service.storage.models import Account, Membership, Organization


def username_key(username: str) -> str:
    """R6: usernames are unique per portal ignoring case."""
    return username.strip().casefold()


def find_account(session: Session, portal: str, username: str) -> Account | None:
    return session.scalar(
        select(Account)
        .where(Account.portal_id == portal, Account.username_key == username_key(username))
        .options(selectinload(Account.memberships).selectinload(Membership.grants),
                 selectinload(Account.memberships).selectinload(Membership.organization))
    )


def find_organization(session: Session, portal: str, key: str) -> Organization | None:
    return session.scalar(select(Organization).where(Organization.portal_id == portal, Organization.key == key))


def password_current(account: Account, profile: PortalProfile, now: datetime) -> bool:
    """R18: a password is current until `expiry_days` after it was set."""
    if account.password_hash is None or account.password_changed_at is None:
        return False
    days = profile.password.expiry_days
    return days is None or now < account.password_changed_at + timedelta(days=days)


def actor_facts(account: Account | None, username: str, profile: PortalProfile, now: datetime) -> ActorFacts:
    if account is None:
        return ActorFacts.unknown(username)
    return ActorFacts(
        username=account.username,
        exists=True,
        status=account.status,
        password_current=password_current(account, profile, now),
        support=account.is_support,
        memberships=tuple(
            MembershipFacts(
                organization=m.organization.key,
                role=m.role,
                active=m.status == "active",
                permissions=tuple(sorted(g.permission for g in m.grants)),
            )
            for m in account.memberships
        ),
    )


def organization_facts(session: Session, organization: Organization, profile: PortalProfile) -> OrganizationFacts:
    """The organization with its head-count of active admins and members (R3), in one query."""
    active = and_(Membership.status == "active", Account.status == "active")
    admins, members = session.execute(
        select(
            func.coalesce(func.sum(case((and_(active, Membership.role == ADMIN), 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(active, Membership.role != ADMIN), 1), else_=0)), 0),
        )
        .select_from(Membership)
        .join(Account, Account.id == Membership.account_id)
        .where(Membership.organization_id == organization.id)
    ).one()
    return OrganizationFacts(
        key=organization.key,
        catalog=profile.catalog,
        delegate_permission=profile.delegate_permission,
        active_admins=int(admins),
        active_members=int(members),
    )


def target_facts(account: Account, membership: Membership, organization: OrganizationFacts,
                 permission: str | None = None) -> AccountFacts:
    """An account as it stands in one organization; a removed link reads as removed."""
    status = "removed" if membership.status == "removed" else account.status
    return AccountFacts(account.username, organization, membership.role, status, permission)
