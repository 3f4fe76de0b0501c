"""Queries that load the facts a decision needs, as immutable rows (service/domain/decisions.py makes them
the policy's facts)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from datetime import datetime

from sqlalchemy import Boolean, Integer, bindparam, case, cast, exists, func, literal, null, select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, joinedload, selectinload

from service.kernel.catalog import Status
from service.kernel.facts import ADMIN, UNREAD
from service.kernel.usernames import username_key
from service.storage.direct import DirectStatement
from service.storage.models import Account, ClientKey, Grant, Membership, Organization, UTCDateTime


def find_account(session: Session, portal: str, username: str) -> Account | None:
    return session.scalar(
        select(Account)
        .where(Account.portal_id == portal, Account.username_key == username_key(username))
        .options(selectinload(Account.memberships).selectinload(Membership.grants),
                 selectinload(Account.memberships).selectinload(Membership.organization))
    )


def reread_account(session: Session, account: Account) -> Account:
    """The account as the transaction now stands, with every membership, its organization and its grants, in one
    statement (joined), overwriting what the session held: a change may have written through bulk statements
    (grants deleted, sessions ended) that the loaded objects do not show. What an answer renders from."""
    return session.scalars(
        select(Account).where(Account.id == account.id)
        .options(joinedload(Account.memberships).joinedload(Membership.organization),
                 joinedload(Account.memberships).joinedload(Membership.grants))
        .execution_options(populate_existing=True)).unique().one()


def find_organization(session: Session, portal: str, key: str) -> Organization | None:
    return session.scalar(select(Organization).where(Organization.portal_id == portal, Organization.key == key))


def effective_status_column():
    """`facts.effective_status` as a column of a query over Account and Membership: a removed link reads as
    removed, whatever the account's own status."""
    return case((Membership.status == Status.REMOVED, Status.REMOVED.value), else_=Account.status)


def _active_admins(organization_id):
    """R3: how many active admins (active link, active account) the organization has. Admins are few."""
    return (
        select(func.count())
        .select_from(Membership)
        .join(Account, Account.id == Membership.account_id)
        .where(Membership.organization_id == organization_id, Membership.role == ADMIN,
               Membership.status == Status.ACTIVE, Account.status == Status.ACTIVE)
        .scalar_subquery()
    )


def _has_active_members(organization_id):
    """R3: whether any active non-admin is left; EXISTS stops at the first, however large the organization."""
    return exists(
        select(1)
        .select_from(Membership)
        .join(Account, Account.id == Membership.account_id)
        .where(Membership.organization_id == organization_id, Membership.role != ADMIN,
               Membership.status == Status.ACTIVE, Account.status == Status.ACTIVE)
    )


# --- Every fact of a request in one query ---------------------------------------------------------

@dataclass(frozen=True)
class StoredMembership:
    organization: str
    role: str
    status: str
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class StoredAccount:
    username: str
    status: str
    support: bool
    has_password: bool
    password_changed_at: datetime | None
    memberships: tuple[StoredMembership, ...]  # ordered by organization key
    terms_accepted: bool = False


@dataclass(frozen=True)
class StoredOrganization:
    key: str
    active_admins: int  # both UNREAD when the statement left the head counts out
    has_active_members: bool


@dataclass(frozen=True)
class StoredKey:
    """A client key's row (service/domain/clients.py judges it), when read in the facts statement."""

    name: str
    scopes: str
    secret_digest: str
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class StoredFacts:
    """What one request's decisions need, read in one statement: accounts by username key, organizations by key,
    and the client key asked for, if any."""

    accounts: dict[str, StoredAccount]
    organizations: dict[str, StoredOrganization]
    client_key: StoredKey | None = None

    def account(self, username: str) -> StoredAccount | None:
        return self.accounts.get(username_key(username))


def load_facts(session: Session | Connection, portal: str, usernames: set[str], organizations: set[str],
               targets: set[str] = frozenset(), key_id: str | None = None, head_counts: bool = True) -> StoredFacts:
    """One statement (a UNION ALL) for every account, membership, grant and organization the decisions read.

    `usernames` are the accounts to load (actor and targets); `organizations` the organization keys
    asked about; the organizations of every account in `targets` are loaded too, with the head-counts
    R3 needs, unless `head_counts` is false (no question of the request can read them: the policy says
    which, service/policy.py), when they are UNREAD. Rows come back one per (account, membership, grant).
    `key_id`: the client key row of that id too (the request's key check and its facts in one round trip).

    Without the counts, a target's organizations are known from its membership rows (each marked with whether
    its organization is of the portal, as the organizations' branch would find it), so that branch is left out.
    """
    if not usernames and not organizations and key_id is None:
        return StoredFacts({}, {})
    connection = session if isinstance(session, Connection) else session.connection()
    people = sorted({username_key(u) for u in usernames})
    of_targets = sorted({username_key(u) for u in targets})
    from_people = not head_counts and bool(of_targets) and set(of_targets).issubset(people)
    rows = FACTS.rows(connection, {
        "portal": portal,
        "usernames": people,
        "organizations": sorted(organizations),
        "targets": of_targets,
        "key_id": key_id,
        "head_counts": head_counts,
        "targets_from_people": from_people,
    })
    return _assemble(rows, of_targets if from_people else ())


def _facts_for(values: dict):
    """The statement for these values: a branch with nothing to look up is left out (service/storage/direct.py)."""
    from_people = bool(values.get("targets_from_people", False))
    return _facts_statement(bool(values["usernames"]), bool(values["organizations"]),
                            bool(values["targets"]) and not from_people, values["key_id"] is not None,
                            bool(values.get("head_counts", True)), from_people)


@cache
def _facts_statement(with_people: bool, with_asked: bool, with_targets: bool, with_key: bool,
                     with_counts: bool = True, marked: bool = False):
    """The branches asked for; built once per combination. Without counts, the organizations' two head-count
    subqueries (correlated, the dearest part of a member's question on PostgreSQL) are NULL columns. `marked`:
    each membership row says whether its organization is of the portal (in the `has_members` column, NULL in
    the people's rows otherwise), for the targets' organizations read from them instead of their own branch."""
    portal = bindparam("portal")
    people = (
        select(
            literal("a").label("kind"),
            Account.username_key.label("username_key"),
            Account.username.label("username"),
            Account.status.label("status"),
            Account.is_support.label("support"),
            Account.password_hash.is_not(None).label("has_password"),
            Account.password_changed_at.label("changed_at"),
            Organization.key.label("organization"),
            Membership.role.label("role"),
            Membership.status.label("link_status"),
            Grant.permission.label("permission"),
            cast(null(), Integer).label("admins"),
            (Organization.portal_id == portal).label("has_members") if marked else cast(null(), Boolean).label(
                "has_members"),
            cast(null(), UTCDateTime).label("expires_at"),
            cast(null(), UTCDateTime).label("last_used_at"),
            Account.terms_accepted_at.is_not(None).label("terms_accepted"),
        )
        .select_from(Account)
        .outerjoin(Membership, Membership.account_id == Account.id)
        .outerjoin(Organization, Organization.id == Membership.organization_id)
        .outerjoin(Grant, Grant.membership_id == Membership.id)
        .where(Account.portal_id == portal, Account.username_key.in_(bindparam("usernames", expanding=True)))
    )
    of_targets = (
        select(Membership.organization_id)
        .join(Account, Account.id == Membership.account_id)
        .where(Account.portal_id == portal, Account.username_key.in_(bindparam("targets", expanding=True)))
    )
    def places(which):
        admins, members = ((_active_admins(Organization.id), _has_active_members(Organization.id)) if with_counts
                           else (cast(null(), Integer), cast(null(), Boolean)))
        return (
            select(
                literal("o"), null(), null(), null(), cast(null(), Boolean), cast(null(), Boolean), null(),
                Organization.key, null(), null(), null(),
                admins, members, null(), null(),
                cast(null(), Boolean),
            )
            .where(Organization.portal_id == portal, which)
        )

    # Two branches, not one `key IN (...) OR id IN (...)`: PostgreSQL's generic plan for that OR read every
    # organization of the portal (bench/README.md has the cost); each branch is an index lookup. A target's
    # organization that is also asked about (an admin's question, nearly always) is left to the first branch,
    # so its head-counts are counted once.
    asked_keys = bindparam("organizations", expanding=True)
    asked = places(Organization.key.in_(asked_keys))
    of_targets = places(Organization.id.in_(of_targets) & Organization.key.not_in(asked_keys) if with_asked
                        else Organization.id.in_(of_targets))
    # The client key: name, scopes and digest in the text columns, its three times in the time columns.
    key = (
        select(
            literal("k"), ClientKey.name, ClientKey.scopes, ClientKey.secret_digest, cast(null(), Boolean),
            cast(null(), Boolean), ClientKey.revoked_at, null(), null(), null(), null(), null(), null(),
            ClientKey.expires_at, ClientKey.last_used_at, cast(null(), Boolean),
        )
        .where(ClientKey.key_id == bindparam("key_id"))
    )
    branches = [branch for branch, wanted in ((people, with_people), (asked, with_asked),
                                              (of_targets, with_targets), (key, with_key)) if wanted]
    return branches[0] if len(branches) == 1 else union_all(*branches)


# The statement's columns, by position (rows are plain tuples: see service/storage/direct.py).
(KIND, USERNAME_KEY, USERNAME, STATUS, SUPPORT, HAS_PASSWORD, CHANGED_AT, ORGANIZATION, ROLE, LINK_STATUS,
 PERMISSION, ADMINS, HAS_MEMBERS, EXPIRES_AT, LAST_USED_AT, TERMS_ACCEPTED) = range(16)
DATETIME_COLUMNS = (CHANGED_AT, EXPIRES_AT, LAST_USED_AT)


def _datetime_conversions(dialect) -> dict:
    """What UTCDateTime does to a column's value on the way out (SQLite: parse the text; both: UTC)."""
    convert = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    return {} if convert is None else {column: convert for column in DATETIME_COLUMNS}


FACTS = DirectStatement(_facts_for, ("usernames", "organizations", "targets"), _datetime_conversions,
                        flags={"head_counts": True, "targets_from_people": False})


def _assemble(rows, targets: Sequence[str] = ()) -> StoredFacts:
    """`targets`: the username keys whose organizations of the portal are taken from their (marked) membership
    rows, their head counts UNREAD, as the organizations' branch reads them without the counts."""
    accounts: dict[str, tuple] = {}
    links: dict[str, dict] = {}
    places: dict[str, StoredOrganization] = {}
    marked: list[tuple[str, str]] = []
    client_key = None
    for row in rows:
        kind = row[KIND]
        if kind == "k":
            client_key = StoredKey(row[USERNAME_KEY], row[USERNAME], row[STATUS], row[CHANGED_AT], row[EXPIRES_AT],
                                   row[LAST_USED_AT])
            continue
        if kind == "o":
            # A count and an EXISTS are never NULL: NULL is a count the statement left out, never 0 or false.
            admins, members = row[ADMINS], row[HAS_MEMBERS]
            places[row[ORGANIZATION]] = StoredOrganization(row[ORGANIZATION],
                                                           UNREAD if admins is None else int(admins),
                                                           UNREAD if members is None else bool(members))
            continue
        key = row[USERNAME_KEY]
        if key not in accounts:
            accounts[key] = row
            links[key] = {}
        organization = row[ORGANIZATION]
        if organization is None:
            continue
        link = links[key].get(organization)
        if link is None:
            link = links[key][organization] = (row[ROLE], row[LINK_STATUS], [])
            if row[HAS_MEMBERS]:  # marked: the membership's organization is of the portal
                marked.append((key, organization))
        if row[PERMISSION] is not None:
            link[2].append(row[PERMISSION])
    if targets:  # as the branch left out reads them: the targets' organizations of the portal, counts UNREAD
        wanted = set(targets)
        for key, organization in marked:
            if key in wanted and organization not in places:
                places[organization] = StoredOrganization(organization, UNREAD, UNREAD)
    return StoredFacts(
        accounts={
            key: StoredAccount(
                username=row[USERNAME],
                status=row[STATUS],
                support=bool(row[SUPPORT]),
                has_password=bool(row[HAS_PASSWORD]),
                password_changed_at=row[CHANGED_AT],
                terms_accepted=bool(row[TERMS_ACCEPTED]),
                memberships=tuple(
                    StoredMembership(org, role, status, tuple(sorted(permissions)))
                    for org, (role, status, permissions) in sorted(links[key].items())
                ),
            )
            for key, row in accounts.items()
        },
        organizations=places,
        client_key=client_key,
    )
