"""First-run setup: mirror the portal profiles into the database and create the demo organization."""
from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.config import Config
from service.domain import clients
from service.domain.passwords import hash_secret
from service.kernel import usernames
from service.kernel.catalog import Status, Role
from service.storage.models import Account, ClientKey, Grant, Membership, Organization, Portal

DEMO_ORGANIZATION = "DEMO-0001"
DEMO_ADMIN = "demo.admin"
DEMO_MEMBER = "demo.member"


def sync_portals(session: Session, config: Config) -> None:
    """Every configured portal has a row; rows are never deleted (accounts may still point at them).

    One upsert a portal: replicas and `portal-authz migrate` started together each mirror the portals after
    the schema's lock is released, and a read-then-insert would let two of them insert the same row."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for portal_id, profile in config.portals.items():
        statement = insert(Portal).values(id=portal_id, name=profile.name)
        session.execute(statement.on_conflict_do_update(index_elements=[Portal.id], set_={"name": profile.name}))
    session.flush()


def generate_password() -> str:
    """A random password that meets the strictest shipped profile (R17): classes, no runs, no username overlap."""
    alphabet = string.ascii_letters + string.digits
    while True:
        body = "".join(secrets.choice(alphabet) for _ in range(14))
        candidate = body + secrets.choice("@!#=$%^&*?_~") + "aZ7"
        lowered = candidate.lower()
        if not any(lowered[i] == lowered[i + 1] == lowered[i + 2] for i in range(len(lowered) - 2)) \
                and "dem" not in lowered and "emo" not in lowered and "mo." not in lowered:
            return candidate


@dataclass(frozen=True)
class DemoSecrets:
    portal: str
    organization: str
    admin_password: str
    member_password: str
    client_key: str


def is_empty(session: Session) -> bool:
    return not session.scalar(select(exists().where(Organization.id.isnot(None)))) and \
        not session.scalar(select(exists().where(ClientKey.id.isnot(None))))


def _account(portal: str, username: str, first: str, last: str, password: str, now: datetime) -> Account:
    email = f"{username}@example.org"
    return Account(portal_id=portal, username=username, username_key=usernames.username_key(username),
                   **usernames.skeleton_columns(username),
                   first_name=first, last_name=last, email=email, email_key=email.casefold(),
                   phone="602-555-0100", password_hash=hash_secret(password), password_changed_at=now,
                   status=Status.ACTIVE, is_support=False, terms_accepted_at=now, created_at=now)


def create_demo(session: Session, config: Config, now: datetime) -> DemoSecrets:
    """A demo organization with an admin, a member granted the first catalog function, and a client key."""
    portal = config.demo.portal
    profile = config.portals[portal]
    org = Organization(portal_id=portal, key=DEMO_ORGANIZATION, name="Demo Family Clinic", created_at=now)
    session.add(org)
    admin_password, member_password = generate_password(), generate_password()
    admin = _account(portal, DEMO_ADMIN, "Ada", "Admin", admin_password, now)
    member = _account(portal, DEMO_MEMBER, "Max", "Member", member_password, now)
    session.add_all([admin, member])
    session.flush()
    session.add(Membership(account_id=admin.id, organization_id=org.id, role=Role.ADMIN, status=Status.ACTIVE, created_at=now))
    member_link = Membership(account_id=member.id, organization_id=org.id, role=Role.MEMBER, status=Status.ACTIVE,
                             created_at=now)
    session.add(member_link)
    session.flush()
    session.add(Grant(membership_id=member_link.id, permission=profile.catalog[0], granted_at=now))
    key = clients.create_client(session, "demo", clients.SCOPES, now)
    return DemoSecrets(portal, DEMO_ORGANIZATION, admin_password, member_password, key)
