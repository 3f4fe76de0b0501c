"""Self-registration, activation letters and registration confirmation (R6-R13)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import PortalProfile
from service.domain import audit
from service.domain.errors import DomainError, Invalid, NotFound
from service.domain.notify import Notifier
from service.domain.organizations import admins_of, get_organization
from service.domain.passwords import draw_ahead, fresh_secret, hash_ahead, hash_secret, verify_secret
from service.domain.people import check_password, new_account
from service.domain.setup import generate_password
from service.kernel.catalog import Status, Role
from service.storage.facts import find_account
from service.storage.models import Account, Membership, OneTimeCode, Organization, SecurityAnswer


class RegistrationClosed(DomainError):
    status, code, title = 403, "self_registration_closed", "Self-registration is not offered"


class CodeProblem(DomainError):
    status, title = 422, "Code refused"

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


def field_problem(code: str, field: str, message: str) -> Invalid:
    problem = Invalid(message, [{"field": field, "code": code, "message": message}])
    problem.code = code
    return problem


def required(field: str, message: str) -> Invalid:
    """A missing field: 422 validation_error whose field error says `required`, as the schema's own do."""
    return Invalid(message, [{"field": field, "code": "required", "message": message}])


@dataclass(frozen=True)
class Registrant:
    organization: str
    username: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    password: str
    security_questions: list[tuple[str, str]]
    accepted_terms: bool
    address_id: str | None = None
    business_type: str | None = None
    region: str | None = None


def _check_registrant(r: Registrant, profile: PortalProfile) -> None:
    if r.accepted_terms is not True:
        raise field_problem("terms_not_accepted", "accepted_terms", "the terms of use must be accepted (R7)")
    wanted = profile.recovery.security_questions
    if len(r.security_questions) < wanted:
        raise required("security_questions", f"{wanted} security questions are required (R20)")
    if profile.business_types is not None:
        if r.business_type is None:
            raise required("business_type", f"the business type is required (R11): one of "
                                            f"{', '.join(profile.business_types)}")
        if r.business_type not in profile.business_types:
            raise field_problem("validation_error", "business_type",
                                f"one of {', '.join(profile.business_types)} (R11)")
        if not r.region:
            raise required("region", "the region is required (R11)")


def _has_members(session: Session, org: Organization) -> bool:
    return session.scalar(select(Membership.id).where(Membership.organization_id == org.id,
                                                      Membership.status != Status.REMOVED).limit(1)) is not None


def register_ahead(ctx, r: Registrant) -> None:
    """`work.run`'s ahead step of `register`: its argon2 work (password or temporary password and activation
    code, security answers) before the write lock; the transaction decides again who registers first."""
    if ctx.profile.registration == "admin_created":
        return
    org = ctx.session.scalar(select(Organization).where(Organization.portal_id == ctx.portal,
                                                        Organization.key == r.organization))
    if org is None:
        return
    from service.domain.administration import one_time_code

    if ctx.profile.registration == "first_registrant_is_admin" and not _has_members(ctx.session, org):
        draw_ahead(generate_password)
        draw_ahead(one_time_code)
    else:
        hash_ahead(r.password)
    for _, answer in r.security_questions:
        hash_ahead(answer)


def register(session: Session, profile: PortalProfile, portal: str, r: Registrant, notifier: Notifier,
             now: datetime, client: str | None) -> tuple[Account, str, list[Account]]:
    """Returns the account, its role in the organization, and the organization's admins."""
    if profile.registration == "admin_created":
        raise RegistrationClosed("in this portal only a Primary User creates accounts (R13)")
    _check_registrant(r, profile)
    org = get_organization(session, portal, r.organization)
    session.execute(select(Organization.id).where(Organization.id == org.id).with_for_update())
    first = profile.registration == "first_registrant_is_admin" and not _has_members(session, org)
    if first:
        address = _correspondence_address(org, r.address_id)
        check_password(r.password, r.username, profile)
        temporary, _ = fresh_secret(generate_password)
        account = new_account(session, profile, portal, username=r.username, first_name=r.first_name,
                              last_name=r.last_name, email=r.email, phone=r.phone, password=temporary,
                              status=Status.PENDING_ACTIVATION, now=now, password_is_temporary=True)
        role = Role.ADMIN
    else:
        account = new_account(session, profile, portal, username=r.username, first_name=r.first_name,
                              last_name=r.last_name, email=r.email, phone=r.phone, password=r.password,
                              status=Status.PENDING_APPROVAL, now=now)
        role = Role.MEMBER
    for position, (question, answer) in enumerate(r.security_questions, start=1):
        session.add(SecurityAnswer(account_id=account.id, position=position, question=question,
                                   answer_hash=hash_secret(answer)))
    session.add(Membership(account_id=account.id, organization_id=org.id, role=role, status=Status.ACTIVE,
                           correspondence_address=address.address_key if first else None, created_at=now))
    session.flush()
    admins = admins_of(session, org)
    if first:
        code = _new_code(session, account, profile, now)
        notifier.letter(session, portal, _format_address(address), "activation_letter",
                        {"username": account.username, "organization": org.key, "activation_code": code,
                         "temporary_password": temporary, "valid_days": profile.activation_code_days}, now)
    else:
        for admin in admins:
            notifier.email(session, portal, admin.email, "account_awaits_approval",
                           {"username": account.username, "organization": org.key,
                            "name": f"{account.first_name} {account.last_name}"}, now)
    audit.record(session, portal=portal, now=now, action="register", outcome="done", actor=account.username,
                 client=client, target=account.username, organization=org.key, detail={"role": role})
    return account, role, admins


def _correspondence_address(org: Organization, address_id: str | None):
    """R9: the master picks one of the organization's addresses on file; none on file is refused."""
    if not org.addresses:
        raise field_problem("no_correspondence_address", "address_id",
                            "the organization has no address on file; fix it at enrollment first (R9)")
    if address_id is None:
        raise field_problem("validation_error", "address_id",
                            "choose the correspondence address for the activation letter: "
                            + ", ".join(a.address_key for a in org.addresses))
    for address in org.addresses:
        if address.address_key == address_id:
            return address
    raise field_problem("validation_error", "address_id", f"no address {address_id!r} on file")


def _chosen_address(org: Organization, link: Membership):
    """R9, R10: the address the master chose at registration. A master registered before migration 0008
    recorded no choice: its letter goes to the first address on file, as it did then."""
    if link.correspondence_address is None:
        return org.addresses[0] if org.addresses else None
    return next((a for a in org.addresses if a.address_key == link.correspondence_address), None)


def _format_address(address) -> str:
    return f"{address.line1}, {address.city}, {address.state} {address.zip}"


def _new_code(session: Session, account: Account, profile: PortalProfile, now: datetime) -> str:
    """R10: the activation code, valid for the portal's days; any earlier one stops working."""
    from service.domain.administration import issue_code

    return issue_code(session, account, "activation", timedelta(days=profile.activation_code_days), now)


def _current_code(session: Session, account: Account, purpose: str) -> OneTimeCode | None:
    return session.scalar(select(OneTimeCode).where(OneTimeCode.account_id == account.id,
                                                    OneTimeCode.purpose == purpose,
                                                    OneTimeCode.used_at.is_(None))
                          .order_by(OneTimeCode.id.desc()).limit(1))


def activate_ahead(ctx, *, username: str, code: str, temporary_password: str, new_password: str) -> None:
    """`work.run`'s ahead step of `activate`: the code's and the temporary password's verification, the new hash."""
    account = find_account(ctx.session, ctx.portal, username)
    current = _current_code(ctx.session, account, "activation") if account else None
    valid = verify_secret(current.code_hash if current else None, code)
    valid = verify_secret(account.password_hash if account else None, temporary_password) and valid
    if valid:
        hash_ahead(new_password)


def confirm_registration_ahead(ctx, *, username: str, code: str) -> None:
    """`work.run`'s ahead step of `confirm_registration`: the code's verification before the write lock."""
    account = find_account(ctx.session, ctx.portal, username)
    current = _current_code(ctx.session, account, "registration") if account else None
    verify_secret(current.code_hash if current else None, code)


def activate(session: Session, profile: PortalProfile, portal: str, *, username: str, code: str,
             temporary_password: str, new_password: str, now: datetime) -> Account:
    """R10: the code exactly as printed, with the temporary password, within its days; then a new password."""
    account = find_account(session, portal, username)
    current = _current_code(session, account, "activation") if account else None
    valid = verify_secret(current.code_hash if current else None, code)
    valid = verify_secret(account.password_hash if account else None, temporary_password) and valid
    if account is None or account.status != Status.PENDING_ACTIVATION or current is None or not valid:
        raise CodeProblem("activation_code_invalid", "the activation code or temporary password is not correct")
    if current.expires_at <= now:
        raise CodeProblem("activation_code_expired",
                          "the activation code has expired; ask support staff for a new one (R10)")
    if new_password == temporary_password:
        raise field_problem("password_policy", "new_password", "the new password must differ from the temporary one")
    check_password(new_password, account.username, profile)
    current.used_at = now
    account.password_hash = hash_secret(new_password)
    account.password_changed_at = account.last_activity_at = now
    account.status = Status.ACTIVE
    audit.record(session, portal=portal, now=now, action="activate", outcome="done", actor=account.username,
                 target=account.username)
    return account


def confirm_registration(session: Session, portal: str, *, username: str, code: str, now: datetime) -> Account:
    """R12: the user finishes registration with the emailed code: unverified becomes active."""
    account = find_account(session, portal, username)
    current = _current_code(session, account, "registration") if account else None
    valid = verify_secret(current.code_hash if current else None, code)
    if account is None or account.status != Status.UNVERIFIED or current is None or not valid:
        raise CodeProblem("activation_code_invalid", "the registration code is not correct")
    if current.expires_at <= now:
        raise CodeProblem("activation_code_expired", "the registration code has expired; ask for a new email")
    current.used_at = now
    account.status = Status.ACTIVE
    account.last_activity_at = now
    audit.record(session, portal=portal, now=now, action="confirm_registration", outcome="done",
                 actor=account.username, target=account.username)
    return account


def reissue_activation_code(session: Session, profile: PortalProfile, portal: str, org_key: str, username: str,
                            notifier: Notifier, now: datetime) -> None:
    """R10: support staff issue a new letter for an expired activation code."""
    org = get_organization(session, portal, org_key)
    account = find_account(session, portal, username)
    link = next((m for m in account.memberships if m.organization_id == org.id), None) if account else None
    if link is None:
        raise NotFound(f"no account {username!r} in organization {org_key!r}")
    current = _current_code(session, account, "activation")
    if account.status != Status.PENDING_ACTIVATION:
        raise field_problem("validation_error", "username", "the account is not awaiting activation")
    if current is not None and current.expires_at > now:
        raise field_problem("activation_code_not_expired", "username",
                            "the current activation code has not expired; a new one is issued only for an expired code")
    if current is not None:
        current.used_at = now
    address = _chosen_address(org, link)
    if address is None:
        raise field_problem("no_correspondence_address", "username",
                            "the correspondence address the master chose is no longer on file (R9)")
    temporary = generate_password()
    account.password_hash = hash_secret(temporary)
    code = _new_code(session, account, profile, now)
    notifier.letter(session, portal, _format_address(address), "activation_letter",
                    {"username": account.username, "organization": org.key, "activation_code": code,
                     "temporary_password": temporary, "valid_days": profile.activation_code_days}, now)
