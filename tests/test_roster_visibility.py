"""The roster's visibility (R24) comes from the policy, proven equal to it.

`roster.list_accounts` filters in SQL, with conditions read from the policy (`roster._visibility`).
Hypothesis generates organizations, memberships, roles, grants and statuses; for every person and
organization, the listing (and its `manageable` half) must be exactly the accounts of the organization
whose `view` the policy allows that person, decided on the same facts `/v1/authorize` reads. On SQLite
and PostgreSQL. R1, R15 (who administers whom), R24 (listing).
"""
from __future__ import annotations

from hypothesis import given
from sqlalchemy import select

from service.domain.work import Context
from service.domain.decisions import Decider, Question, Resource
from service.domain.roster import MAX_PAGE, list_accounts
from service.policy import Policy
from service.storage.facts import find_account
from service.storage.models import Account, Membership, Organization
from tests.fixtures.generated import NOW, ORGS, figures, mutate, property_settings, store, worlds

COMPARED = {"worlds": 0, "listings": 0, "listed": 0}


def _members(session, portal: str, org: str) -> list[str]:
    return list(session.scalars(
        select(Account.username).join(Membership, Membership.account_id == Account.id)
        .join(Organization, Organization.id == Membership.organization_id)
        .where(Organization.portal_id == portal, Organization.key == org)))


def _check(database, config, policy, portal, people):
    profile = config.portal(portal)
    with database.transaction() as session:
        decider = Decider(session, profile, policy, portal, NOW)
        for person in sorted(people):
            actor = find_account(session, portal, person)
            for org in ORGS:
                if not decider.decide(person, Question("view", Resource("organization", org))).allowed:
                    continue
                expected = {name for name in _members(session, portal, org)
                            if decider.decide(person, Question("view", Resource("account", name, org))).allowed}
                ctx = Context(session, profile, portal, policy, None, NOW, None)
                for manageable in (False, True):
                    decision, rows, following = list_accounts(ctx, actor, org, q=None, status=None,
                                                              manageable=manageable, limit=MAX_PAGE, after=None)
                    assert decision.allowed and following is None
                    listed = {a.username for a in rows}
                    want = expected - {person} if manageable else expected
                    assert listed == want, (person, org, manageable, people)
                    COMPARED["listings"] += 1
                    COMPARED["listed"] += len(listed)
    COMPARED["worlds"] += 1


CASES = property_settings(80)
_figures = figures("roster listing == policy view", COMPARED)


def _round(database, config, world):
    portal, people = world
    policy = Policy(config.policy_path)
    store(database, config, portal, people)
    _check(database, config, policy, portal, people)
    # A delegate made by a grant now sees the members it administers, no more (R15).
    for person in sorted(people):
        mutate(database, config, portal, ("grant_delegate", person, None))
    _check(database, config, policy, portal, people)


@CASES
@given(world=worlds())
def test_roster_visibility_equals_the_policy(any_database, config, world):
    """On SQLite, then on PostgreSQL (any_database)."""
    _round(any_database, config, world)
