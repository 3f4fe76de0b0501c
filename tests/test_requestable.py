"""The console's "Request Access" list (`access_requests.requestable`) against the policy, as `/v1/authorize`
answers it with remedies.

The contract (docs/remedies.md, docs/console.md): a function is offered exactly when the member's answer to it
is a denial whose only reason is `permission_not_granted`, and whose remedy for that reason says who can make
the grant (accounts of the organization, or support staff). Checked over a grid: every portal, account status,
role, grant set, link status and password age, in an organization with an active admin and in one without, on
SQLite and PostgreSQL (the list reads storage). Then the list follows the policy when the policy changes:
the same grid, asked under a changed policy, answers differently and the list still equals it.
"""
from __future__ import annotations

import pytest

from service.app import create_app
from service.domain import access_requests
from service.domain.notify import OutboxNotifier
from service.domain.work import Context
from service.policy import Policy
from service.storage.facts import find_account
from tests.conftest import START as NOW, make_key
from tests.fixtures.policies import POLICIES, policy_files
from tests.fixtures.world import World

PORTALS = ("ahcccs", "qm", "ahw", "masshealth")
STATUSES = ("active", "locked", "disabled", "pending_approval", "unverified")


def grid_world(database, config) -> dict[str, list[tuple[str, str]]]:
    """Per portal, the (username, organization) pairs asked about: every status as a member without grants, every
    grant set as an active member, an admin active and locked, support staff, a password past its age, a removed
    link, a non-member and the admin. O1 has an active admin (`boss`); O2 has none (only a disabled one), so a
    remedy there names nobody and leaves it to support staff. (Each distinct shape of facts costs the policy a
    cold evaluation: the grid is every kind of answer once, not every product.)"""
    asked: dict[str, list[tuple[str, str]]] = {}
    with database.transaction() as session:
        for portal in PORTALS:
            profile = config.portal(portal)
            fn0, fn1 = profile.catalog[0], profile.catalog[1]
            w = World(session, portal, NOW)
            w.account("boss", memberships={"O1": {"role": "admin"}})
            w.account("gone", status="disabled", memberships={"O2": {"role": "admin"}})
            w.account("sup", support=True)
            people = {f"{status}_m": (status, "member", []) for status in STATUSES}
            people["active_m1"] = ("active", "member", [fn0])
            people["active_m2"] = ("active", "member", [profile.delegate_permission or fn1, fn0])
            people["active_a"] = ("active", "admin", [])
            people["locked_a"] = ("locked", "admin", [])
            for name, (status, role, grants) in people.items():
                w.account(name, status=status, memberships={
                    org: {"role": role, "permissions": grants} for org in ("O1", "O2")})
            w.account("stale", password_age_days=400, memberships={"O1": {"permissions": [fn1]}})
            w.account("left", memberships={"O1": {"status": "removed"}, "O2": {}})
            w.account("out", memberships={"O2": {"permissions": [fn0]}})
            asked[portal] = [(name, "O1") for name in [*people, "sup", "stale", "left", "out", "boss"]] + [
                (name, "O2") for name in ("active_m", "active_m1", "active_m2", "locked_m", "sup")]
    return asked


def expected_by_authorize(client, key, portal, catalog, username, org) -> list[str]:
    """The functions `/v1/authorize` denies with `permission_not_granted` alone and a remedy that names who may
    grant it (someone, or support staff), in catalog order. Remedies are asked only of those denials (they are
    computed only when asked, and cost what the policy's cold evaluation costs)."""
    def batch(functions, remedies):
        response = client.post("/v1/authorize/batch", headers={"Authorization": f"Bearer {key}"}, json={
            "portal": portal, "actor": username, "remedies": remedies,
            "checks": [{"action": f, "resource": {"type": "organization", "id": org}} for f in functions]})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["results"]

    denied = [f for f, answer in zip(catalog, batch(catalog, False))
              if not answer["allowed"] and [r["code"] for r in answer["reasons"]] == ["permission_not_granted"]]
    if not denied:
        return []
    return [f for f, answer in zip(denied, batch(denied, True)) if any(
        r["code"] == "permission_not_granted" and (r["by"] or r["support"])
        and r["change"] == {"action": "grant", "account": username, "organization": org, "permission": f}
        for r in answer["remedies"])]


def requestable(clock, database, config, policy, portal, username, org) -> list[str]:
    with database.transaction() as session:
        ctx = Context(session, config.portal(portal), portal, policy, None, clock.now(), "test")
        return access_requests.requestable(ctx, find_account(session, portal, username), org)[0]


def differences(database, config, policy, clock, asked) -> tuple[list, dict]:
    """Every (portal, username, organization) where the list and `/v1/authorize` differ; and what was offered."""
    app = create_app(config, database=database, policy=policy, clock=clock)
    client, key = app.test_client(), make_key(database, ("authorize",), NOW)
    misses, offered = [], {}
    for portal, pairs in asked.items():
        catalog = list(config.portal(portal).catalog)
        for username, org in pairs:
            listed = requestable(clock, database, config, policy, portal, username, org)
            expected = expected_by_authorize(client, key, portal, catalog, username, org)
            offered[(portal, username, org)] = listed
            if listed != expected:
                misses.append((portal, username, org, listed, expected))
    return misses, offered


def test_requestable_equals_what_authorize_denies_for_want_of_a_grant_someone_may_make(any_database, config, policy, clock):
    asked = grid_world(any_database, config)
    misses, offered = differences(any_database, config, policy, clock, asked)
    assert misses == []
    # The grid is not vacuous: members in good standing are offered what they lack, in both organizations
    # (O2 through support staff); admins, support staff, the locked, the stale and the removed are offered nothing.
    catalog = config.portal("ahw").catalog
    assert offered[("ahw", "active_m", "O1")] == list(catalog)
    assert offered[("ahw", "active_m1", "O2")] == [f for f in catalog if f != catalog[0]]
    for username in ("active_a", "sup", "locked_m", "left", "out", "boss"):
        assert offered[("ahw", username, "O1")] == [], username
    assert offered[("ahcccs", "stale", "O1")] == [] and offered[("ahw", "stale", "O1")]  # R18 is ahcccs's


def changed_policy(folder, edit) -> Policy:
    folder.mkdir()
    for path in policy_files(POLICIES):
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    portal = folder / "portal.polar"
    text = portal.read_text(encoding="utf-8")
    old, new = edit
    assert old in text, old
    portal.write_text(text.replace(old, new), encoding="utf-8")
    return Policy(folder)


HOLDS = 'holds(actor: Account, org: Organization, function: String) if\n    is_admin(actor, org) and function in org.catalog;\n'
REMEDY = 'remedy("holds_function", _actor, function, _org, {action: "grant", permission: function});\n'
CHANGES = {
    # the decision changes: every member of an organization holds Health Records there, nothing left to ask
    "members hold health records": (HOLDS, HOLDS + (
        'holds(actor: Account, org: Organization, "health_records") if\n'
        '    membership(actor, org, m) and m.role = "member";\n')),
    # the remedy changes: only Claims is granted by anyone, so only Claims has someone to ask
    "only claims is granted": (REMEDY, REMEDY.replace(");\n", ') if function = "claims";\n')),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_requestable_follows_a_changed_policy(tmp_path, database, config, policy, clock, change):
    asked = {"ahw": grid_world(database, config)["ahw"]}
    _, shipped = differences(database, config, policy, clock, asked)
    misses, changed = differences(database, config, changed_policy(tmp_path / "changed", CHANGES[change]), clock, asked)
    assert misses == []
    assert changed != shipped, f"the grid did not notice that {change}"


def test_a_function_nobody_may_grant_cannot_be_asked_for(tmp_path, database, config, clock):
    """`request_access` accepts what the list offers: with no remedy for a function, asking for it is refused
    with the policy's reason, and no request is opened for no one to decide."""
    grid_world(database, config)
    changed = changed_policy(tmp_path / "changed", CHANGES["only claims is granted"])
    with database.transaction() as session:
        ctx = Context(session, config.portal("ahw"), "ahw", changed, OutboxNotifier(), clock.now(), "test")
        me = find_account(session, "ahw", "active_m")
        outcome, made = access_requests.request_access(ctx, me, "O1", "health_records", None)
        assert made is None and outcome.decision.reasons == ("permission_not_granted",)
        outcome, made = access_requests.request_access(ctx, me, "O1", "claims", None)
        assert made is not None and outcome.decision.allowed
