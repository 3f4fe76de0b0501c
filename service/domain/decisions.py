"""Answering "may this actor do this to that?" from stored facts.

This module resolves names to stored rows (404 for unknown portals,
organizations and accounts, a deny with `unknown_actor` for an unknown actor),
builds the policy's facts from them (here only: storage returns rows), and
leaves the decision itself to the policy. Every fact a
request's decisions read is loaded in one statement (`storage.facts.load_facts`),
a batch's too, so the cost does not grow with the number of queries.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from service.config import Config, PortalProfile
from service.domain.errors import Invalid, NotFound
from service.kernel.catalog import PERMISSION_ACTIONS, Status
from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts, effective_status, \
    password_current
from service.policy import Decision, Policy
from service.storage import facts as stored



@dataclass(frozen=True)
class Resource:
    type: str  # "organization" | "account"
    id: str
    organization: str | None = None


@dataclass(frozen=True)
class Question:
    action: str
    resource: Resource
    context: dict = field(default_factory=dict)


# The statuses the facts are built from, as the plain strings they equal (Status is a StrEnum): a member's
# lookup on the enum class costs more than the comparison itself, on every decision.
_ACTIVE, _REMOVED = Status.ACTIVE.value, Status.REMOVED.value


def profile_of(config: Config, portal: str) -> PortalProfile:
    profile = config.portal(portal)
    if profile is None:
        raise NotFound(f"unknown portal {portal!r}; configured portals: {', '.join(sorted(config.portals))}")
    return profile


def _needs(actor: str | None, resources: Sequence[Resource], actors: Iterable[str] = ()):
    """What a question's facts statement reads: (usernames, organization keys, target usernames).

    Every decision computes this (a prefetch and the Decider each once), so it makes no set it throws away."""
    targets = {r.id for r in resources if r.type == "account"}
    organizations = {r.id if r.type == "organization" else r.organization for r in resources}
    organizations.discard(None)
    usernames = targets.union(actors)
    if actor is not None:
        usernames.add(actor)
    return usernames, organizations, targets


def head_counts_read(policy: Policy, asks: Iterable[tuple[str | None, str]]) -> bool:
    """Whether any of these questions (action, or None for every action; resource type) can read an
    organization's head counts, as the policy says (`Policy.reads_head_counts`)."""
    return any(policy.reads_head_counts(action, kind) for action, kind in asks)


class Prefetch:
    """A request's question's facts (or an AuthZEN evaluations body's questions') read in the same statement as the
    request's client key check: one round trip.

    Built from the request body as sent; `read_key` is given to `clients.check` as its reader. The
    Decider uses the facts only for exactly the same portal and names (else it reads them again), and
    only once, in the same request. `head_counts`: whether they are read (the question's action can
    read them, by the policy); facts read with them serve a question that does not need them too.
    """

    def __init__(self, portal: str, actor: str, resource: Resource, head_counts: bool = True):
        self._begin(portal, _needs(actor, [resource]), head_counts)

    @classmethod
    def of_asks(cls, portal: str, asks: Sequence[tuple[str, Resource]], head_counts: bool = True) -> Prefetch:
        """The facts of several questions (actor, resource) as `Decider.decide_each` reads them for the same
        questions (an AuthZEN evaluation or evaluations body)."""
        prefetch = cls.__new__(cls)
        prefetch._begin(portal, _needs(None, [resource for _, resource in asks], {actor for actor, _ in asks}),
                        head_counts)
        return prefetch

    def _begin(self, portal: str, needs, head_counts: bool) -> None:
        self.portal = portal
        self.needs = needs
        self.head_counts = head_counts
        self.facts: stored.StoredFacts | None = None

    def read_key(self, session: Session, key_id: str):
        self.facts = stored.load_facts(session, self.portal, *self.needs, key_id=key_id, head_counts=self.head_counts)
        return self.facts.client_key

    def take(self, portal: str, needs, head_counts: bool = True) -> stored.StoredFacts | None:
        facts, self.facts = self.facts, None
        return facts if (facts is not None and portal == self.portal and needs == self.needs
                         and (self.head_counts or not head_counts)) else None


class Decider:
    """Decisions for one portal within one database session; facts are read fresh for every call.

    `head_counts_as_read`: the decisions (decide, decide_many, decide_each, authorized_actions) read an
    organization's head counts only when one of their questions can read them, as the policy says; the
    facts they return then hold UNREAD counts, which only the policy's own rules may be asked about (the
    decision endpoints). Off, every read has them (the default: a change applies them, an answer shows them).
    """

    def __init__(self, session: Session, profile: PortalProfile, policy: Policy, portal: str, now: datetime,
                 prefetched: Prefetch | None = None, head_counts_as_read: bool = False):
        self.session = session
        self.profile = profile
        self.portal = portal
        self.policy = policy
        self.now = now
        self.prefetched = prefetched
        self.head_counts_as_read = head_counts_as_read

    def _load(self, usernames: set[str], organizations: set[str], targets: set[str],
              head_counts: bool = True) -> stored.StoredFacts:
        if self.prefetched is not None:
            facts = self.prefetched.take(self.portal, (usernames, organizations, targets), head_counts)
            self.prefetched = None
            if facts is not None:
                return facts
        return stored.load_facts(self.session, self.portal, usernames, organizations, targets,
                                 head_counts=head_counts)

    def _facts_for(self, actor: str | None, resources: Sequence[Resource], actors: Iterable[str] = (),
                   asks: Iterable[tuple[str | None, str]] = ()) -> stored.StoredFacts:
        """The facts of these resources and actors; `asks` (action or None, resource type) are the questions
        they are read for, which say whether the head counts are read (with `head_counts_as_read`)."""
        head_counts = not self.head_counts_as_read or head_counts_read(self.policy, asks)
        return self._load(*_needs(actor, resources, actors), head_counts)

    # --- the questions ---------------------------------------------------------------------------

    def actor(self, username: str) -> ActorFacts:
        return self._actor(self._load({username}, set(), set()), username)

    def actors(self, usernames: Collection[str]) -> dict[str, ActorFacts]:
        """Several accounts' facts as actors, by the usernames given, read in one statement."""
        facts = self._load(set(usernames), set(), set())
        return {username: self._actor(facts, username) for username in usernames}

    def read(self, usernames: set[str], organizations: set[str], targets: set[str]) -> stored.StoredFacts:
        """Facts for several questions read in one statement, to be asked with `actor_in` and `resource_in`."""
        return self._load(usernames, organizations, targets)

    def actor_in(self, facts: stored.StoredFacts, username: str) -> ActorFacts:
        return self._actor(facts, username)

    def resource_in(self, facts: stored.StoredFacts, question: Question) -> OrganizationFacts | AccountFacts:
        return self._resource(facts, question)

    def organization(self, key: str) -> OrganizationFacts:
        return self._organization(self._load(set(), {key}, set()), key)

    def resource(self, question: Question, *, need_permission: bool = True) -> OrganizationFacts | AccountFacts:
        return self._resource(self._facts_for(None, [question.resource]), question, need_permission)

    def decide(self, actor: str, question: Question) -> Decision:
        """Decide one question; the actor's facts are read in the same statement as the resource's."""
        return self.decide_on(actor, question)[0]

    def decide_on(self, actor: str, question: Question) -> tuple[Decision, OrganizationFacts | AccountFacts]:
        """Decide one question and return the resource's facts too (a change applies to what was decided on)."""
        facts = self._facts_for(actor, [question.resource], asks=[(question.action, question.resource.type)])
        resource = self._resource(facts, question)
        return self.policy.decide(self._actor(facts, actor), question.action, resource), resource

    def decide_many(self, actor: str, questions: Sequence[Question], *,
                    need_permission: bool = True) -> list[Decision]:
        """A batch: one statement for the facts of every question, then one decision each.

        A question that names something unknown raises its error with `index` set to its position.
        """
        facts = self._facts_for(actor, [q.resource for q in questions],
                                asks=[(q.action, q.resource.type) for q in questions])
        actor_facts = self._actor(facts, actor)
        decisions = []
        for index, question in enumerate(questions):
            try:
                resource = self._resource(facts, question, need_permission)
            except (NotFound, Invalid) as exc:
                exc.index = index
                raise
            decisions.append(self.policy.decide(actor_facts, question.action, resource))
        return decisions

    def decide_each(self, asks: Sequence[tuple[str, Question]]) -> Iterator[Decision | NotFound | Invalid]:
        """Questions of several actors (an AuthZEN batch, a subject search): one statement for the facts of
        all of them, then one decision each, yielded in order so a caller may stop early. A question that
        names something unknown yields its error instead of a decision; the others are still decided."""
        facts = self._facts_for(None, [question.resource for _, question in asks],
                                actors={actor for actor, _ in asks},
                                asks=[(question.action, question.resource.type) for _, question in asks])
        for actor, question in asks:
            try:
                resource = self._resource(facts, question)
            except (NotFound, Invalid) as exc:
                yield exc
                continue
            yield self.policy.decide(self._actor(facts, actor), question.action, resource)

    def authorized_actions(self, actor: str, resource: Resource) -> list[str]:
        facts = self._facts_for(actor, [resource], asks=[(None, resource.type)])
        target = self._resource(facts, Question("view", resource), need_permission=False)
        return self.policy.authorized_actions(self._actor(facts, actor), target)

    def authorized_actions_each(self, actor: str, resources: Sequence[Resource]) -> list[list[str]]:
        """`authorized_actions` of several resources (a page of a roster): the facts of all of them in one
        statement, then one answer each; resources of one shape share the policy's memoized answer."""
        facts = self._facts_for(actor, resources, asks=[(None, kind) for kind in {r.type for r in resources}])
        actor_facts = self._actor(facts, actor)
        return [self.policy.authorized_actions(
            actor_facts, self._resource(facts, Question("view", resource), need_permission=False))
            for resource in resources]

    def visible_memberships(self, actor: str, usernames: Collection[str], *,
                            history: bool = False) -> dict[str, frozenset[str]]:
        """For each account (by username key), the organizations whose membership of it the actor may see: the
        policy's read scoping (`Policy.visible_memberships`), on facts read in one statement with the actor's.

        Among the account's current memberships, or with `history` every one it had: a removed link's comments
        are still that organization's history of the account.
        """
        wanted = {stored.username_key(u) for u in usernames}
        facts = self._load({actor, *usernames}, set(), set(usernames))
        actor_facts = self._actor(facts, actor)
        seen = {}
        for key, account in facts.accounts.items():
            if key not in wanted:
                continue
            links = tuple(LinkFacts(self._organization(facts, m.organization), m.role, m.permissions)
                          for m in account.memberships if history or m.status != _REMOVED)
            seen[key] = frozenset(link.organization.key
                                  for link in self.policy.visible_memberships(actor_facts, account.username, links))
        return seen

    # --- facts from the loaded rows -------------------------------------------------------------

    def _actor(self, facts: stored.StoredFacts, username: str) -> ActorFacts:
        account = facts.account(username)
        if account is None:
            return ActorFacts.unknown(username)
        # By position (as `ActorFacts.unknown` does): keywords cost more, and every decision builds one.
        return ActorFacts(
            account.username,  # username
            True,  # exists
            account.status,  # status
            password_current(account.has_password, account.password_changed_at, self.profile.password.expiry_days,
                             self.now),  # password_current
            account.support,  # support
            tuple([MembershipFacts(m.organization, m.role, m.status == _ACTIVE, m.permissions)
                   for m in account.memberships]),  # memberships
            account.terms_accepted,  # terms_accepted
        )

    def _organization(self, facts: stored.StoredFacts, key: str) -> OrganizationFacts:
        """Every row the statement reads is of the portal the request names (`self.portal`)."""
        organization = facts.organizations.get(key)
        if organization is None:
            raise NotFound(f"no organization {key!r} in portal {self.portal!r}")
        profile = self.profile
        return OrganizationFacts(organization.key, profile.catalog, profile.delegate_permission,
                                 organization.active_admins, organization.has_active_members,
                                 profile.links, profile.admin_created_accounts, portal=self.portal)

    def _resource(self, facts: stored.StoredFacts, question: Question,
                  need_permission: bool = True) -> OrganizationFacts | AccountFacts:
        res = question.resource
        if res.type == "organization":
            return self._organization(facts, res.id)
        account = facts.account(res.id)
        if account is None:
            raise NotFound(f"no account {res.id!r} in portal {self.portal!r}")
        membership = self._membership(facts, account, res)
        permission = None
        if question.action in PERMISSION_ACTIONS:
            permission = question.context.get("permission")
            if need_permission and not isinstance(permission, str):
                raise Invalid(f"{question.action} needs the permission it is about",
                              [{"field": "context.permission", "code": "required",
                                "message": f"{question.action} needs context.permission (a catalog entry)"}])
        status = effective_status(account.status, membership.status)
        # Every active link: an account-wide change reaches each of them (R1).
        links = tuple(LinkFacts(self._organization(facts, m.organization), m.role, m.permissions)
                      for m in account.memberships if m.status != _REMOVED)
        return AccountFacts(account.username, self._organization(facts, membership.organization), membership.role,
                            status, permission, links, account.terms_accepted)

    def _membership(self, facts: stored.StoredFacts, account: stored.StoredAccount,
                    res: Resource) -> stored.StoredMembership:
        memberships = account.memberships
        if res.organization is not None:
            for m in memberships:
                if m.organization == res.organization:
                    return m
            self._organization(facts, res.organization)  # 404 for an unknown organization first
            raise NotFound(f"account {res.id!r} is not in organization {res.organization!r}")
        live = [m for m in memberships if m.status != _REMOVED] or list(memberships)
        if len(live) == 1:
            return live[0]
        if not live:
            raise NotFound(f"account {res.id!r} belongs to no organization")
        raise Invalid("the account belongs to several organizations; say which",
                      [{"field": "resource.organization", "code": "required",
                        "message": "required when the account belongs to several organizations"}])
