"""The decision tables in policies/tests/ pass, cover every rule, and catch a broken policy.

The runner is tested as well: a wrong expectation must produce a failure a
policy author can act on, and a table that cannot be read must be an error,
never a silent pass.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from service.kernel.catalog import ACCOUNT_ACTIONS, ORGANIZATION_ACTIONS
from service.policy import PolicyCheckError, PolicyLoadError
from service.workbench import tables
from service.workbench.tables import TableError, first_failure, load_table, row_lines, run_tables, table_files
from tests.fixtures.policies import copy_policy

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
TABLES = POLICIES / "tests"
ROW_FLOOR = 150
CITED_RULES = {"R1", "R2", "R3", "R4", "R5", "R10", "R14", "R15", "R16", "R18", "R21"}


def all_rows():
    for path in table_files(POLICIES):
        for row in load_table(path).rows:
            yield path, row


def write_table(path: Path, table: dict) -> Path:
    path.write_text(yaml.safe_dump(table, sort_keys=False), encoding="utf-8")
    return path


def small_table(**row_changes) -> dict:
    row = {"name": "member without the grant submits a claim", "rule": "R16", "actor": "cal",
           "action": "claims", "organization": "P1", "expect": "deny",
           "reasons": ["permission_not_granted"]}
    row.update(row_changes)
    return {
        "description": "a one-row table for the runner's own tests",
        "organizations": {"P1": {"catalog": ["claims"]}},
        "personas": {"cal": {"memberships": {"P1": {}}}},
        "targets": {"dan@P1": {"organization": "P1", "status": "disabled"}},
        "rows": [row],
    }


def mutate(policy_dir: Path, file: str, old: str, new: str) -> None:
    path = policy_dir / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {file}; the policy changed, update this test"
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- The shipped tables ------------------------------------------------------------

def test_shipped_tables_pass():
    report = run_tables(POLICIES)
    assert not report.failures, f"{len(report.failures)} failing rows:\n\n" + "\n\n".join(map(str, report.failures))
    assert report.rows_run >= ROW_FLOOR
    assert {p.name for p in report.files} >= {
        "portal_functions.yaml", "account_administration.yaml",
        "delegated_management.yaml", "admin_invariants.yaml",
    }


def test_tables_are_parsed_by_libyaml_and_read_as_the_pure_python_parser_reads_them(monkeypatch):
    """PyYAML's pure Python parser was most of a table run's time (the mutation tests below run the tables once
    per dropped clause); libyaml, which PyYAML's wheels carry, reads them in a fraction of the time. The same
    tables and the same row lines either way."""
    assert tables.SAFE_LOADER is yaml.CSafeLoader
    read = {path: (load_table(path), row_lines(path)) for path in table_files(POLICIES)}
    monkeypatch.setattr(tables, "SAFE_LOADER", yaml.SafeLoader)
    assert read == {path: (load_table(path), row_lines(path)) for path in table_files(POLICIES)}
    assert all(lines for _, lines in read.values())


def test_every_reason_code_of_the_policy_is_expected_somewhere():
    text = (POLICIES / "reasons.polar").read_text(encoding="utf-8")
    codes = set(re.findall(r'^reason\("\w+",\s*"(\w+)"\)', text, flags=re.MULTILINE))
    assert len(codes) >= 10
    expected = {reason for _, row in all_rows() for reason in row.reasons or ()}
    assert codes - expected == set(), "reason codes no row expects"


@pytest.mark.parametrize("action", ACCOUNT_ACTIONS)
def test_every_account_action_is_allowed_and_denied_somewhere(action):
    outcomes = {row.expect for _, row in all_rows() if row.target is not None and row.action == action}
    assert outcomes == {"allow", "deny"}


@pytest.mark.parametrize("action", ORGANIZATION_ACTIONS)
def test_every_organization_action_is_allowed_and_denied_somewhere(action):
    outcomes = {row.expect for _, row in all_rows() if row.organization is not None and row.action == action}
    assert outcomes == {"allow", "deny"}


def test_every_rule_the_policy_implements_is_cited():
    cited = {rule.strip() for _, row in all_rows() for rule in row.rule.split(",")}
    assert CITED_RULES - cited == set()


# --- A broken policy fails the tables -------------------------------------------------

def polar_clauses(text: str) -> list[str]:
    """The statements of a .polar file, comments dropped (the policy has no ';' in strings)."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [c for c in code.split(";") if c.strip()]


def rule_clauses() -> list[tuple[str, int]]:
    found = []
    for polar in sorted(POLICIES.glob("*.polar")):
        for i, clause in enumerate(polar_clauses(polar.read_text(encoding="utf-8"))):
            if re.match(r"\s*(allow|deny_reason|rule|organization_rule|account_rule|unknown_action|"
                        r"unknown_organization_action|unknown_account_action|all_hold|untold|"
                        r"requirement|reason|told_after|remedy|deny_remedy)\(", clause):
                found.append((polar.name, i))
    return found


RULE_CLAUSES = rule_clauses()


def test_the_policy_has_the_clauses_the_next_test_removes():
    assert len(RULE_CLAUSES) >= 20


@pytest.mark.parametrize(("file", "index"), RULE_CLAUSES, ids=[f"{f}#{i}" for f, i in RULE_CLAUSES])
def test_removing_any_rule_requirement_or_reason_clause_fails_a_row(tmp_path, file, index):
    """Every clause is exercised: without it, some row gets a different answer (so coverage means something:
    every rule, requirement definition, reason code and telling order of the policy)."""
    policy_dir = copy_policy(tmp_path)
    clauses = polar_clauses((POLICIES / file).read_text(encoding="utf-8"))
    del clauses[index]
    (policy_dir / file).write_text(";".join(clauses) + ";\n", encoding="utf-8")
    try:
        assert first_failure(policy_dir, TABLES) is not None
    except PolicyCheckError as exc:  # a requirement's definition or reason: refused at load, naming it
        assert exc.problems
    except PolicyLoadError as exc:  # the last clause of a rule another calls: the policy does not load at all
        assert "undefined rule" in str(exc)


MUTATIONS = {
    "unlock no longer applies to locked accounts": (
        "portal.polar", 'status_allows("unlock", target: TargetAccount) if target.status = "locked";\n', ""),
    "is_admin checks the wrong role": (
        "portal.polar", 'membership(actor, org, m) and m.role = "admin";', 'membership(actor, org, m) and m.role = "member";'),
    "an expired password is ignored": (
        "portal.polar", '_resource) if actor.password_current = true;', '_resource) if actor.password_current = actor.password_current;'),
    "the last admin may go even with members left": (
        "portal.polar", "target.organization.has_active_members = true", "target.organization.has_active_members = 1"),
    "every member is a delegate": (
        "portal.polar", 'm.role = "member" and\n    org.delegate_permission in m.permissions;', 'm.role = "member";'),
    "self-actions are allowed": (
        "portal.polar", 'requirement("not_self", actor, _action, target) if\n    actor.username != target.username;',
        'requirement("not_self", _actor, _action, _target);'),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_policy_fails_the_shipped_tables(tmp_path, mutation):
    file, old, new = MUTATIONS[mutation]
    policy_dir = copy_policy(tmp_path)
    mutate(policy_dir, file, old, new)
    assert first_failure(policy_dir, TABLES) is not None, f"no row notices: {mutation}"


def test_the_unlock_mutation_is_reported_on_unlock_rows(tmp_path):
    policy_dir = copy_policy(tmp_path)
    mutate(policy_dir, *MUTATIONS["unlock no longer applies to locked accounts"])
    failures = run_tables(policy_dir, TABLES).failures
    assert failures
    # Rows asking unlock, and rows whose remedy is an unlock (who may make it changed too).
    assert all(" unlock " in str(f) or "'unlock'" in str(f) for f in failures), "\n".join(map(str, failures))


# --- The runner's messages ---------------------------------------------------------------

def test_a_wrong_expectation_names_file_row_expected_and_actual(tmp_path):
    table = write_table(tmp_path / "wrong.yaml", small_table(expect="allow", reasons=[]))
    report = run_tables(POLICIES, table)
    assert report.rows_run == 1
    assert report.files == [table]
    assert len(report.failures) == 2  # the decision, and authorized_actions
    message = str(report.failures[0])
    assert str(table) in message
    assert "row 0" in message and "member without the grant submits a claim" in message
    assert "cal claims organization P1" in message
    assert "expected: allow []" in message
    assert "actual:   deny [permission_not_granted]" in message
    assert "authorized_actions" in str(report.failures[1])


def test_a_failing_row_is_named_by_its_line_in_the_file(tmp_path):
    right = small_table()["rows"][0]
    table = small_table(name="the wrong one", expect="allow", reasons=[])
    table["rows"] = [right, table["rows"][0]]
    path = write_table(tmp_path / "lines.yaml", table)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "the wrong one" in text)
    failures = run_tables(POLICIES, path).failures
    assert failures
    assert all(str(f).startswith(f"{path}:{line}: row 1 \"the wrong one\"") for f in failures), failures


def test_wrong_reasons_fail_even_when_the_decision_is_right(tmp_path):
    table = write_table(tmp_path / "reasons.yaml", small_table(reasons=["not_member"]))
    failures = run_tables(POLICIES, table).failures
    assert len(failures) == 1
    assert "expected: deny [not_member]" in str(failures[0])
    assert "actual:   deny [permission_not_granted]" in str(failures[0])


def test_wrong_remedies_fail_even_when_the_reasons_are_right(tmp_path):
    """A row's remedies are compared in order: the change and who may make it (admins of the world's organization)."""
    def table(by):
        change = {"action": "grant", "permission": "claims"}
        t = small_table(remedies=[{"code": "permission_not_granted", "change": change, "by": by, "support": True}])
        t["personas"]["ann"] = {"memberships": {"P1": {"role": "admin"}}}
        return t

    assert run_tables(POLICIES, write_table(tmp_path / "right.yaml", table(["ann"]))).ok
    failures = run_tables(POLICIES, write_table(tmp_path / "wrong.yaml", table([]))).failures
    assert len(failures) == 1
    assert "expected: remedies [('permission_not_granted', 'grant', 'claims', (), True)]" in str(failures[0])
    assert "actual:   remedies [('permission_not_granted', 'grant', 'claims', ('ann',), True)]" in str(failures[0])


def test_an_allowed_row_has_no_remedies(tmp_path):
    table = small_table(actor="cal", action="view", expect="allow", reasons=[],
                        remedies=[{"code": "x", "change": {"action": "grant"}}])
    with pytest.raises(TableError, match="no remedies"):
        load_table(write_table(tmp_path / "t.yaml", table))


def test_reasons_compare_as_a_set(tmp_path):
    table = small_table(actor="old", reasons=["permission_not_granted", "password_expired", "actor_inactive"])
    table["personas"]["old"] = {"status": "disabled", "password_current": False, "memberships": {"P1": {}}}
    report = run_tables(POLICIES, write_table(tmp_path / "set.yaml", table))
    assert (report.rows_run, report.failures) == (1, [])


def test_account_rows_run_on_targets(tmp_path):
    table = small_table(actor="ann", action="enable", organization=None, target="dan@P1",
                        expect="allow", reasons=None)
    table["personas"]["ann"] = {"memberships": {"P1": {"role": "admin"}}}
    report = run_tables(POLICIES, write_table(tmp_path / "target.yaml", table))
    assert (report.rows_run, report.failures) == (1, [])


# --- Tables that cannot be read --------------------------------------------------------

def table_error(tmp_path: Path, content: str | dict) -> str:
    path = tmp_path / "broken.yaml"
    if isinstance(content, dict):
        write_table(path, content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(TableError) as caught:
        run_tables(POLICIES, path)
    message = str(caught.value)
    assert str(path) in message
    return message


def test_invalid_yaml_is_a_table_error(tmp_path):
    assert "YAML" in table_error(tmp_path, "rows: [unclosed\n")


def test_a_table_that_is_not_a_mapping_is_a_table_error(tmp_path):
    assert "mapping" in table_error(tmp_path, "- just a list\n")


def test_an_unknown_persona_is_a_table_error(tmp_path):
    message = table_error(tmp_path, small_table(actor="nobody"))
    assert "'nobody'" in message and "member without the grant submits a claim" in message


def test_an_unknown_key_is_a_table_error(tmp_path):
    message = table_error(tmp_path, small_table(expected="deny"))
    assert "rows.0.expected" in message and "member without the grant" in message


def test_a_misspelled_persona_fact_is_a_table_error(tmp_path):
    table = small_table()
    table["personas"]["cal"]["suport"] = True
    assert "personas.cal.suport" in table_error(tmp_path, table)


def test_a_missing_field_is_a_table_error(tmp_path):
    table = small_table()
    del table["rows"][0]["expect"]
    assert "rows.0.expect" in table_error(tmp_path, table)


def test_a_denied_row_must_state_its_reasons(tmp_path):
    assert "reasons" in table_error(tmp_path, small_table(reasons=None))


def test_an_allowed_row_has_no_reasons(tmp_path):
    assert "no reasons" in table_error(tmp_path, small_table(expect="allow"))


def test_an_unknown_reason_code_is_a_table_error(tmp_path):
    assert "permision_not_granted" in table_error(tmp_path, small_table(reasons=["permision_not_granted"]))


def test_a_row_needs_exactly_one_resource(tmp_path):
    assert "exactly one" in table_error(tmp_path, small_table(target="dan@P1"))


def test_a_permission_only_goes_with_grant_or_revoke(tmp_path):
    assert "permission" in table_error(tmp_path, small_table(permission="claims"))


def test_an_unknown_target_or_organization_is_a_table_error(tmp_path):
    message = table_error(tmp_path, small_table(organization=None, target="eve@P1"))
    assert "'eve@P1'" in message
    table = small_table()
    table["personas"]["cal"]["memberships"] = {"P9": {}}
    assert "'P9'" in table_error(tmp_path, table)


def test_duplicate_row_names_are_a_table_error(tmp_path):
    table = small_table()
    table["rows"].append(dict(table["rows"][0]))
    assert "duplicate" in table_error(tmp_path, table)


def test_no_tables_is_an_error_not_a_pass(tmp_path):
    with pytest.raises(TableError, match="no decision tables"):
        run_tables(POLICIES, tmp_path)


def test_a_table_edited_between_two_runs_is_read_as_it_now_stands(tmp_path):
    """Tables are parsed once per text (a run reads each several times): an edit is a new text, read anew."""
    path = write_table(tmp_path / "one.yaml", small_table())
    assert first_failure(POLICIES, tmp_path) is None
    write_table(path, small_table(expect="allow", reasons=[]))
    failure = first_failure(POLICIES, tmp_path)
    assert failure is not None and "one.yaml" in str(failure)
