"""Properties of the policy over generated facts: reasons explain every denial and only denials,
authorized_actions agrees with single decisions, and nothing is allowed to an actor not in good standing."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.kernel.catalog import ACCOUNT_ACTIONS, ORGANIZATION_ACTIONS
from service.kernel.facts import AccountFacts, ActorFacts, MembershipFacts, OrganizationFacts

CATALOG = ("claims", "eligibility", "manage_account")
STATUSES = ("active", "locked", "disabled", "pending_approval", "unverified", "removed")
ORGS = ("O1", "O2")

organizations = st.builds(
    OrganizationFacts,
    key=st.sampled_from(ORGS),
    catalog=st.just(CATALOG),
    delegate_permission=st.sampled_from([None, "manage_account"]),
    active_admins=st.integers(0, 3),
    has_active_members=st.booleans(),
    portal=st.sampled_from(["ahcccs", "qm", "ahw", "masshealth"]),
)
memberships = st.builds(
    MembershipFacts,
    organization=st.sampled_from(ORGS),
    role=st.sampled_from(["admin", "member"]),
    active=st.booleans(),
    permissions=st.lists(st.sampled_from(CATALOG + ("unknown_fn",)), unique=True, max_size=3).map(tuple),
)
actors = st.one_of(
    st.builds(lambda u: ActorFacts.unknown(u), st.sampled_from(["ann", "bob"])),
    st.builds(
        ActorFacts,
        username=st.sampled_from(["ann", "bob"]),
        exists=st.just(True),
        status=st.sampled_from(STATUSES),
        password_current=st.booleans(),
        support=st.booleans(),
        memberships=st.lists(memberships, max_size=2).map(tuple),
        terms_accepted=st.booleans(),
    ),
)
targets = st.builds(
    AccountFacts,
    username=st.sampled_from(["ann", "bob", "cy"]),
    organization=organizations,
    role=st.sampled_from(["admin", "member"]),
    status=st.sampled_from(STATUSES),
    permission=st.sampled_from([None, "claims", "eligibility", "manage_account", "teleport"]),
    terms_accepted=st.booleans(),
)
questions = st.one_of(
    st.tuples(st.sampled_from(CATALOG + ORGANIZATION_ACTIONS + ("bake_bread",)), organizations),
    st.tuples(st.sampled_from(ACCOUNT_ACTIONS), targets),
)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(actor=actors, question=questions)
def test_reasons_explain_every_denial_and_only_denials(policy, actor, question):
    action, resource = question
    decision = policy.decide(actor, action, resource)
    if decision.allowed:
        assert decision.reasons == ()
    else:
        assert decision.reasons, "denied without a reason"
        assert "policy_gap" not in decision.reasons and "policy_error" not in decision.reasons


@SETTINGS
@given(actor=actors, question=questions)
def test_only_accounts_in_good_standing_are_allowed_anything(policy, actor, question):
    """R7, R16: unknown, inactive, expired-password or terms-not-accepted actors are always denied."""
    action, resource = question
    if not (actor.exists and actor.status == "active" and actor.password_current and actor.terms_accepted):
        assert not policy.decide(actor, action, resource).allowed


@SETTINGS
@given(actor=actors, resource=st.one_of(organizations, targets))
def test_authorized_actions_agree_with_decisions(policy, actor, resource):
    listed = set(policy.authorized_actions(actor, resource))
    if isinstance(resource, OrganizationFacts):
        candidates = CATALOG + ORGANIZATION_ACTIONS
    else:
        candidates = ACCOUNT_ACTIONS
    for action in candidates:
        assert (action in listed) == policy.decide(actor, action, resource).allowed, action


@SETTINGS
@given(actor=actors, target=targets)
def test_no_one_makes_admins_but_admins_and_support(policy, actor, target):
    """R2, R15: upgrade is only for admins of the organization and support staff."""
    if policy.decide(actor, "upgrade", target).allowed:
        admin_here = any(m.organization == target.organization.key and m.role == "admin" and m.active
                         for m in actor.memberships)
        assert admin_here or actor.support


@SETTINGS
@given(actor=actors, target=targets)
def test_an_organization_is_never_orphaned(policy, actor, target):
    """R3: the last active admin is never demoted, nor removed or disabled while members remain."""
    org = target.organization
    last = target.role == "admin" and target.status == "active" and org.active_admins <= 1
    if last:
        assert not policy.decide(actor, "downgrade", target).allowed
        if org.has_active_members:
            assert not policy.decide(actor, "remove", target).allowed
            assert not policy.decide(actor, "disable", target).allowed
