"""Sign-in and sessions: the one place sign-in is decided (lockout and expiry hook in here).

A wrong password and an unknown username answer alike, after the same argon2
work, so usernames cannot be probed; an account's status is revealed only to
someone who knows its password.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.config import PortalProfile
from service.domain import audit
from service.domain.errors import DomainError
from service.domain.passwords import verify_secret
from service.storage.facts import find_account, password_current
from service.storage.models import Account, SessionToken

REFUSED_STATUS = {
    "locked": "account_locked",
    "disabled": "account_disabled",
    "pending_activation": "pending_activation",
    "pending_approval": "pending_approval",
    "unverified": "unverified",
    "removed": "account_removed",
}


class SignInRefused(DomainError):
    status, title = 401, "Sign-in refused"

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


class InvalidSession(DomainError):
    status, code, title = 401, "invalid_session", "Invalid session"


@dataclass(frozen=True)
class SignedIn:
    token: str
    expires_at: datetime
    password_expires_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_expires_at(account: Account, profile: PortalProfile) -> datetime | None:
    days = profile.password.expiry_days
    if days is None or account.password_changed_at is None:
        return None
    return account.password_changed_at + timedelta(days=days)


def sign_in(session: Session, profile: PortalProfile, portal: str, username: str, password: str,
            now: datetime) -> SignedIn:
    """A new session, or SignInRefused; the caller records refusals (they roll back with this transaction)."""
    account = find_account(session, portal, username)
    if not verify_secret(account.password_hash if account else None, password) or account is None:
        raise SignInRefused("invalid_credentials", "the username or password is not correct")
    refused = REFUSED_STATUS.get(account.status)
    if refused is None and not password_current(account, profile, now):
        refused = "password_expired"
    if refused:
        raise SignInRefused(refused, f"the account cannot sign in: {refused.replace('_', ' ')}")
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(minutes=profile.session_minutes)
    session.add(SessionToken(token_digest=_digest(token), account_id=account.id, created_at=now, expires_at=expires))
    account.last_login_at = account.last_activity_at = now
    audit.record(session, portal=portal, now=now, action="sign_in", outcome="done", actor=account.username)
    return SignedIn(token, expires, password_expires_at(account, profile))


def account_for(session: Session, portal: str, token: str | None, now: datetime) -> Account:
    """The active account behind a session token, or InvalidSession."""
    if not token:
        raise InvalidSession("send the session token from POST .../sessions in X-Session-Token")
    row = session.scalar(select(SessionToken).where(SessionToken.token_digest == _digest(token)))
    account = session.get(Account, row.account_id) if row else None
    if row is None or row.ended_at is not None or row.expires_at <= now or account is None \
            or account.portal_id != portal or account.status != "active":
        raise InvalidSession("the session is unknown, ended or expired; sign in again")
    return account


def sign_out(session: Session, token: str, now: datetime) -> None:
    session.execute(update(SessionToken).where(SessionToken.token_digest == _digest(token),
                                               SessionToken.ended_at.is_(None)).values(ended_at=now))


def end_all(session: Session, account_id: int, now: datetime) -> None:
    """Removing or disabling an account ends its sessions at once."""
    session.execute(update(SessionToken).where(SessionToken.account_id == account_id,
                                               SessionToken.ended_at.is_(None)).values(ended_at=now))
