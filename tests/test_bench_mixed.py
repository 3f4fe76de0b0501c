"""bench/mixed.py's workload is what it says it is (sizes, statuses, the question mix), without wrk or a server."""
from __future__ import annotations

from collections import Counter

import pytest

from bench.mixed import (ADMIN_ACTIONS, ADMINS_PER_ORG, CATALOG, PER_ORG, cerbos_account_policy, cerbos_body,
                         mix_of, people, portal_body, questions, sample_of)
from service.policy import Policy


@pytest.fixture(scope="module")
def workload():
    population = people(5_000)
    return population, questions(population, 20_000)


def test_the_portal_is_organizations_of_a_hundred_with_two_admins_each(workload, config):
    population, _ = workload
    assert set(CATALOG) == set(config.portals["ahcccs"].catalog)
    assert len({p.username for p in population}) == 5_000
    members = Counter(p.organization for p in population)
    assert len(members) == 50 and set(members.values()) == {PER_ORG}
    admins = Counter(p.organization for p in population if p.role == "admin")
    assert set(admins.values()) == {ADMINS_PER_ORG} and len(admins) == 50
    assert all(not p.grants for p in population if p.role == "admin")


def test_statuses_are_mixed_as_in_life(workload):
    population, _ = workload
    mix = mix_of(population, [])
    statuses = mix["statuses"]
    assert 0.80 < statuses["active"] / len(population) < 0.90
    for status in ("locked", "disabled", "pending_approval", "pending_activation", "unverified"):
        assert statuses[status] > 0, status
    assert 0.02 < mix["expired_passwords"] / len(population) < 0.08
    assert 0 < mix["removed_links"] < 0.03 * len(population)
    assert {g for p in population for g in p.grants} == set(CATALOG)


def test_six_questions_in_ten_are_members_asking_for_a_function_of_their_organization(workload):
    _, asked = workload
    functions = [q for q in asked if q.target is None]
    assert 0.58 < len(functions) / len(asked) < 0.62
    assert all(q.action in CATALOG and q.organization == q.actor.organization for q in functions)
    assert {q.actor.role for q in functions} == {"admin", "member"}  # any account asks, whatever its standing
    assert len({q.actor.status for q in functions}) > 3


def test_the_others_are_admins_acting_on_another_account_of_their_organization(workload):
    _, asked = workload
    acts = [q for q in asked if q.target is not None]
    assert all(q.actor.role == "admin" and q.target is not q.actor for q in acts)
    assert all(q.target.organization == q.actor.organization == q.organization for q in acts)
    assert set(Counter(q.action for q in acts)) == set(ADMIN_ACTIONS)
    assert all((q.permission in CATALOG) == (q.action == "grant") for q in acts)


def test_both_sides_are_asked_the_same_question(workload):
    _, asked = workload
    for q in asked[:200]:
        ours, theirs = portal_body(q), cerbos_body(q)
        (resource,) = theirs["resources"]
        assert (ours["actor"], ours["action"]) == (theirs["principal"]["id"], resource["actions"][0])
        assert ours["resource"]["id"] == resource["resource"]["id"]
        assert ours["resource"]["type"] == resource["resource"]["kind"]
        assert ours.get("context", {}).get("permission", "") == resource["resource"]["attr"].get("permission", "")


def test_the_agreement_sample_holds_every_action_on_every_target_status(workload):
    population, asked = workload
    sample = sample_of(asked, 100)
    assert sample[:100] == asked[:100] and len(sample) < 1_000
    statuses = {p.status for p in population}
    covered = {(q.action, q.target.status) for q in sample if q.target is not None}
    assert covered == {(action, status) for action in ADMIN_ACTIONS for status in statuses}


def test_the_account_policy_has_a_rule_per_admin_action():
    policy = cerbos_account_policy(CATALOG)
    assert all(f'actions: ["{action}"]' in policy for action in ADMIN_ACTIONS)


def test_at_its_default_size_most_questions_miss_a_workers_memo():
    """50,000 accounts and 100,000 questions: more distinct questions than a worker's memo holds."""
    assert mix_of([], questions(people(50_000), 100_000))["distinct"] > Policy.MEMO_SIZE


def test_actions_cold_asks_about_each_account_once_by_an_admin_of_its_organization(workload):
    """bench/actions_cold.py: every request is about an account never asked about, by an admin of its own
    organization, and never about an admin (whose answer would read another shape of question)."""
    from bench.actions_cold import body, pairs

    population, _ = workload
    by_name = {p.username: p for p in population}
    asked = pairs(population, 3_000)
    assert len(asked) == 3_000
    assert len({target.username for _, target in asked}) == 3_000
    for admin, target in asked:
        assert by_name[admin].role == "admin" and by_name[admin].organization == target.organization
        assert target.role != "admin" and admin != target.username
    admin, target = asked[0]
    assert body(admin, target) == (b'{"portal":"ahcccs","actor":"%s","resource":{"type":"account","id":"%s",'
                                   b'"organization":"%s"}}' % (admin.encode(), target.username.encode(),
                                                               target.organization.encode()))
