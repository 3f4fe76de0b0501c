"""Creating accounts: one person, one account, with R6's uniqueness rules and R17's password rules."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.config import PortalProfile
from service.domain.errors import Conflict, Invalid
from service.domain.password_rules import broken_rules
from service.domain.passwords import hash_secret
from service.kernel import usernames
from service.kernel.catalog import Status
from service.storage.models import Account


class PasswordPolicyError(Invalid):
    code, title = "password_policy", "Password does not meet the portal's rules"


def check_new_username(username: str) -> str:
    """The normalised name for a new account, or 422 with `errors[].code` `invalid_username`."""
    hidden = usernames.invisible_characters(username)
    if hidden or not usernames.normalise(username):
        what = ("invisible or format characters " + ", ".join(dict.fromkeys(hidden))) if hidden else "nothing"
        raise Invalid(f"the username holds {what}; use visible characters only",
                      [{"field": "username", "code": "invalid_username",
                        "message": "visible characters only: no spaces, zero-width or format characters"}])
    return usernames.normalise(username)


def check_password(password: str, username: str, profile: PortalProfile, previous: tuple[str, ...] = ()) -> None:
    errors = broken_rules(password, username, profile.password, previous)
    if errors:
        raise PasswordPolicyError("the password breaks " + ", ".join(e["code"] for e in errors), errors)


def check_unique(session: Session, portal: str, username: str, email: str, first: str, last: str) -> None:
    """R6: usernames unique ignoring case and look-alikes (the NFKC case-folded key and the
    UTS #39 skeletons of the name as typed and folded); an email may repeat only with the same first and last name."""
    both = list(usernames.skeleton_columns(username).values())
    if session.scalar(select(Account.id).where(Account.portal_id == portal,
                                               or_(Account.username_key == usernames.username_key(username),
                                                   Account.username_skeleton.in_(both),
                                                   Account.username_skeleton_typed.in_(both)))
                      .limit(1)):
        raise Conflict(f"the username {username!r} is taken (or one that looks like it)", "username_taken")
    check_unique_email(session, portal, email, first, last)


def check_unique_email(session: Session, portal: str, email: str, first: str, last: str,
                       exclude: int | None = None) -> None:
    """R6 (003 wins over 001): an email may repeat only when email, first and last name all match exactly."""
    query = select(Account.email, Account.first_name, Account.last_name).where(
        Account.portal_id == portal, Account.email_key == email.casefold(), Account.status != Status.REMOVED)
    if exclude is not None:
        query = query.where(Account.id != exclude)
    for other_email, other_first, other_last in session.execute(query).all():
        if (other_email, other_first, other_last) != (email, first, last):
            raise Conflict("the email is used by another account; it may be reused only when email, "
                           "first name and last name all match exactly", "email_taken")


def new_account(session: Session, profile: PortalProfile, portal: str, *, username: str, first_name: str,
                last_name: str, email: str, phone: str | None, password: str | None, status: str, now: datetime,
                support: bool = False, password_is_temporary: bool = False, set_by_other: bool = False,
                terms_accepted: bool = True) -> Account:
    """A new account of the portal.

    `password_is_temporary`: a generated password (the activation letter's, R10), never checked against R17.
    `set_by_other`: the password was chosen by someone other than the account's owner (a Primary User's
    subordinate, an admin set up by the payer or support): it meets R17 but is stored as never set by
    the owner, so sign-in answers `password_expired` and /v1/authorize denies with it until the owner
    sets its own with PUT .../password: a password someone else knows is not the owner's.
    `terms_accepted`: False when the account has not accepted the terms of use itself (R7); it then
    accepts them at its first sign-in.
    """
    username = check_new_username(username)
    check_unique(session, portal, username, email, first_name, last_name)
    if password is not None and not password_is_temporary:
        check_password(password, username, profile)
    temporary = password_is_temporary or set_by_other
    account = Account(portal_id=portal, username=username, username_key=usernames.username_key(username),
                      **usernames.skeleton_columns(username),
                      first_name=first_name, last_name=last_name, email=email, email_key=email.casefold(),
                      phone=phone, password_hash=hash_secret(password) if password else None,
                      password_changed_at=None if temporary or password is None else now,
                      status=status, is_support=support, terms_accepted_at=now if terms_accepted else None, created_at=now,
                      last_activity_at=now)
    session.add(account)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent registration took the name between the check and the insert.
        raise Conflict(f"the username {username!r} is taken", "username_taken") from None
    return account
