"""What would allow a denial, and who in the organization may make that change.

The change that satisfies a failing requirement is the policy's (`remedy`, stated beside each
requirement in portal.polar, collected by `deny_remedy`); who may make it is the policy's answer to
that change, asked of the organization's candidates: its delegates, then its admins, then, when the
policy lets a member in good standing make the change at all (`any_member`), up to MAX_OTHERS of its other
active members (at most MAX_NAMED named); then a support account in good standing (`support`). Nothing here says who may do
what: it only hands the policy the questions.

Read scoping: a change is always to the asker's own account, in the organization the question is
about, and only where the asker's membership there is one it may see (`sees_membership`, through
`Policy.visible_memberships`). The candidates named are that organization's; an asker with no
visible membership there is named nobody of it (no remedy that needs someone there).

Computed only when asked (`remedies: true`); the plain decision path never comes here.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from functools import cache

from sqlalchemy import bindparam, literal, select, tuple_, union_all

from service.domain.decisions import Decider, Question, Resource
from service.domain.errors import Invalid, NotFound
from service.kernel.catalog import ACCOUNT_ACTIONS, PERMISSION_ACTIONS, Role, Status
from service.kernel.facts import AccountFacts, ActorFacts, MembershipFacts, OrganizationFacts
from service.policy import Decision, Policy
from service.storage.models import Account, Grant, Membership, Organization

log = logging.getLogger(__name__)

MAX_NAMED = 5
# After the delegates and admins, at most this many other active members are asked (a sample, not a census:
# `by` names at most MAX_NAMED anyway).
MAX_OTHERS = 50
# Support staff as the policy sees one in good standing: whether "support" can make a change.
SUPPORT_STAFF = ActorFacts("support staff", True, "active", True, True, (), True)
CANDIDATE_CHUNK = 25

# (organization key, change) -> the asker's account as it stands there, asked about the change; None if none
TargetOf = Callable[[str, dict], "AccountFacts | None"]
# organization key -> its candidates' facts in order: delegates, then admins
CandidatesOf = Callable[[str], Iterable[ActorFacts]]
# organization key -> its other active members' facts, in order (at most MAX_OTHERS)
OthersOf = Callable[[str], Iterable[ActorFacts]]


def organization_of(resource: OrganizationFacts | AccountFacts) -> OrganizationFacts:
    return resource if isinstance(resource, OrganizationFacts) else resource.organization


def any_member(target: AccountFacts) -> ActorFacts:
    """A member in good standing of every organization the target belongs to, holding every function there
    but the delegating one: what any member who is neither admin nor delegate has at most. The policy's answer
    for it says whether other members are worth asking at all (a policy never takes authority away for holding
    more functions: grants only add)."""
    links = tuple(MembershipFacts(link.organization.key, Role.MEMBER.value, True,
                                  tuple(p for p in link.organization.catalog
                                        if p != link.organization.delegate_permission))
                  for link in target.links)
    return ActorFacts("any member", True, Status.ACTIVE.value, True, False, links, True)


def remedies(policy: Policy, asker: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts,
             target_of: TargetOf, candidates_of: CandidatesOf, others_of: OthersOf | None = None) -> list[dict]:
    """The remedies of a denial of `action` on `resource` to `asker`, as the API answers them. `others_of`: the
    organization's other members, asked after the delegates and admins when the policy lets any member make
    the change (`any_member`)."""
    org = organization_of(resource)
    found: list[dict] = []
    for code, change in policy.remedies(asker, action, resource):
        kind = change["action"]
        if policy.self_service(kind):  # only the account's own person: no one else to name, nor support
            found.append({"code": code, "change": {"action": kind, "account": asker.username},
                          "by": [asker.username], "support": False})
            continue
        if kind not in ACCOUNT_ACTIONS:
            log.error("policy remedy %r is neither an account action nor self-service; left out", kind)
            continue
        target = target_of(org.key, change)
        if target is None or not _visible(policy, asker, target, org.key):
            continue
        by: list[str] = []
        _name(policy, kind, target, candidates_of(org.key), by)
        if len(by) < MAX_NAMED and others_of is not None and policy.decide(any_member(target), kind, target).allowed:
            _name(policy, kind, target, others_of(org.key), by)
        body = {"action": kind, "account": asker.username, "organization": org.key}
        if kind in PERMISSION_ACTIONS:
            body["permission"] = change.get("permission")
        found.append({"code": code, "change": body, "by": by,
                      "support": policy.decide(SUPPORT_STAFF, kind, target).allowed})
    return found


def _name(policy: Policy, kind: str, target: AccountFacts, candidates: Iterable[ActorFacts], by: list[str]) -> None:
    """Add to `by` the candidates the policy allows to make the change, in order, until MAX_NAMED are named."""
    if len(by) >= MAX_NAMED:
        return
    for candidate in candidates:
        if candidate.username not in by and policy.decide(candidate, kind, target).allowed:
            by.append(candidate.username)
            if len(by) == MAX_NAMED:
                return


def _visible(policy: Policy, asker: ActorFacts, target: AccountFacts, org_key: str) -> bool:
    """The asker may see the membership the change is made to (the policy's read scoping)."""
    links = [link for link in target.links if link.organization.key == org_key]
    return bool(links) and bool(policy.visible_memberships(asker, target.username, links))


# --- From stored facts --------------------------------------------------------------------------------

def for_decision(decider: Decider, action: str, decision: Decision,
                 candidates: dict[str, _Candidates] | None = None) -> list[dict]:
    """The remedies of a decision the Decider made (none when allowed, or when it was made on no facts).

    The organization's first candidates are read, then their facts with the asker's as an account there in
    one statement; further candidates (rarely needed) a chunk and a statement at a time. `candidates`, kept
    by the caller, shares what was read between the decisions of one asker (its functions, say)."""
    if decision.allowed or decision.facts is None:
        return []
    asker, resource = decision.facts
    candidates = {} if candidates is None else candidates

    def read(org_key: str) -> _Candidates:
        if org_key not in candidates:
            candidates[org_key] = _Candidates(decider, asker.username, org_key)
        return candidates[org_key]

    def target_of(org_key: str, change: dict) -> AccountFacts | None:
        question = Question(change["action"], Resource("account", asker.username, org_key),
                            {"permission": change.get("permission")})
        try:
            return decider.resource_in(read(org_key).facts, question)
        except (NotFound, Invalid):
            return None

    def others_of(org_key: str) -> Iterator[ActorFacts]:
        for chunk in other_usernames(decider, org_key):
            yield from decider.actors(chunk).values()

    return remedies(decider.policy, asker, action, resource, target_of, lambda org_key: iter(read(org_key)),
                    others_of)


class _Candidates:
    """An organization's candidates in order, read as far as asked and kept for the next remedy."""

    def __init__(self, decider: Decider, asker: str, org_key: str):
        self.decider = decider
        self.chunks = candidate_usernames(decider, org_key)
        first = next(self.chunks, [])
        self.facts = decider.read({asker, *first}, {org_key}, {asker})
        self.read = [[decider.actor_in(self.facts, username) for username in first]]

    def __iter__(self) -> Iterator[ActorFacts]:
        index = 0
        while True:
            if index < len(self.read):
                yield from self.read[index]
                index += 1
                continue
            chunk = next(self.chunks, None)
            if chunk is None:
                return
            self.read.append(list(self.decider.actors(chunk).values()))


def candidate_usernames(decider: Decider, org_key: str) -> Iterator[list[str]]:
    """The usernames of the organization's active delegates, then its active admins, each in username order, in
    chunks: one pass over the organization's admins and delegates, read only as far as needed."""
    dp = decider.profile.delegate_permission
    statement = _candidates_statement(dp is not None)
    after: tuple[int, str] = (-1, "")
    while True:
        rows = list(decider.session.execute(statement, {"portal": decider.portal, "org": org_key, "dp": dp,
                                                        "rank": after[0], "key": after[1], "n": CANDIDATE_CHUNK}))
        if rows:
            yield [r.username for r in rows]
        if len(rows) < CANDIDATE_CHUNK:
            return
        after = (rows[-1].rank, rows[-1].username_key)


def other_usernames(decider: Decider, org_key: str) -> Iterator[list[str]]:
    """Up to MAX_OTHERS of the organization's other active members (neither delegates nor admins), in username
    order, in chunks: asked only when the policy lets a member make the change at all."""
    dp = decider.profile.delegate_permission
    statement, key, left = _others_statement(dp is not None), "", MAX_OTHERS
    while left > 0:
        n = min(CANDIDATE_CHUNK, left)
        rows = list(decider.session.execute(statement, {"portal": decider.portal, "org": org_key, "dp": dp,
                                                        "key": key, "n": n}))
        if rows:
            yield [r.username for r in rows]
        if len(rows) < n:
            return
        left -= len(rows)
        key = rows[-1].username_key


def _organization_id():
    return (select(Organization.id).where(Organization.portal_id == bindparam("portal"),
                                          Organization.key == bindparam("org")).scalar_subquery())


@cache
def _candidates_statement(with_delegates: bool):
    """Built once: (rank, username key, username) past the keyset (:rank, :key), delegates (0) before admins (1)."""
    org_id = _organization_id()

    def group(rank: int, *conditions):
        return (select(literal(rank).label("rank"), Account.username_key, Account.username)
                .join(Membership, Membership.account_id == Account.id)
                .where(Membership.organization_id == org_id, Membership.status == Status.ACTIVE, *conditions))

    branches = [group(1, Membership.role == Role.ADMIN)]
    if with_delegates:
        granted = select(Grant.membership_id).where(Grant.permission == bindparam("dp"))
        branches.insert(0, group(0, Membership.role == Role.MEMBER, Membership.id.in_(granted)))
    found = (union_all(*branches) if len(branches) > 1 else branches[0]).subquery()
    past = tuple_(found.c.rank, found.c.username_key) > tuple_(bindparam("rank"), bindparam("key"))
    return (select(found).where(past)
            .order_by(found.c.rank, found.c.username_key).limit(bindparam("n")))


@cache
def _others_statement(with_delegates: bool):
    """Built once: (username key, username) of the organization's active members that are neither delegates nor
    admins, past :key, in username order (a statement of its own, read only when the first ones named too few)."""
    conditions = [Membership.organization_id == _organization_id(), Membership.status == Status.ACTIVE,
                  Membership.role == Role.MEMBER, Account.status == Status.ACTIVE,
                  Account.username_key > bindparam("key")]
    if with_delegates:
        granted = select(Grant.membership_id).where(Grant.permission == bindparam("dp"))
        conditions.append(Membership.id.not_in(granted))
    return (select(Account.username_key, Account.username).join(Membership, Membership.account_id == Account.id)
            .where(*conditions).order_by(Account.username_key).limit(bindparam("n")))
