"""Typed SQLAlchemy 2 models. Portable between SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from sqlalchemy import (
    event,
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    literal_column,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

intpk = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]
portal_id = Annotated[str, mapped_column(String(64), ForeignKey("portals.id"), nullable=False)]


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends.

    SQLite drops the zone and PostgreSQL answers in the session's zone, so values
    are converted to UTC on the way in and on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


timestamp = Annotated[datetime, mapped_column(UTCDateTime(), nullable=False)]
optional_timestamp = Annotated[datetime | None, mapped_column(UTCDateTime(), nullable=True)]
# A row of one account's, removed with it (its sessions, codes, answers, comments, failures, history, requests;
# most take it with their id from AccountRow below).
account_owned = Annotated[int, mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))]


class Base(DeclarativeBase):
    pass


class AccountRow:
    """A row that belongs to one account (its id first, then the account's): removed with the account."""

    id: Mapped[intpk] = mapped_column(sort_order=-2)
    account_id: Mapped[account_owned] = mapped_column(sort_order=-1)


class Portal(Base):
    """A portal profile from config.yaml, mirrored so rows can reference it."""

    __tablename__ = "portals"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Organization(Base):
    """A provider organization, keyed by Provider ID, TIN or PID/SL (R1)."""

    __tablename__ = "organizations"
    __table_args__ = (UniqueConstraint("portal_id", "key"),)
    id: Mapped[intpk]
    portal_id: Mapped[portal_id]
    key: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    business_type: Mapped[str | None] = mapped_column(String(50))
    region: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[timestamp]
    addresses: Mapped[list[Address]] = relationship(back_populates="organization", cascade="all, delete-orphan")


class Address(Base):
    """An address on file for an organization; masters pick one for the activation letter (R9)."""

    __tablename__ = "addresses"
    __table_args__ = (UniqueConstraint("organization_id", "address_key"),)
    id: Mapped[intpk]
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    address_key: Mapped[str] = mapped_column(String(100))
    line1: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(50))
    zip: Mapped[str] = mapped_column(String(20))
    organization: Mapped[Organization] = relationship(back_populates="addresses")


class Account(Base):
    """One person's account in one portal (R6: usernames unique per portal, ignoring case)."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("portal_id", "username_key"),
        # No two accounts of a portal look alike (UTS #39 skeleton; service/kernel/usernames.py).
        Index("ux_accounts_portal_skeleton", "portal_id", "username_skeleton", unique=True),
        Index("ux_accounts_portal_skeleton_typed", "portal_id", "username_skeleton_typed", unique=True),
        Index("ix_accounts_portal_email", "portal_id", "email_key"),
        # A roster page filtered by status, read in username order (service/domain/roster.py).
        Index("ix_accounts_portal_status_username", "portal_id", "status", "username_key"),
        # A roster's `q=` substring search (service/domain/roster.py) from trigram indexes, PostgreSQL
        # only (migration 0009 creates the pg_trgm extension); SQLite runs the same LIKE over its rows.
        Index("ix_accounts_username_trgm", "username_key", postgresql_using="gin",
              postgresql_ops={"username_key": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
        Index("ix_accounts_email_trgm", "email_key", postgresql_using="gin",
              postgresql_ops={"email_key": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
        Index("ix_accounts_name_trgm", literal_column("lower((first_name || ' ') || last_name)").label("full_name"),
              postgresql_using="gin", postgresql_ops={"full_name": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
    )
    id: Mapped[intpk]
    portal_id: Mapped[portal_id]
    username: Mapped[str] = mapped_column(String(100))
    username_key: Mapped[str] = mapped_column(String(100))
    # The skeleton of the lookup key; NULL only where migrations 0008 or 0010 found it taken by an older account.
    username_skeleton: Mapped[str | None] = mapped_column(String(400))
    # The skeleton of the name as typed (case kept); NULL only where migration 0013 found it taken.
    username_skeleton_typed: Mapped[str | None] = mapped_column(String(400))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    password_changed_at: Mapped[optional_timestamp]
    status: Mapped[str] = mapped_column(String(32))
    is_support: Mapped[bool] = mapped_column(Boolean, default=False)
    # The client (calling service) that created a support account, for the audit; None for every other account.
    created_by_client: Mapped[str | None] = mapped_column(String(100))
    terms_accepted_at: Mapped[optional_timestamp]
    last_login_at: Mapped[optional_timestamp]
    last_activity_at: Mapped[optional_timestamp]
    created_at: Mapped[timestamp]
    memberships: Mapped[list[Membership]] = relationship(back_populates="account", cascade="all, delete-orphan")


class Membership(Base):
    """An account's place in an organization: admin or member (R1), and its grants (R14)."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("account_id", "organization_id"),
        Index("ix_memberships_org_role_status", "organization_id", "role", "status"),
        Index("ix_memberships_org_status", "organization_id", "status"),  # removed links of a roster
    )
    id: Mapped[intpk]
    account_id: Mapped[account_owned]
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # R9: the address (its key among the organization's) a master chose for its activation letters; R10's
    # reissued letters go there too.
    correspondence_address: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[timestamp]
    account: Mapped[Account] = relationship(back_populates="memberships")
    organization: Mapped[Organization] = relationship()
    grants: Mapped[list[Grant]] = relationship(back_populates="membership", cascade="all, delete-orphan")


class Grant(Base):
    """A portal function granted to a membership (R14)."""

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("membership_id", "permission"),
        # An organization's delegates (its members granted the delegating function, R15), found from the grant.
        Index("ix_grants_permission_membership", "permission", "membership_id"),
    )
    id: Mapped[intpk]
    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id", ondelete="CASCADE"))
    permission: Mapped[str] = mapped_column(String(100))
    granted_at: Mapped[timestamp]
    membership: Mapped[Membership] = relationship(back_populates="grants")


class ClientKey(Base):
    """A calling service's key. Only a SHA-256 digest of its 256-bit secret is stored.

    A client (a name) may hold several keys: after `clients rotate` the old one keeps
    working until its `expires_at` (the grace period) beside the new one.
    """

    __tablename__ = "client_keys"
    __table_args__ = (Index("ix_client_keys_name", "name"),)
    id: Mapped[intpk]
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[timestamp]
    revoked_at: Mapped[optional_timestamp]
    expires_at: Mapped[optional_timestamp]
    # Written at most once a minute per key (service.domain.clients.note_use), never on every request.
    last_used_at: Mapped[optional_timestamp]


class AuditRecord(Base):
    """R27: who did what to whom, when, and the outcome. Append-only for the application."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_portal_time", "portal_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    portal_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[timestamp]
    actor: Mapped[str | None] = mapped_column(String(100))
    client: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    organization: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    comment: Mapped[str | None] = mapped_column(Text)


class SweepRun(Base):
    """One run of the inactivity sweep, from whichever process ran it (cron's CLI, the API), for /metrics:
    written when it starts and completed when it finishes, so a run that never finished shows."""

    __tablename__ = "sweep_runs"
    id: Mapped[intpk]
    portal_id: Mapped[str | None] = mapped_column(String(64))  # null: every portal
    client: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[timestamp]
    finished_at: Mapped[optional_timestamp]
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    warned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    disabled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deleted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class TestingClock(Base):
    """The settable clock's one row, shared by every worker (only with testing.clock: settable)."""

    __tablename__ = "testing_clock"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frozen_at: Mapped[timestamp]


class Notification(Base):
    """The outbox: written in the same transaction as the change that causes it, delivered later."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_portal_recipient", "portal_id", "recipient"),
        Index("ix_notifications_due", "channel", "status", "next_attempt_at"),
    )
    id: Mapped[intpk]
    portal_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))  # "email" | "letter"
    recipient: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[timestamp]
    # "queued" | "sending" (claimed, see leased_until) | "delivered" | "failed" | "exported" (letters)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[optional_timestamp]
    leased_until: Mapped[optional_timestamp]
    delivered_at: Mapped[optional_timestamp]
    last_error: Mapped[str | None] = mapped_column(Text)


class SessionToken(AccountRow, Base):
    """A signed-in person's session. Only a SHA-256 digest of the 256-bit token is stored."""

    __tablename__ = "session_tokens"
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    ended_at: Mapped[optional_timestamp]


class OneTimeCode(AccountRow, Base):
    """Activation letters (R10), registration emails (R12) and recovery codes (R20), argon2-hashed."""

    __tablename__ = "one_time_codes"
    __table_args__ = (Index("ix_codes_account_purpose", "account_id", "purpose"),)
    purpose: Mapped[str] = mapped_column(String(16))  # "activation" | "registration" | "recovery"
    code_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    used_at: Mapped[optional_timestamp]
    # Who sent a recovery code, through which organization (null: the account asked for it itself); the
    # same question is decided again when the code is used (service/domain/recovery.py).
    sent_by: Mapped[str | None] = mapped_column(String(100))
    sent_for: Mapped[str | None] = mapped_column(String(100))


class SecurityAnswer(AccountRow, Base):
    """R20: answers to the security questions chosen at registration, hashed, matched exactly as typed."""

    __tablename__ = "security_answers"
    __table_args__ = (UniqueConstraint("account_id", "position"),)
    position: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(String(200))
    answer_hash: Mapped[str] = mapped_column(String(200))


class Comment(AccountRow, Base):
    """R25: an account's comment history; text stored exactly as written, never rendered."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_account", "account_id", "id"),)
    organization: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[timestamp]
    text: Mapped[str] = mapped_column(Text)


@event.listens_for(AuditRecord, "before_update")
@event.listens_for(AuditRecord, "before_delete")
def _audit_is_append_only(_mapper, _connection, record) -> None:
    """R27: the application adds audit records and never changes or deletes one."""
    raise PermissionError(f"audit record {record.id} is append-only")


class FailedSignIn(AccountRow, Base):
    """R19: one wrong password for a known account; counted in the profile's sliding window.

    Written only while the account row is locked (see service.domain.sessions.record_refusal),
    so parallel wrong guesses are counted one after another and cannot pass the limit.
    """

    __tablename__ = "failed_sign_ins"
    __table_args__ = (Index("ix_failed_sign_ins_account_time", "account_id", "occurred_at"),)
    occurred_at: Mapped[timestamp]


class PasswordHistory(AccountRow, Base):
    """R17: an account's earlier password hashes (argon2), newest last, for the history rule."""

    __tablename__ = "password_history"
    __table_args__ = (Index("ix_password_history_account", "account_id", "id"),)
    password_hash: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[optional_timestamp]
    retired_at: Mapped[timestamp]


class FailedRecovery(AccountRow, Base):
    """R20 + R19: one wrong set of security answers for a known account, counted in the profile's window.

    Written only while the account row is locked (service.domain.recovery.request_recovery), so parallel
    guesses are counted one after another: answers cannot be guessed without limit.
    """

    __tablename__ = "failed_recoveries"
    __table_args__ = (Index("ix_failed_recoveries_account_time", "account_id", "occurred_at"),)
    occurred_at: Mapped[timestamp]


class ServerSecret(Base):
    """A secret every replica over this database shares (the AuthZEN page-token key when the configuration
    names none); made once by the first replica that needs it (service/storage/secrets.py)."""

    __tablename__ = "server_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[timestamp]


class AccessRequest(Base):
    """A member's request for a function it lacks, decided by whoever the policy allows to grant it.

    At most one open request per member, organization and function: the partial unique index holds it
    under parallel requests. An open request past `expires_at` is closed as expired when next read."""

    __tablename__ = "access_requests"
    __table_args__ = (
        Index("ux_access_requests_open", "account_id", "organization_id", "permission", unique=True,
              sqlite_where=literal_column("status = 'open'"), postgresql_where=literal_column("status = 'open'")),
        Index("ix_access_requests_org_status", "organization_id", "status"),
    )
    id: Mapped[intpk]
    portal_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[account_owned]
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    permission: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | approved | declined | expired
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    decided_at: Mapped[optional_timestamp]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    account: Mapped[Account] = relationship()
    organization: Mapped[Organization] = relationship()
