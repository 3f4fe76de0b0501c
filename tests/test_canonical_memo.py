"""Decisions memoized by shape: two questions that differ only in usernames and organization keys
share one memo entry, and only while the policy reads names by equality (service/canonical.py).

The property is checked on the engine itself, not through the memo: a consistent renaming of the
names of any question never changes whether the policy allows it, the reasons it gives or the
actions it lists. A policy that compares a name with a literal is detected when it loads and is
memoized on exact facts, so its answers stay exact."""
from __future__ import annotations

import logging
import shutil
from dataclasses import fields, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oso import Variable

from service import canonical
from service.kernel.facts import NAME, AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts
from service.policy import POLAR_CLASSES, Policy
from tests.fixtures.fact_strategies import CATALOG, ORGS, SETTINGS, USERS, actors, questions

@st.composite
def renamings(draw):
    """A one-to-one renaming of every username and organization key the strategies use, onto fresh
    names (some of them the old names of others: a permutation is a renaming too)."""
    old = list(USERS + ORGS)
    new = draw(st.permutations(old + [f"n{i}.x" for i in range(len(old))]))[:len(old)]
    return dict(zip(old, new))


# --- A renamer written out field by field, independent of the metadata the service reads ----------

def rename_org(org: OrganizationFacts, names) -> OrganizationFacts:
    return replace(org, key=names[org.key])


def rename_actor(actor: ActorFacts, names) -> ActorFacts:
    return replace(actor, username=names[actor.username],
                   memberships=tuple(replace(m, organization=names[m.organization]) for m in actor.memberships))


def rename_resource(resource, names):
    if isinstance(resource, OrganizationFacts):
        return rename_org(resource, names)
    return replace(resource, username=names[resource.username], organization=rename_org(resource.organization, names),
                   links=tuple(replace(link, organization=rename_org(link.organization, names)) for link in resource.links))


def evaluate(oso, actor, action, resource):
    """The engine's own answer, no memo: allowed, every reason, and the listed actions."""
    reasons = {r["bindings"]["code"] for r in oso.query_rule("deny_reason", actor, action, resource, Variable("code"))}
    return oso.is_allowed(actor, action, resource), reasons




@SETTINGS
@given(actor=actors, question=questions, names=renamings())
def test_consistent_renaming_never_changes_an_answer_or_its_reasons(policy, actor, question, names):
    action, resource = question
    renamed_actor, renamed_resource = rename_actor(actor, names), rename_resource(resource, names)
    oso = policy.oso()
    assert evaluate(oso, renamed_actor, action, renamed_resource) == evaluate(oso, actor, action, resource)
    assert set(oso.authorized_actions(renamed_actor, renamed_resource)) == set(oso.authorized_actions(actor, resource))
    # ... which is what lets the memo key them alike.
    assert canonical.shape_key(renamed_actor, action, renamed_resource) == canonical.shape_key(actor, action, resource)


def names_of(actor, resource) -> set[str]:
    org_keys = [resource] if isinstance(resource, OrganizationFacts) else [resource.organization, *(link.organization for link in resource.links)]
    return {actor.username, *(m.organization for m in actor.memberships), *(o.key for o in org_keys),
            *([] if isinstance(resource, OrganizationFacts) else [resource.username])}


@SETTINGS
@given(actor=actors, question=questions, data=st.data())
def test_merging_two_names_is_a_different_shape(actor, question, data):
    """The shape keeps every equality and inequality between names: renaming one name of a question
    onto another of its names gives another key."""
    action, resource = question
    present = sorted(names_of(actor, resource))
    if len(present) < 2:
        return
    gone, kept = data.draw(st.permutations(present))[:2]
    merged = {n: (kept if n == gone else n) for n in USERS + ORGS}
    assert (canonical.shape_key(rename_actor(actor, merged), action, rename_resource(resource, merged))
            != canonical.shape_key(actor, action, resource))


def test_every_field_but_the_names_is_part_of_the_shape():
    """A field another change adds to the facts is kept in the key unless it is marked as a name."""
    org = OrganizationFacts("O1", CATALOG, None, 1, True, portal="ahcccs")
    membership = MembershipFacts("O1", "member", True, ("claims",))
    samples = {
        OrganizationFacts: org,
        MembershipFacts: membership,
        ActorFacts: ActorFacts("ann", True, "active", True, False, (membership,), terms_accepted=True),
        LinkFacts: LinkFacts(org, "member", ("claims",)),
        AccountFacts: AccountFacts("bob", org, "member", "active", None, (LinkFacts(org, "member", ()),), terms_accepted=True),
    }
    changed = {str: "zz", int: 7, tuple: (), type(None): "x", OrganizationFacts: replace(org, active_admins=5)}
    for cls, sample in samples.items():
        for f in fields(cls):
            value = getattr(sample, f.name)
            altered = replace(sample, **{f.name: (not value) if type(value) is bool else changed[type(value)]})
            if f.metadata.get(NAME):
                assert canonical.shape_key(altered) == canonical.shape_key(sample), (cls, f.name)
            else:
                assert canonical.shape_key(altered) != canonical.shape_key(sample), (cls, f.name)


def test_questions_differing_only_in_names_share_one_entry_and_keep_their_own_facts(config):
    policy = Policy(config.policy_path)
    assert policy.memoizes_by_shape

    def member(username, org):
        return ActorFacts(username, True, "active", True, False, (MembershipFacts(org, "member", True, ("claims",)),), terms_accepted=True)

    first = policy.decide(member("maria.garcia12", "BENCH-0001"), "claims", OrganizationFacts("BENCH-0001", CATALOG, None, 1, True, portal="ahcccs"))
    second_actor = member("james.smith40", "BENCH-0002")
    second_org = OrganizationFacts("BENCH-0002", CATALOG, None, 1, True, portal="ahcccs")
    second = policy.decide(second_actor, "claims", second_org)
    assert first.allowed and second.allowed
    assert second.facts == (second_actor, second_org)  # the decision log replays the caller's facts
    assert policy._engine.memo_size() == 1
    # A different equality between names is a different shape: a member of another organization.
    outsider = policy.decide(member("james.smith40", "BENCH-0003"), "claims", second_org)
    assert not outsider.allowed and outsider.reasons == ("not_member",)
    assert policy._engine.memo_size() == 2


# --- A policy that reads a name otherwise --------------------------------------------------------

HELP_DESK = '''
organization_rule("designate_admin", _org, ["known_actor", "help_desk"]);
requirement("help_desk", actor, _action, _org) if actor.username = "help.desk";
reason("help_desk", "support_only");
'''


@pytest.fixture
def help_desk_policy(config, tmp_path):
    for path in config.policy_path.glob("*.polar"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "help_desk.polar").write_text(HELP_DESK)
    return tmp_path


def test_a_policy_comparing_a_name_with_a_literal_is_detected_and_answered_exactly(help_desk_policy, caplog):
    org = OrganizationFacts("O1", CATALOG, None, 1, True, portal="ahcccs")
    desk = ActorFacts("help.desk", True, "active", True, False, (), terms_accepted=True)
    clerk = ActorFacts("clerk", True, "active", True, False, (), terms_accepted=True)
    with caplog.at_level(logging.WARNING, logger="service.policy"):
        policy = Policy(help_desk_policy)
    assert not policy.memoizes_by_shape
    assert "help_desk.polar:3" in caplog.text and "actor.username" in caplog.text
    # Asked in both orders, each answer is the exact one.
    assert policy.decide(desk, "designate_admin", org).allowed
    assert not policy.decide(clerk, "designate_admin", org).allowed
    policy.reload()
    assert not policy.decide(clerk, "designate_admin", org).allowed
    assert policy.decide(desk, "designate_admin", org).allowed


def test_memoizing_that_policy_by_shape_would_have_answered_wrongly(help_desk_policy):
    """The detection matters: the same two questions keyed by shape get one answer for both."""
    org = OrganizationFacts("O1", CATALOG, None, 1, True, portal="ahcccs")
    policy = Policy(help_desk_policy)
    policy._engine.by_shape = True
    policy.decide(ActorFacts("help.desk", True, "active", True, False, (), terms_accepted=True), "designate_admin", org)
    assert policy.decide(ActorFacts("clerk", True, "active", True, False, (), terms_accepted=True), "designate_admin", org).allowed


def test_the_shipped_policy_reads_names_only_by_equality(config):
    sources = [(p.name, p.read_text()) for p in sorted(config.policy_path.glob("*.polar"))]
    assert canonical.renaming_hazards(sources, POLAR_CLASSES) == []


@pytest.mark.parametrize("clause", [
    'requirement("x", actor, _a, _r) if actor.username = "help.desk";',
    'requirement("x", actor, _a, _r) if "help.desk" = actor.username;',
    'requirement("x", actor, _a, t) if actor.username < t.username;',
    'requirement("x", actor, _a, t) if actor.username.startswith("help");',
    'requirement("x", actor, _a, t) if u = actor.username and u = t.username;',
    'requirement("x", actor, _a, t) if t.organization = "O1";',
    'requirement("x", actor, _a, t) if m in actor.memberships and m.organization = "O1";',
    'requirement("x", actor, _a, t) if t.organization.key in ["O1", "O2"];',
    'requirement("x", actor, _a, t) if actor.username = t.status;',
    'requirement("x", actor, _a, t) if actor matches Account{username: "help.desk"};',
    'requirement("x", actor, _a, t) if desk(t.organization);',
    'requirement("x", actor, _a, t) if desk(actor.username);',
    'requirement("x", actor, _a, t) if actor.username + "" = t.username;',
    'requirement("x", actor, _a, t) if new Account("help.desk", true, "active", true, false, []) = actor;',
])
def test_each_way_of_reading_a_name_otherwise_is_a_hazard(config, clause):
    sources = [(p.name, p.read_text()) for p in sorted(config.policy_path.glob("*.polar"))]
    assert canonical.renaming_hazards([*sources, ("extra.polar", clause)], POLAR_CLASSES)


@pytest.mark.parametrize("clause", [
    'requirement("x", actor, _a, t) if actor.username = t.username;',
    'requirement("x", actor, _a, t) if not actor.username != t.username;',
    'requirement("x", actor, _a, t) if t.organization.key = actor.username or t.status = "active";',
    'requirement("x", actor, _a, t) if forall(link in t.links, link.organization.key != t.organization.key);',
])
def test_equalities_between_names_are_no_hazard(config, clause):
    sources = [(p.name, p.read_text()) for p in sorted(config.policy_path.glob("*.polar"))]
    assert canonical.renaming_hazards([*sources, ("extra.polar", clause)], POLAR_CLASSES) == []
