"""An organization's head counts (R3: its active admins, whether any active member is left) are read only for
questions whose rules can read them, as the policy text says (service/fact_reads.py, `Policy.reads_head_counts`).

The derivation is held to the policy's answers (any head counts give the same answer to a question it says does
not read them, and none but those it says read them ever turns on them), to a policy changed to read them, and to
the statement each decision endpoint runs, on SQLite and PostgreSQL. Counts left out are UNREAD: a rule that
reads them fails closed (policy_error), and the memo never mixes a question's answers across the two.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.decisions import Decider, Question, Resource, profile_of
from service.kernel.catalog import ACCOUNT_ACTIONS, ORGANIZATION_ACTIONS
from service.kernel.facts import UNREAD, AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts
from service.policy import Policy
from service.storage.facts import load_facts
from service.workbench.diff import facts_from_json
from service.workbench.explain import facts_json
from tests.fixtures.fact_strategies import CATALOG, SETTINGS, actors, head_counts, organizations, targets
from tests.fixtures.statements import statements
from tests.fixtures.world import World

KINDS = {OrganizationFacts: "organization", AccountFacts: "account"}


@pytest.fixture
def database(any_database):
    """Every test here on SQLite and on PostgreSQL (the app, the client and the world use this database)."""
    return any_database


def counted(resource, counts):
    """The resource with each organization's head counts replaced: `counts` maps an organization key to
    (active_admins, has_active_members), or is UNREAD for every organization."""
    def org(o: OrganizationFacts) -> OrganizationFacts:
        admins, members = (UNREAD, UNREAD) if counts is UNREAD else counts.get(o.key, (o.active_admins,
                                                                                      o.has_active_members))
        return replace(o, active_admins=admins, has_active_members=members)

    if isinstance(resource, OrganizationFacts):
        return org(resource)
    return replace(resource, organization=org(resource.organization),
                   links=tuple(replace(link, organization=org(link.organization)) for link in resource.links))


def answer(policy, actor, action, resource):
    decision = policy.decide(actor, action, resource)
    return decision.allowed, decision.reasons


# --- The derivation against the policy's answers ---------------------------------------------------------------

ACTIONS = {"organization": (*CATALOG, *ORGANIZATION_ACTIONS, "bake_bread"), "account": (*ACCOUNT_ACTIONS, "teleport")}


@pytest.fixture(scope="module")
def exact(policy):
    """The shipped policy with no memo: every answer evaluated on the facts given (the memo, which leaves the
    counts out of the key of a question said not to read them, would hide a wrong derivation)."""
    return Policy(policy.policy_dir, memo_size=0)


@SETTINGS
@given(actor=actors, resource=st.one_of(targets(), organizations), first=head_counts, second=head_counts)
def test_a_question_that_does_not_read_the_counts_answers_alike_whatever_they_are(policy, exact, actor, resource,
                                                                                   first, second):
    """Every action of the catalogs (and one no rule knows) asked of the same facts: where the policy says the
    question cannot read the head counts, any counts, and none at all (UNREAD: the statement left them out),
    give the same answer and reasons; where two counts give different answers, the policy says it reads them.
    The memoized policy answers each exactly as evaluated."""
    kind = KINDS[type(resource)]
    for action in ACTIONS[kind]:
        one = answer(exact, actor, action, counted(resource, first))
        other = answer(exact, actor, action, counted(resource, second))
        if not exact.reads_head_counts(action, kind):
            assert one == other, action
            assert answer(exact, actor, action, counted(resource, UNREAD)) == one, action
            assert answer(policy, actor, action, counted(resource, UNREAD)) == one, action
        elif one != other:
            assert exact.reads_head_counts(action, kind), action
        assert answer(policy, actor, action, counted(resource, first)) == one, action
        assert answer(policy, actor, action, counted(resource, second)) == other, action


@SETTINGS
@given(actor=actors, resource=st.one_of(targets(), organizations), first=head_counts)
def test_authorized_actions_read_the_counts_when_any_action_does(exact, actor, resource, first):
    kind = KINDS[type(resource)]
    listed = exact.authorized_actions(actor, counted(resource, first))
    if not exact.reads_head_counts(None, kind):
        assert exact.authorized_actions(actor, counted(resource, UNREAD)) == listed
    assert exact.reads_head_counts(None, kind) == any(exact.reads_head_counts(a, kind) for a in ACTIONS[kind])


def _last_admin(org_key="O1"):
    org = OrganizationFacts(org_key, CATALOG, "manage_account", 1, True, portal="ahcccs")
    actor = ActorFacts("ann", True, "active", True, False, (MembershipFacts(org_key, "admin", True, ()),), True)
    target = AccountFacts("bob", org, "admin", "active", "claims", (LinkFacts(org, "admin"),), True)
    return actor, target


def test_the_actions_r3_turns_on_are_the_ones_said_to_read_the_counts(policy):
    """The last active admin of an organization with members: the answers that change with the counts are those
    of downgrade, remove and disable, and each of them is said to read them."""
    actor, target = _last_admin()
    turning = {action for action in ACCOUNT_ACTIONS
               if len({answer(policy, actor, action, counted(target, {"O1": counts}))
                       for counts in ((1, True), (2, True), (1, False), (0, True))}) > 1}
    assert turning == {"downgrade", "remove", "disable"}
    said = {action for action in ACCOUNT_ACTIONS if policy.reads_head_counts(action, "account")}
    assert turning <= said
    assert not any(policy.reads_head_counts(action, "organization") for action in (*CATALOG, *ORGANIZATION_ACTIONS))
    assert not policy.reads_head_counts("claims", "organization") and not policy.reads_head_counts(None, "organization")
    assert policy.reads_head_counts(None, "account")


# --- A policy that reads them elsewhere ------------------------------------------------------------------------

FUNCTION_RULE = '''organization_rule(function, org, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "member_of_organization", "holds_function"
]) if function in org.catalog;'''


def policy_with(tmp_path, guard: str) -> Policy:
    """The shipped policy with the functions' rule guarded by `guard` too (a rule that reads the head counts)."""
    folder = tmp_path / "policies"
    shutil.copytree("policies", folder)
    text = (folder / "portal.polar").read_text()
    assert FUNCTION_RULE in text
    (folder / "portal.polar").write_text(text.replace(FUNCTION_RULE, FUNCTION_RULE[:-1] + f" and {guard};"))
    return Policy(folder)


def test_a_function_rule_that_reads_the_counts_is_said_to_read_them(tmp_path):
    """Both as generated clauses and as the authored requirement-list interpreter."""
    changed = policy_with(tmp_path, "org.active_admins >= 1")
    assert changed.generated
    assert changed.reads_head_counts("claims", "organization")
    assert changed.reads_head_counts(None, "organization")
    # Any organization action could be in a catalog, so it could take the functions' rule; an account's could not.
    assert changed.reads_head_counts("view", "organization")
    assert not changed.reads_head_counts("approve", "account")
    authored = Policy(tmp_path / "policies", generate=False)
    assert authored.reads_head_counts("claims", "organization") and not authored.reads_head_counts("approve",
                                                                                                   "account")


def test_a_count_that_was_not_read_fails_closed_and_is_never_remembered(tmp_path):
    """`nil != false` holds in Polar: had the counts been left out as None, this rule would allow. UNREAD raises
    at the read, so the decision is denied with policy_error, and the memo keeps nothing of it."""
    changed = policy_with(tmp_path, "org.has_active_members != false")
    member = ActorFacts("ann", True, "active", True, False, (MembershipFacts("O1", "member", True, ("claims",)),),
                        True)
    org = OrganizationFacts("O1", CATALOG, None, 1, True, portal="ahcccs")
    assert answer(changed, member, "claims", counted(org, UNREAD)) == (False, ("policy_error",))
    assert changed._engine.memo_size() == 0
    assert answer(changed, member, "claims", org) == (True, ())
    assert answer(changed, member, "claims", counted(org, {"O1": (1, False)}))[0] is False


def test_the_memo_shares_a_question_that_does_not_read_the_counts_and_keeps_apart_one_that_does(policy):
    fresh = Policy(policy.policy_dir)
    actor, target = _last_admin()
    approve = replace(target, status="pending_approval")
    for counts in ({"O1": (1, True)}, {"O1": (3, False)}, UNREAD):
        assert fresh.decide(actor, "approve", counted(approve, counts)).allowed
    assert fresh._engine.memo_size() == 1
    assert [answer(fresh, actor, "disable", counted(target, {"O1": c}))[0] for c in ((1, True), (2, True))] == \
        [False, True]
    assert fresh._engine.memo_size() == 3


def test_the_decision_log_records_a_count_not_read_as_null_and_replays_it_unread(policy):
    actor, target = _last_admin()
    logged = facts_json(actor, counted(target, UNREAD))
    assert logged["resource"]["organization"]["active_admins"] is None
    assert logged["resource"]["links"][0]["organization"]["has_active_members"] is None
    _, replayed = facts_from_json(logged, "ahcccs")
    assert replayed.organization.active_admins is UNREAD
    assert answer(policy, actor, "disable", replayed) == (False, ("policy_error",))
    assert answer(policy, actor, "approve", replayed) == answer(policy, actor, "approve", target)


# --- The statement each decision endpoint runs ------------------------------------------------------------------

def _counted(sql: str) -> bool:
    """Whether a facts statement counts an organization's admins and members (R3's two subqueries)."""
    lowered = sql.lower()
    return "count(" in lowered and "exists" in lowered


def _statements(database, call):
    with statements(database) as seen:
        result = call()
    return result, [s for s in seen if "organizations" in s]


def _authorize(actor, action, resource, **more):
    return {"portal": "ahw", "actor": actor, "action": action, "resource": resource, **more}


ORG = {"type": "organization", "id": "TIN-1"}
NEWBIE = {"type": "account", "id": "newbie", "organization": "TIN-1"}


@pytest.mark.parametrize("path, body, counts", [
    ("/v1/authorize", _authorize("biller", "claims", ORG), False),
    ("/v1/authorize", _authorize("manager", "approve", NEWBIE), False),
    ("/v1/authorize", _authorize("manager", "disable", NEWBIE), True),
    ("/v1/authorize", _authorize("manager", "remove", NEWBIE), True),
    ("/v1/authorize", _authorize("manager", "downgrade", NEWBIE), True),
    ("/v1/authorize", _authorize("biller", "claims", ORG, explain=True), True),
    ("/v1/authorize/batch", {"portal": "ahw", "actor": "manager", "checks": [
        {"action": "claims", "resource": ORG}, {"action": "approve", "resource": NEWBIE}]}, False),
    ("/v1/authorize/batch", {"portal": "ahw", "actor": "manager", "checks": [
        {"action": "claims", "resource": ORG}, {"action": "remove", "resource": NEWBIE}]}, True),
    ("/v1/authorized-actions", {"portal": "ahw", "actor": "biller", "resource": ORG}, False),
    ("/v1/authorized-actions", {"portal": "ahw", "actor": "manager", "resource": NEWBIE}, True),
    ("/authzen/ahw/access/v1/evaluation", {"subject": {"type": "account", "id": "biller"},
                                            "action": {"name": "claims"}, "resource": ORG}, False),
    ("/authzen/ahw/access/v1/evaluation", {"subject": {"type": "account", "id": "manager"},
                                            "action": {"name": "disable"},
                                            "resource": {"type": "account", "id": "newbie"}}, True),
    ("/authzen/ahw/access/v1/evaluations", {"subject": {"type": "account", "id": "manager"}, "evaluations": [
        {"action": {"name": "claims"}, "resource": ORG},
        {"action": {"name": "approve"}, "resource": {"type": "account", "id": "newbie"}}]}, False),
], ids=["function", "approve", "disable", "remove", "downgrade", "explained", "batch", "batch+remove",
        "actions on an organization", "actions on an account", "authzen", "authzen disable", "authzen batch"])
def test_each_decision_endpoint_reads_the_counts_only_when_a_question_can(client, database, authorize_key, clinic,
                                                                          path, body, counts):
    headers = {"Authorization": f"Bearer {authorize_key}"}
    client.post(path, json=body, headers=headers)  # the key's first use is recorded (once a minute)
    response, seen = _statements(database, lambda: client.post(path, json=body, headers=headers))
    assert response.status_code == 200, response.get_json()
    assert len(seen) == 1 and _counted(seen[0]) is counts
    assert "policy_error" not in response.get_data(as_text=True)


def test_the_answers_are_those_of_facts_read_with_their_counts(client, database, authorize_key, config, policy,
                                                               clock, clinic):
    """Alternating questions that read the counts and questions that do not, of one shape of statement each:
    every answer is the Decider's with the counts read, and an explanation shows the counts themselves."""
    headers = {"Authorization": f"Bearer {authorize_key}"}
    asked = [("manager", "approve", NEWBIE), ("manager", "disable", NEWBIE), ("biller", "claims", ORG),
             ("manager", "approve", NEWBIE), ("manager", "remove", NEWBIE), ("newbie", "claims", ORG)]
    with database.reads() as session:
        decider = Decider(session, profile_of(config, "ahw"), policy, "ahw", clock.now())
        for actor, action, resource in asked:
            got = client.post("/v1/authorize", json=_authorize(actor, action, resource), headers=headers).get_json()
            expected = decider.decide(actor, Question(action, Resource(resource["type"], resource["id"],
                                                                       resource.get("organization"))))
            assert (got["allowed"], [r["code"] for r in got["reasons"]]) == (expected.allowed,
                                                                               list(expected.reasons))
    explained = client.post("/v1/authorize", json=_authorize("biller", "claims", ORG, explain=True),
                            headers=headers).get_json()
    assert explained["explanation"]["facts"]["resource"]["active_admins"] == 1


def test_a_policy_that_reads_the_counts_for_a_function_gets_them_in_the_statement(tmp_path, config, database, clock,
                                                                                  clinic):
    from service.app import create_app
    from tests.conftest import make_key

    changed = policy_with(tmp_path, "org.active_admins >= 1")
    client = create_app(config, database=database, policy=changed, clock=clock).test_client()
    headers = {"Authorization": f"Bearer {make_key(database, ('authorize',), clock.now())}"}
    body = _authorize("biller", "claims", ORG)
    client.post("/v1/authorize", json=body, headers=headers)
    response, seen = _statements(database, lambda: client.post("/v1/authorize", json=body, headers=headers))
    assert response.get_json()["allowed"] is True  # one active admin: read, not UNREAD
    assert len(seen) == 1 and _counted(seen[0])


def test_facts_prefetched_without_the_counts_never_serve_a_question_that_reads_them(database, config, policy, clock,
                                                                                    clinic):
    from service.domain.decisions import Prefetch

    with database.reads() as session:
        prefetched = Prefetch("ahw", "manager", Resource("account", "newbie", "TIN-1"), head_counts=False)
        prefetched.read_key(session, "no-such-key")
        decider = Decider(session, profile_of(config, "ahw"), policy, "ahw", clock.now(), prefetched,
                          head_counts_as_read=True)
        (decision, resource), seen = _statements(database, lambda: decider.decide_on(
            "manager", Question("disable", Resource("account", "newbie", "TIN-1"))))
        assert len(seen) == 1 and _counted(seen[0])  # read again, with the counts
        assert resource.organization.active_admins == 1 and "policy_error" not in decision.reasons


def test_a_policy_the_derivation_does_not_read_exactly_reads_everything(tmp_path):
    """A method call is outside what service/polar_parse.py reads: every question is then said to read the counts."""
    changed = policy_with(tmp_path, 'org.catalog.count("claims") >= 0')
    assert changed.decide(ActorFacts.unknown("ann"), "claims", OrganizationFacts(
        "O1", CATALOG, None, 1, True, portal="ahcccs")).reasons == ("unknown_actor",)  # it loads and answers
    assert changed.reads_head_counts("approve", "account") and changed.reads_head_counts("claims", "organization")


def test_actions_the_policy_never_names_share_one_derivation(policy):
    """A caller may name any action: those the policy never names are one abstract value, derived once."""
    fresh = Policy(policy.policy_dir)
    for i in range(5000):
        assert not fresh.reads_head_counts(f"function-{i}", "organization")
    assert len(fresh._engine._derived) == 1


# --- A target's organizations without the counts ---------------------------------------------------------------

@pytest.fixture
def reach(any_database, clock):
    """Accounts linked to several organizations (a link removed), and one linked to organizations of another portal
    (one of them with a key this portal also has): no code makes such a link, and the facts read without the counts
    must still be exactly those of the organizations' own branch."""
    with any_database.transaction() as session:
        world = World(session, "ahw", clock.now())
        world.account("boss", memberships={"TIN-1": {"role": "admin"}, "TIN-2": {"role": "admin"}})
        world.account("wide", memberships={"TIN-1": {}, "TIN-2": {"permissions": ["claims"]},
                                           "TIN-3": {"status": "removed"}})
        world.account("solo", memberships={"TIN-3": {}})
        stray = world.account("stray", memberships={"TIN-1": {}})
        elsewhere = World(session, "ahcccs", clock.now())
        elsewhere.member(stray, "ELSEWHERE")
        elsewhere.member(stray, "TIN-2")
    return any_database


def _uncounted(facts):
    return replace(facts, organizations={key: replace(o, active_admins=UNREAD, has_active_members=UNREAD)
                                         for key, o in facts.organizations.items()})


@pytest.mark.parametrize("asked", [(), ("TIN-1",), ("TIN-2", "TIN-3"), ("ELSEWHERE",)])
def test_facts_read_without_the_counts_are_those_read_with_them_but_the_counts(reach, asked):
    """Without the counts a target's organizations come from its membership rows instead of their own branch: the
    same organizations, with and without the key's branch, for any targets and any organizations asked."""
    names = ("boss", "wide", "solo", "stray", "nobody")
    with reach.reading() as connection:
        for size in (1, 2):
            for targets in combinations(names, size):
                for key_id in (None, "no-such-key"):
                    def read(counts):
                        return load_facts(connection, "ahw", {"boss", *targets}, set(asked), set(targets),
                                          key_id=key_id, head_counts=counts)

                    assert read(False) == _uncounted(read(True)), (targets, asked, key_id)


def test_an_admin_question_that_does_not_read_the_counts_reads_no_branch_for_the_targets_organizations(
        client, database, authorize_key, clinic):
    headers = {"Authorization": f"Bearer {authorize_key}"}
    for action, branch in (("approve", False), ("disable", True)):
        body = _authorize("manager", action, NEWBIE)
        client.post("/v1/authorize", json=body, headers=headers)
        response, seen = _statements(database, lambda: client.post("/v1/authorize", json=body, headers=headers))
        assert response.status_code == 200 and len(seen) == 1
        assert ("SELECT memberships.organization_id" in seen[0]) is branch, (action, seen[0])
