"""A typo in the policy is an error when it loads (server start, `policy test`, `policy reload`, `policy diff`):
every requirement a rule names is defined and has a reason code (or is declared never told), every reason
code is one the service knows, every action a rule names is in the catalog. Each problem is one line
naming the file and line."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from service.policy import Policy, PolicyCheckError, check_policy, policy_files
from service.reload import PolicySnapshots
from tests.conftest import ROOT

POLICIES = ROOT / "policies"


def copy_policies(where: Path) -> Path:
    shutil.copytree(POLICIES, where)
    return where


def misspell(folder: Path, file: str, old: str, new: str, count: int | None = None) -> list[int]:
    """Replace `old` by `new` (every occurrence, or the first `count`); the lines changed."""
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {file}; the policy changed, update this test"
    lines = []
    out = []
    done = 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if old in line and (count is None or done < count) and not line.lstrip().startswith("#"):
            line = line.replace(old, new)
            lines.append(number)
            done += line.count(new)
        out.append(line)
    path.write_text("".join(out), encoding="utf-8")
    return lines


def config_for(tmp_path: Path, policies: Path) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["policy_dir"] = str(policies)
    data["database"]["url"] = f"sqlite:///{tmp_path / 'cli.db'}"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_policy_has_no_problem():
    assert check_policy(policy_files(POLICIES)) == []


def test_a_misspelt_requirement_is_refused_with_file_and_line_of_each_rule(tmp_path):
    policies = copy_policies(tmp_path / "policies")
    lines = misspell(policies, "portal.polar", '"status_allows"', '"status_allowz"', count=5)
    assert len(lines) == 5
    with pytest.raises(PolicyCheckError) as caught:
        Policy(policies)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    for line, problem in zip(lines, problems):
        assert problem.startswith(f"{policies / 'portal.polar'}:{line}: ")
        assert '"status_allowz"' in problem and "never defined" in problem


def test_an_unknown_reason_code_is_refused(tmp_path):
    policies = copy_policies(tmp_path / "policies")
    (line,) = misspell(policies, "reasons.polar", 'reason("status_allows", "target_status")',
                       'reason("status_allows", "target_statuz")')
    with pytest.raises(PolicyCheckError) as caught:
        Policy(policies)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{policies / 'reasons.polar'}:{line}: ") and '"target_statuz"' in problem


def test_a_requirement_with_no_reason_is_refused_unless_declared_never_told(tmp_path):
    policies = copy_policies(tmp_path / "policies")
    misspell(policies, "reasons.polar", 'reason("not_orphaning", "last_admin");', "")
    with pytest.raises(PolicyCheckError) as caught:
        Policy(policies)
    assert caught.value.problems and all('"not_orphaning" has no reason code' in p for p in caught.value.problems)
    with (policies / "reasons.polar").open("a") as reasons:
        reasons.write('\nnever_told("not_orphaning");\n')
    Policy(policies)  # declared: loads


def test_an_action_outside_the_catalog_is_refused(tmp_path):
    policies = copy_policies(tmp_path / "policies")
    (line,) = misspell(policies, "portal.polar", 'status_allows("unlock"', 'status_allows("unlok"')
    with pytest.raises(PolicyCheckError) as caught:
        Policy(policies)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{policies / 'portal.polar'}:{line}: ") and '"unlok"' in problem


def test_a_remedy_naming_an_unknown_change_or_requirement_is_refused(tmp_path):
    policies = copy_policies(tmp_path / "policies")
    (line,) = misspell(policies, "portal.polar", '{action: "unlock"}', '{action: "unlok"}')
    (other,) = misspell(policies, "portal.polar", 'remedy("password_current"', 'remedy("password_curent"')
    with pytest.raises(PolicyCheckError) as caught:
        Policy(policies)
    first, second = caught.value.problems
    assert first.startswith(f"{policies / 'portal.polar'}:{line}: ") and '"unlok"' in first
    assert second.startswith(f"{policies / 'portal.polar'}:{other}: ") and '"password_curent"' in second


def test_policy_test_refuses_a_typo_one_line_per_problem_and_no_policy_gap(tmp_path, cli):
    policies = copy_policies(tmp_path / "policies")
    lines = misspell(policies, "portal.polar", '"status_allows"', '"status_allowz"', count=5)
    code, out, err = cli("--config", str(config_for(tmp_path, policies)), "policy", "test")
    assert code == 1 and out == ""
    assert "policy gap" not in err and "Traceback" not in err
    problems = [line for line in err.splitlines() if "status_allowz" in line]
    assert [int(p.split(":")[1]) for p in problems] == lines
    assert len(err.strip().splitlines()) == 1 + len(lines)  # a heading, then one line per problem


def test_policy_diff_refuses_a_typo(tmp_path, cli):
    policies = copy_policies(tmp_path / "policies")
    misspell(policies, "portal.polar", '"status_allows"', '"status_allowz"', count=1)
    code, out, err = cli("--config", str(config_for(tmp_path, policies)), "policy", "diff", str(POLICIES),
                         str(policies), "--no-space")
    assert code == 2 and out == "" and "status_allowz" in err


def test_policy_reload_refuses_a_typo_and_the_server_keeps_its_policy(tmp_path, cli):
    policies = copy_policies(tmp_path / "policies")
    snapshots = PolicySnapshots(policies)
    version = snapshots.refresh()
    misspell(policies, "portal.polar", '"status_allows"', '"status_allowz"', count=1)
    code, out, err = cli("--config", str(config_for(tmp_path, policies)), "policy", "reload", "--port", "1")
    assert code == 1 and "status_allowz" in err and "no pid file" not in err  # refused before any server is asked
    assert snapshots.reload() is False  # the server's own check on SIGHUP refuses it too
    assert snapshots.version == version
    with pytest.raises(PolicyCheckError) as caught:
        snapshots.refresh()
    assert all(p.startswith(str(policies)) for p in caught.value.problems)


def test_policy_diff_compares_with_a_base_that_predates_the_checks(tmp_path, cli):
    """The base of a diff is the running policy, which may have been written before a check existed."""
    base = copy_policies(tmp_path / "base")
    misspell(base, "reasons.polar", 'never_told("self");', "")
    with pytest.raises(PolicyCheckError):
        Policy(base)
    code, out, err = cli("--config", str(config_for(tmp_path, POLICIES)), "policy", "diff", str(base), str(POLICIES),
                         "--no-space")
    assert code == 0 and err == "", err


def test_reason_messages_and_their_order_are_the_policys(tmp_path):
    """reasons.polar words each reason code (`message`) and its lines are the order a denial lists its codes: moving
    a line reorders the reasons, rewording one changes what is told, and a code with no message is refused."""
    from service.kernel.facts import ActorFacts, OrganizationFacts

    policies = copy_policies(tmp_path / "policies")
    inactive = ActorFacts("ann", True, "disabled", True, False, (), terms_accepted=True)
    org = OrganizationFacts("O1", ("claims",), None, 1, True, portal="ahw")
    shipped = Policy(policies).decide(inactive, "view", org)
    assert shipped.reasons == ("actor_inactive", "not_member")
    path = policies / "reasons.polar"
    text = path.read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.startswith('message("actor_inactive"'))
    text = text.replace(line + "\n", "") + line.replace("is not active.", "is switched off.") + "\n"
    path.write_text(text, encoding="utf-8")
    moved = Policy(policies).decide(inactive, "view", org)
    assert moved.reasons == ("not_member", "actor_inactive")
    assert moved.reason_objects()[1] == {"code": "actor_inactive", "message": "The actor's account is switched off."}
    path.write_text(text.replace(line.replace("is not active.", "is switched off."), ""), encoding="utf-8")
    with pytest.raises(PolicyCheckError) as caught:
        Policy(policies)
    (problem,) = caught.value.problems
    assert '"actor_inactive" has no message' in problem
