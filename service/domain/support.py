"""Support staff (R1, R4) under the operators' control: list, disable, enable, remove.

Support staff act across every organization of a portal, so they are managed
by calling services with the `enroll` scope, each change audited (R27) with the
calling client's name. A support account is also created only with that name
recorded as its creator (`Account.created_by_client`, see
service.domain.organizations.create_support_staff).

- disable: -> disabled, from where an admin's disable applies (active,
  locked, unverified); its sessions end at once.
- enable: -> active, from where an admin's enable or unlock applies (disabled,
  locked, pending_approval); the inactivity clock restarts (as an Account Manager's enable does,
  R23) and failed sign-ins are forgotten.
- remove: any status -> removed (a soft delete kept for the audit trail, the
  username stays taken, as the inactivity sweep leaves it); sessions end at once.
  The last support account of a portal may be removed: support is optional.
  Then no one in that portal is allowed the support-only actions
  (designate_admin, issue_activation_code, acting across organizations), so
  R4 waits until support staff exist again (see docs/operations.md, "Support staff").

A request that changes nothing (disabling a disabled account) answers the
account as it is and is audited with outcome `unchanged`; enabling or disabling
a removed account is 409 `account_removed`, audited as `refused` by the caller
(service.api.support) in a transaction of its own. Each change is one
transaction with the account row locked.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.domain import audit
from service.domain.errors import Conflict, NotFound
from service.domain.sessions import clear_failures, end_all
from service.kernel.catalog import Status
from service.kernel.usernames import username_key
from service.policy import Policy
from service.storage.models import Account

# operation: the status it leaves. Which statuses it starts from is the policy's (portal.polar `status_allows`):
# those of the admin action of the same name, and for `enable` those of `unlock` too (enabling a support account
# also forgets its failed sign-ins).
LEAVES = {"disable": Status.DISABLED.value, "enable": Status.ACTIVE.value, "remove": Status.REMOVED.value}
STARTS_AS = {"disable": ("disable",), "enable": ("enable", "unlock"), "remove": ("remove",)}


def starts_from(policy: Policy, portal: str, operation: str) -> frozenset[str]:
    """The statuses `operation` applies to a support account in: a status the policy lets the matching admin
    action apply to an account in (in either role: a support account has no organization)."""
    return frozenset(status for action in STARTS_AS[operation]
                     for status, _role in policy.target_states(action, portal))


def view(account: Account) -> dict:
    def iso(moment):
        return moment.isoformat() if moment else None

    return {"username": account.username, "first_name": account.first_name, "last_name": account.last_name,
            "email": account.email, "status": account.status, "created_at": iso(account.created_at),
            "created_by_client": account.created_by_client, "last_login_at": iso(account.last_login_at),
            "last_activity_at": iso(account.last_activity_at)}


def list_support_staff(session: Session, portal: str, status: str | None = None) -> list[Account]:
    """The portal's support accounts by username, every status (removed ones included) unless filtered."""
    query = select(Account).where(Account.portal_id == portal, Account.is_support.is_(True))
    if status is not None:
        query = query.where(Account.status == status)
    return list(session.scalars(query.order_by(Account.username_key)))


def _locked_support_account(session: Session, portal: str, username: str) -> Account:
    account = session.scalar(
        select(Account).where(Account.portal_id == portal, Account.username_key == username_key(username),
                              Account.is_support.is_(True)).with_for_update())
    if account is None:
        raise NotFound(f"no support staff account {username!r} in portal {portal!r}")
    return account


def change(session: Session, portal: str, username: str, operation: str, *, now: datetime, client: str,
           policy: Policy) -> Account:
    """Apply `operation` (disable, enable, remove) to a support account, audited with the calling client."""
    to_status = LEAVES[operation]
    account = _locked_support_account(session, portal, username)
    before = account.status
    if before == to_status:
        audit.record(session, portal=portal, now=now, action=f"support_{operation}", outcome="unchanged",
                     client=client, target=account.username, detail={"status": before})
        return account
    if before not in starts_from(policy, portal, operation):  # a removed account: support accounts start active
        raise Conflict(f"support account {account.username!r} is {before}; it cannot be {operation}d",
                       "account_removed")
    account.status = to_status
    if to_status == Status.ACTIVE:
        account.last_activity_at = now
        clear_failures(session, account.id)
    else:
        end_all(session, account.id, now)
    audit.record(session, portal=portal, now=now, action=f"support_{operation}", outcome="done", client=client,
                 target=account.username, detail={"from": before, "to": to_status})
    return account
