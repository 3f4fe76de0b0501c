"""Coverage cannot silently fall: every rule of requirements.md has at least one scenario."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT.parent / "shared" / "requirements.md"
FEATURES = ROOT / "features"
PROFILES = {"ahcccs", "qm", "ahw", "masshealth"}


def rule_numbers() -> list[str]:
    """The R-numbers requirements.md defines (a list item `- R12 ...`); R1..R27 when the file is absent."""
    if not REQUIREMENTS.exists():
        return [f"R{n}" for n in range(1, 28)]
    found = re.findall(r"^\s*[-*]\s+(R\d+)\b", REQUIREMENTS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return sorted(dict.fromkeys(found), key=lambda r: int(r[1:]))


def scenarios() -> list[tuple[str, str, set[str]]]:
    """(feature file, scenario name, tags incl. the feature's) for every Scenario / Scenario Outline."""
    found = []
    for path in sorted(FEATURES.glob("*.feature")):
        feature_tags: set[str] = set()
        pending: set[str] = set()
        seen_feature = False
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if text.startswith("@"):
                pending |= {t.lstrip("@") for t in text.split() if t.startswith("@")}
            elif text.startswith("Feature:"):
                feature_tags, pending, seen_feature = pending, set(), True
            elif re.match(r"(Scenario|Scenario Outline|Example):", text):
                name = text.split(":", 1)[1].strip()
                found.append((path.name, name, feature_tags | pending))
                pending = set()
            elif text.startswith("Examples:") or text == "Examples:":
                pending = set()
        assert seen_feature, f"{path.name} has no Feature:"
    return found


def coverage() -> dict[str, list[str]]:
    table: dict[str, list[str]] = {rule: [] for rule in rule_numbers()}
    for feature, name, tags in scenarios():
        for tag in tags:
            if tag in table:
                table[tag].append(f"{feature}: {name}")
    return table


def test_requirements_are_read():
    rules = rule_numbers()
    assert rules[0] == "R1" and len(rules) >= 27, rules


def test_every_rule_has_a_scenario():
    table = coverage()
    for rule, covering in table.items():
        print(f"{rule}: {len(covering)} scenario(s)")
        for name in covering:
            print(f"    {name}")
    missing = [rule for rule, covering in table.items() if not covering]
    assert not missing, f"rules with no scenario: {', '.join(missing)}"


@pytest.mark.parametrize("feature, name, tags", scenarios(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_scenario_names_its_rule_and_profile(feature, name, tags):
    assert any(re.fullmatch(r"R\d+", t) for t in tags), f"{feature}: {name!r} has no @R tag"
    assert tags & PROFILES, f"{feature}: {name!r} has no profile tag ({', '.join(sorted(PROFILES))})"


# Features that are not seed documents (each says so in its description).
NOT_SEEDS = {"policy_authoring.feature"}  # the policy author's workbench, not a source document


def test_one_feature_per_seed_document():
    assert sorted(p.name for p in FEATURES.glob("*.feature") if p.name not in NOT_SEEDS) == sorted([
        "ahcccs_master_account.feature", "qm_portal_faq.feature", "ahw_account_manager.feature",
        "qm_ioc_registration.feature", "masshealth_subordinate_accounts.feature"])
    for name in NOT_SEEDS:
        assert "Not a\n  seed document" in (FEATURES / name).read_text() or "Not a seed document" in (
            FEATURES / name).read_text().replace("\n  ", " ")
