"""Which parts of the policy no decision-table row exercises: `policy test --coverage`.

Every row of the tables is explained (service/workbench/explain.py), and each clause of
the policy counts as exercised when:

  a rule (organization_rule, account_rule)          some row is allowed by it and some row denied under it;
  an unknown-action rule                             some row is denied under it;
  a requirement                                      some row finds it holding and some row finds it failing;
  a reason (reason(REQUIREMENT, CODE))               some row's denial is told by it;
  a telling order (told_after(REQUIREMENT, EARLIER)) in some row REQUIREMENT fails and is left untold
                                                     because EARLIER fails;
  a remedy (remedy(REQUIREMENT, ..., {action: A}))   some row checks a remedy told as REQUIREMENT's code
                                                     whose change is A (a row's `remedies`).

The report lists, per file, each clause left unexercised with its line, so the author
knows which table row to add.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from service.policy import Policy, policy_files
from service.workbench.diff import table_questions
from service.workbench.explain import explain

_HEAD = re.compile(r"^(organization_rule|account_rule|unknown_organization_action|unknown_account_action|"
                   r"requirement|reason|told_after|remedy)\(", re.MULTILINE)


@dataclass(frozen=True)
class Clause:
    file: str
    line: int
    kind: str
    key: tuple  # what identifies it: a rule's (kind, requirement names); a requirement's name; ...
    text: str


@dataclass
class CoverageReport:
    clauses: list[Clause] = field(default_factory=list)
    uncovered: list[tuple[Clause, str]] = field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.uncovered

    def text(self) -> str:
        by_file: dict[str, list[tuple[Clause, str]]] = defaultdict(list)
        for clause, why in self.uncovered:
            by_file[clause.file].append((clause, why))
        lines = []
        for file in sorted({c.file for c in self.clauses}):
            total = sum(1 for c in self.clauses if c.file == file)
            missing = by_file.get(file, [])
            lines.append(f"{file}: {total - len(missing)} of {total} clauses exercised")
            for clause, why in missing:
                lines.append(f"  line {clause.line}: {clause.text}  -- {why}")
        lines.append(f"{len(self.uncovered)} clauses not exercised by the {self.rows} decision-table rows")
        return "\n".join(lines)


def _clauses(policy_dir: Path) -> list[Clause]:
    found = []
    for path in policy_files(policy_dir):
        text = path.read_text(encoding="utf-8")
        code = "\n".join("" if line.lstrip().startswith("#") else line for line in text.splitlines())
        for match in _HEAD.finditer(code):
            kind = match.group(1)
            end = code.find(";", match.start())
            body = code[match.start():end]
            line = code.count("\n", 0, match.start()) + 1
            strings = re.findall(r'"(\w+)"', body)
            if kind in ("organization_rule", "account_rule", "unknown_organization_action", "unknown_account_action"):
                listed = body[body.index("[", body.index("(")):body.index("]") + 1] if "[" in body else ""
                names = tuple(re.findall(r'"(\w+)"', listed))
                literal = re.match(r'\w+\(\s*"(\w+)"', body)  # a rule for one named action
                key = ("unknown_action" if kind.startswith("unknown") else "rule", names,
                       literal.group(1) if literal else None)
            elif kind == "requirement":
                key = (strings[0],) if strings else ()
            elif kind == "remedy":  # (requirement, the change's action)
                change = re.search(r'\baction:\s*"(\w+)"', body)
                key = (strings[0] if strings else "", change.group(1) if change else "")
            else:
                key = tuple(strings[:2])
            first = " ".join(body.split())
            found.append(Clause(path.name, line, kind, key, first[:90] + ("..." if len(first) > 90 else "")))
    return found


def run_coverage(policy_dir: Path, tables_dir: Path | None = None) -> CoverageReport:
    policy = Policy(Path(policy_dir))
    report = CoverageReport(clauses=_clauses(Path(policy_dir)))
    rule_allowed: set[tuple] = set()
    rule_denied: set[tuple] = set()
    holds: set[str] = set()
    fails: set[str] = set()
    told: set[tuple[str, str]] = set()
    gated: set[tuple[str, str]] = set()
    gates = policy.telling_order()
    for question in table_questions([Path(policy_dir)], tables_dir):
        report.rows += 1
        e = explain(policy, question.actor, question.action, question.resource, whole=True)
        outcome = {}
        for rule in e.rules:
            key = (rule.kind, tuple(r.name for r in rule.requirements))
            (rule_allowed if rule.holds else rule_denied).update({(*key, None), (*key, question.action)})
            for req in rule.requirements:
                outcome[req.name] = req.holds
                (holds if req.holds else fails).add(req.name)
                if req.told_as:
                    told.add((req.name, req.told_as))
        for name, ok in outcome.items():
            if ok:
                continue
            for earlier in gates.get(name, ()):
                if policy.requirement_holds(earlier, question.actor, question.action, question.resource):
                    holds.add(earlier)
                else:
                    fails.add(earlier)
                    gated.add((name, earlier))
    remedied = _remedied(Path(policy_dir), tables_dir)
    codes = policy.reason_codes()
    # A requirement named only by unknown-action rules fails by design (no rule knows the action).
    in_rules = {name for c in report.clauses if c.kind in ("organization_rule", "account_rule") for name in c.key[1]}
    for clause in report.clauses:
        why = None
        if clause.kind in ("organization_rule", "account_rule"):
            if clause.key not in rule_allowed:
                why = "no row is allowed by this rule"
            elif clause.key not in rule_denied:
                why = "no row is denied under this rule"
        elif clause.kind.startswith("unknown"):
            if clause.key not in rule_denied:
                why = "no row asks an action this covers"
        elif clause.kind == "requirement":
            name = clause.key[0] if clause.key else ""
            if name not in holds and (name in in_rules or any(name in g for g in gates.values())):
                why = "no row finds it holding"
            elif name not in fails:
                why = "no row finds it failing"
        elif clause.kind == "reason":
            if clause.key not in told:
                why = "no row is denied with this reason from this requirement"
        elif clause.kind == "told_after":
            if clause.key not in gated:
                why = "no row where the requirement fails untold because the earlier one fails"
        elif clause.kind == "remedy":
            name, change = clause.key
            if not any((code, change) in remedied for code in codes.get(name, ())):
                why = "no row checks a remedy with this change for this requirement"
        if why:
            report.uncovered.append((clause, why))
    return report


def _remedied(policy_dir: Path, tables_dir: Path | None) -> set[tuple[str, str]]:
    """(reason code, change action) of every remedy a table row checks."""
    from service.workbench.tables import TableError, load_table, table_files

    try:
        files = table_files(policy_dir, tables_dir)
    except TableError:
        return set()
    return {(remedy.code, remedy.change.action) for path in files for row in load_table(path).rows
            for remedy in row.remedies or ()}
