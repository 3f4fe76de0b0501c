"""OpenID AuthZEN Authorization API 1.0, mapped onto the same decisions as /v1.

Each portal profile is one PDP. A subject is an account (`{"type": "account", "id": <username>}`),
an action is an action name of /v1/authorize, a resource is an organization (`id` = its key) or an
account (`id` = username, `properties.organization` = the organization key when it belongs to
several). Every decision is the Decider's: the same facts, the same policy, the same reasons.

Search answers come from the database, not from evaluating every entity: a SQL filter written to
follow the policy's rules (who is linked to what, with which role and grants; the target statuses
read from the policy's own `status_allows`) selects candidates in key order, and each candidate of a
page is then confirmed by the policy, the facts of a whole page read in one statement. So a search
result is always a decision `true` (the spec's "SHOULD"), and a page is filled even when the filter
lets through a candidate the policy refuses (only the last-admin rule, R3, is left to that check).
tests/test_authzen_search.py checks on SQLite and PostgreSQL that each search equals evaluating every
candidate one by one, and that the filter alone already agrees.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, exists, false, or_, select, true
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from service.catalog import Status, Role
from service.domain import remedies
from service.domain.decisions import Decider, Question, Resource
from service.domain.errors import DomainError, Invalid, NotFound
from service.facts import ActorFacts, OrganizationFacts
from service.catalog import (
    ACCOUNT_ACTIONS, ORGANIZATION_ACTIONS, PERMISSION_ACTIONS, RESOURCE_TYPES, ROSTER_ACTIONS, SUPPORT_ONLY_ACTIONS,
)
from service.policy import Decision
from service.storage.facts import username_key
from service.storage.secrets import shared_secret
from service.storage.models import Account, Grant, Membership, Organization

SUBJECT_TYPE = "account"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
ORGANIZATION_OWN_ACTIONS = ORGANIZATION_ACTIONS
SUPPORT_ONLY = SUPPORT_ONLY_ACTIONS
MANAGING = ROSTER_ACTIONS
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class Entity:
    """A subject or resource as AuthZEN names it; `id` is None where a search leaves it out."""

    type: str
    id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Ask:
    """One access evaluation: subject, action (with its properties), resource, context."""

    subject: Entity
    action: str
    resource: Entity
    context: dict[str, Any] = field(default_factory=dict, hash=False)
    action_properties: dict[str, Any] = field(default_factory=dict, hash=False)


# --- from AuthZEN to the Decider's questions -----------------------------------------------------

def resource_of(entity: Entity) -> Resource:
    if entity.type not in RESOURCE_TYPES:
        raise NotFound(f"unknown resource type {entity.type!r}; this PDP knows {', '.join(RESOURCE_TYPES)}")
    organization = entity.properties.get("organization") if entity.type == "account" else None
    if organization is not None and not isinstance(organization, str):
        raise Invalid("resource.properties.organization must be a string",
                      [{"field": "resource.properties.organization", "code": "string_type",
                        "message": "the organization key, a string"}])
    return Resource(entity.type, entity.id or "", organization)


def context_of(ask_context: dict, action_properties: dict) -> dict:
    """grant/revoke name their function as context.permission or action.properties.permission."""
    context = dict(ask_context)
    if "permission" not in context and "permission" in action_properties:
        context["permission"] = action_properties["permission"]
    return context


def question_of(ask: Ask) -> tuple[str, Question]:
    if ask.subject.type != SUBJECT_TYPE:
        raise NotFound(f"unknown subject type {ask.subject.type!r}; this PDP knows {SUBJECT_TYPE!r}")
    return ask.subject.id or "", Question(ask.action, resource_of(ask.resource),
                                          context_of(ask.context, ask.action_properties))


def decision_body(outcome: Decision | DomainError, decider: Decider | None = None,
                  question: Question | None = None) -> dict:
    """An AuthZEN Decision: the /v1 reasons and policy version in `context`, or the item's error there; with
    `"remedies": true` in the question's context, the remedies too (service/domain/remedies.py)."""
    if isinstance(outcome, Decision):
        context = {"reasons": outcome.reason_objects(), "policy_version": outcome.policy_version}
        if decider is not None and question is not None and question.context.get("remedies") is True:
            context["remedies"] = remedies.for_decision(decider, question.action, outcome)
        return {"decision": outcome.allowed, "context": context}
    status = 400 if isinstance(outcome, Invalid) else outcome.status
    error = {"status": status, "code": outcome.code, "message": outcome.detail}
    if outcome.extra.get("errors"):
        error["errors"] = outcome.extra["errors"]
    return {"decision": False, "context": {"error": error}}


# --- Access Evaluation(s) ---------------------------------------------------------------------------

def evaluate(decider: Decider, ask: Ask) -> tuple[Decision | DomainError, str, Question | None]:
    """One evaluation. Unknown names answer a denial carrying the error; an impossible question
    (grant with no permission, an account of several organizations without one) raises Invalid."""
    try:
        actor, question = question_of(ask)
    except NotFound as exc:
        return exc, ask.subject.id or "", None
    outcome = next(decider.decide_each([(actor, question)]))
    if isinstance(outcome, Invalid):
        raise outcome
    return outcome, actor, question


def evaluate_many(decider: Decider, items: Sequence[Ask | DomainError], semantic: str = "execute_all"
                  ) -> list[tuple[str | None, Question | None, Decision | DomainError]]:
    """A batch: the facts of every item in one statement, decided in order under `semantic`.

    Answers (actor, question, decision or error) per item. An item that is invalid or names something
    unknown answers its error (a denial) while the others are decided. `deny_on_first_deny` stops after
    the first denial (or error), `permit_on_first_permit` after the first permit; the answers stop there
    too, as in the spec's examples.
    """
    asks: list[tuple[str, Question]] = []
    prepared: list[DomainError | tuple[str, Question]] = []
    for item in items:
        if isinstance(item, DomainError):
            prepared.append(item)
            continue
        try:
            asks.append(question_of(item))
            prepared.append(asks[-1])
        except DomainError as exc:
            prepared.append(exc)
    decided = decider.decide_each(asks)
    answers: list[tuple[str | None, Question | None, Decision | DomainError]] = []
    for entry in prepared:
        if isinstance(entry, DomainError):
            answers.append((None, None, entry))
        else:
            answers.append((entry[0], entry[1], next(decided)))
        outcome = answers[-1][2]
        allowed = isinstance(outcome, Decision) and outcome.allowed
        if (semantic == "deny_on_first_deny" and not allowed) or (semantic == "permit_on_first_permit" and allowed):
            break
    decided.close()
    return answers


# --- Search ---------------------------------------------------------------------------------------------

def page_token_key(database, now) -> bytes:
    """The key that signs page tokens when the configuration names none: made once, kept in the database,
    so every replica over it signs and verifies with the same key (never a per-process secret)."""
    return shared_secret(database, "authzen_page_token", now)


@dataclass
class SearchPage:
    results: list[dict]
    next_key: list | None  # the key to continue after, or None at the end
    rejected: int = 0  # candidates the SQL filter let through and the policy refused (R3's last admin)


def _permission(action: str, context: dict) -> str | None:
    permission = context.get("permission")
    if action in PERMISSION_ACTIONS and not isinstance(permission, str):
        raise Invalid(f"{action} needs the permission it is about",
                      [{"field": "context.permission", "code": "required",
                        "message": f"{action} needs context.permission or action.properties.permission"}])
    return permission if isinstance(permission, str) else None


def _paged(fetch: Callable[[list | None, int], list], confirm: Callable[[list], list[bool]],
           key_of: Callable[[Any], list], after: list | None, limit: int) -> tuple[list, list | None, int]:
    """Keyset paging over candidates the database selected, each confirmed by the policy."""
    found: list = []
    rejected = 0
    cursor = after
    while True:
        want = max(limit + 1 - len(found), 20)
        rows = fetch(cursor, want)
        if rows:
            for row, ok in zip(rows, confirm(rows)):
                if ok:
                    found.append(row)
                else:
                    rejected += 1
            cursor = key_of(rows[-1])
        if len(rows) < want or len(found) > limit:
            break
    page = found[:limit]
    return page, (key_of(page[-1]) if len(found) > limit else None), rejected


def _allowed(decider: Decider, asks: list[tuple[str, Question]]) -> list[bool]:
    return [isinstance(o, Decision) and o.allowed for o in decider.decide_each(asks)]


def _in_good_standing(actor: ActorFacts) -> bool:
    # Mirrors the standing requirements of portal.polar (known_actor, active_actor, password_current,
    # terms_accepted; R7, R16); the policy confirms every result anyway.
    return actor.exists and actor.status == Status.ACTIVE and actor.password_current and actor.terms_accepted


def _actor_organizations(actor: ActorFacts, delegate_permission: str | None) -> tuple[set, set, set, list]:
    active = [m for m in actor.memberships if m.active]
    admin = {m.organization for m in active if m.role == Role.ADMIN}
    delegate = {m.organization for m in active
                if m.role == Role.MEMBER and delegate_permission is not None and delegate_permission in m.permissions}
    return {m.organization for m in active}, admin, delegate, active


def _organizations_filter(actor: ActorFacts, action: str, profile) -> ColumnElement:
    """portal.polar's organization rules (R1, R4, R13-R16) as a condition on Organization.key."""
    catalog, delegate_permission = profile.catalog, profile.delegate_permission
    offered = {"create_account": profile.admin_created_accounts, "link_account": profile.links}
    if not _in_good_standing(actor) or not offered.get(action, True):  # R13: only where the portal offers it
        return false()
    member, admin, delegate, active = _actor_organizations(actor, delegate_permission)
    if action in catalog:  # holds(): admins hold the catalog, members what they were granted
        return Organization.key.in_(admin | {m.organization for m in active if action in m.permissions})
    if actor.support and action in ORGANIZATION_OWN_ACTIONS:
        return true()
    if action == "view":
        return Organization.key.in_(member)
    if action in MANAGING:
        return Organization.key.in_(admin | delegate)
    return false()


def _targets_filter(decider: Decider, actor: ActorFacts, action: str, permission: str | None) -> ColumnElement:
    """portal.polar's account rules (R1, R2, R5, R14, R15, R21) as a condition on (Account, Membership, Organization)."""
    profile = decider.profile
    if not _in_good_standing(actor) or action not in ACCOUNT_ACTIONS:
        return false()
    _, admin, delegate, active = _actor_organizations(actor, profile.delegate_permission)
    me = Account.username_key == username_key(actor.username)
    administers = true() if actor.support else or_(
        Organization.key.in_(admin), and_(Organization.key.in_(delegate), Membership.role == Role.MEMBER))
    if action == "view":
        return or_(me, administers)
    effective = _effective_status()
    states = decider.policy.target_states(action, decider.portal)
    status_allows = or_(*(and_(effective == status, Membership.role == role) for status, role in sorted(states))) \
        if states else false()
    may_take: ColumnElement = true()
    if action in ("upgrade", "downgrade") and not actor.support:
        may_take = Organization.key.in_(admin)
    if action in PERMISSION_ACTIONS and permission is not None:
        if permission not in profile.catalog:
            may_take = false()
        elif not actor.support:
            may_take = Organization.key.in_(admin | {m.organization for m in active if permission in m.permissions})
    allowed = and_(~me, administers, status_allows, may_take)
    if decider.policy.account_wide(action) and not actor.support:
        # R1: an account-wide action needs authority in every organization of the account, so no
        # other active link may sit where the actor has none. (A delegate's capture check, R15, stays with
        # the policy's confirmation of each candidate.)
        other = aliased(Membership)
        elsewhere = aliased(Organization)
        allowed = and_(allowed, ~exists().where(
            other.account_id == Account.id, other.status == Status.ACTIVE, elsewhere.id == other.organization_id,
            ~or_(elsewhere.key.in_(admin), and_(elsewhere.key.in_(delegate), other.role == Role.MEMBER))))
    if action == "update_profile":
        allowed = or_(allowed, and_(me, effective != Status.REMOVED))
    return allowed


def _effective_status():
    """A removed link reads as removed, whatever the account's own status (as the Decider reads it)."""
    return case((Membership.status == Status.REMOVED, "removed"), else_=Account.status)


def search_resources(decider: Decider, subject: Entity, action: str, resource_type: str, context: dict,
                     after: list | None, limit: int) -> SearchPage:
    """The organizations, or the accounts in their organizations, the subject may take `action` on."""
    permission = _permission(action, context)
    if subject.type != SUBJECT_TYPE or resource_type not in RESOURCE_TYPES:
        return SearchPage([], None)
    actor = decider.actor(subject.id or "")
    session, portal = decider.session, decider.portal

    if resource_type == "organization":
        condition = _organizations_filter(actor, action, decider.profile)

        def fetch(cursor, n):
            query = select(Organization.key).where(Organization.portal_id == portal, condition)
            if cursor:
                query = query.where(Organization.key > cursor[0])
            return list(session.execute(query.order_by(Organization.key).limit(n)))

        def confirm(rows):
            return _allowed(decider, [(actor.username, Question(action, Resource("organization", r.key), context))
                                      for r in rows])

        page, next_key, rejected = _paged(fetch, confirm, lambda r: [r.key], after, limit)
        return SearchPage([{"type": "organization", "id": r.key} for r in page], next_key, rejected)

    condition = _targets_filter(decider, actor, action, permission)

    def fetch(cursor, n):
        query = (select(Account.username_key, Account.username, Organization.key.label("organization"))
                 .select_from(Membership)
                 .join(Account, Account.id == Membership.account_id)
                 .join(Organization, Organization.id == Membership.organization_id)
                 .where(Account.portal_id == portal, Organization.portal_id == portal, condition))
        if cursor:
            query = query.where(or_(Account.username_key > cursor[0],
                                    and_(Account.username_key == cursor[0], Organization.key > cursor[1])))
        return list(session.execute(query.order_by(Account.username_key, Organization.key).limit(n)))

    def confirm(rows):
        # A result names an account's membership of an organization (a removed one too, as decisions take it):
        # the subject's decision, and only what the policy's read scoping (`sees_membership`) lets it see.
        seen = decider.visible_memberships(actor.username, {r.username for r in rows}, history=True)
        allowed = _allowed(decider, [(actor.username, Question(action, Resource("account", r.username, r.organization),
                                                               context)) for r in rows])
        return [ok and r.organization in seen.get(r.username_key, ()) for r, ok in zip(rows, allowed)]

    page, next_key, rejected = _paged(fetch, confirm, lambda r: [r.username_key, r.organization], after, limit)
    return SearchPage([{"type": "account", "id": r.username, "properties": {"organization": r.organization}}
                       for r in page], next_key, rejected)


def search_subjects(decider: Decider, subject_type: str, action: str, resource: Entity, context: dict,
                    after: list | None, limit: int) -> SearchPage:
    """The accounts that may take `action` on the resource (who can approve accounts of this organization?)."""
    permission = _permission(action, context)
    if subject_type != SUBJECT_TYPE or resource.type not in RESOURCE_TYPES:
        return SearchPage([], None)
    asked = resource_of(resource)
    try:
        target = decider.resource(Question(action, asked, context), need_permission=False)
    except NotFound:
        return SearchPage([], None)
    profile, portal, session = decider.profile, decider.portal, decider.session
    org_key = target.key if isinstance(target, OrganizationFacts) else target.organization.key
    org_id = select(Organization.id).where(Organization.portal_id == portal, Organization.key == org_key) \
        .scalar_subquery()

    def link(*conditions):
        return exists().where(Membership.account_id == Account.id, Membership.organization_id == org_id,
                              Membership.status == Status.ACTIVE, *conditions)

    def granted(function):
        return exists().where(Grant.membership_id == Membership.id, Grant.permission == function)

    support = Account.is_support.is_(True)
    admin = link(Membership.role == Role.ADMIN)
    dp = profile.delegate_permission
    delegate = link(Membership.role == Role.MEMBER, granted(dp)) if dp else false()

    def holds(function):
        return link(or_(Membership.role == Role.ADMIN, granted(function)))

    if isinstance(target, OrganizationFacts):
        if action in profile.catalog:
            condition = holds(action)
        elif action == "view":
            condition = or_(support, link())
        elif action in MANAGING:
            offered = {"create_account": profile.admin_created_accounts, "link_account": profile.links}[action]
            condition = or_(support, admin, delegate) if offered else false()  # R13: where the portal offers it
        elif action in SUPPORT_ONLY:
            condition = support
        else:
            condition = false()
    elif action not in ACCOUNT_ACTIONS:
        condition = false()
    else:
        me = Account.username_key == username_key(target.username)
        administers = or_(support, admin, delegate) if target.role == Role.MEMBER else or_(support, admin)
        if action == "view":
            condition = or_(me, administers)
        else:
            may_take = true()
            if action in ("upgrade", "downgrade"):
                may_take = or_(support, admin)
            if action in PERMISSION_ACTIONS and permission is not None:
                may_take = or_(support, holds(permission)) if permission in profile.catalog else false()
            applies = (target.status, target.role) in decider.policy.target_states(action, decider.portal)
            condition = and_(~me, administers, may_take) if applies else false()
            if action == "update_profile" and target.status != Status.REMOVED:
                condition = or_(condition, me)
    # R7, R16, R18: only accounts in good standing act at all.
    standing = and_(Account.status == Status.ACTIVE, Account.password_hash.is_not(None),
                    Account.terms_accepted_at.is_not(None))
    days = profile.password.expiry_days
    if days is not None:
        standing = and_(standing, Account.password_changed_at > decider.now - timedelta(days=days))

    def fetch(cursor, n):
        query = select(Account.username_key, Account.username).where(Account.portal_id == portal, standing, condition)
        if cursor:
            query = query.where(Account.username_key > cursor[0])
        return list(session.execute(query.order_by(Account.username_key).limit(n)))

    def confirm(rows):
        return _allowed(decider, [(r.username, Question(action, asked, context)) for r in rows])

    page, next_key, rejected = _paged(fetch, confirm, lambda r: [r.username_key], after, limit)
    return SearchPage([{"type": SUBJECT_TYPE, "id": r.username} for r in page], next_key, rejected)


def search_actions(decider: Decider, subject: Entity, resource: Entity) -> list[str]:
    """The actions the subject may take on the resource: the /v1/authorized-actions answer."""
    if subject.type != SUBJECT_TYPE or resource.type not in RESOURCE_TYPES:
        return []
    try:
        return decider.authorized_actions(subject.id or "", resource_of(resource))
    except NotFound:
        return []
