"""An organization's roster: subordinate accounts, links to other organizations (R13), listing (R24)."""
from __future__ import annotations

from dataclasses import replace

from sqlalchemy import and_, func, literal_column, or_, select, union_all
from sqlalchemy.orm import selectinload

from service.domain import audit
from service.domain.administration import Outcome, check_comment, record_denial
from service.domain.decisions import Decider, Question, Resource
from service.domain.errors import Conflict, Invalid, NotFound
from service.domain.people import new_account
from service.domain.work import Context
from service.kernel.catalog import ROLES, AccountAction, Role, Status
from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, OrganizationFacts
from service.kernel.usernames import username_key
from service.policy import Decision
from service.storage.facts import find_account
from service.storage.models import Account, Comment, Grant, Membership, Organization

MAX_PAGE = 200


def _decide_on_organization(ctx: Context, actor_account: Account, action: str, org_key: str):
    """The same question /v1/authorize answers, through the same Decider and fact loader."""
    decider = ctx.decider()
    decision, org_facts = decider.decide_on(actor_account.username,
                                            Question(action, Resource("organization", org_key)))
    return decider, org_facts, decision


def _organization(ctx: Context, key: str) -> Organization:
    org = ctx.session.scalar(select(Organization).where(Organization.portal_id == ctx.portal, Organization.key == key)
                             .with_for_update())
    if org is None:
        raise NotFound(f"no organization {key!r} in portal {ctx.portal!r}")
    return org


def _grants_to_newcomer(ctx: Context, decider: Decider, actor_account: Account, org_facts: OrganizationFacts,
                        username: str, permissions) -> dict[str, Decision]:
    """Each service assigned to a new account is a `grant` to it, asked of the policy as any grant is (R14, R15)."""
    actor = decider.actor(actor_account.username)
    newcomer = AccountFacts(username, org_facts, Role.MEMBER.value, Status.ACTIVE.value, None,
                            (LinkFacts(org_facts, Role.MEMBER.value, ()),))
    return {permission: ctx.policy.decide(actor, "grant", replace(newcomer, permission=permission))
            for permission in dict.fromkeys(permissions)}


def grantable_on_creation(ctx: Context, actor_account: Account, org_key: str) -> list[str]:
    """The catalog's services the actor may assign to a subordinate it creates: what `create_subordinate` asks,
    asked ahead (none when the actor may not create accounts there)."""
    decider, org_facts, decision = _decide_on_organization(ctx, actor_account, "create_account", org_key)
    if not decision.allowed:
        return []
    answers = _grants_to_newcomer(ctx, decider, actor_account, org_facts, "", ctx.profile.catalog)
    return [permission for permission, answer in answers.items() if answer.allowed]


def create_subordinate(ctx: Context, actor_account: Account, org_key: str, details: dict, permissions: list[str],
                       comment: str | None) -> Outcome:
    """R13: a Primary User (or delegate) creates a staff account and assigns its services."""
    check_comment(comment, ctx.profile)
    org = _organization(ctx, org_key)
    decider, org_facts, decision = _decide_on_organization(ctx, actor_account, "create_account", org_key)
    reasons = list(decision.reasons)
    if decision.allowed:
        for answer in _grants_to_newcomer(ctx, decider, actor_account, org_facts, details["username"],
                                          permissions).values():
            reasons += [r for r in answer.reasons if r not in reasons]
    if reasons:
        denied = Decision(False, tuple(dict.fromkeys(reasons)), decision.policy_version)
        return record_denial(ctx, actor_account.username, "create_account", details["username"], org_key, denied,
                             comment)
    # The Primary User chose the password, so it is temporary; R7: the subordinate
    # accepts the terms of use itself, at its first sign-in (004: "prompted ... upon initial sign-in").
    account = new_account(ctx.session, ctx.profile, ctx.portal, status=Status.ACTIVE, now=ctx.now, set_by_other=True,
                          terms_accepted=False, **details)
    link = Membership(account_id=account.id, organization_id=org.id, role=Role.MEMBER, status=Status.ACTIVE,
                      created_at=ctx.now)
    ctx.session.add(link)
    ctx.session.flush()
    for permission in dict.fromkeys(permissions):
        ctx.session.add(Grant(membership_id=link.id, permission=permission, granted_at=ctx.now))
    _record(ctx, actor_account, "create_account", account, org_key, comment, {"permissions": permissions})
    return Outcome(decision, account, org_key)


def link_account(ctx: Context, actor_account: Account, org_key: str, username: str,
                 comment: str | None) -> Outcome:
    """R13: an account of another provider or billing entity acts on behalf of this organization."""
    check_comment(comment, ctx.profile)
    org = _organization(ctx, org_key)
    _, _, decision = _decide_on_organization(ctx, actor_account, "link_account", org_key)
    if not decision.allowed:
        return record_denial(ctx, actor_account.username, "link_account", username, org_key, decision, comment)
    account = find_account(ctx.session, ctx.portal, username)
    if account is None or account.status == Status.REMOVED:
        raise NotFound(f"no account {username!r} in portal {ctx.portal!r}")
    if account.is_support:
        raise Conflict("support staff are not linked to organizations", "support_account")
    link = next((m for m in account.memberships if m.organization_id == org.id), None)
    if link is not None and link.status != Status.REMOVED:
        raise Conflict(f"{account.username!r} is already linked to {org_key!r}", "already_linked")
    if link is None:
        ctx.session.add(Membership(account_id=account.id, organization_id=org.id, role=Role.MEMBER,
                                   status=Status.ACTIVE, created_at=ctx.now))
    else:
        link.status, link.role = Status.ACTIVE, Role.MEMBER
    ctx.session.flush()
    _record(ctx, actor_account, "link_account", account, org_key, comment, None)
    return Outcome(decision, account, org_key)


def _record(ctx, actor, action, target, org_key, comment, detail):
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action=action, outcome="done", actor=actor.username,
                 client=ctx.client, target=target.username, organization=org_key, detail=detail, comment=comment)
    if comment is not None:
        ctx.session.add(Comment(account_id=target.id, organization=org_key, action=action, actor=actor.username,
                                created_at=ctx.now, text=comment))


def _visible_roles(ctx: Context, actor: ActorFacts, org_facts: OrganizationFacts) -> list[str]:
    """The roles of the organization's accounts whose `view` the policy allows the actor, asked once per role."""
    return [role for role in ROLES
            if ctx.policy.decide(actor, AccountAction.VIEW.value,
                                 AccountFacts("", org_facts, role, Status.ACTIVE.value)).allowed]


def sees_others(ctx: Context, actor_account: Account, org_key: str) -> bool:
    """Whether the actor may see accounts of the organization besides its own (where a console offers its
    admin tools): the same per-role question the listing's visibility is read from."""
    decider, org_facts, decision = _decide_on_organization(ctx, actor_account, "view", org_key)
    return decision.allowed and bool(_visible_roles(ctx, decider.actor(actor_account.username), org_facts))


def _visibility(ctx: Context, actor: ActorFacts, actor_id: int, org_facts: OrganizationFacts):
    """The roster's visibility as SQL conditions, read from the policy rather than restated here.

    Polar's `view` of another account of the organization turns on the actor and that account's role
    (`administers`: support and admins everyone, delegates members, R1, R15); so the policy is asked
    once per role, and the rows of the roles it allows are visible, besides the actor's own. Visible
    is what may be seen; managed what may be administered (seen, and not the actor itself).
    tests/test_roster_visibility.py proves the listing equal to the policy's `view` of every account,
    on SQLite and PostgreSQL.
    """
    roles = _visible_roles(ctx, actor, org_facts)
    me = Account.id == actor_id
    if set(roles) == set(ROLES):  # every role: no condition, so the database reads the roster's index in order
        return Account.id.isnot(None), ~me
    others = Membership.role.in_(roles)
    return or_(others, me), and_(others, ~me)


def list_accounts(ctx: Context, actor_account: Account, org_key: str, *, q: str | None, status: str | None,
                  manageable: bool, limit: int, after: str | None) -> tuple[Decision, list[Account], str | None]:
    """R24: the accounts the actor may see (or administer), searched and paged in SQL, never whole in Python.

    Visibility follows the policy's facts: admins and support see everyone in the
    organization, delegates see members, anyone else only themselves; a test checks
    every listed account against the policy's `view` decision.
    """
    org = ctx.session.scalar(select(Organization).where(Organization.portal_id == ctx.portal,
                                                        Organization.key == org_key))
    if org is None:
        raise NotFound(f"no organization {org_key!r} in portal {ctx.portal!r}")
    decider, org_facts, decision = _decide_on_organization(ctx, actor_account, "view", org_key)
    if not decision.allowed:
        # R27: a denied listing is recorded like any other denial.
        record_denial(ctx, actor_account.username, "list_accounts", None, org_key, decision, None)
        return decision, [], None
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("bad page size", [{"field": "limit", "code": "out_of_range",
                                         "message": f"between 1 and {MAX_PAGE}"}])
    visible, managed = _visibility(ctx, decider.actor(actor_account.username), actor_account.id, org_facts)

    postgres = ctx.session.get_bind().dialect.name == "postgresql"

    def matching(*conditions):
        """The sort keys of the organization's accounts the actor may list that meet `conditions`.

        Every member of an organization is an account of its portal: saying so lets PostgreSQL read a
        page in order from an index on accounts and stop after it, rather than join and sort the whole
        roster (bench/roster.py, 100,000 members).
        """
        query = (select(Account.id, Account.username_key).join(Membership, Membership.account_id == Account.id)
                 .where(Membership.organization_id == org.id, Account.portal_id == org.portal_id,
                        managed if manageable else visible, *conditions))
        if q:
            # Anything found in the first or the last name is found in "first last": one LIKE for both.
            # On PostgreSQL each of the three is read from its trigram index (migration 0009): the name's
            # expression is written with the space inline so it is the indexed expression exactly.
            pattern = f"%{q.casefold()}%"
            full_name = func.lower(Account.first_name + literal_column("' '") + Account.last_name)
            found = or_(Account.username_key.like(pattern), Account.email_key.like(pattern), full_name.like(pattern))
            if postgres and len(q) >= 3:
                # The matches first, from the trigram indexes (a bitmap OR of the three), then ordered. Left to
                # itself the planner walks the username index of the whole portal and tests each row, hoping
                # to meet 101 matches early (bench/roster.py --explain; bench/README.md); MATERIALIZED
                # keeps it from folding this back into that walk. Below 3 characters no trigram can help.
                matches = (select(Account.id).where(Account.portal_id == org.portal_id, found)
                           .cte("matches").prefix_with("MATERIALIZED"))
                query = query.where(Account.id.in_(select(matches.c.id)))
            else:
                query = query.where(found)
        if after:
            query = query.where(Account.username_key > username_key(after))
        return query

    def first(query):
        return query.order_by(Account.username_key).limit(limit + 1)

    if status:
        # The effective status is the link's when it is not active (a removed link), else the account's.
        # Each part takes its own first page in order, the account's from the (portal_id, status,
        # username_key) index and the link's from (organization_id, status); then the database orders
        # the two pages together (in its own collation, as `after` compares). One condition with OR over
        # both tables made PostgreSQL join and sort every match instead.
        parts = [first(matching(Membership.status == Status.ACTIVE, Account.status == status)).subquery()]
        if status != Status.ACTIVE:
            parts.append(first(matching(Membership.status != Status.ACTIVE, Membership.status == status)).subquery())
        found = union_all(*(select(part) for part in parts)).subquery() if len(parts) > 1 else parts[0]
        page = list(ctx.session.execute(select(found).order_by(found.c.username_key).limit(limit + 1)))
    else:
        page = list(ctx.session.execute(first(matching())))
    ids = [row.id for row in page]
    loaded = {a.id: a for a in ctx.session.scalars(
        select(Account).where(Account.id.in_(ids))
        .options(selectinload(Account.memberships).selectinload(Membership.grants),
                 selectinload(Account.memberships).selectinload(Membership.organization)))}
    rows = [loaded[i] for i in ids]
    following = rows[limit - 1].username_key if len(rows) > limit else None
    return decision, rows[:limit], following
