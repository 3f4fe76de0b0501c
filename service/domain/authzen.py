"""OpenID AuthZEN Authorization API 1.0, mapped onto the same decisions as /v1.

Each portal profile is one PDP. A subject is an account (`{"type": "account", "id": <username>}`),
an action is an action name of /v1/authorize, a resource is an organization (`id` = its key) or an
account (`id` = username, `properties.organization` = the organization key when it belongs to
several). Every decision is the Decider's: the same facts, the same policy, the same reasons.

Search answers come from the database, not from evaluating every entity: one SQL filter (`_may`, the
relation "this actor may take this action on this resource" over rows, shared by both searches) follows
the policy's rules (who is linked to what, with which role and grants; the target statuses and the reach
read from the policy's own `status_allows` and `account_wide`) and selects candidates in key order, and
each candidate of a page is then confirmed by the policy, the facts of a whole page read in one statement. So a search
result is always a decision `true` (the spec's "SHOULD"), and a page is filled even when the filter
lets through a candidate the policy refuses (only the last-admin rule, R3, is left to that check).
tests/test_authzen_search.py checks on SQLite and PostgreSQL that each search equals evaluating every
candidate one by one, that the filter alone already agrees, and that a widened copy of the policy is
noticed where the filter restates it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, exists, false, or_, select, true
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from service.domain import remedies
from service.domain.decisions import Decider, Question, Resource
from service.domain.errors import DomainError, Invalid, NotFound
from service.kernel.catalog import (
    ACCOUNT_ACTIONS, PERMISSION_ACTIONS, RESOURCE_TYPES, ROSTER_ACTIONS, SUPPORT_ONLY_ACTIONS, Role, Status,
)
from service.kernel.facts import AccountFacts, OrganizationFacts, oldest_current_password
from service.kernel.usernames import username_key
from service.policy import Decision
from service.storage.facts import effective_status_column
from service.storage.models import Account, Grant, Membership, Organization
from service.storage.secrets import shared_secret

SUBJECT_TYPE = "account"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
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


# --- The one filter: who may take an action on what, as a condition on rows ----------------------------
#
# One relation, stated once for both searches: the ACTOR (an aliased Account row) may take `action` on the
# resource (an Organization row, or the target's Account, its Membership and that Organization). The resource
# search pins the actor to the subject and selects resources; the subject search pins the resource and selects
# actors. It follows portal.polar's rules (R1, R2, R4, R5, R7, R13-R16, R18, R21) and reads what the policy can
# tell it of itself (the target states of `status_allows`, the reach of `account_wide`); the policy confirms
# every candidate anyway, and tests/test_authzen_search.py fails when the policy allows what it does not select.

Actor = aliased(Account, name="actor")


def _actor_link(organization_id, *conditions) -> ColumnElement:
    """The actor's active membership of the organization (`membership` in portal.polar), under `conditions`."""
    mine = aliased(Membership, name="mine")
    # Correlated to every enclosing level, not only the nearest: inside the reach check (an `exists` over the
    # account's other links) the Actor row is two levels up, and a subquery left to auto-correlate would read
    # "some account is admin there" instead of "the actor is".
    return exists().where(mine.account_id == Actor.id, mine.organization_id == organization_id,
                          mine.status == Status.ACTIVE, *[c(mine) for c in conditions]).correlate_except(mine)


def _granted(function: str):
    return lambda m: exists().where(Grant.membership_id == m.id, Grant.permission == function)


class _Authority:
    """portal.polar's standing predicates (is_admin, is_delegate, is_support, holds) over the Actor row, for a
    portal's catalog and delegating function."""

    def __init__(self, catalog: tuple[str, ...], delegate_permission: str | None):
        self.catalog, self.delegate_permission = catalog, delegate_permission
        self.support = Actor.is_support.is_(True)

    def admin(self, organization_id) -> ColumnElement:
        return _actor_link(organization_id, lambda m: m.role == Role.ADMIN)

    def delegate(self, organization_id) -> ColumnElement:
        permission = self.delegate_permission
        if permission is None:
            return false()
        return _actor_link(organization_id, lambda m: m.role == Role.MEMBER, _granted(permission))

    def holds(self, organization_id, function: str) -> ColumnElement:
        if function not in self.catalog:
            return false()
        return _actor_link(organization_id, lambda m: or_(m.role == Role.ADMIN, _granted(function)(m)))

    def administers(self, organization_id, role) -> ColumnElement:
        """R1, R15: support staff everyone, admins everyone there, delegates the members there."""
        return or_(self.support, self.admin(organization_id), and_(self.delegate(organization_id), role == Role.MEMBER))


def _standing(profile, now) -> ColumnElement:
    """R7, R16, R18: known_actor, active_actor, password_current, terms_accepted, on the Actor row."""
    standing = and_(Actor.status == Status.ACTIVE, Actor.password_hash.is_not(None),
                    Actor.terms_accepted_at.is_not(None))
    oldest = oldest_current_password(profile.password.expiry_days, now)
    return standing if oldest is None else and_(standing, Actor.password_changed_at > oldest)


# The conditions are built once per portal setting and question (building one costs more than running it), and
# reused: a SQL expression is immutable. The actor's standing is not kept, as it reads the clock.
@lru_cache(maxsize=1024)
def _organization_condition(catalog: tuple[str, ...], delegate_permission: str | None, offered: bool,
                            action: str) -> ColumnElement:
    """The organization rules (R1, R4, R10, R13-R16) on (Actor, Organization); `offered`: whether the portal
    offers the action when it is one of the roster's (R13)."""
    who = _Authority(catalog, delegate_permission)
    if not offered:  # R13: only where the portal offers it
        return false()
    if action in catalog:  # holds(): admins hold the catalog, members what they were granted
        return who.holds(Organization.id, action)
    if action == "view":
        return or_(who.support, _actor_link(Organization.id))
    if action in MANAGING:
        return or_(who.support, who.admin(Organization.id), who.delegate(Organization.id))
    if action in SUPPORT_ONLY:
        return who.support
    return false()


@lru_cache(maxsize=1024)
def _account_condition(catalog: tuple[str, ...], delegate_permission: str | None, action: str,
                       permission: str | None, states: frozenset[tuple[str, str]], account_wide: bool) -> ColumnElement:
    """The account rules (R1, R2, R5, R14, R15, R21) on (Actor, Account, Membership, Organization); `states` and
    `account_wide` are the policy's answers (`status_allows`, `account_wide`) for the action."""
    who = _Authority(catalog, delegate_permission)
    if action not in ACCOUNT_ACTIONS:
        return false()
    me = Account.id == Actor.id
    administers = who.administers(Organization.id, Membership.role)
    if action == "view":
        return or_(me, administers)
    effective = effective_status_column()
    status_allows = or_(*(and_(effective == status, Membership.role == role) for status, role in sorted(states))) \
        if states else false()
    may_take: ColumnElement = true()
    if action in ("upgrade", "downgrade"):  # makes_admins (R2)
        may_take = or_(who.support, who.admin(Organization.id))
    if action in PERMISSION_ACTIONS and permission is not None:  # known_permission, holds_permission (R14, R15)
        may_take = or_(who.support, who.holds(Organization.id, permission)) if permission in catalog \
            else false()
    allowed = and_(~me, administers, status_allows, may_take)
    if account_wide:
        # R1: an account-wide action needs authority in every organization of the account, so no other active
        # link may sit where the actor has none. (A delegate's capture check, R15, stays with the policy's
        # confirmation of each candidate.)
        other = aliased(Membership, name="other")
        allowed = and_(allowed, or_(who.support, ~exists().where(
            other.account_id == Account.id, other.status == Status.ACTIVE,
            ~or_(who.admin(other.organization_id),
                 and_(who.delegate(other.organization_id), other.role == Role.MEMBER)))))
    if action == "update_profile":
        allowed = or_(allowed, and_(me, effective != Status.REMOVED))
    return allowed


def _may(decider: Decider, action: str, resource_type: str, permission: str | None) -> ColumnElement:
    """The whole relation: the actor in good standing, and the resource's rule."""
    profile, policy = decider.profile, decider.policy
    catalog, delegate = tuple(profile.catalog), profile.delegate_permission
    if resource_type == "organization":
        offered = {"create_account": profile.admin_created_accounts, "link_account": profile.links}.get(action, True)
        rule = _organization_condition(catalog, delegate, bool(offered), action)
    else:
        rule = _account_condition(catalog, delegate, action, permission, policy.target_states(action, decider.portal),
                                  policy.account_wide(action))
    return and_(Actor.portal_id == decider.portal, _standing(decider.profile, decider.now), rule)


def search_resources(decider: Decider, subject: Entity, action: str, resource_type: str, context: dict,
                     after: list | None, limit: int) -> SearchPage:
    """The organizations, or the accounts in their organizations, the subject may take `action` on."""
    permission = _permission(action, context)
    if subject.type != SUBJECT_TYPE or resource_type not in RESOURCE_TYPES:
        return SearchPage([], None)
    username = subject.id or ""
    session, portal = decider.session, decider.portal
    condition = and_(Actor.username_key == username_key(username), _may(decider, action, resource_type, permission))

    if resource_type == "organization":
        def fetch(cursor, n):
            query = (select(Organization.key).select_from(Actor).join(Organization, true())
                     .where(Organization.portal_id == portal, condition))
            if cursor:
                query = query.where(Organization.key > cursor[0])
            return list(session.execute(query.order_by(Organization.key).limit(n)))

        def confirm(rows):
            return _allowed(decider, [(username, Question(action, Resource("organization", r.key), context))
                                      for r in rows])

        page, next_key, rejected = _paged(fetch, confirm, lambda r: [r.key], after, limit)
        return SearchPage([{"type": "organization", "id": r.key} for r in page], next_key, rejected)

    def fetch(cursor, n):
        query = (select(Account.username_key, Account.username, Organization.key.label("organization"))
                 .select_from(Membership)
                 .join(Account, Account.id == Membership.account_id)
                 .join(Organization, Organization.id == Membership.organization_id)
                 .join(Actor, true())
                 .where(Account.portal_id == portal, Organization.portal_id == portal, condition))
        if cursor:
            query = query.where(or_(Account.username_key > cursor[0],
                                    and_(Account.username_key == cursor[0], Organization.key > cursor[1])))
        return list(session.execute(query.order_by(Account.username_key, Organization.key).limit(n)))

    def confirm(rows):
        # A result names an account's membership of an organization (a removed one too, as decisions take it):
        # the subject's decision, and only what the policy's read scoping (`sees_membership`) lets it see.
        seen = decider.visible_memberships(username, {r.username for r in rows}, history=True)
        allowed = _allowed(decider, [(username, Question(action, Resource("account", r.username, r.organization),
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
    session, portal = decider.session, decider.portal
    # The resource decided on, pinned: the organization, or the target's membership of it (a removed one too).
    org_key = target.key if isinstance(target, OrganizationFacts) else target.organization.key
    rows = select(Actor.username_key, Actor.username).select_from(Actor).join(Organization, true())
    pinned = and_(Organization.portal_id == portal, Organization.key == org_key)
    if isinstance(target, AccountFacts):
        rows = (rows.join(Membership, Membership.organization_id == Organization.id)
                .join(Account, Account.id == Membership.account_id))
        pinned = and_(pinned, Account.portal_id == portal, Account.username_key == username_key(target.username))
    condition = and_(pinned, _may(decider, action, asked.type, permission))

    def fetch(cursor, n):
        query = rows.where(condition)
        if cursor:
            query = query.where(Actor.username_key > cursor[0])
        return list(session.execute(query.order_by(Actor.username_key).limit(n)))

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
