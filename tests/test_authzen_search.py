"""Every AuthZEN search equals evaluating every candidate one by one (R1, R3, R5, R14-R16).

Hypothesis draws small worlds (the generator of tests/test_fast_path.py: organizations, memberships,
roles, grants, statuses, password ages, support staff) and a few actions; for each, the subject search
of every organization and every (account, organization) link, and the resource search of every
person, organizations and accounts, are read page by page (two results a page, so the page tokens are
exercised) and compared with the set a one-by-one evaluation of every candidate allows. It also counts
the candidates the SQL filter let through and the policy refused: only the last-admin rule (R3) and a
delegate's capture check (R15) may be (that is what the filter leaves to the policy, which
confirms every candidate of a page), so the filter is shown to follow the policy otherwise; the resource
search's filter follows the reach of account-wide actions too, the subject search's not yet.
Run on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain import authzen
from service.domain.decisions import Decider, Question, Resource
from service.domain.errors import Invalid, NotFound
from service.policy import ACCOUNT_ACTIONS, Decision, ORGANIZATION_ACTIONS
from tests.fixtures.generated import NOW, ORGS, action_of, figures, mutate, property_settings, store, worlds

FUNCTIONS = ("fn0", "fn1", "fn2", "fn3", "bake_bread")
R3_ACTIONS = {"remove", "disable", "downgrade"}
# A delegate's capture check (R15: every function the account holds, in every organization) is
# left to the policy's confirmation of each candidate; the reach itself is in the SQL filter.
CAPTURE_ACTIONS = {"update_email", "send_password_recovery", "send_registration_email"}
LEFT_TO_THE_POLICY = R3_ACTIONS | CAPTURE_ACTIONS
# The subject search's filter names the candidates for one (account, organization) link and does not yet
# follow the reach of account-wide actions into the account's other organizations: the policy's
# confirmation of each candidate does (the answers stay exact; a page may be shorter).
ACCOUNT_WIDE = {"approve", "enable", "disable", "unlock", "send_password_recovery", "send_registration_email",
                "update_profile", "update_email"}
LEFT_TO_THE_POLICY_IN_SUBJECT_SEARCH = LEFT_TO_THE_POLICY | ACCOUNT_WIDE
COMPARED = {"worlds": 0, "searches": 0, "found": 0, "rejected_by_policy": 0}


@st.composite
def cases(draw):
    portal, people = draw(worlds())
    actions = draw(st.lists(st.sampled_from(ACCOUNT_ACTIONS + ORGANIZATION_ACTIONS + FUNCTIONS), min_size=1,
                            max_size=4, unique=True))
    permission = draw(st.sampled_from(["fn0", "fn1", "fn3", "teleport"]))
    # R15: often make someone a delegate in good standing in a portal that has delegates (ahw's Manage
    # Account, masshealth's Manage Subordinate Accounts): left to chance, the generator rarely does.
    delegate = draw(st.sampled_from([None, *sorted(people)]))
    if delegate is not None:
        portal = draw(st.sampled_from([portal, "ahw", "masshealth"]))
        spec = people[delegate]
        spec.update(status="active", password_age_days=0)
        for link in spec["memberships"].values():
            link.update(role="member", status="active")
    return portal, people, actions, permission, delegate


def _allowed(decider: Decider, actor: str, question: Question) -> bool:
    try:
        decision = decider.decide(actor, question)
    except (NotFound, Invalid):
        return False
    assert isinstance(decision, Decision)
    return decision.allowed


def _all_pages(search) -> tuple[list, int]:
    """Every page of a search, two results at a time, following next_key as a client follows tokens."""
    found, rejected, after = [], 0, None
    while True:
        page = search(after, 2)
        assert len(page.results) <= 2
        found += page.results
        rejected += page.rejected
        if page.next_key is None:
            return found, rejected
        after = page.next_key


def _check(database, config, policy, case):
    portal, people, actions, permission, delegate = case
    profile = config.portal(portal)
    store(database, config, portal, people)
    if delegate is not None:
        mutate(database, config, portal, ("grant_delegate", delegate, None))
    links = [(name, org) for name, spec in sorted(people.items()) for org in sorted(spec["memberships"])]
    with database.sessions() as session:
        decider = Decider(session, profile, policy, portal, NOW)
        for action in (action_of(profile, a) for a in actions):
            context = {"permission": action_of(profile, permission)} if action in ("grant", "revoke") else {}
            # Resource search: organizations, and accounts in each of their organizations.
            for subject in [*sorted(people), "ghost"]:
                entity = authzen.Entity("account", subject)
                found, rejected = _all_pages(lambda after, limit: authzen.search_resources(
                    decider, entity, action, "organization", context, after, limit))
                expected = [key for key in ORGS
                            if _allowed(decider, subject, Question(action, Resource("organization", key), context))]
                assert [r["id"] for r in found] == expected, (subject, action)
                assert rejected == 0, (subject, action)
                found, rejected = _all_pages(lambda after, limit: authzen.search_resources(
                    decider, entity, action, "account", context, after, limit))
                expected = [(name, org) for name, org in links
                            if _allowed(decider, subject, Question(action, Resource("account", name, org), context))]
                assert sorted((r["id"], r["properties"]["organization"]) for r in found) == expected, (subject, action)
                assert rejected == 0 or action in LEFT_TO_THE_POLICY, (subject, action, rejected)
                COMPARED["searches"] += 2
                COMPARED["found"] += len(found)
                COMPARED["rejected_by_policy"] += rejected
            # Subject search: every organization and every link of every account.
            resources = [authzen.Entity("organization", key) for key in ORGS] + [
                authzen.Entity("account", name, {"organization": org}) for name, org in links]
            for resource in resources:
                found, rejected = _all_pages(lambda after, limit: authzen.search_subjects(
                    decider, "account", action, resource, context, after, limit))
                asked = authzen.resource_of(resource)
                expected = [name for name in sorted(people)
                            if _allowed(decider, name, Question(action, asked, context))]
                assert [r["id"] for r in found] == expected, (action, resource)
                assert rejected == 0 or action in LEFT_TO_THE_POLICY_IN_SUBJECT_SEARCH, (action, resource, rejected)
                COMPARED["searches"] += 1
                COMPARED["found"] += len(found)
                COMPARED["rejected_by_policy"] += rejected
    COMPARED["worlds"] += 1


SEARCH = property_settings(40)
_figures = figures("AuthZEN search == one-by-one evaluation", COMPARED)


@SEARCH
@given(case=cases())
def test_search_equals_evaluating_every_candidate_on_sqlite(database, config, policy, case):
    # One engine for the session: its memo is keyed by the facts' shape, so worlds share answers.
    _check(database, config, policy, case)


@pytest.mark.postgres
@settings(SEARCH, max_examples=15)
@given(case=cases())
def test_search_equals_evaluating_every_candidate_on_postgres(pg_database, config, policy, case):
    _check(pg_database, config, policy, case)


def test_the_account_filter_itself_follows_the_reach_of_account_wide_actions(database, config, policy, clock, build):
    """R1: a candidate linked into an organization where the actor has no authority is not selected for an
    account-wide action (the policy would refuse it), while a one-link action on it still is."""
    from sqlalchemy import select

    from service.storage.models import Account, Membership, Organization

    with build("ahw") as world:
        world.account("kim", memberships={"TIN-1": {"role": "admin"}})
        world.account("solo", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("twofold", memberships={"TIN-1": {}, "TIN-2": {}})
    with database.sessions() as session:
        decider = Decider(session, config.portal("ahw"), policy, "ahw", clock.now())
        actor = decider.actor("kim")

        def selected(action, permission=None):
            condition = authzen._targets_filter(decider, actor, action, permission)
            return sorted(session.scalars(
                select(Account.username).select_from(Membership)
                .join(Account, Account.id == Membership.account_id)
                .join(Organization, Organization.id == Membership.organization_id)
                .where(Organization.key == "TIN-1", condition)))

        assert selected("disable") == ["solo"]
        assert selected("update_email") == ["solo"]
        assert selected("grant", "claims") == ["solo", "twofold"]  # one link: TIN-1's, kim's to manage
        assert selected("remove") == ["solo", "twofold"]
