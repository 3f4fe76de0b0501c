"""The immutable facts a decision is made on.

Python loads these from storage and hands them to Polar as plain attributes:
every question the policy asks is answered by data, never by a method that
queries the database from inside the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.kernel.catalog import Role, Status

ADMIN = Role.ADMIN.value
MEMBER = Role.MEMBER.value

# --- Facts computed from stored values, each in one place -------------------------------------------


def oldest_current_password(expiry_days: int | None, now: datetime) -> datetime | None:
    """R18: a password changed after this moment is current (None: passwords never expire). The one statement of
    the rule: the facts loader, a sign-in, the password's expiry shown to its owner and the database filters of
    AuthZEN search all compare with it."""
    return None if expiry_days is None else now - timedelta(days=expiry_days)


def password_current(has_password: bool, changed_at: datetime | None, expiry_days: int | None,
                     now: datetime) -> bool:
    """R18: whether a password is current: set, and changed after `oldest_current_password`."""
    if not has_password or changed_at is None:
        return False
    oldest = oldest_current_password(expiry_days, now)
    return oldest is None or changed_at > oldest


def password_expires_at(changed_at: datetime | None, expiry_days: int | None) -> datetime | None:
    """R18: the first moment the password is no longer current (None: it never expires, or was never set)."""
    if expiry_days is None or changed_at is None:
        return None
    return changed_at + timedelta(days=expiry_days)


def effective_status(account_status: str, link_status: str) -> str:
    """An account's status as it stands in one organization: a removed link reads as removed, whatever the
    account's own status (storage/facts.py states the same for a query, and a test holds the two together)."""
    return Status.REMOVED.value if link_status == Status.REMOVED else account_status


# The metadata that marks a field carrying a name: a username or an organization key. Names
# are what two questions of the same shape differ in, so the policy memoizes on the facts with
# every marked field renamed consistently (service/canonical.py); a field added unmarked is kept
# as it is, and a policy that reads a marked field other than by equality with another is
# answered exactly (no renaming). Mark every new field that holds a username or organization key.
NAME = "portal_authz_name"


def name_field():
    """A field holding a username or an organization key (see NAME)."""
    return field(metadata={NAME: True})


# The metadata that marks an organization's head counts (R3): the facts statement reads them only for a
# request whose questions can read them (service/policy.py derives which from the policy text), and the
# memo leaves them out of the key of a question that cannot read them (service/canonical.py).
HEAD_COUNT = "portal_authz_head_count"


def head_count_field():
    """A field holding a head count of an organization (see HEAD_COUNT)."""
    return field(metadata={HEAD_COUNT: True})


class UnreadFact(Exception):
    """A fact the facts statement did not read was read by a rule. Never an AttributeError: Python's
    `isinstance` would swallow that one and answer False."""


class _Unread:
    """The value of a head count that was not read: any use of it by a rule raises UnreadFact, so that a rule
    reading it fails (the decision is denied with `policy_error` and never memoized), never reading it as 0
    or false. oso converts every value it is handed with `isinstance`, which asks the value's `__class__`:
    raising there makes the attribute's very read fail, whatever the rule then does with it (a comparison,
    `= true`, a specializer, `matches`). The compiled evaluator hands a value of an unknown type to oso.
    Equality and hashing stay Python's own (by identity), so a memo key holding it compares as usual."""

    __slots__ = ()

    @property
    def __class__(self):  # noqa: D105 - see the class docstring
        raise UnreadFact("an organization's head counts were read, but were not loaded for this question")

    def __bool__(self) -> bool:
        raise UnreadFact("an organization's head counts were read, but were not loaded for this question")

    def __repr__(self) -> str:
        return "UNREAD"

    def __copy__(self):
        return self

    def __deepcopy__(self, _memo):
        return self


UNREAD = _Unread()


def is_unread(value) -> bool:
    """Whether a fact's value is the placeholder of a fact not read (by identity: `isinstance` would raise)."""
    return value is UNREAD


@dataclass(frozen=True)
class MembershipFacts:
    """The actor's place in one organization."""

    organization: str = name_field()
    role: str
    active: bool
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class ActorFacts:
    """Who is asking. `exists` is false for an unknown username so the policy can say so."""

    username: str = name_field()
    exists: bool
    status: str
    password_current: bool
    support: bool
    memberships: tuple[MembershipFacts, ...]
    # R7: the account accepted the terms of use; a standing requirement like a current password (unset: not).
    terms_accepted: bool = False

    @classmethod
    def unknown(cls, username: str) -> ActorFacts:
        return cls(username, False, "unknown", False, False, ())


@dataclass(frozen=True)
class OrganizationFacts:
    """An organization with its portal's catalog, its active admins and whether any active member is left (R3, R14, R15).

    Members are not counted: R3 only asks whether any is left, and an organization may have 100,000.
    """

    key: str = name_field()
    catalog: tuple[str, ...]
    delegate_permission: str | None
    # UNREAD when the request's questions cannot read them (service/storage/facts.py, `head_counts`).
    active_admins: int = head_count_field()
    has_active_members: bool = head_count_field()
    # R13: whether the portal offers linking accounts of other organizations and admin-created accounts
    # (a profile setting; only the documents that describe them turn them on).
    offers_links: bool = False
    offers_subordinates: bool = False
    # The portal the organization belongs to (its profile id in config.yaml: ahcccs, qm, ahw, masshealth), so a
    # rule can be scoped to one portal (`org.portal = "ahw"`). Required, by keyword: no loader may leave it out.
    portal: str = field(kw_only=True)


@dataclass(frozen=True)
class LinkFacts:
    """One active membership of a target account: the organization, the role there and the grants there.

    An account-wide change reaches every one of them, so the policy asks for authority in each (R1).
    """

    organization: OrganizationFacts
    role: str
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountFacts:
    """A target account as it stands in one organization.

    `permission` carries context.permission for grant/revoke; None means the
    question is about managing grants at all (authorized-actions). `links` are
    all the account's active memberships, this organization's included: the
    reach of an account-wide change (email, password recovery, status).
    """

    username: str = name_field()
    organization: OrganizationFacts
    role: str
    status: str
    permission: str | None = None
    links: tuple[LinkFacts, ...] = ()
    # R7: the account accepted the terms of use (an admin is made only of one that has; unset: not).
    terms_accepted: bool = False
