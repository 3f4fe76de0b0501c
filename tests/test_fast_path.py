"""The fast decision path equals the plain one (R1, R5, R14-R16).

The fast path reads every fact of a request in one statement and memoizes
answers keyed by the policy version and the facts. The plain path here loads
the facts through the ORM, one relationship at a time (tests/fixtures/reference_facts.py,
an independent loader the service never uses), and asks a separately
built oso engine `is_allowed` and then `deny_reason`. Hypothesis generates
organizations, memberships, grants, statuses, password ages and questions,
asks both, changes one stored fact, and asks again: every decision and every
reason must agree, and no memoized answer may outlive a changed fact.

What only this test holds: the one-statement loader and the Decider's facts (service/storage/facts.py,
service/domain/decisions.py) against an independent ORM loader, and the memo across a changed fact. The
policy engine itself is held to oso elsewhere (tests/test_polar_compile.py), so the budget is 100 examples on
SQLite and 60 on PostgreSQL. Planted one at a time and reverted, each of these failed
within 100 examples on the derandomized CI seed and on seeds 1 and 2: the actor's support flag dropped, password
expiry ignored, a removed link read as active in the actor's memberships, a removed link read as active by the
loader. A removed link counted in the target's reach was not found within 100 in those three seeds (at 300 on the
CI seed): the explicit example REMOVED_LINK_OUTSIDE_THE_REACH finds it on its first question, on both databases
(test_api_lifecycle.py fails on it too). Not found within 300: the R3 head counts counting disabled admins or
members (the generated worlds rarely make the question).

Plain oso's answer is a pure function of the policy text, the facts and the question, and the same facts come
back often (the round after a change that did not touch them, worlds alike across examples): `PlainOso` asks the
engine once per distinct question on exactly those facts. The reference loader still reads every question's facts
afresh; only the engine's evaluation of facts it has already judged is reused.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from oso import Variable

from service.domain.decisions import Decider, Question, Resource
from service.domain.errors import Invalid, NotFound
from service.kernel.catalog import ACCOUNT_ACTIONS, ORGANIZATION_ACTIONS
from service.policy import Policy, _build, policy_files
from service.storage import facts as stored
from tests.fixtures import reference_facts as reference
from tests.fixtures.generated import NOW, ORGS, STATUSES, action_of, mutate, store, worlds

# Counts what the properties compared, so the closing figures come from a run, not a guess.
COMPARED = {"decisions": 0, "allowed": 0, "authorized_actions": 0, "worlds": 0, "evaluated": 0}


@st.composite
def scenarios(draw):
    """A world, questions mostly asked by its own people, and one change to a stored fact."""
    portal, people = draw(worlds())
    names = sorted(people)
    actors = st.sampled_from(names * 4 + ["ghost"])
    organizations = st.builds(lambda key: Resource("organization", key), st.sampled_from(ORGS * 4 + ("NOPE",)))
    accounts = st.builds(lambda u, org: Resource("account", u, org),
                         st.sampled_from(names * 4 + ["ghost"]), st.sampled_from((None, None) + ORGS + ("NOPE",)))
    asked = draw(st.lists(
        st.tuples(
            actors,
            st.sampled_from(ACCOUNT_ACTIONS + ORGANIZATION_ACTIONS + ("fn0", "fn1", "fn2", "fn3", "bake_bread")),
            st.one_of(organizations, accounts),
            st.sampled_from([None, "fn0", "fn1", "fn2", "teleport"]),
        ),
        min_size=1, max_size=8,
    ))
    mutation = draw(st.tuples(
        st.sampled_from(["revoke_all", "grant_delegate", "status", "role", "unlink", "password_age", "support"]),
        st.sampled_from(names),
        st.sampled_from(STATUSES),
    ))
    return portal, people, asked, mutation


# --- The plain path: ORM loads, a separately built engine, is_allowed then deny_reason -------------

def _plain_resource(session, portal, profile, question: Question):
    res = question.resource
    if res.type == "organization":
        org = stored.find_organization(session, portal, res.id)
        if org is None:
            raise NotFound("organization")
        return reference.organization_facts(session, org, profile)
    account = stored.find_account(session, portal, res.id)
    if account is None:
        raise NotFound("account")
    links = {m.organization.key: m for m in account.memberships}
    if res.organization is not None:
        if res.organization not in links:
            raise NotFound("link")
        link = links[res.organization]
    else:
        live = [m for m in links.values() if m.status != "removed"] or list(links.values())
        if not live:
            raise NotFound("no organization")
        if len(live) > 1:
            raise Invalid("several", [])
        link = live[0]
    if question.action in ("grant", "revoke") and not isinstance(question.context.get("permission"), str):
        raise Invalid("permission", [])
    return reference.target_facts(session, account, link, profile, question.context.get("permission"))


class PlainOso:
    """A separately built oso engine asked the way a plain integration asks it (`is_allowed`, then `deny_reason`;
    `authorized_actions`), each distinct question once. The key is the exact facts (their repr: a field's type
    counts, True is not 1), the action and nothing else, for one engine loaded from one policy text."""

    def __init__(self, oso):
        self.oso = oso
        self._answers: dict = {}

    def _once(self, key, evaluate):
        if key not in self._answers:
            self._answers[key] = evaluate()
            COMPARED["evaluated"] += 1
        return self._answers[key]

    def decide(self, actor_facts, action: str, resource) -> tuple[bool, frozenset]:
        def evaluate():
            if self.oso.is_allowed(actor_facts, action, resource):
                return True, frozenset()
            return False, frozenset(r["bindings"]["code"] for r in self.oso.query_rule(
                "deny_reason", actor_facts, action, resource, Variable("code")))

        return self._once(("decide", repr(actor_facts), action, repr(resource)), evaluate)

    def authorized_actions(self, actor_facts, resource) -> frozenset:
        return self._once(("actions", repr(actor_facts), repr(resource)),
                          lambda: frozenset(self.oso.authorized_actions(actor_facts, resource)))


def _plain(session, oso: PlainOso, portal, profile, actor: str, question: Question):
    """(allowed, reasons) or the error class, the way a plain oso integration would answer."""
    account = stored.find_account(session, portal, actor)
    actor_facts = reference.actor_facts(account, actor, profile, NOW)
    try:
        resource = _plain_resource(session, portal, profile, question)
    except (NotFound, Invalid) as exc:
        return type(exc)
    return oso.decide(actor_facts, question.action, resource)


def _fast(decider: Decider, actor: str, question: Question):
    try:
        decision = decider.decide(actor, question)
    except (NotFound, Invalid) as exc:
        return type(exc)
    return decision.allowed, frozenset(decision.reasons)


def _compare(database, config, policy, oso, portal, asked):
    profile = config.portal(portal)
    with database.sessions() as session:
        decider = Decider(session, profile, policy, portal, NOW)
        answers: dict = {}

        def plain_answer(actor: str, question: Question):
            # Nothing is written between the questions of one comparison, so the plain answer to a question
            # asked again (the batch below repeats the first actor's) is the one already computed.
            key = (actor, question.action, question.resource, tuple(sorted(question.context.items())))
            if key not in answers:
                answers[key] = _plain(session, oso, portal, profile, actor, question)
            return answers[key]

        for actor, action, resource, permission in asked:
            question = Question(action_of(profile, action), resource,
                                {"permission": action_of(profile, permission)} if permission else {})
            plain = plain_answer(actor, question)
            # Twice: the second answer comes from the memo and must be the same.
            assert _fast(decider, actor, question) == plain, (actor, question)
            assert _fast(decider, actor, question) == plain, (actor, question)
            COMPARED["decisions"] += 1
            COMPARED["allowed"] += plain not in (NotFound, Invalid) and plain[0]
            if plain in (NotFound, Invalid):
                continue
            allowed_actions = set(decider.authorized_actions(actor, resource))
            view = Question("view", resource)
            plain_actions = oso.authorized_actions(
                reference.actor_facts(stored.find_account(session, portal, actor), actor, profile, NOW),
                _plain_resource(session, portal, profile, view))
            assert allowed_actions == set(plain_actions) & _listed(profile, resource), (actor, resource)
            COMPARED["authorized_actions"] += 1
        batch = [Question(action_of(profile, a), r, {"permission": action_of(profile, p)} if p else {})
                 for actor, a, r, p in asked if actor == asked[0][0]]
        try:
            many = [(d.allowed, frozenset(d.reasons)) for d in decider.decide_many(asked[0][0], batch)]
        except (NotFound, Invalid) as exc:
            assert type(exc) in [plain_answer(asked[0][0], q) for q in batch]
        else:
            assert many == [plain_answer(asked[0][0], q) for q in batch]


def _listed(profile, resource: Resource) -> set[str]:
    """The actions authorized-actions reports: the catalog and organization actions, or the account actions."""
    if resource.type == "organization":
        return {*profile.catalog, *ORGANIZATION_ACTIONS}
    return set(ACCOUNT_ACTIONS)


def _person(memberships: dict, status: str = "active") -> dict:
    return {"status": status, "support": False, "password_age_days": 0,
            "memberships": {org: {"role": role, "status": link, "permissions": []}
                            for org, (role, link) in memberships.items()}}


# An admin of O1 acting account-wide on a member whose link to O2 was removed: only the live link is the
# target's reach (R1), so the admin of O1 alone may disable or re-point it. The generated worlds seldom make it
# (a removed link counted in the reach was not found within 300 examples on the CI seed); one world, a handful of
# questions, finds it at once (planted and reverted: both comparisons fail on the first question).
REMOVED_LINK_OUTSIDE_THE_REACH = (
    "ahcccs",
    {"ann": _person({"O1": ("admin", "active")}),
     "bob": _person({"O1": ("member", "active"), "O2": ("member", "removed")})},
    [("ann", action, Resource("account", "bob", org), None)
     for action in ("disable", "update_email") for org in (None, "O1")],
    ("status", "bob", "active"),
)


FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def plain_oso(config):
    yield PlainOso(_build(policy_files(config.policy_path)))
    print(f"\nfast path == plain oso: {COMPARED}")  # shown with -s: the figures for the closing note


def _check(database, config, plain_oso, scenario):
    portal, people, asked, mutation = scenario
    policy = Policy(config.policy_path)  # its own memo, warmed by the first round
    store(database, config, portal, people)
    _compare(database, config, policy, plain_oso, portal, asked)
    mutate(database, config, portal, mutation)
    _compare(database, config, policy, plain_oso, portal, asked)
    COMPARED["worlds"] += 1


@FAST
@given(scenario=scenarios())
@example(scenario=REMOVED_LINK_OUTSIDE_THE_REACH)
def test_fast_path_equals_plain_oso_on_sqlite(database, config, plain_oso, scenario):
    _check(database, config, plain_oso, scenario)


@pytest.mark.postgres
@settings(FAST, max_examples=60)
@given(scenario=scenarios())
@example(scenario=REMOVED_LINK_OUTSIDE_THE_REACH)
def test_fast_path_equals_plain_oso_on_postgres(pg_database, config, plain_oso, scenario):
    _check(pg_database, config, plain_oso, scenario)
