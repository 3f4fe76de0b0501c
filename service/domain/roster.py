"""An organization's roster: subordinate accounts, links to other organizations (R13), listing (R24)."""
from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

from sqlalchemy import Integer, String, and_, bindparam, case, func, literal_column, or_, select, true, union_all
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
# Three letters or digits in a row: a search term pg_trgm takes at least one trigram from (`_found`).
TRIGRAM = re.compile(r"[^\W_]{3}")


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


def _visibility(roles: tuple[str, ...]):
    """The roster's visibility as SQL conditions, read from the policy rather than restated here.

    Polar's `view` of another account of the organization turns on the actor and that account's role
    (`administers`: support and admins everyone, delegates members, R1, R15); so the policy is asked
    once per role, and the rows of the roles it allows are visible, besides the actor's own. Visible
    is what may be seen; managed what may be administered (seen, and not the actor itself).
    tests/test_roster_visibility.py proves the listing equal to the policy's `view` of every account,
    on SQLite and PostgreSQL. `roles` are `_visible_roles`; the actor's id is the parameter `me`.
    """
    me = Account.id == bindparam("me")
    if set(roles) == set(ROLES):  # every role: no condition, so the database reads the roster's index in order
        return Account.id.isnot(None), ~me
    others = Membership.role.in_(roles)
    return or_(others, me), and_(others, ~me)


def _number(n: int):
    """A constant written into the statement, not bound: the same text whichever page, so PostgreSQL may keep one
    plan for it, and a generic plan still knows how many rows each bounded read takes."""
    return literal_column(str(int(n)))


class _Search:
    """`q=`: a substring of the username, the email or "first last", in any case. On PostgreSQL one statement
    reads the page the cheapest of four ways, each giving exactly the plain query's rows in its order (the
    organization's listed accounts that match, by username, the first `limit` + 1), so paging is unchanged.

    Which way is cheapest turns on what the planner's estimates do not tell reliably: how many members the
    organization has, and how densely its matches lie in username order (a first name's matches sit
    together, a common last name's are spread evenly, an email domain's may all be in other organizations).
    So the statement measures these, each read bounded, and PostgreSQL runs only the branch they choose
    (one-time filters: a branch not chosen, and a measure not needed, is never executed):

    - members: under SMALL members (or at most MID when the two below do not apply): each member's account
      read by its key and tested, then sorted. Work in proportion to the organization, whatever the pattern.
    - walk: the portal's first WALK accounts in username order (after the cursor), each tested; when that
      prefix holds more than a page of the organization's listed matches, or is the rest of the portal, the
      page is in it (a row of the plain query sorting before the prefix's last hit is in the prefix, and a
      hit). Dense patterns end here ('@example.org', a common last name).
    - matches: for a pattern with a trigram (`_found`), the portal's matches from the trigram indexes (migration
      0009), when at most FEW, sorted, each probed for its membership until a page is found. Sparse or
      clustered patterns end here.
    - planner: over MID members, a pattern the walk did not settle with more than FEW matches (or without a
      trigram): the plain query, fenced so that it reads every match or member rather than walk the username
      index.
    bench/README.md (`console.py`) has the figures; tests/test_roster_search.py runs each branch against the
    plain query.
    """

    SMALL, WALK, FEW, MID = 2_000, 1_000, 10_000, 10_000

    def __init__(self, after: bool, indexed: bool):
        """The statement's parameters: `pattern` ('%term%', case-folded), `org`, `portal`, `after`, `page`."""
        self.found, self.indexed = _found(indexed), indexed
        self._parts = 0
        portal = [Account.portal_id == bindparam("portal"),
                  *([Account.username_key > bindparam("after")] if after else [])]

        def members(bound: int, name: str):
            some = (select(Membership.account_id).where(Membership.organization_id == bindparam("org"))
                    .limit(_number(bound)).subquery())
            return select(func.count().label("n")).select_from(some).cte(name)

        # Shared by every part of one listing (the status filter has two).
        self._small, self._mid = members(self.SMALL, "search_small"), members(self.MID + 1, "search_mid")
        self._walked = (select(Account.id, Account.username_key, self.found.label("hit")).where(*portal)
                        .order_by(Account.username_key)
                        .limit(_number(self.WALK)).cte("search_walked").prefix_with("MATERIALIZED"))
        self._matches = (select(Account.id, Account.username_key).where(*portal, self.found)
                         .limit(_number(self.FEW + 1)).cte("search_matches").prefix_with("MATERIALIZED"))

    def page(self, listed):
        """`listed(*conditions)`: the organization's listed accounts (id, username_key) meeting them."""
        walked, matches, page = self._walked, self._matches, bindparam("page")
        self._parts += 1

        def count(cte):
            return select(func.count()).select_from(cte).scalar_subquery()

        def first(query, *columns):
            return query.order_by(*columns).limit(page)

        def listed_one(account_id):
            """Whether that account is listed: a LATERAL subquery with a LIMIT is never flattened into a join,
            so each is a probe by key, per row (a join may hash the organization's every membership instead,
            as a generic plan, not knowing which organization, did for the walk's hits)."""
            return listed(Account.id == account_id).with_only_columns(_number(1)).limit(_number(1)).lateral()

        hits = (first(select(walked.c.id, walked.c.username_key).join(listed_one(walked.c.id), true())
                      .where(walked.c.hit), walked.c.username_key)
                .cte(f"search_hits_{self._parts}").prefix_with("MATERIALIZED"))
        # CASE tests its conditions in order and stops at the first that holds, so a measure is read only
        # when the ones before it did not decide. Without a trigram, counting the matches would be a scan of
        # the portal, not a measure: it is not asked.
        way = select(case(
            (select(self._small.c.n).scalar_subquery() < _number(self.SMALL), literal_column("'members'")),
            (or_(count(walked) < _number(self.WALK), count(hits) >= page), literal_column("'walk'")),
            *([(count(matches) <= _number(self.FEW), literal_column("'matches'"))] if self.indexed else []),
            (select(self._mid.c.n).scalar_subquery() <= _number(self.MID), literal_column("'members'")),
            else_=literal_column("'planner'")).label("way")).cte(f"search_way_{self._parts}")

        def taken(name: str):
            return select(way.c.way).scalar_subquery() == literal_column(f"'{name}'")

        member = select(Membership.account_id).where(Membership.organization_id == bindparam("org")).subquery()
        account = listed(self.found, Account.id == member.c.account_id).limit(_number(1)).lateral()
        by_member = first(select(account.c.id, account.c.username_key).select_from(member).join(account, true())
                          .where(taken("members")), account.c.username_key)
        by_walk = select(hits.c.id, hits.c.username_key).where(taken("walk"))
        ordered = select(matches.c.id, matches.c.username_key).order_by(matches.c.username_key).subquery()
        by_match = first(select(ordered.c.id, ordered.c.username_key).join(listed_one(ordered.c.id), true())
                         .where(taken("matches")), ordered.c.username_key)
        # OFFSET 0 keeps the planner from walking the username index in hope of early matches.
        whole = listed(self.found).offset(_number(0)).subquery()
        by_planner = first(select(whole.c.id, whole.c.username_key).where(taken("planner")), whole.c.username_key)
        union = union_all(by_member, by_walk, by_match, by_planner).subquery()
        return first(select(union.c.id, union.c.username_key), union.c.username_key)


def _found(indexed: bool):
    """`q=`'s condition on the parameter `pattern`. Anything found in the first or the last name is found in
    "first last": one LIKE for all three. The name's expression is written with the space inline so that it
    is the indexed expression exactly (migration 0009).

    A pattern without three letters or digits in a row has no trigram, and a trigram index asked for it reads
    every entry. A prepared statement's generic plan, which does not know the pattern, may still choose the
    index (a two-letter search took 0.4-1 s): so such a pattern is written into the statement's text (quoted
    by SQLAlchemy), where PostgreSQL plans for the pattern it sees."""
    pattern = bindparam("pattern", type_=String(), literal_execute=not indexed)
    full_name = func.lower(Account.first_name + literal_column("' '") + Account.last_name)
    return or_(Account.username_key.like(pattern), Account.email_key.like(pattern), full_name.like(pattern))


@lru_cache(maxsize=512)
def _page_statement(postgres: bool, roles: tuple[str, ...], manageable: bool, status: str | None, after: bool,
                    searched: str | None, thresholds: tuple[int, ...]):
    """The statement of a roster page's ids and sort keys, for one shape of listing, built once: its values are
    parameters (`org`, `portal`, `me`, `after`, `status`, `pattern`, `page` = limit + 1). `status` is None,
    'active' or 'other' (the value is the parameter); `searched` None, 'indexed' or 'unindexed' (`_found`).
    Building the search's statement costs milliseconds of CPU; a shape's statement object also keeps
    SQLAlchemy's cache key, so a page pays neither again. `thresholds` are `_Search`'s, a key only."""
    visible, managed = _visibility(roles)
    # Every member of an organization is an account of its portal: saying so lets PostgreSQL read a page in
    # order from an index on accounts and stop after it, rather than join and sort the whole roster
    # (bench/roster.py, 100,000 members).
    everyone = [Membership.organization_id == bindparam("org"), Account.portal_id == bindparam("portal"),
                managed if manageable else visible, *([Account.username_key > bindparam("after")] if after else [])]
    search = _Search(after, searched == "indexed") if searched else None
    page = bindparam("page", type_=Integer)

    def first(*conditions):
        """The first page (and one more) of the organization's accounts the actor may list that meet
        `conditions` and the search."""
        def listed(*more):
            return (select(Account.id, Account.username_key).join(Membership, Membership.account_id == Account.id)
                    .where(*everyone, *conditions, *more))

        if search is None:
            return listed().order_by(Account.username_key).limit(page)
        if postgres:
            return search.page(listed)
        return listed(search.found).order_by(Account.username_key).limit(page)

    if status is None:
        return first()
    # The effective status is the link's when it is not active (a removed link), else the account's.
    # Each part takes its own first page in order, the account's from the (portal_id, status,
    # username_key) index and the link's from (organization_id, status); then the database orders
    # the two pages together (in its own collation, as `after` compares). One condition with OR over
    # both tables made PostgreSQL join and sort every match instead.
    parts = [first(Membership.status == Status.ACTIVE, Account.status == bindparam("status")).subquery()]
    if status != Status.ACTIVE:
        parts.append(first(Membership.status != Status.ACTIVE, Membership.status == bindparam("status")).subquery())
    both = union_all(*(select(part) for part in parts)).subquery() if len(parts) > 1 else parts[0]
    return select(both).order_by(both.c.username_key).limit(page)


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
    roles = tuple(_visible_roles(ctx, decider.actor(actor_account.username), org_facts))
    statement = _page_statement(ctx.session.get_bind().dialect.name == "postgresql", roles, manageable,
                                None if not status else "active" if status == Status.ACTIVE else "other",
                                bool(after), None if not q else "indexed" if TRIGRAM.search(q) else "unindexed",
                                (_Search.SMALL, _Search.WALK, _Search.FEW, _Search.MID))
    values = {"org": org.id, "portal": org.portal_id, "me": actor_account.id, "page": limit + 1,
              "after": username_key(after) if after else None, "status": status or None,
              "pattern": f"%{q.casefold()}%" if q else None}
    page = list(ctx.session.execute(statement, {k: v for k, v in values.items() if v is not None}))
    ids = [row.id for row in page]
    loaded = {a.id: a for a in ctx.session.scalars(
        select(Account).where(Account.id.in_(ids))
        .options(selectinload(Account.memberships).selectinload(Membership.grants),
                 selectinload(Account.memberships).selectinload(Membership.organization)))}
    rows = [loaded[i] for i in ids]
    following = rows[limit - 1].username_key if len(rows) > limit else None
    return decision, rows[:limit], following
