"""Admin actions on accounts (R5), decided by the same policy as /v1/authorize.

Each action runs in one transaction: lock the organization row, load the
facts, ask the policy, apply the change, write the audit record, the outbox
notice and the comment. A denial is recorded too, and nothing else is changed.
Locking the organization serializes every change to its admins, so two admins
demoting each other at once cannot both see "two admins" (R3).
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from service.config import PortalProfile
from service.domain import audit, orphans, sessions
from service.domain.decisions import Question, Resource
from service.domain.errors import Invalid, NotFound
from service.domain.passwords import draw_ahead, fresh_secret
from service.domain.work import Context
from service.kernel.catalog import PATH_ACTIONS, Role, Status
from service.kernel.facts import AccountFacts
from service.kernel.usernames import username_key
from service.policy import Decision
from service.storage.facts import find_account, reread_account
from service.storage.models import Account, Comment, Grant, Membership, OneTimeCode, Organization

ACTIONS = PATH_ACTIONS  # the admin actions of POST .../accounts/{username}/{action}
# Actions that only ever raise an account's standing (a status towards active, a role towards admin) or change
# neither: they never take an active admin from an organization, so an organization that had one keeps it, and
# only an organization that had none can be left with active members and no admin (R3) after them.
NEVER_LOWERS_ADMINS = frozenset({"approve", "enable", "unlock", "upgrade", "send_password_recovery",
                                 "send_registration_email"})


@dataclass
class Outcome:
    """What happened: the decision, and the account as it now stands (when allowed)."""

    decision: Decision
    account: Account | None = None
    organization: str | None = None
    view: object = None


def one_time_code(length: int = 10) -> str:
    """Human-typed codes from `secrets`; case-sensitive letters and digits without look-alikes."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def check_comment(comment: str | None, profile: PortalProfile) -> None:
    """R25: at most the portal's comment length; stored exactly as written."""
    if comment is not None and len(comment) > profile.comment_max_length:
        raise Invalid("the comment is too long", [{
            "field": "comment", "code": "too_long",
            "message": f"at most {profile.comment_max_length} characters"}])


def lock_reach(ctx: Context, username: str, organization: str | None) -> dict[str, int]:
    """Lock the named organization and every organization the account is linked to, in one statement.

    An account-wide change (status, email) reaches every organization the account is linked to, and R3
    must hold in each of them, so each of their rows is locked before the facts are read. Rows are
    locked in key order, so two changes never wait on each other in a cycle. Returns their ids by key.
    """
    linked = (select(Membership.organization_id).join(Account, Account.id == Membership.account_id)
              .where(Account.portal_id == ctx.portal, Account.username_key == username_key(username)))
    reach = Organization.id.in_(linked)
    if organization is not None:
        reach = or_(reach, Organization.key == organization)
    return dict(ctx.session.execute(select(Organization.key, Organization.id)
                                    .where(Organization.portal_id == ctx.portal, reach)
                                    .order_by(Organization.key).with_for_update()).all())


@dataclass(frozen=True)
class Decided:
    """A decision about an account, the facts it was made on, and the rows a change applies to."""

    decision: Decision
    facts: AccountFacts
    target: Account
    link: Membership
    organization_ids: dict[str, int]
    actor: str = ""  # the acting account's username, who the decision was about

    @property
    def organization(self) -> str:
        return self.facts.organization.key

    def reach(self) -> set[int]:
        """The organizations an account-wide change reaches: every active link's (R1, R3)."""
        return {self.organization_ids[link.organization.key] for link in self.facts.links}

    def every_reached_has_an_admin(self) -> bool:
        """Whether every reached organization had an active admin before the change, read under the lock (R3)."""
        return all(link.organization.active_admins >= 1 for link in self.facts.links)

    def orphaned(self) -> set[int]:
        """The reached organizations already without an active admin (R3), read from the facts decided on."""
        return {self.organization_ids[link.organization.key] for link in self.facts.links
                if link.organization.has_active_members and link.organization.active_admins == 0}


def decide_and_lock(ctx: Context, actor: str, action: str, username: str, organization: str | None,
                    context: dict | None = None) -> Decided:
    """Lock every organization the change may reach, then decide on facts read after the lock."""
    return decide(ctx, actor, action, username, organization, context, lock=True)


def decide(ctx: Context, actor: str, action: str, username: str, organization: str | None,
           context: dict | None = None, *, lock: bool = False) -> Decided:
    """Decide about an account as it stands now, exactly as /v1/authorize would (the same Decider, the same
    one-statement facts), then read the account and the link decided on, to apply a change to.

    `actor` is the acting account's username (its facts are read with the target's, in the same statement).
    """
    ids = lock_reach(ctx, username, organization) if lock else {}
    question = Question(action, Resource("account", username, organization), context or {})
    decision, facts = ctx.decider().decide_on(actor, question)
    target, link = ctx.session.execute(
        select(Account, Membership).join(Membership, Membership.account_id == Account.id)
        .join(Organization, Organization.id == Membership.organization_id)
        .where(Account.portal_id == ctx.portal, Account.username_key == username_key(username),
               Organization.key == facts.organization.key)
        .execution_options(populate_existing=True)).one()
    return Decided(decision, facts, target, link, ids, actor)


def as_it_stands(ctx: Context, account: Account) -> Account:
    """The changed account with its memberships, organizations and grants as this transaction wrote them: what an
    answer shows. One statement, where refreshing the account and loading each relation took four."""
    ctx.session.flush()
    return reread_account(ctx.session, account)


def not_member_of(ctx: Context, actor_account: Account, organization: str) -> Decision | None:
    """A `not_member` denial when the actor is neither support staff nor a member of the organization, else None.

    The policy's own answer to "view the organization" (404 for an unknown organization, as everywhere).
    """
    decision = ctx.decider().decide(
        actor_account.username, Question("view", Resource("organization", organization)))
    if decision.allowed or "not_member" not in decision.reasons:
        return None
    return Decision(False, ("not_member",), decision.policy_version)


def service_read(ctx: Context, username: str) -> Outcome:
    """A calling service's read of an account with its `manage` client key and no person's session (R26).

    The key's scope is the authority, as for registration or sign-in: there is no actor to ask the
    policy about. An unknown account is 404; a removed one reads with its status `removed`.
    """
    target = find_account(ctx.session, ctx.portal, username)
    if target is None:
        raise NotFound(f"no account {username!r} in portal {ctx.portal!r}")
    return Outcome(Decision(True, (), ctx.policy.version), target)


def visible_organizations(ctx: Context, actor: str, account: Account, *, history: bool = False) -> frozenset[str]:
    """The organizations whose membership of `account` the actor may see, as the policy scopes reads (its
    `sees_membership`), on the facts as they stand now; with `history`, among every link it had, removed ones too."""
    return visible_organizations_of(ctx, actor, [account], history=history)[account.username_key]


def visible_organizations_of(ctx: Context, actor: str, accounts: Collection[Account], *,
                             history: bool = False) -> dict[str, frozenset[str]]:
    """`visible_organizations` of several accounts (a roster page), by username key, in one facts statement."""
    decider = ctx.decider()
    seen = decider.visible_memberships(actor, [a.username for a in accounts], history=history)
    return {a.username_key: seen.get(a.username_key, frozenset()) for a in accounts}


def comments_of(session: Session, account_id: int, organizations: Collection[str] | None) -> list[Comment]:
    """R25: an account's comment history, oldest first: the comments written in `organizations` (those whose
    membership the reader may see), or every one (None: a calling service's own read, R26)."""
    history = select(Comment).where(Comment.account_id == account_id)
    if organizations is not None:
        history = history.where(Comment.organization.in_(sorted(organizations)))
    return list(session.scalars(history.order_by(Comment.id)))


def record_denial(ctx: Context, actor: str, action: str, target: str, organization: str | None,
                  decision: Decision, comment: str | None) -> Outcome:
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action=action, outcome="denied", actor=actor,
                 client=ctx.client, target=target, organization=organization, reasons=decision.reasons,
                 comment=comment)
    return Outcome(decision, None, organization)


# Actions that issue a one-time code (stored hashed): the code is drawn and hashed before the write lock.
ISSUE_CODES = ("send_password_recovery", "send_registration_email")


def perform_ahead(ctx: Context, action: str) -> None:
    """`work.run`'s ahead step of `perform`: the argon2 work an action will need, outside the write lock."""
    if action in ISSUE_CODES:
        draw_ahead(one_time_code)


def perform(ctx: Context, actor_account: Account, action: str, username: str, organization: str | None,
            comment: str | None) -> Outcome:
    """Decide and, when allowed, apply one admin action."""
    check_comment(comment, ctx.profile)
    decided = decide_and_lock(ctx, actor_account.username, action, username, organization)
    org_key = decided.organization
    if not decided.decision.allowed:
        return record_denial(ctx, actor_account.username, action, decided.target.username, org_key,
                             decided.decision, comment)
    APPLY[action](ctx, decided)
    _after(ctx, actor_account, action, decided.target, org_key, comment)
    # R3 refuses what would orphan an organization; whatever still does (support staff acting where no
    # rule forbids it, e.g. enabling a member where the only admin is locked) is reported to support.
    if not (action in NEVER_LOWERS_ADMINS and decided.every_reached_has_an_admin()):
        orphans.report_new_orphans(ctx.session, ctx.portal, decided.reach(), decided.orphaned(), ctx.now,
                                   cause=action, client=ctx.client, notifier=ctx.notifier)
    return Outcome(decided.decision, decided.target, org_key)


def _after(ctx: Context, actor: Account, action: str, target: Account, org_key: str, comment: str | None,
           detail: dict | None = None) -> None:
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action=action, outcome="done", actor=actor.username,
                 client=ctx.client, target=target.username, organization=org_key, detail=detail, comment=comment)
    if comment is not None:
        ctx.session.add(Comment(account_id=target.id, organization=org_key, action=action, actor=actor.username,
                                created_at=ctx.now, text=comment))
    ctx.session.flush()


def _approve(ctx: Context, decided: Decided) -> None:
    decided.target.status = Status.ACTIVE


def _enable(ctx: Context, decided: Decided) -> None:
    """R12: in a payer-verified portal a new user becomes "unverified" until they finish registration; R23."""
    target = decided.target
    if target.status == Status.PENDING_APPROVAL and ctx.profile.registration == "payer_verified_admin":
        target.status = Status.UNVERIFIED
    else:
        target.status = Status.ACTIVE
        target.last_activity_at = ctx.now


def _disable(ctx: Context, decided: Decided) -> None:
    decided.target.status = Status.DISABLED
    sessions.end_all(ctx.session, decided.target.id, ctx.now)


def _remove(ctx: Context, decided: Decided) -> None:
    """R13: removing from one organization removes that link; the account lives on where it has others."""
    decided.link.status = Status.REMOVED
    ctx.session.execute(delete(Grant).where(Grant.membership_id == decided.link.id))
    if all(link.organization.key == decided.organization for link in decided.facts.links):
        decided.target.status = Status.REMOVED
        sessions.end_all(ctx.session, decided.target.id, ctx.now)


def _upgrade(ctx: Context, decided: Decided) -> None:
    decided.link.role = Role.ADMIN


def _downgrade(ctx: Context, decided: Decided) -> None:
    decided.link.role = Role.MEMBER


def _unlock(ctx: Context, decided: Decided) -> None:
    """R19/R22: unlocking forgets the failures and restarts the inactivity clock, or the next sweep relocks."""
    target = decided.target
    target.status = Status.ACTIVE
    target.last_activity_at = ctx.now
    sessions.clear_failures(ctx.session, target.id)
    sessions.clear_recovery_failures(ctx.session, target.id)


def issue_code(session: Session, account: Account, purpose: str, lifetime: timedelta, now: datetime,
               code: str | None = None, code_hash: str | None = None, sent_by: str | None = None,
               sent_for: str | None = None) -> str:
    """A fresh one-time code, stored hashed; older unused codes of the same purpose stop working."""
    for old in session.scalars(select(OneTimeCode).where(OneTimeCode.account_id == account.id,
                                                         OneTimeCode.purpose == purpose,
                                                         OneTimeCode.used_at.is_(None))):
        old.used_at = now
    if code is None:
        code, code_hash = fresh_secret(one_time_code)
    session.add(OneTimeCode(account_id=account.id, purpose=purpose, code_hash=code_hash,
                            created_at=now, expires_at=now + lifetime, sent_by=sent_by, sent_for=sent_for))
    return code


def send_recovery_code(ctx: Context, target: Account, code: str | None = None, code_hash: str | None = None,
                       sent_by: str | None = None, sent_for: str | None = None) -> None:
    """R20: an email with a security code and a link, valid for the portal's recovery minutes. `sent_by`:
    the administrator who sent it, through `sent_for` (the code holds only while that decision does)."""
    minutes = ctx.profile.recovery.code_minutes
    code = issue_code(ctx.session, target, "recovery", timedelta(minutes=minutes), ctx.now, code, code_hash,
                      sent_by, sent_for)
    ctx.notifier.email(ctx.session, ctx.portal, target.email, "password_recovery",
                       {"username": target.username, "security_code": code, "valid_minutes": minutes,
                        "link": f"/portals/{ctx.portal}/password-recovery?username={target.username}"}, ctx.now)


def _send_password_recovery(ctx: Context, decided: Decided) -> None:
    """An admin sends recovery (R20); that is also how an admin lifts the limit on wrong answers."""
    sessions.clear_recovery_failures(ctx.session, decided.target.id)
    send_recovery_code(ctx, decided.target, sent_by=decided.actor, sent_for=decided.organization)


def _send_registration_email(ctx: Context, decided: Decided) -> None:
    """R12: the user completes registration with the code from this email."""
    target = decided.target
    days = ctx.profile.activation_code_days
    code = issue_code(ctx.session, target, "registration", timedelta(days=days), ctx.now)
    ctx.notifier.email(ctx.session, ctx.portal, target.email, "complete_registration",
                       {"username": target.username, "registration_code": code, "valid_days": days}, ctx.now)


APPLY = {
    "approve": _approve, "enable": _enable, "disable": _disable, "remove": _remove, "upgrade": _upgrade,
    "downgrade": _downgrade, "unlock": _unlock, "send_password_recovery": _send_password_recovery,
    "send_registration_email": _send_registration_email,
}


def set_permissions(ctx: Context, actor_account: Account, username: str, organization: str | None,
                    permissions: list[str], comment: str | None) -> Outcome:
    """R14/R15: replace the grants; each added function is a `grant`, each dropped one a `revoke`.

    All or nothing: if any of them is denied, nothing changes and every reason is reported.
    """
    wanted = list(dict.fromkeys(permissions))
    return change_permissions(ctx, actor_account, username, organization, lambda _held: wanted, comment)


def change_permissions(ctx: Context, actor_account: Account, username: str, organization: str | None,
                       wanted_of: Callable[[set[str]], list[str]], comment: str | None,
                       before_writing: Callable[[Decided], None] | None = None) -> Outcome:
    """`set_permissions` with the wanted functions computed from what the link holds as read under the lock, so
    that adding one function (an approved access request) never writes back a set read earlier (which would
    revive a function revoked in the meantime, or drop one granted). `before_writing` runs once the changes are
    allowed, on the locked facts, and may refuse by raising."""
    check_comment(comment, ctx.profile)
    # Resolve and lock; each change is decided below on the locked facts.
    decided = decide_and_lock(ctx, actor_account.username, "view", username, organization)
    target, link, org_key = decided.target, decided.link, decided.organization
    # What the link holds, from the facts decided on (a removed link holds nothing: removal drops its grants).
    held = {p for live in decided.facts.links if live.organization.key == org_key for p in live.permissions}
    wanted = list(dict.fromkeys(wanted_of(held)))
    changes = [("grant", p) for p in wanted if p not in held] + [("revoke", p) for p in sorted(held - set(wanted))]
    decider = ctx.decider()
    reasons: list[str] = []
    version = decided.decision.policy_version
    # With no change, the question is whether the actor manages grants here at all.
    checks = changes or [("grant", None)]
    questions = [Question(action, Resource("account", username, org_key), {"permission": permission})
                 for action, permission in checks]
    for answer in decider.decide_many(actor_account.username, questions, need_permission=False):
        reasons += [r for r in answer.reasons if r not in reasons]
    if reasons:
        denied = Decision(False, tuple(reasons), version)
        return record_denial(ctx, actor_account.username, "set_permissions", target.username, org_key,
                             denied, comment)
    if before_writing is not None:
        before_writing(decided)
    for action, permission in changes:
        if action == "grant":
            ctx.session.add(Grant(membership_id=link.id, permission=permission, granted_at=ctx.now))
        else:
            ctx.session.execute(delete(Grant).where(Grant.membership_id == link.id, Grant.permission == permission))
    _after(ctx, actor_account, "set_permissions", target, org_key, comment,
           {"granted": [p for a, p in changes if a == "grant"], "revoked": [p for a, p in changes if a == "revoke"]})
    ctx.session.expire(link)
    return Outcome(Decision(True, (), version), target, org_key)


PROFILE_FIELDS = ("first_name", "last_name", "phone")


def update_profile(ctx: Context, actor_account: Account, username: str, organization: str | None,
                   changes: dict, comment: str | None) -> Outcome:
    """R21: profile fields are `update_profile`; the email is `update_email` (an admin's duty)."""
    check_comment(comment, ctx.profile)
    actions = []
    if any(k in changes for k in PROFILE_FIELDS):
        actions.append("update_profile")
    if "email" in changes:
        actions.append("update_email")
    if not actions:
        raise Invalid("nothing to change", [{"field": "(body)", "code": "empty",
                                             "message": "give at least one of first_name, last_name, phone, email"}])
    decided = decide_and_lock(ctx, actor_account.username, actions[0], username, organization)
    reasons = list(decided.decision.reasons)
    for action in actions[1:]:
        decided = decide(ctx, actor_account.username, action, username, organization)
        reasons += [r for r in decided.decision.reasons if r not in reasons]
    decision, target, org_key = decided.decision, decided.target, decided.organization
    if reasons:
        return record_denial(ctx, actor_account.username, "+".join(actions), target.username, org_key,
                             Decision(False, tuple(reasons), decision.policy_version), comment)
    if "email" in changes and changes["email"] != target.email:
        from service.domain.people import check_unique_email

        check_unique_email(ctx.session, ctx.portal, changes["email"], changes.get("first_name", target.first_name),
                           changes.get("last_name", target.last_name), exclude=target.id)
        # Whoever changes an email, the old address is told: a capture cannot go unnoticed.
        ctx.notifier.email(ctx.session, ctx.portal, target.email, "email_changed",
                           {"username": target.username, "changed_by": actor_account.username,
                            "organization": org_key, "changed_at": ctx.now.isoformat()}, ctx.now)
        target.email, target.email_key = changes["email"], changes["email"].casefold()
    for key in PROFILE_FIELDS:
        if key in changes:
            setattr(target, key, changes[key])
    _after(ctx, actor_account, "+".join(actions), target, org_key, comment, {"fields": sorted(changes)})
    return Outcome(decision, target, org_key)
