"""One action catalog (service/kernel/catalog.py), tied to what the loaded Polar decides.

The test walks a grid of facts (support staff, admins, delegates and members; targets in every status
and role; a function named or not) through the loaded policy's `authorized_actions`, and compares the
union of what Polar allows with the catalog, both ways. R1, R2, R5, R13-R16, R21.
"""
from __future__ import annotations

from itertools import product

import pytest
from oso import Variable

from service.kernel import catalog
from service.kernel.catalog import AccountAction, OrganizationAction, Role, Status
from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts
from service.policy import _build, policy_files

FUNCTIONS = ("claims", "eligibility")
DELEGATE = "manage_accounts"


@pytest.fixture(scope="module")
def oso(config):
    return _build(policy_files(config.policy_path))


def organization(key: str = "O1", admins: int = 2) -> OrganizationFacts:
    return OrganizationFacts(key, (*FUNCTIONS, DELEGATE), DELEGATE, admins, True, offers_links=True,
                             offers_subordinates=True, portal="masshealth")


def actors() -> list[ActorFacts]:
    """Each kind of person who may act: support staff, an admin, a delegate holding every function, a member."""
    def person(name, support=False, role=Role.MEMBER, permissions=()):
        return ActorFacts(name, True, Status.ACTIVE, True, support,
                          (MembershipFacts("O1", role, True, tuple(permissions)),) if not support else (), True)
    return [person("sue", support=True), person("ada", role=Role.ADMIN),
            person("del", permissions=(*FUNCTIONS, DELEGATE)), person("mem", permissions=FUNCTIONS)]


def targets(names=("tom", "ada", "del", "mem")) -> list[AccountFacts]:
    org = organization()
    found = []
    for status, role, permission, name in product(catalog.ACCOUNT_STATUSES, catalog.ROLES, (None, *FUNCTIONS),
                                                  names):
        links = () if status == Status.REMOVED else (LinkFacts(org, role, ()),)
        found.append(AccountFacts(name, org, role, status, permission, links, True))
    return found


@pytest.fixture(scope="module")
def allowed_on_accounts(oso, config) -> set[str]:
    """Every action Polar allows on some target account, for some actor of the grid.

    Each actor meets targets named as itself and as nobody in the grid ("tom"): the policy reads usernames only
    by equality (what its memo by shape rests on, asserted here), so a target named as another actor of the
    grid is answered as "tom" is. Half the grid, the same union."""
    from service.policy import Policy

    assert Policy(config.policy_path).memoizes_by_shape
    allowed = set()
    for actor in actors():
        for target in targets(names=("tom", actor.username)):
            allowed |= set(oso.authorized_actions(actor, target))
    return allowed


def test_polar_allows_on_accounts_exactly_the_catalog_account_actions(allowed_on_accounts):
    allowed = allowed_on_accounts
    assert allowed == set(catalog.ACCOUNT_ACTIONS), (
        f"Polar allows but the catalog lacks: {sorted(allowed - set(catalog.ACCOUNT_ACTIONS))}; "
        f"the catalog names but Polar never allows: {sorted(set(catalog.ACCOUNT_ACTIONS) - allowed)}")


def test_polar_allows_on_organizations_exactly_the_catalog_actions_and_the_portal_functions(oso):
    allowed = set()
    for actor in actors():
        allowed |= set(oso.authorized_actions(actor, organization()))
    assert allowed - set(FUNCTIONS) - {DELEGATE} == set(catalog.ORGANIZATION_ACTIONS)


def test_polar_admin_actions_are_the_catalog_admin_actions(oso):
    """R5: Polar's `admin_action` lists the admin duties; the catalog's ADMIN_ACTIONS are the same."""
    declared = {r["bindings"]["a"] for r in oso.query_rule("admin_action", Variable("a"))}
    assert declared == set(catalog.ADMIN_ACTIONS)
    assert set(catalog.PATH_ACTIONS) <= declared
    assert set(catalog.PERMISSION_ACTIONS) <= declared


def test_account_wide_actions_are_catalog_account_actions(oso):
    """R1: what Polar calls account-wide (the reach of a change) names only actions the catalog knows."""
    wide = {a for a in catalog.ACCOUNT_ACTIONS if oso.query_rule_once("account_wide", a)}
    assert wide and wide <= set(catalog.ADMIN_ACTIONS)
    assert not oso.query_rule_once("account_wide", "bake_bread")


def test_every_status_and_role_appears_in_the_policy_and_the_enums_equal_their_strings(config):
    """Statuses and roles are StrEnums: equal to the strings the database and JSON hold."""
    assert Status.ACTIVE == "active" and Role.ADMIN == "admin" and AccountAction.GRANT == "grant"
    assert OrganizationAction.CREATE_ACCOUNT == "create_account"
    text = "".join(path.read_text() for path in policy_files(config.policy_path))
    for name in (*catalog.ACCOUNT_STATUSES, *catalog.ROLES):
        if name != Status.PENDING_ACTIVATION:  # never a target of any action: the status lifecycle's start
            assert f'"{name}"' in text, name


def test_a_catalog_that_lacks_an_action_polar_allows_is_caught(allowed_on_accounts):
    """The test above can fail: drop one action from the catalog and the comparison finds it."""
    allowed = allowed_on_accounts
    assert allowed - (set(catalog.ACCOUNT_ACTIONS) - {"comment"}) == {"comment"}
