"""The policy author's workbench, through the CLI (R1, R5, R14-R16).

`policy explain` (and /v1/authorize with "explain": true), `policy diff` (a planted
change is found, a comment-only edit changes nothing, a policy that does not load is
exit 2 with the error on one line, a recorded decision is replayed), and `policy test
--coverage` (the shipped tables exercise every clause; an unexercised one is named).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from service.policy import Policy
from service.workbench.coverage import run_coverage
from tests.conftest import ROOT

POLICIES = ROOT / "policies"


def copy_policies(where: Path) -> Path:
    shutil.copytree(POLICIES, where)
    return where


def edit(folder: Path, file: str, old: str, new: str) -> None:
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {file}; the policy changed, update this test"
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- policy explain ------------------------------------------------------------------------

def test_explain_names_each_requirement_its_outcome_and_the_facts_it_read(seeded, cli_config, cli):
    code, out, _ = cli("policy", "explain", "--portal", "masshealth", "--actor", "sub", "--action", "remove",
                       "--resource", "account:primary", "--config", str(cli_config))
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0].startswith("denied [not_admin, last_admin] (policy ")  # R3: primary is the only admin
    assert lines[1].strip() == "rule 1 for 'remove': fails"
    administers = next(line for line in lines if " administers " in f"{line} ")
    # sub does not administer primary, so primary's role in PIDSL-1 is not sub's to read (the read scoping):
    # the requirement that reads it is shown without its outcome, which the reason tells anyway.
    assert administers.split()[:4] == ["?", "administers", "->", "not_admin"]
    assert "target.role" not in administers and "actor.support=False" in administers
    assert "withheld from sub: organization.active_admins" in out
    assert any(line.split()[:2] == ["ok", "not_self"] for line in lines)


def test_explain_of_an_allowed_decision_exits_0(seeded, cli_config, cli):
    code, out, _ = cli("policy", "explain", "--portal", "masshealth", "--actor", "primary", "--action", "enable",
                       "--resource", "account:gone", "--config", str(cli_config))
    assert code == 0, out
    assert out.startswith("allowed (policy ") and "rule 1 for 'enable': holds" in out
    assert "FAIL" not in out


def test_explain_json_equals_the_api_explanation(seeded, cli_config, cli):
    from service.app import create_app

    config, database, key = seeded
    code, out, _ = cli("policy", "explain", "--portal", "masshealth", "--actor", "sub", "--action", "enable",
                       "--resource", "account:gone", "--json", "--config", str(cli_config))
    assert code == 1
    printed = json.loads(out)
    client = create_app(config, database=database).test_client()
    body = {"portal": "masshealth", "actor": "sub", "action": "enable", "resource": {"type": "account", "id": "gone"}}
    headers = {"Authorization": f"Bearer {key}"}
    plain = client.post("/v1/authorize", json=body, headers=headers).get_json()
    explained = client.post("/v1/authorize", json={**body, "explain": True}, headers=headers).get_json()
    assert set(plain) == {"allowed", "reasons", "policy_version"}  # without explain, the contract's body
    assert {k: explained[k] for k in plain} == plain
    assert explained["explanation"] == printed
    assert printed["reasons"] == [r["code"] for r in plain["reasons"]] == ["not_admin"]
    told = {r["name"]: r["told_as"] for rule in printed["rules"] for r in rule["requirements"]
            if r["holds"] is False}
    # sub does not administer gone: its status, role and links are not sub's to read, nor what turns on them
    # (not_admin is still told: the reasons say what they say).
    assert told == {}
    assert "status" not in printed["facts"]["resource"] and "target.status" in printed["withheld"]
    withheld = {r["name"]: r["told_as"] for rule in printed["rules"] for r in rule["requirements"]
                if r["holds"] is None}
    assert withheld == {"administers": "not_admin", "administers_everywhere": None, "no_capture": None,
                        "status_allows": None, "not_orphaning": None}


def test_explain_is_declared_in_the_openapi(seeded):
    from service.app import create_app

    config, database, _ = seeded
    spec = create_app(config, database=database).test_client().get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert schemas["AuthorizeRequest"]["properties"]["explain"]["type"] == "boolean"
    assert "explanation" in schemas["AuthorizeExplainedResponse"]["properties"]


# --- policy diff ----------------------------------------------------------------------------

def test_diff_finds_a_planted_change_and_names_the_decisions(tmp_path, cli_config, cli):
    base = copy_policies(tmp_path / "base")
    new = copy_policies(tmp_path / "new")
    # The planted change: unlock applies to disabled accounts too.
    edit(new, "portal.polar", 'status_allows("unlock", target: TargetAccount) if target.status = "locked";',
         'status_allows("unlock", target: TargetAccount) if target.status in ["locked", "disabled"];')
    # The space limited to one profile and three actions (the whole space takes minutes; see docs/authoring.md):
    # enable and disable are asked too, and must not change.
    code, out, err = cli("policy", "diff", str(base), str(new), "--profile", "ahcccs", "--json",
                         "--action", "unlock", "--action", "enable", "--action", "disable",
                         "--config", str(cli_config))
    assert code == 1, err
    report = json.loads(out)
    assert report["changed"] > 0 and report["by_source"]["space"] > 2000 and report["by_source"]["tables"] > 200
    assert any(c["source"] == "space" for c in report["changes"])
    assert {c["action"] for c in report["changes"]} == {"unlock"}
    assert {c["group"] for c in report["changes"]} == {"requirement status_allows"}
    assert any(c["source"] == "tables" for c in report["changes"])
    assert all("disabled" in c["question"] or c["source"] == "tables" for c in report["changes"])
    assert all(c["base"] != c["new"] for c in report["changes"])
    assert report["summary"] == f"{report['changed']} decisions changed (of {report['evaluated']} evaluated)"

    code, text, _ = cli("policy", "diff", str(base), str(new), "--no-space", "--config", str(cli_config))
    assert code == 1
    assert "account 'unlock', requirement status_allows:" in text
    assert text.splitlines()[-1].endswith("evaluated)") and " decisions changed (of " in text.splitlines()[-1]


def test_diff_of_a_comment_only_edit_reports_nothing(tmp_path, cli_config, cli):
    base = copy_policies(tmp_path / "base")
    new = copy_policies(tmp_path / "new")
    edit(new, "portal.polar", "# R16: a portal function", "# R16 (reworded by an author): a portal function")
    (new / "reasons.polar").write_text("# a note for the next author\n" + (new / "reasons.polar").read_text())
    assert Policy(base).version != Policy(new).version
    code, out, _ = cli("policy", "diff", str(base), str(new), "--no-space", "--config", str(cli_config))
    assert code == 0, out
    assert out.splitlines()[-1].startswith("0 decisions changed (of ")


def test_diff_of_a_policy_that_does_not_load_is_exit_2_with_the_error_on_one_line(tmp_path, cli_config, cli):
    base = copy_policies(tmp_path / "base")
    new = copy_policies(tmp_path / "new")
    edit(new, "portal.polar", 'requirement("offered", _actor, action, org) if\n    offered(action, org);',
         'requirement("offered", _actor, action, org) if\n    offered(action, org)')
    code, out, err = cli("policy", "diff", str(base), str(new), "--no-space", "--config", str(cli_config))
    assert code == 2 and out == ""
    message = err.strip()
    assert "\n" not in message and "does not load" in message and "portal.polar" in message


def test_diff_defaults_to_the_configured_policy_and_replays_the_decision_log(seeded, tmp_path, cli_config, cli):
    from service.app import create_app
    from service.config import DecisionLog

    config, database, key = seeded
    log = tmp_path / "logs" / "decisions.jsonl"
    app = create_app(config.model_copy(update={"decision_log": DecisionLog(mode="all", path=log)}), database=database)
    body = {"portal": "masshealth", "actor": "primary", "action": "unlock", "resource": {"type": "account", "id": "gone"}}
    answer = app.test_client().post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {key}"}).get_json()
    assert answer["allowed"] is False and [r["code"] for r in answer["reasons"]] == ["target_status"]
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["facts"]["resource"]["status"] == "disabled" and entry["allowed"] is False

    base = copy_policies(tmp_path / "base")
    edit(base, "portal.polar", 'status_allows("unlock", target: TargetAccount) if target.status = "locked";',
         'status_allows("unlock", target: TargetAccount) if target.status in ["locked", "disabled"];')
    code, out, _ = cli("policy", "diff", str(base), "--no-space", "--log", str(log), "--json",
                       "--config", str(cli_config))
    assert code == 1
    report = json.loads(out)
    assert report["by_source"]["log"] == 1
    logged = [c for c in report["changes"] if c["source"] == "log"]
    assert len(logged) == 1 and "primary unlock account gone" in logged[0]["question"]
    assert (logged[0]["base"], logged[0]["new"]) == ({"allowed": True, "reasons": []},
                                                     {"allowed": False, "reasons": ["target_status"]})


# --- policy test --coverage -------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped_coverage():
    """The shipped policy's coverage by its own tables, computed once for the tests that read it (each run
    explains every row of every table)."""
    return run_coverage(POLICIES)


def test_the_shipped_tables_exercise_every_rule_requirement_and_reason(shipped_coverage):
    report = shipped_coverage
    assert report.rows >= 200
    assert len(report.clauses) >= 80
    assert report.ok, report.text()


def test_coverage_through_the_cli_passes_and_names_an_unexercised_clause(tmp_path, cli_config, cli):
    code, out, _ = cli("policy", "test", "--coverage", "--config", str(cli_config))
    assert code == 0, out
    assert "portal.polar: " in out and "reasons.polar: " in out
    assert out.splitlines()[-1].startswith("0 clauses not exercised by the ")

    new = copy_policies(tmp_path / "policies")
    # A second rule for a catalog action that no row is allowed by: its last requirement never holds (and,
    # declared never told, changes no row's reasons).
    edit(new, "portal.polar", "# --- The requirements: what each name means",
         'organization_rule("designate_admin", _org, ["known_actor", "active_actor", "password_current", "support",'
         ' "unheard_of"]);\nrequirement("unheard_of", _actor, _action, _org) if false;\n'
         "# --- The requirements: what each name means")
    (new / "reasons.polar").write_text((new / "reasons.polar").read_text() + 'never_told("unheard_of");\n')
    data = yaml.safe_load(cli_config.read_text())
    data["policy_dir"] = str(new)
    cli_config.write_text(yaml.safe_dump(data))
    code, out, _ = cli("policy", "test", "--coverage", "--config", str(cli_config))
    assert code == 1, out
    assert " 0 failed" in out  # the tables still pass: coverage is what fails
    line = next(line for line in out.splitlines() if 'organization_rule("designate_admin"' in line)
    assert line.strip().startswith("line ") and "no row is allowed by this rule" in line
    line = next(line for line in out.splitlines() if 'requirement("unheard_of"' in line)
    assert "no row finds it holding" in line
    assert out.splitlines()[-1].startswith("2 clauses not exercised by the ")


def test_coverage_counts_remedy_clauses(tmp_path, shipped_coverage):
    """A remedy no table row checks is named; the shipped tables check every one."""
    report = shipped_coverage
    remedies = [c for c in report.clauses if c.kind == "remedy"]
    assert len(remedies) >= 8 and not [c for c, _ in report.uncovered if c.kind == "remedy"]
    new = copy_policies(tmp_path / "policies")
    edit(new, "portal.polar", 'remedy("terms_accepted", _actor, _action, _resource, {action: "accept_terms"});',
         'remedy("terms_accepted", _actor, _action, _resource, {action: "accept_terms"});\n'
         'remedy("known_actor", _actor, _action, _resource, {action: "enable"});')
    report = run_coverage(new, POLICIES / "tests")
    (missing, why), = [(c, why) for c, why in report.uncovered if c.kind == "remedy"]
    assert missing.key == ("known_actor", "enable") and "no row checks a remedy" in why


# --- what an explanation shows is the policy's --------------------------------------------------

def test_every_requirement_the_shipped_rules_name_lists_the_facts_it_reads():
    """READS is display only, but it must not drift from the policy: every requirement a rule of the shipped
    policy names, over every decision-table row, is listed (so none is explained without its facts)."""
    from service.workbench.diff import table_questions
    from service.workbench.explain import READS

    policy = Policy(POLICIES)
    named = {name for q in table_questions([POLICIES])
             for _kind, names in policy.rules_of(q.action, q.resource) for name in names}
    assert named and named - set(READS) == set()


def test_a_permission_not_held_denial_shows_the_grants_that_caused_it():
    """R15: a delegate refused an account's email because the account holds a function the delegate lacks is shown
    both sides' grants (each place with its permissions), not only their roles."""
    from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts
    from service.workbench.explain import explain

    org = OrganizationFacts("P1", ("claims", "manage_account"), "manage_account", 1, True, portal="ahw")
    delegate = ActorFacts("dee", True, "active", True, False,
                          (MembershipFacts("P1", "member", True, ("manage_account",)),), terms_accepted=True)
    target = AccountFacts("tom", org, "member", "active", links=(LinkFacts(org, "member", ("claims",)),),
                          terms_accepted=True)
    explanation = explain(Policy(POLICIES), delegate, "update_email", target, whole=True)
    assert explanation.decision.reasons == ("permission_not_held",)
    (no_capture,) = [r for rule in explanation.rules for r in rule.requirements if r.name == "no_capture"]
    assert no_capture.told_as == "permission_not_held"
    assert no_capture.reads["target.links"] == {"P1": {"role": "member", "permissions": ["claims"]}}
    assert no_capture.reads["actor.memberships"] == {"P1": {"role": "member", "permissions": ["manage_account"]}}
