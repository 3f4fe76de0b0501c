"""Seed data for a test server: organizations, accounts, memberships, grants and client keys from one YAML
document, written in one transaction (all of it or nothing).

The calling teams' test double (`portal_authz_client.testing`) starts a real server on an empty SQLite
database and seeds it with this, so their tests run against the real policy over real facts. The file:

    portal: ahcccs                    # the default portal of every entry below
    organizations:
      - key: PROV-0042
        name: Sunrise Family Clinic   # optional
    accounts:
      - username: sam.staff
        password: Correct#Horse7Battery   # optional: without it the account cannot sign in
        status: active                    # optional (default active)
        support: false                    # optional: a support-staff account
        memberships:
          - {organization: PROV-0042, role: member, permissions: [claims]}
    clients:
      - {name: caller, scopes: [authorize, manage]}

Every name is checked against the configuration (portal, catalog of the portal, roles, statuses, scopes)
before anything is written; a problem is a `SeedError` naming the entry.
"""
from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Config
from service.domain import audit, clients
from service.domain.errors import DomainError
from service.domain.passwords import hash_secret
from service.domain.people import check_new_username
from service.kernel import usernames
from service.kernel.catalog import Role, Status
from service.storage.models import Account, Address, ClientKey, Grant, Membership, Organization


class SeedError(ValueError):
    """The seed document is wrong; the message names the entry and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedAddress(_Strict):
    id: str = Field(default="MAIN", min_length=1, max_length=100)
    line1: str = Field(default="100 Main St", min_length=1, max_length=200)
    city: str = Field(default="Phoenix", min_length=1, max_length=100)
    state: str = Field(default="AZ", min_length=1, max_length=50)
    zip: str = Field(default="85034", min_length=1, max_length=20)


class SeedOrganization(_Strict):
    key: str = Field(min_length=1, max_length=100)
    name: str | None = Field(default=None, max_length=200)
    portal: str | None = None
    addresses: list[SeedAddress] = Field(default_factory=lambda: [SeedAddress()])


class SeedMembership(_Strict):
    organization: str = Field(min_length=1, max_length=100)
    role: Role = Role.MEMBER
    status: Status = Status.ACTIVE
    permissions: list[str] = Field(default_factory=list)


class SeedAccount(_Strict):
    username: str = Field(min_length=1, max_length=100)
    portal: str | None = None
    password: str | None = Field(default=None, min_length=1, max_length=256)
    status: Status = Status.ACTIVE
    support: bool = False
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default="602-555-0100", max_length=40)
    memberships: list[SeedMembership] = Field(default_factory=list)


class SeedClient(_Strict):
    name: str
    scopes: list[str] = Field(min_length=1)


class SeedDocument(_Strict):
    portal: str | None = None
    organizations: list[SeedOrganization] = Field(default_factory=list)
    accounts: list[SeedAccount] = Field(default_factory=list)
    clients: list[SeedClient] = Field(default_factory=list)


@dataclass
class Seeded:
    """What was written, and each client key (shown only this once)."""

    organizations: int = 0
    accounts: int = 0
    memberships: int = 0
    grants: int = 0
    client_keys: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)


def parse(data: object) -> SeedDocument:
    """The document, or SeedError naming each wrong field (`accounts.0.status: ...`)."""
    if data is None:
        data = {}
    try:
        return SeedDocument.model_validate(data)
    except ValidationError as exc:
        lines = [".".join(str(p) for p in error["loc"]) + ": " + error["msg"] for error in exc.errors()]
        raise SeedError("invalid seed document:\n  " + "\n  ".join(lines)) from None


def _portal(config: Config, document: SeedDocument, own: str | None, where: str) -> str:
    portal = own or document.portal
    if portal is None:
        raise SeedError(f"{where}: no portal (give `portal:` at the top or on the entry)")
    if config.portal(portal) is None:
        raise SeedError(f"{where}: unknown portal {portal!r}; configured portals: {', '.join(sorted(config.portals))}")
    return portal


def seed(session: Session, config: Config, document: SeedDocument, now: datetime, *, actor: str) -> Seeded:
    """Write the document; the caller's transaction makes it all or nothing. Audited: one record per portal
    naming what was seeded and by whom, and each client key as `clients add` records it."""
    result = Seeded()
    written: dict[str, dict[str, list[str]]] = {}
    organizations: dict[tuple[str, str], Organization] = {}
    for i, spec in enumerate(document.organizations):
        portal = _portal(config, document, spec.portal, f"organizations.{i}")
        if (portal, spec.key) in organizations or session.scalar(select(Organization.id).where(
                Organization.portal_id == portal, Organization.key == spec.key)) is not None:
            raise SeedError(f"organizations.{i}: organization {spec.key!r} already exists in portal {portal!r}")
        org = Organization(portal_id=portal, key=spec.key, name=spec.name or f"Organization {spec.key}", created_at=now)
        org.addresses.extend(Address(address_key=a.id, line1=a.line1, city=a.city, state=a.state, zip=a.zip)
                             for a in spec.addresses)
        session.add(org)
        organizations[(portal, spec.key)] = org
        written.setdefault(portal, {"organizations": [], "accounts": []})["organizations"].append(spec.key)
        result.organizations += 1
    session.flush()
    unusable = None  # one hash of a secret nobody holds, for every account seeded without a password
    seen: set[tuple[str, str]] = set()
    for i, spec in enumerate(document.accounts):
        where = f"accounts.{i} ({spec.username!r})"
        portal = _portal(config, document, spec.portal, where)
        profile = config.portals[portal]
        try:
            username = check_new_username(spec.username)
        except DomainError as exc:
            raise SeedError(f"{where}: {exc}") from None
        key = usernames.username_key(username)
        if (portal, key) in seen or session.scalar(select(Account.id).where(
                Account.portal_id == portal, Account.username_key == key)) is not None:
            raise SeedError(f"{where}: username already exists in portal {portal!r}")
        seen.add((portal, key))
        if spec.password is None and unusable is None:
            unusable = hash_secret(secrets.token_urlsafe(32))
        email = spec.email or f"{username}@example.org"
        account = Account(portal_id=portal, username=username, username_key=key, **usernames.skeleton_columns(username),
                          first_name=spec.first_name or username.split(".")[0].title(),
                          last_name=spec.last_name or "Tester", email=email, email_key=email.casefold(),
                          phone=spec.phone, password_hash=hash_secret(spec.password) if spec.password else unusable,
                          password_changed_at=now, status=spec.status, is_support=spec.support,
                          terms_accepted_at=now, created_at=now)
        session.add(account)
        session.flush()
        result.accounts += 1
        written.setdefault(portal, {"organizations": [], "accounts": []})["accounts"].append(username)
        for j, link in enumerate(spec.memberships):
            org = organizations.get((portal, link.organization)) or session.scalar(select(Organization).where(
                Organization.portal_id == portal, Organization.key == link.organization))
            if org is None:
                raise SeedError(f"{where}.memberships.{j}: no organization {link.organization!r} in portal {portal!r}")
            unknown = sorted(set(link.permissions) - set(profile.catalog))
            if unknown:
                raise SeedError(f"{where}.memberships.{j}: permission(s) {unknown} not in the catalog of portal "
                                f"{portal!r}: {', '.join(profile.catalog)}")
            membership = Membership(account_id=account.id, organization_id=org.id, role=link.role, status=link.status,
                                    created_at=now)
            session.add(membership)
            session.flush()
            result.memberships += 1
            for permission in dict.fromkeys(link.permissions):
                session.add(Grant(membership_id=membership.id, permission=permission, granted_at=now))
                result.grants += 1
    names = set()
    for i, spec in enumerate(document.clients):
        try:
            clients.check_name(spec.name)
            scopes = clients.parse_scopes(",".join(spec.scopes))
        except (clients.BadName, clients.UnknownScope) as exc:
            raise SeedError(f"clients.{i}: {exc}") from None
        if spec.name in names or session.scalar(select(ClientKey.id).where(ClientKey.name == spec.name)) is not None:
            raise SeedError(f"clients.{i}: client {spec.name!r} already exists")
        names.add(spec.name)
        result.client_keys[spec.name] = clients.add_client(session, spec.name, scopes, now, actor=actor)
    for portal, what in written.items():
        audit.record(session, portal=portal, now=now, action="seed", outcome="done", actor=actor,
                     detail={"via": "cli", **what})
    session.flush()
    return result
