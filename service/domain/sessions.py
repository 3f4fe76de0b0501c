"""Sign-in and sessions: the one place sign-in is decided, with lockout (R19) and expiry (R18).

A wrong password and an unknown username answer alike, after the same argon2
work, so usernames cannot be probed; an account's status is revealed only to
someone who knows its password. A wrong password is `invalid_credentials`
whatever the account's state; `account_locked` is told only with the right one.

Argon2 runs before the write transaction (`sign_in_ahead`, see service.domain.passwords): the
transaction re-reads the account under its lock and reuses the verification only for the very
hash it reads, so the write lock is held for milliseconds, not for the hashing.

Lockout is decided in two steps, because a refusal rolls back the sign-in's
own transaction: `sign_in` verifies and raises, then the caller records the
refusal with `record_refusal` in a transaction of its own. That transaction
locks the account row (SELECT ... FOR UPDATE on PostgreSQL; on SQLite
Database.transaction() holds the write lock from BEGIN IMMEDIATE), counts the
failures in the window, adds this one and, at the limit, locks the account:
count, insert and lock are one serialized step per account, so parallel wrong
guesses from any number of processes are counted one after another and exactly
`max_failures` of them are ever counted before the lock.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service.config import PortalProfile
from service.domain import audit, orphans
from service.domain.errors import DomainError
from service.domain.passwords import verify_secret
from service.kernel import facts
from service.kernel.catalog import Status
from service.kernel.usernames import username_key
from service.storage.models import Account, FailedRecovery, FailedSignIn, SessionToken

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
    return facts.password_expires_at(account.password_changed_at, profile.password.expiry_days)


def sign_in(session: Session, profile: PortalProfile, portal: str, username: str, password: str,
            now: datetime, accepted_terms: bool | None = None) -> SignedIn:
    """A new session, or SignInRefused; the caller records refusals (they roll back with this transaction).

    R7: an account that has not accepted the terms of use (an admin set up without them, a masshealth
    subordinate, whose Primary User cannot accept them for it) accepts them here, at its first sign-in,
    with `accepted_terms: true`; without it the sign-in is 401 `terms_not_accepted`.
    """
    account = authenticate(session, profile, portal, username, password, now)
    if not facts.password_current(account.password_hash is not None, account.password_changed_at,
                                  profile.password.expiry_days, now):
        raise SignInRefused("password_expired", "the password has expired or was set by someone else; "
                                                "set your own with PUT .../password")
    if account.terms_accepted_at is None:
        if accepted_terms is not True:
            raise SignInRefused("terms_not_accepted", "accept the terms of use to sign in: send "
                                                      "accepted_terms: true (R7)")
        account.terms_accepted_at = now
        audit.record(session, portal=portal, now=now, action="accept_terms", outcome="done",
                     actor=account.username, target=account.username)
    clear_failures(session, account.id)  # a successful sign-in starts the window afresh
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(minutes=profile.session_minutes)
    session.add(SessionToken(token_digest=_digest(token), account_id=account.id, created_at=now, expires_at=expires))
    account.last_login_at = account.last_activity_at = now
    audit.record(session, portal=portal, now=now, action="sign_in", outcome="done", actor=account.username)
    return SignedIn(token, expires, password_expires_at(account, profile))


def _account_row(session: Session, portal: str, username: str, *, lock: bool = False) -> Account | None:
    """The account's own row by username, nothing it links to: a sign-in decides on the row alone (hash, status,
    password age, terms), so its memberships, grants and organizations are not read. With `lock`, read under
    the row lock (see `lock_account`), so the hash verified and the status decided on are the row as locked."""
    statement = select(Account).where(Account.portal_id == portal, Account.username_key == username_key(username))
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return session.scalars(statement).first()


def authenticate_ahead(session: Session, portal: str, username: str, password: str) -> Account | None:
    """The argon2 work of `authenticate`, done before its write transaction (service.domain.passwords).

    Returns the account when the password is right for it as read now, else None; `authenticate`
    decides again inside the transaction, on the row as it is then. An unknown username verifies
    against the timing equalizer: one statement and one verification on every path."""
    account = _account_row(session, portal, username)
    right = verify_secret(account.password_hash if account else None, password)
    return account if right and account is not None else None


def sign_in_ahead(ctx, username: str, password: str) -> None:
    """`work.run`'s ahead step of a sign-in: the password is verified before the write lock is taken."""
    authenticate_ahead(ctx.session, ctx.portal, username, password)


def authenticate(session: Session, profile: PortalProfile, portal: str, username: str, password: str,
                 now: datetime) -> Account:
    """The account when the password is right and its status lets it sign in (expiry is the caller's).

    Raises SignInRefused; the caller records it with `record_refusal` after this transaction rolled back.
    """
    # One read, under the row lock: the hash and the status as of now, after any lock or password change in
    # flight (the verification done ahead is reused only when the hash read here is the one it verified).
    account = _account_row(session, portal, username, lock=True)
    if not verify_secret(account.password_hash if account else None, password) or account is None:
        raise SignInRefused("invalid_credentials", "the username or password is not correct")
    refused = REFUSED_STATUS.get(account.status)
    if refused:
        raise SignInRefused(refused, f"the account cannot sign in: {refused.replace('_', ' ')}")
    return account


def lock_account(session: Session, account_id: int) -> Account:
    """The account row, re-read and locked until this transaction ends.

    PostgreSQL: SELECT ... FOR UPDATE. SQLite ignores FOR UPDATE, but Database.transaction()
    began with BEGIN IMMEDIATE, so the whole database is already this transaction's to write.
    """
    return session.scalars(_locked(account_id)).one()


def _locked(account_id: int):
    """The account row by id, under its row lock, overwriting what the session held."""
    return select(Account).where(Account.id == account_id).with_for_update().execution_options(populate_existing=True)


def record_refusal(session: Session, profile: PortalProfile, portal: str, username: str, code: str,
                   now: datetime, action: str = "sign_in", client: str | None = None) -> None:
    """Audit a refused sign-in; a wrong password for a known account is also a counted failure (R19).

    Unknown usernames leave nothing but the audit record: no row is created for them, but the same reads are
    made (`_as_if_counted`).
    """
    detail: dict = {}
    known = session.execute(select(Account.id, Account.username).where(
        Account.portal_id == portal, Account.username_key == username_key(username))).first()
    if code == "invalid_credentials" and known is not None:
        detail = record_failure(session, profile, portal, known.id, now)
    elif code == "invalid_credentials":
        _as_if_counted(session, profile, now)
    # R27: recorded under the account it counted against (its canonical username), not the text as typed.
    who = known.username if known is not None else username
    audit.record(session, portal=portal, now=now, action=action, outcome="refused", actor=who,
                 client=client, target=who if known is not None else None, reasons=[code], detail=detail)


NO_ACCOUNT = 0  # no account's id: ids start at 1


def _as_if_counted(session: Session, profile: PortalProfile, now: datetime) -> None:
    """An unknown username's refusal runs the reads `record_failure` runs for an active account, against no
    account: the row lock, the window's clean-up and its count. So the time a refusal takes does not tell
    whether the username is an account's (the argon2 verification is already alike on both paths). Only the
    failure's own row is left out: nothing is written for a name that is no account."""
    session.scalars(_locked(NO_ACCOUNT)).first()
    _failures_in_window(session, profile, NO_ACCOUNT, now)


def _failures_in_window(session: Session, profile: PortalProfile, account_id: int, now: datetime) -> int:
    """The account's failures older than the lockout window deleted; how many remain within it."""
    window_start = now - timedelta(minutes=profile.lockout.window_minutes)
    session.execute(delete(FailedSignIn).where(FailedSignIn.account_id == account_id,
                                               FailedSignIn.occurred_at <= window_start))
    return session.scalar(select(func.count()).select_from(FailedSignIn)
                          .where(FailedSignIn.account_id == account_id, FailedSignIn.occurred_at > window_start))


def record_failure(session: Session, profile: PortalProfile, portal: str, account_id: int,
                   now: datetime) -> dict:
    """Count one failed sign-in in the sliding window and lock the account at the limit, atomically.

    Only an active account counts failures: a locked one stays locked, and a pending or disabled
    one keeps its status. Returns what happened, for the audit record.
    """
    account = lock_account(session, account_id)
    if account.status != Status.ACTIVE:
        return {"counted": False, "status": account.status}
    earlier = _failures_in_window(session, profile, account_id, now)
    session.add(FailedSignIn(account_id=account_id, occurred_at=now))
    failures = earlier + 1
    locked = failures >= profile.lockout.max_failures
    if locked:
        reach = orphans.admin_organizations(session, [account_id])
        before = orphans.orphaned(session, reach)
        account.status = Status.LOCKED
        end_all(session, account_id, now)
        audit.record(session, portal=portal, now=now, action="lock", outcome="done", target=account.username,
                     reasons=["too_many_failed_sign_ins"],
                     detail={"failures": failures, "window_minutes": profile.lockout.window_minutes})
        # R3, R4: locking an organization's last active admin is reported to support at once.
        orphans.report_new_orphans(session, portal, reach, before, now, cause="lockout")
    return {"counted": True, "failures_in_window": failures, "locked": locked}


def clear_failures(session: Session, account_id: int) -> None:
    """Forget the failure window: after a successful sign-in, an admin's unlock or a completed recovery."""
    session.execute(delete(FailedSignIn).where(FailedSignIn.account_id == account_id))


def recovery_failures(session: Session, profile: PortalProfile, account_id: int, now: datetime) -> int:
    """Wrong answers for the account within the profile's recovery window."""
    _, window = profile.recovery_limit
    return session.scalar(select(func.count()).select_from(FailedRecovery).where(
        FailedRecovery.account_id == account_id, FailedRecovery.occurred_at > now - timedelta(minutes=window)))


def clear_recovery_failures(session: Session, account_id: int) -> None:
    """Forget wrong answers: after a completed recovery, or when an admin unlocks or sends recovery."""
    session.execute(delete(FailedRecovery).where(FailedRecovery.account_id == account_id))


def account_for(session: Session, portal: str, token: str | None, now: datetime) -> Account:
    """The active account behind a session token, or InvalidSession."""
    if not token:
        raise InvalidSession("send the session token from POST .../sessions in X-Session-Token")
    # The token and its account in one statement: every change and read on a person's behalf starts here.
    row, account = session.execute(
        select(SessionToken, Account).outerjoin(Account, Account.id == SessionToken.account_id)
        .where(SessionToken.token_digest == _digest(token))).first() or (None, None)
    if row is None or row.ended_at is not None or row.expires_at <= now or account is None \
            or account.portal_id != portal or account.status != Status.ACTIVE:
        raise InvalidSession("the session is unknown, ended or expired; sign in again")
    return account


def sign_out(session: Session, token: str, now: datetime) -> None:
    session.execute(update(SessionToken).where(SessionToken.token_digest == _digest(token),
                                               SessionToken.ended_at.is_(None)).values(ended_at=now))


def end_all(session: Session, account_id: int, now: datetime, keep: str | None = None) -> None:
    """End the account's sessions at once (remove, disable, lock, a new password), all but `keep`'s token."""
    query = update(SessionToken).where(SessionToken.account_id == account_id, SessionToken.ended_at.is_(None))
    if keep:
        query = query.where(SessionToken.token_digest != _digest(keep))
    session.execute(query.values(ended_at=now))
