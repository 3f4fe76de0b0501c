"""A rule can be scoped to one portal: every organization carries its portal (the profile id) as a fact.

The policy author's walk-through change (docs/authoring.md) ("ahw asks": recovery for an account pending approval, in ahw only) is
applied as printed and decided from storage (SQLite and PostgreSQL) and from decision tables; a
portal-scoped rule shows in `policy diff` for that portal only.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from service.domain.decisions import Decider, Question, Resource
from service.policy import Policy
from service.workbench.diff import profiles_of, run_diff, space_questions
from service.workbench.tables import run_tables
from tests.conftest import ROOT
from tests.fixtures.world import World

POLICIES = ROOT / "policies"
WALK_THROUGH = (ROOT / "docs" / "authoring.md").read_text()
RECOVERY = 'status_allows("send_password_recovery", target: TargetAccount) if target.status in ["active", "locked"];'


def between(marker: str, fence: str) -> str:
    block = WALK_THROUGH.split(f"<!-- {marker}:start -->", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    return re.search(rf"```{fence}\n(.*?)```", block, re.S).group(1)


def walk_through_policy(where: Path) -> Path:
    """A copy of the shipped policy with the walk-through's change applied as printed."""
    shutil.copytree(POLICIES, where)
    polar = where / "portal.polar"
    text = polar.read_text(encoding="utf-8")
    assert text.count(RECOVERY + "\n") == 1, "the walk-through's line changed in portal.polar; update docs/authoring.md"
    change = "\n".join(line.strip() if not line.startswith("    ") else line[3:]
                       for line in between("walk-through-change", "polar").splitlines())
    polar.write_text(text.replace(RECOVERY + "\n", change + "\n"), encoding="utf-8")
    return where


def test_the_walk_through_change_is_decided_per_portal_from_storage(tmp_path, any_database, config, clock):
    policy = Policy(walk_through_policy(tmp_path / "policies"))
    answers = {}
    for portal in ("ahw", "ahcccs"):
        with any_database.transaction() as session:
            world = World(session, portal, clock.now())
            world.account("ada.admin", memberships={"ORG-1": {"role": "admin"}})
            world.account("pat.pending", status="pending_approval", memberships={"ORG-1": {}})
        with any_database.transaction() as session:
            decider = Decider(session, config.portal(portal), policy, portal, clock.now())
            assert decider.organization("ORG-1").portal == portal
            target = decider.resource(Question("view", Resource("account", "pat.pending", "ORG-1")))
            assert target.organization.portal == portal and {link.organization.portal for link in target.links} == {portal}
            decision = decider.decide("ada.admin", Question("send_password_recovery",
                                                            Resource("account", "pat.pending", "ORG-1")))
            answers[portal] = (decision.allowed, decision.reasons)
    assert answers == {"ahw": (True, ()), "ahcccs": (False, ("target_status",))}


def test_the_walk_through_table_rows_carry_the_portal(tmp_path):
    policies = walk_through_policy(tmp_path / "policies")
    table = yaml.safe_load(between("walk-through-table", "yaml"))
    # The same question in an organization of no portal and of another portal: still denied there.
    table["organizations"]["P1"] = {"catalog": ["claims"]}
    table["organizations"]["A1"] = {"catalog": ["claims"], "portal": "ahcccs"}
    table["personas"]["ann"] = {"memberships": {"P1": {"role": "admin"}, "A1": {"role": "admin"}}}
    table["targets"].update({"pat@P1": {"organization": "P1", "status": "pending_approval"},
                             "pat@A1": {"organization": "A1", "status": "pending_approval"}})
    for where in ("P1", "A1"):
        table["rows"].append({"name": f"no recovery for a pending account in {where}", "rule": "R5", "actor": "ann",
                              "action": "send_password_recovery", "target": f"pat@{where}", "expect": "deny",
                              "reasons": ["target_status"]})
    path = tmp_path / "walk.yaml"
    path.write_text(yaml.safe_dump({"description": "the walk-through's rows", **table}, sort_keys=False))
    report = run_tables(policies, path)
    assert report.rows_run == 3 and report.ok, "\n".join(map(str, report.failures))
    assert not run_tables(POLICIES, path).ok  # the shipped policy denies the ahw row: the rows can fail


def test_the_generated_space_asks_each_portal_about_its_own_organizations(config):
    for profile in profiles_of(config):
        portals = {q.resource.portal if hasattr(q.resource, "portal") else q.resource.organization.portal
                   for q in space_questions(profile)}
        assert portals == {profile.name}


def test_a_portal_scoped_rule_shows_in_policy_diff_for_that_portal_only(tmp_path, config):
    new = tmp_path / "new"
    shutil.copytree(POLICIES, new)
    with (new / "portal.polar").open("a", encoding="utf-8") as polar:
        polar.write('\n# ahw: support staff link accounts there.\norganization_rule("link_account", org, '
                    '["known_actor", "active_actor", "password_current", "support"]) if org.portal = "ahw";\n')
    report = run_diff(POLICIES, new, profiles=profiles_of(config), space_actions=["link_account"])
    assert {p.name for p in profiles_of(config)} == {"ahcccs", "qm", "ahw", "masshealth"}
    assert report.by_source["space"] > 0 and report.changes
    assert {c.question.label.split(":", 1)[0] for c in report.changes} == {"ahw"}, report.text()
    assert any(c.question.label == "ahw: support staff link_account organization O" and c.new.allowed
               for c in report.changes), report.text()


def test_a_logged_decision_is_replayed_in_its_portal():
    """The decision log records the organization's portal with the facts; an entry recorded before it did
    is replayed in the entry's portal."""
    from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, OrganizationFacts
    from service.workbench.diff import facts_from_json
    from service.workbench.explain import facts_json

    org = OrganizationFacts("W1", ("claims",), None, 1, True, portal="ahw")
    target = AccountFacts("pat", org, "member", "pending_approval", None, (LinkFacts(org, "member"),))
    actor = ActorFacts.unknown("ghost")
    recorded = facts_json(actor, target)
    assert facts_from_json(recorded) == (actor, target)
    del recorded["resource"]["organization"]["portal"]
    for link in recorded["resource"]["links"]:
        del link["organization"]["portal"]
    _, replayed = facts_from_json(recorded, "ahw")
    assert replayed == target
