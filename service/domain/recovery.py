"""Changing a password (R17, R18) and self-service password recovery (R20).

Both set a password the same way (`set_password`): the portal's rules, the
history rule against the current and earlier hashes, `password_changed_at`
from the injected clock, the failure window forgotten.

- A change is made by the account itself only. It is authenticated by the
  current password, so an account whose password has expired (and so cannot
  sign in) can still change it; a session token, when sent, must be the
  account's own. A wrong current password is a failed sign-in (R19).
- Recovery asks the security answers chosen at registration, compared exactly
  as first typed (argon2). Right or wrong, known account or not, the caller
  hears the same 202 after the same work; only right answers queue the email
  with a security code (the same email an admin's `send-password-recovery`
  sends). Wrong answers are counted (R19's numbers unless the profile sets its
  own); at the limit nothing is sent until the window passes or an admin acts.
  The code is one-time, stored hashed, valid for the portal's recovery minutes.
  Completing recovery unlocks a locked account and ends every session.
- A password change ends every other session of the account: whoever held the old one is out.
- Portals without security questions (recovery.security_questions == 0) do
  not offer self-service recovery: 403 `recovery_not_offered`. It says nothing
  about any account, only about the portal; an admin can still send recovery.
"""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.config import PortalProfile
from service.domain import audit, sessions
from service.domain.administration import one_time_code, send_recovery_code
from service.domain.decisions import Question, Resource
from service.domain.errors import DomainError, Invalid, NotFound
from service.domain.passwords import draw_ahead, fresh_secret, hash_ahead, hash_secret, verify_secret
from service.domain.people import check_password
from service.domain.registration import CodeProblem
from service.domain.work import Context
from service.kernel.catalog import Status
from service.kernel.usernames import username_key
from service.storage.facts import find_account
from service.storage.models import Account, FailedRecovery, OneTimeCode, PasswordHistory, SecurityAnswer

# Statuses whose owner may recover the password; recovery is also how a locked account unlocks (R19).
RECOVERABLE = (Status.ACTIVE, Status.LOCKED)


class OnlyTheAccountItself(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class RecoveryNotOffered(DomainError):
    status, code, title = 403, "recovery_not_offered", "Self-service recovery is not offered"


def previous_hashes(session: Session, account: Account, profile: PortalProfile) -> tuple[str, ...]:
    """The hashes the history rule compares with, newest first: the current one, then retired ones."""
    keep = profile.password.history
    if keep == 0:
        return ()
    current = (account.password_hash,) if account.password_hash else ()
    retired = session.scalars(select(PasswordHistory.password_hash)
                              .where(PasswordHistory.account_id == account.id)
                              .order_by(PasswordHistory.id.desc()).limit(max(keep - len(current), 0)))
    return current + tuple(retired)


def set_password(ctx: Context, account: Account, new_password: str) -> None:
    """R17 (rules and history), then the new hash; the old one joins the history."""
    check_password(new_password, account.username, ctx.profile, previous_hashes(ctx.session, account, ctx.profile))
    if account.password_hash:
        ctx.session.add(PasswordHistory(account_id=account.id, password_hash=account.password_hash,
                                        set_at=account.password_changed_at, retired_at=ctx.now))
        ctx.session.flush()
        # Keep only as many retired hashes as the rule can look at.
        stale = list(ctx.session.scalars(select(PasswordHistory.id).where(PasswordHistory.account_id == account.id)
                                         .order_by(PasswordHistory.id.desc())
                                         .offset(max(ctx.profile.password.history, 1))))
        if stale:
            ctx.session.execute(delete(PasswordHistory).where(PasswordHistory.id.in_(stale)))
    account.password_hash = hash_secret(new_password)
    account.password_changed_at = account.last_activity_at = ctx.now
    sessions.clear_failures(ctx.session, account.id)


def set_password_ahead(ctx: Context, account: Account, new_password: str) -> None:
    """The argon2 work of `set_password` (the history rule's verifications, the new hash), done ahead."""
    try:
        check_password(new_password, account.username, ctx.profile,
                       previous_hashes(ctx.session, account, ctx.profile))
    except DomainError:
        return  # refused inside as well: no hash is made
    hash_ahead(new_password)


def change_password_ahead(ctx: Context, username: str, current_password: str, new_password: str) -> None:
    """`work.run`'s ahead step of `change_password`: its argon2 work before the write lock."""
    account = sessions.authenticate_ahead(ctx.session, ctx.portal, username, current_password)
    if account is not None:
        set_password_ahead(ctx, account, new_password)


def change_password(ctx: Context, username: str, current_password: str, new_password: str,
                    token: str | None) -> Account:
    """R18: the account changes its own password, expired or not.

    Raises OnlyTheAccountItself (403) when a session of another account is sent, and
    sessions.SignInRefused (401) for a wrong current password or a status that cannot sign in;
    the caller records that refusal with sessions.record_refusal after this transaction rolled back.
    """
    if token is not None:
        actor = sessions.account_for(ctx.session, ctx.portal, token, ctx.now)
        if actor.username_key != username_key(username):
            raise OnlyTheAccountItself("only the account itself changes its password")
    account = sessions.authenticate(ctx.session, ctx.profile, ctx.portal, username, current_password, ctx.now)
    set_password(ctx, account, new_password)
    # Whoever knew the old password is signed out everywhere; the session that made the change stays.
    sessions.end_all(ctx.session, account.id, ctx.now, keep=token)
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action="change_password", outcome="done",
                 actor=account.username, client=ctx.client, target=account.username)
    return account


def _stored_answers(session: Session, account: Account | None) -> list[SecurityAnswer]:
    if account is None:
        return []
    return list(session.scalars(select(SecurityAnswer).where(SecurityAnswer.account_id == account.id)
                                .order_by(SecurityAnswer.position)))


def request_recovery_ahead(ctx: Context, username: str, answers: list[str]) -> None:
    """`work.run`'s ahead step of `request_recovery`: the same argon2 work on every path, before the write lock."""
    if ctx.profile.recovery.security_questions == 0:
        return
    stored = _stored_answers(ctx.session, find_account(ctx.session, ctx.portal, username))
    for i, answer in enumerate(answers):
        verify_secret(stored[i].answer_hash if i < len(stored) else None, answer)
    draw_ahead(one_time_code)


def request_recovery(ctx: Context, username: str, answers: list[str]) -> None:
    """R20: right answers queue the recovery email; every outcome looks the same to the caller.

    Wrong answers count toward a limit (the profile's lockout numbers unless `recovery` sets its own);
    at the limit even right answers send nothing until the window has passed or an admin acts.
    Every path does the same work: one argon2 verification per answer given (against a dummy hash
    where the account or the answer does not exist) and one argon2 hash of a fresh code, kept only
    when it is sent. So neither the answer nor its time tells right answers from wrong ones.
    The account row is locked while the failures are counted, so parallel guesses are counted one
    after another, across processes.
    """
    if ctx.profile.recovery.security_questions == 0:
        raise RecoveryNotOffered("this portal does not offer self-service password recovery; "
                                 "an admin of your organization can send you a recovery email")
    found = find_account(ctx.session, ctx.portal, username)
    account = sessions.lock_account(ctx.session, found.id) if found else None
    stored = _stored_answers(ctx.session, account)
    matches = [verify_secret(stored[i].answer_hash if i < len(stored) else None, answer)
               for i, answer in enumerate(answers)]
    code, code_hash = fresh_secret(one_time_code)  # hashed whatever the outcome: the same work on every path
    limit, _ = ctx.profile.recovery_limit
    failures = sessions.recovery_failures(ctx.session, ctx.profile, account.id, ctx.now) if account else 0
    if account is None:
        refusal = "unknown_account"
    elif failures >= limit:
        refusal = "recovery_limit"
    elif not stored or len(answers) != len(stored) or not all(matches):
        refusal = "wrong_answers"
        ctx.session.add(FailedRecovery(account_id=account.id, occurred_at=ctx.now))
        failures += 1
    elif account.status not in RECOVERABLE:
        refusal = "target_status"
    else:
        refusal = None
    who = account.username if account else username  # the account it counted against, when there is one
    if refusal is not None:
        audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action="request_password_recovery",
                     outcome="refused", actor=who, client=ctx.client, target=who, reasons=[refusal],
                     detail={"answers_given": len(answers), "failures_in_window": failures, "limit": limit})
        return
    send_recovery_code(ctx, account, code, code_hash)
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action="request_password_recovery", outcome="done",
                 actor=account.username, client=ctx.client, target=account.username)


def _current_recovery_code(session: Session, account: Account) -> OneTimeCode | None:
    return session.scalar(select(OneTimeCode).where(OneTimeCode.account_id == account.id,
                                                    OneTimeCode.purpose == "recovery",
                                                    OneTimeCode.used_at.is_(None))
                          .order_by(OneTimeCode.id.desc()).limit(1))


def _still_allowed(ctx: Context, code: OneTimeCode, account: Account) -> bool:
    """R15: a code an administrator sent is that administrator's decision to hand the account's password to
    the code's reader; the authority behind it may have changed since (the account gained a function a
    delegate lacks, the sender was disabled). The same question, by the same sender, decided again now."""
    question = Question("send_password_recovery", Resource("account", account.username, code.sent_for))
    try:
        decision = ctx.decider().decide(code.sent_by, question)
    except (NotFound, Invalid):  # the organization or the link is gone: nothing left to allow it
        return False
    return decision.allowed


def confirm_recovery_ahead(ctx: Context, username: str, code: str, new_password: str) -> None:
    """`work.run`'s ahead step of `confirm_recovery`: the code's verification and the new hash, before the lock."""
    account = find_account(ctx.session, ctx.portal, username)
    current = _current_recovery_code(ctx.session, account) if account else None
    if verify_secret(current.code_hash if current else None, code) and account is not None:
        set_password_ahead(ctx, account, new_password)


def confirm_recovery(ctx: Context, username: str, code: str, new_password: str) -> Account:
    """R20: the emailed code (once, within its minutes) and a new password; unlocks a locked account (R19).

    The account row is locked before the code is read, so one code cannot be used twice at once.
    A new password that breaks the rules leaves the code unused (the transaction rolls back).
    """
    found = find_account(ctx.session, ctx.portal, username)
    account = sessions.lock_account(ctx.session, found.id) if found else None
    current = _current_recovery_code(ctx.session, account) if account else None
    valid = verify_secret(current.code_hash if current else None, code)
    if account is None or current is None or not valid or account.status not in RECOVERABLE:
        raise CodeProblem("recovery_invalid", "the recovery code is not correct or was already used")
    if current.expires_at <= ctx.now:
        raise CodeProblem("recovery_expired",
                          "the recovery code has expired; answer the security questions again for a new one")
    if current.sent_by is not None and not _still_allowed(ctx, current, account):
        raise CodeProblem("recovery_invalid", "the recovery code is no longer valid: whoever sent it may no "
                                              "longer send it; answer the security questions for a new one")
    set_password(ctx, account, new_password)
    current.used_at = ctx.now
    sessions.clear_recovery_failures(ctx.session, account.id)
    was = account.status
    account.status = Status.ACTIVE
    sessions.end_all(ctx.session, account.id, ctx.now)
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action="recover_password", outcome="done",
                 actor=account.username, client=ctx.client, target=account.username,
                 detail={"unlocked": was == Status.LOCKED})
    return account
