"""Answers by what an evaluation read (service/reads.py): a question whose facts read the same at every
path an earlier evaluation of the same action read gets that evaluation's answer, without the engine.

The property is checked against a policy without any memo (memo_size=0): over a sequence of generated
questions asked of one memoizing policy (so that later ones are answered from the reads of earlier
ones, with names renamed), every answer, reason and action list is the engine's own. Then the cases the
tree must keep apart: a changed fact the decision read, a read the tree cannot replay (a method), a
policy that reads names otherwise, an evaluation error, a reload."""
from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.facts import ActorFacts, MembershipFacts, OrganizationFacts
from service.policy import Policy
from tests.fixtures.fact_strategies import CATALOG, SETTINGS, actors, questions


@pytest.fixture(scope="module")
def exact(config):
    return Policy(config.policy_path, memo_size=0)


@settings(SETTINGS, max_examples=40)
@given(asked=st.lists(st.tuples(actors, questions), min_size=2, max_size=12))
def test_answers_found_by_reads_are_the_engines_own(config, exact, asked):
    memoizing = Policy(config.policy_path)
    for actor, (action, resource) in asked:
        got, expected = memoizing.decide(actor, action, resource), exact.decide(actor, action, resource)
        assert (got.allowed, got.reasons) == (expected.allowed, expected.reasons), (actor, action, resource)
        assert memoizing.authorized_actions(actor, resource) == exact.authorized_actions(actor, resource)


def org(key="O1", admins=1, members=True) -> OrganizationFacts:
    return OrganizationFacts(key, CATALOG, None, admins, members, portal="ahcccs")


def member(username="ann", key="O1", permissions=("claims",), status="active") -> ActorFacts:
    return ActorFacts(username, True, status, True, False, (MembershipFacts(key, "member", True, permissions),),
                      terms_accepted=True)


def evaluations(policy: Policy) -> int:
    return policy._engine.reads.answers


def test_a_fact_the_decision_did_not_read_shares_the_answer_and_one_it_read_does_not(config):
    policy = Policy(config.policy_path)
    assert policy.decide(member(), "claims", org(admins=1)).allowed
    # A member's function does not turn on the organization's admin count: answered from the first reads.
    assert policy.decide(member(), "claims", org(admins=7)).allowed
    assert evaluations(policy) == 1 and policy._engine.memo_size() == 2
    # The grant revoked, the account locked: facts the decision read, so evaluated again, and denied.
    revoked = policy.decide(member(permissions=()), "claims", org(admins=7))
    locked = policy.decide(member(status="locked"), "claims", org(admins=7))
    assert (revoked.allowed, revoked.reasons) == (False, ("permission_not_granted",))
    assert (locked.allowed, locked.reasons) == (False, ("actor_inactive",))
    assert evaluations(policy) == 3


def test_names_are_read_as_their_order_of_appearance(config):
    policy = Policy(config.policy_path)
    policy.decide(member("maria", "BENCH-1"), "claims", org("BENCH-1", admins=1))
    assert policy.decide(member("james", "BENCH-2"), "claims", org("BENCH-2", admins=3)).allowed
    assert evaluations(policy) == 1
    outsider = policy.decide(member("james", "BENCH-3"), "claims", org("BENCH-2", admins=3))
    assert (outsider.allowed, outsider.reasons) == (False, ("not_member",))
    assert evaluations(policy) == 2


HELP_DESK = '''
organization_rule("designate_admin", _org, ["known_actor", "help_desk"]);
requirement("help_desk", actor, _action, _org) if actor.username = "help.desk";
reason("help_desk", "support_only");
'''

METHOD = '''
organization_rule("designate_admin", _org, ["known_actor", "fresh"]);
requirement("fresh", actor, _action, _org) if actor.unknown("x").exists = false;
reason("fresh", "support_only");
'''


def extended(config, tmp_path, text: str) -> Policy:
    for path in config.policy_path.glob("*.polar"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "extra.polar").write_text(text)
    return Policy(tmp_path)


def test_a_policy_reading_names_otherwise_is_read_by_the_names_themselves(config, tmp_path):
    policy = extended(config, tmp_path, HELP_DESK)
    assert not policy.memoizes_by_shape
    desk = replace(member("help.desk"), memberships=())
    assert policy.decide(desk, "designate_admin", org()).allowed
    clerk = replace(member("clerk"), memberships=())
    assert not policy.decide(clerk, "designate_admin", org()).allowed
    assert policy.decide(replace(desk, status="active"), "designate_admin", org(admins=4)).allowed


def test_an_evaluation_that_calls_a_method_of_a_fact_is_not_kept(config, tmp_path):
    policy = extended(config, tmp_path, METHOD)
    assert policy.decide(member(), "designate_admin", org()).allowed
    assert evaluations(policy) == 0  # what a method of a fact returns is no field read: nothing replayable
    assert policy.decide(member("bob"), "designate_admin", org()).allowed
    assert evaluations(policy) == 0


def test_a_reload_starts_with_no_reads(config):
    policy = Policy(config.policy_path)
    policy.decide(member(), "claims", org())
    assert evaluations(policy) == 1
    policy.reload()
    assert evaluations(policy) == 0
