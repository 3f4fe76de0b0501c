"""Organizations, support staff and designated admins (scope `enroll`; R3, R4, R12, R13)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.config import PortalProfile
from service.domain import audit
from service.domain.errors import Conflict, Invalid, NotFound
from service.domain.people import new_account
from service.kernel.catalog import Status, Role
from service.policy import Policy
from service.storage.facts import find_account, find_organization
from service.storage.models import Account, Address, Membership, Organization


@dataclass(frozen=True)
class AddressIn:
    id: str
    line1: str
    city: str
    state: str
    zip: str


def create_organization(session: Session, profile: PortalProfile, portal: str, *, key: str, name: str,
                        addresses: list[AddressIn], business_type: str | None, region: str | None,
                        now: datetime, client: str | None) -> Organization:
    if business_type is not None and profile.business_types is not None and business_type not in profile.business_types:
        raise Invalid("unknown business type", [{"field": "business_type", "code": "invalid",
                                                 "message": f"one of {', '.join(profile.business_types)}"}])
    if len({a.id for a in addresses}) != len(addresses):
        raise Invalid("address ids repeat", [{"field": "addresses", "code": "duplicate", "message": "ids must be unique"}])
    if find_organization(session, portal, key) is not None:
        raise Conflict(f"organization {key!r} already exists in portal {portal!r}", "organization_exists")
    org = Organization(portal_id=portal, key=key, name=name, business_type=business_type, region=region,
                       created_at=now,
                       addresses=[Address(address_key=a.id, line1=a.line1, city=a.city, state=a.state, zip=a.zip)
                                  for a in addresses])
    session.add(org)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"organization {key!r} already exists in portal {portal!r}", "organization_exists") from None
    audit.record(session, portal=portal, now=now, action="create_organization", outcome="done", client=client,
                 organization=key)
    return org


def admins_of(session: Session, org: Organization) -> list[Account]:
    """The organization's admins who count as admins: an active link and an active account.

    A first registrant who never activated (pending_activation), or a disabled or locked admin, is not
    listed to registrants (R11) and receives no approval notice.
    """
    return list(session.scalars(
        select(Account).join(Membership, Membership.account_id == Account.id)
        .where(Membership.organization_id == org.id, Membership.role == Role.ADMIN, Membership.status == Status.ACTIVE,
               Account.status == Status.ACTIVE)
        .order_by(Account.username_key)))


def _listed_admins(session: Session, org: Organization) -> list[Account]:
    """Every admin link of the organization that is not removed, whatever the account's status (support view)."""
    return list(session.scalars(
        select(Account).join(Membership, Membership.account_id == Account.id)
        .where(Membership.organization_id == org.id, Membership.role == Role.ADMIN, Membership.status == Status.ACTIVE,
               Account.status != Status.REMOVED)
        .order_by(Account.username_key)))


def describe(session: Session, org: Organization) -> dict:
    """The organization with its admins and R3's warnings."""
    admins = _listed_admins(session, org)
    active = [a for a in admins if a.status == Status.ACTIVE]
    warnings = []
    if len(active) == 1:
        warnings.append("single_admin")
    if not active:
        warnings.append("no_active_admin")
    return {
        "key": org.key, "name": org.name, "business_type": org.business_type, "region": org.region,
        "addresses": [{"id": a.address_key, "line1": a.line1, "city": a.city, "state": a.state, "zip": a.zip}
                      for a in org.addresses],
        "admins": [{"username": a.username, "name": f"{a.first_name} {a.last_name}", "email": a.email,
                    "phone": a.phone, "status": a.status} for a in admins],
        "warnings": warnings,
    }


def get_organization(session: Session, portal: str, key: str) -> Organization:
    org = find_organization(session, portal, key)
    if org is None:
        raise NotFound(f"no organization {key!r} in portal {portal!r}")
    return org


def create_support_staff(session: Session, profile: PortalProfile, portal: str, *, username: str, first_name: str,
                         last_name: str, email: str, password: str, now: datetime, client: str) -> Account:
    """A support account records the client that created it (a column and the audit record).

    The enroll client chose its password, so, like every account set up by someone else, it is stored
    as never set by its owner: the first sign-in answers `password_expired` until the person sets
    their own with PUT .../password.
    """
    if not client:
        raise ValueError("a support account is created only on behalf of a named client")
    account = new_account(session, profile, portal, username=username, first_name=first_name, last_name=last_name,
                          email=email, phone=None, password=password, status=Status.ACTIVE, now=now, support=True,
                          set_by_other=True)
    account.created_by_client = client
    audit.record(session, portal=portal, now=now, action="create_support_staff", outcome="done", client=client,
                 target=username)
    return account


def designate_admin(session: Session, profile: PortalProfile, portal: str, org_key: str, *, username: str,
                    first_name: str | None, last_name: str | None, email: str | None, phone: str | None,
                    password: str | None, now: datetime, client: str | None, policy: Policy,
                    existing_account: bool = False, accepted_terms: bool | None = None) -> Account:
    """R4, R12: the payer-verified first admin, or a support-designated admin.

    A new account is created with the given details; its password was chosen by someone else, so it
    is temporary (the account sets its own at first sign-in), and it has accepted the terms of use
    (R7) only when the request says so. A username that exists is never adopted silently: it is 409
    `username_taken`, unless the request names the existing account (`existing_account: true`) and
    that account already belongs to the organization: then it is upgraded to admin, audited as one.
    """
    org = get_organization(session, portal, org_key)
    session.refresh(org, with_for_update=True)
    if existing_account:
        account = _upgrade_existing(session, org, portal, policy, username=username, first_name=first_name,
                                    last_name=last_name, email=email, phone=phone, password=password,
                                    accepted_terms=accepted_terms)
        audit.record(session, portal=portal, now=now, action="designate_admin", outcome="done", client=client,
                     target=account.username, organization=org_key,
                     detail={"upgraded": True, "from_role": "member", "existing_account": True})
        return account
    if find_account(session, portal, username) is not None:
        raise Conflict(f"the username {username!r} is taken; to make an existing member of this organization "
                       "its admin, send existing_account: true", "username_taken")
    missing = [f for f, v in (("first_name", first_name), ("last_name", last_name), ("email", email),
                              ("password", password)) if not v]
    if missing:
        raise Invalid("a new admin needs its details", [{"field": f, "code": "required",
                                                        "message": "required for a new account"} for f in missing])
    account = new_account(session, profile, portal, username=username, first_name=first_name,
                          last_name=last_name, email=email, phone=phone, password=password, status=Status.ACTIVE,
                          now=now, set_by_other=True, terms_accepted=accepted_terms is True)
    session.add(Membership(account_id=account.id, organization_id=org.id, role=Role.ADMIN, status=Status.ACTIVE,
                           created_at=now))
    session.flush()
    audit.record(session, portal=portal, now=now, action="designate_admin", outcome="done", client=client,
                 target=account.username, organization=org_key,
                 detail={"new_account": True, "temporary_password": True,
                         "terms_accepted": accepted_terms is True})
    return account


def _upgrade_existing(session: Session, org: Organization, portal: str, policy: Policy, *, username: str,
                      accepted_terms, **details) -> Account:
    """`existing_account: true`: only a member of this very organization becomes its admin, and only in a status
    the policy's `upgrade` applies to (its `status_allows`, as for the admins' own upgrade, R2)."""
    sent = sorted(f for f, v in details.items() if v is not None)
    if accepted_terms is not None:
        sent.append("accepted_terms")
    if sent:
        raise Invalid("an existing account keeps its own details; send only the username",
                      [{"field": f, "code": "not_allowed", "message": "only for a new account"} for f in sent])
    account = find_account(session, portal, username)
    if account is None or account.status == Status.REMOVED:
        raise NotFound(f"no account {username!r} in portal {portal!r}")
    if account.is_support:
        raise Conflict("support staff cannot be an organization's admin", "support_account")
    link = next((m for m in account.memberships if m.organization_id == org.id), None)
    if link is None or link.status != Status.ACTIVE:
        raise Conflict(f"{account.username!r} does not belong to organization {org.key!r}; only a member of "
                       "the organization can be made its admin", "not_in_organization")
    if link.role == Role.ADMIN:
        raise Conflict(f"{account.username!r} is already an admin of {org.key!r}", "already_admin")
    if (account.status, link.role) not in policy.target_states("upgrade", portal):
        # A locked, disabled or pending account is unlocked, enabled or approved first (found by the invariant
        # search).
        raise Conflict(f"{account.username!r} is {account.status}; the policy does not make an admin of an "
                       f"account in that status", "target_status")
    link.role = Role.ADMIN
    session.flush()
    return account
