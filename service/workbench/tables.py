"""Decision tables: policy tests as data, readable by a policy author.

Each YAML file under `<policy_dir>/tests/` describes a small world and asks
the policy questions about it; `run_tables` runs every row through
`Policy.decide` (and `Policy.authorized_actions`) and lists the rows whose
answer differs. A table that cannot be read is a `TableError`, never a pass.

Table format (every key not listed here is an error):

    description: what the table covers (free text)
    organizations:                 # name -> organization facts
      P1:
        catalog: [claims, eligibility]    # the portal's grantable functions (required)
        delegate_permission: manage_account   # default null: no delegates (R15)
        active_admins: 2                  # default 2
        active_members: 1                 # default 1 (active non-admins; Polar sees has_active_members)
        offers_links: false               # default false: the portal offers linking (R13, masshealth)
        offers_subordinates: false        # default false: admins create accounts (R13, masshealth)
        portal: ahw                       # default "": no portal (a rule scoped to a portal does not apply)
    personas:                      # name (also the username) -> actor facts
      ann: {memberships: {P1: {role: admin}}}
      bob: {memberships: {P1: {permissions: [claims]}}}
      exp: {password_current: false, memberships: {P1: {}}}
      sue: {support: true}
      ghost: {unknown: true}       # not an account of the portal; nothing else allowed
      # defaults: status active, password_current true, terms_accepted true, support false,
      # no memberships; a membership defaults to role member, active true,
      # permissions [].
    targets:                       # name -> an account as it stands in one organization
      bob@P1: {organization: P1, role: member, status: active}
      # account: the target's username, default the part of the name before "@"
      # (so "ann@P1" is ann herself: rows on it are self-actions);
      # role default member, status default active, terms_accepted default true; permissions: its grants in
      # that organization (default []);
      lin@P1: {organization: P1, elsewhere: {P2: {role: admin}}}
      # elsewhere: the account's other active links, ORG -> {role, permissions}:
      # the reach of an account-wide action (R1).
    rows:
      - name: member with the claims grant submits a claim   # unique in the file
        rule: R16                  # the requirement the row checks
        actor: bob                 # a persona
        action: claims
        organization: P1           # the resource: an organization, or ...
        # target: bob@P1           # ... an account (exactly one of the two)
        # permission: claims       # only with target and action grant/revoke
        expect: allow              # allow | deny
        # reasons: [permission_not_granted]   # required with deny: exactly these
        #                                     # codes, in any order; with allow only []
        # remedies:                  # optional, with deny: exactly these remedies, in order
        #   - {code: permission_not_granted, change: {action: grant, permission: claims}, by: [ann], support: true}
        #   # change: action, and permission for a grant (the account is the actor, the organization the
        #   # question's); by: the personas named, delegates then admins of that organization (at most 5);
        #   # support: whether support staff can make it (service/domain/remedies.py)

Besides the decision, every row (except grant/revoke naming a permission)
checks that `authorized_actions(actor, resource)` lists the action exactly
when the row is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.kernel.catalog import PERMISSION_ACTIONS
from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts
from service.policy import Policy

# libyaml's loader when PyYAML was built with it (its wheels are): the same documents and line marks as the pure
# Python one, in a fraction of its time (bench/README.md). A table run (`policy test`, `policy coverage`, `policy diff`) parses every
# table once or twice, and the mutation tests run the tables once per dropped clause.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

GRANT_ACTIONS = PERMISSION_ACTIONS


class TableError(Exception):
    """A table file that cannot be read or does not follow the format."""


# --- The schema ---------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrganizationSpec(_Strict):
    catalog: list[str]
    delegate_permission: str | None = None
    active_admins: int = Field(2, ge=0)
    active_members: int = Field(1, ge=0)
    offers_links: bool = False
    offers_subordinates: bool = False
    portal: str = ""


class MembershipSpec(_Strict):
    role: Literal["admin", "member"] = "member"
    active: bool = True
    permissions: list[str] = []


class PersonaSpec(_Strict):
    unknown: bool = False
    status: str = "active"
    password_current: bool = True
    terms_accepted: bool = True
    support: bool = False
    memberships: dict[str, MembershipSpec | None] = {}

    @model_validator(mode="after")
    def _unknown_alone(self) -> PersonaSpec:
        if self.unknown and self.model_fields_set - {"unknown"}:
            raise ValueError("an unknown persona has no other facts")
        return self


class LinkSpec(_Strict):
    role: Literal["admin", "member"] = "member"
    permissions: list[str] = []


class TargetSpec(_Strict):
    organization: str
    account: str | None = None
    role: Literal["admin", "member"] = "member"
    status: str = "active"
    permissions: list[str] = []
    elsewhere: dict[str, LinkSpec | None] = {}
    terms_accepted: bool = True


class ChangeSpec(_Strict):
    action: str
    permission: str | None = None


class RemedySpec(_Strict):
    code: str
    change: ChangeSpec
    by: list[str] = []
    support: bool = False


class RowSpec(_Strict):
    name: str
    rule: str = Field(pattern=r"^R\d+(\s*,\s*R\d+)*$")
    actor: str
    action: str
    organization: str | None = None
    target: str | None = None
    permission: str | None = None
    expect: Literal["allow", "deny"]
    reasons: list[str] | None = None
    remedies: list[RemedySpec] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RowSpec:
        if (self.organization is None) == (self.target is None):
            raise ValueError("give exactly one of organization or target")
        if self.permission is not None and (self.target is None or self.action not in GRANT_ACTIONS):
            raise ValueError("permission only goes with a target and action grant or revoke")
        if self.expect == "deny" and self.reasons is None:
            raise ValueError("a denied row must list its reasons")
        if self.expect == "allow" and self.reasons:
            raise ValueError("an allowed row has no reasons")
        if self.expect == "allow" and self.remedies:
            raise ValueError("an allowed row has no remedies")
        return self


class TableSpec(_Strict):
    description: str
    organizations: dict[str, OrganizationSpec] = {}
    personas: dict[str, PersonaSpec] = {}
    targets: dict[str, TargetSpec] = {}
    rows: list[RowSpec] = Field(min_length=1)


# --- Results ------------------------------------------------------------------

@dataclass(frozen=True)
class RowFailure:
    """One row whose answer is not the expected one."""

    file: Path
    index: int
    line: int  # where the row starts in the file, for an editor to jump to
    name: str
    rule: str
    question: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: row {self.index} \"{self.name}\" ({self.rule})\n"
            f"  question: {self.question}\n"
            f"  expected: {self.expected}\n"
            f"  actual:   {self.actual}"
        )


@dataclass
class TableReport:
    rows_run: int = 0
    failures: list[RowFailure] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


# --- Loading ------------------------------------------------------------------

def _describe(exc: ValidationError, raw: object) -> str:
    """Pydantic's errors, with the row's name next to its index."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "rows" and isinstance(loc[1], int) and isinstance(raw, dict):
            rows = raw.get("rows")
            if isinstance(rows, list) and loc[1] < len(rows) and isinstance(rows[loc[1]], dict):
                where += f" (row \"{rows[loc[1]].get('name', '?')}\")"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_table(path: Path) -> TableSpec:
    """Parse and validate one file, including names that refer to each other."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TableError(f"{path}: not readable YAML: {exc}") from exc
    return _parsed_table(str(path), text, SAFE_LOADER)


@lru_cache(maxsize=64)
def _parsed_table(where: str, text: str, loader) -> TableSpec:
    """A table file's text parsed and validated once per text: `first_failure` reads every table in each of its two
    passes, and a checked policy's coverage and diff read them again. The spec is frozen, so one serves every
    reader; a table that does not parse raises, and nothing is remembered of it."""
    path = Path(where)
    try:
        raw = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise TableError(f"{path}: not readable YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TableError(f"{path}: a table is a mapping with description, organizations, personas, targets, rows")
    try:
        table = TableSpec.model_validate(raw)
    except ValidationError as exc:
        raise TableError(f"{path}: does not follow the table format:\n{_describe(exc, raw)}") from exc
    _check_references(path, table)
    return table


def row_lines(path: Path) -> list[int]:
    """The line (1-based) each row of a table starts on, in order; [] when the file has no row list."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    return list(_row_lines(text, SAFE_LOADER))


@lru_cache(maxsize=64)
def _row_lines(text: str, loader) -> tuple[int, ...]:
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return ()
    if not isinstance(root, yaml.MappingNode):
        return ()
    for key, value in root.value:
        if key.value == "rows" and isinstance(value, yaml.SequenceNode):
            return tuple(item.start_mark.line + 1 for item in value.value)
    return ()


def _check_references(path: Path, table: TableSpec) -> None:
    problems = []
    for name, persona in table.personas.items():
        for org in persona.memberships:
            if org not in table.organizations:
                problems.append(f"persona {name}: membership in unknown organization {org!r}")
    for name, target in table.targets.items():
        for org in [target.organization, *target.elsewhere]:
            if org not in table.organizations:
                problems.append(f"target {name}: unknown organization {org!r}")
    seen: set[str] = set()
    for i, row in enumerate(table.rows):
        label = f"rows.{i} (row \"{row.name}\")"
        if row.name in seen:
            problems.append(f"{label}: duplicate row name")
        seen.add(row.name)
        if row.actor not in table.personas:
            problems.append(f"{label}: unknown persona {row.actor!r}")
        if row.organization is not None and row.organization not in table.organizations:
            problems.append(f"{label}: unknown organization {row.organization!r}")
        if row.target is not None and row.target not in table.targets:
            problems.append(f"{label}: unknown target {row.target!r}")
    if problems:
        raise TableError(f"{path}: " + "\n  ".join(["names that do not resolve:", *problems]))


def table_files(policy_dir: Path, tables_path: Path | None = None) -> list[Path]:
    """The YAML files to run: a given file, a given directory's *.yaml, or <policy_dir>/tests."""
    where = Path(tables_path) if tables_path is not None else Path(policy_dir) / "tests"
    if where.is_file():
        return [where]
    files = sorted([*where.glob("*.yaml"), *where.glob("*.yml")])
    if not files:
        raise TableError(f"{where}: no decision tables (*.yaml) found")
    return files


# --- Facts --------------------------------------------------------------------

def _organization(table: TableSpec, key: str) -> OrganizationFacts:
    spec = table.organizations[key]
    return OrganizationFacts(key, tuple(spec.catalog), spec.delegate_permission,
                             spec.active_admins, spec.active_members > 0, spec.offers_links,
                             spec.offers_subordinates, portal=spec.portal)


def _actor(table: TableSpec, name: str) -> ActorFacts:
    spec = table.personas[name]
    if spec.unknown:
        return ActorFacts.unknown(name)
    memberships = []
    for org, m in spec.memberships.items():
        m = m or MembershipSpec()  # "P1:" with nothing after it is a plain member
        memberships.append(MembershipFacts(org, m.role, m.active, tuple(m.permissions)))
    return ActorFacts(name, True, spec.status, spec.password_current, spec.support, tuple(memberships),
                      spec.terms_accepted)


def _target(table: TableSpec, name: str, permission: str | None) -> AccountFacts:
    spec = table.targets[name]
    username = spec.account or name.split("@", 1)[0]
    links = []
    if spec.status != "removed":  # a removed link is no longer part of the account's reach
        links.append(LinkFacts(_organization(table, spec.organization), spec.role, tuple(sorted(spec.permissions))))
    for org, link in spec.elsewhere.items():
        link = link or LinkSpec()
        links.append(LinkFacts(_organization(table, org), link.role, tuple(sorted(link.permissions))))
    return AccountFacts(username, _organization(table, spec.organization), spec.role, spec.status, permission,
                        tuple(sorted(links, key=lambda link: link.organization.key)), spec.terms_accepted)


def _remedy_of(remedy) -> tuple:
    """A remedy as the tables compare it: (code, change action, permission, by, support)."""
    if isinstance(remedy, RemedySpec):
        return (remedy.code, remedy.change.action, remedy.change.permission, tuple(remedy.by), remedy.support)
    change = remedy["change"]
    return (remedy["code"], change["action"], change.get("permission"), tuple(remedy["by"]), remedy["support"])


def table_remedies(policy: Policy, table: TableSpec, actor_name: str, action: str, resource) -> list[dict]:
    """The remedies of a row's question in the table's world, computed as the service computes them
    (service/domain/remedies.py), the personas being the organization's candidates."""
    from service.domain.remedies import remedies

    spec = table.personas[actor_name]

    def target_of(org_key: str, change: dict) -> AccountFacts | None:
        if spec.unknown or org_key not in spec.memberships:
            return None
        membership = spec.memberships[org_key] or MembershipSpec()
        links = tuple(LinkFacts(_organization(table, org), (m or MembershipSpec()).role,
                                tuple(sorted((m or MembershipSpec()).permissions)))
                      for org, m in sorted(spec.memberships.items()) if (m or MembershipSpec()).active)
        status = spec.status if membership.active else "removed"
        return AccountFacts(actor_name, _organization(table, org_key), membership.role, status,
                            change.get("permission"), links, spec.terms_accepted)

    def candidates_of(org_key: str):
        delegate = table.organizations[org_key].delegate_permission
        ranked = []
        for name, persona in table.personas.items():
            if persona.unknown or org_key not in persona.memberships:
                continue
            m = persona.memberships[org_key] or MembershipSpec()
            if not m.active:
                continue
            if m.role == "admin":
                ranked.append((1, name))
            elif delegate is not None and delegate in m.permissions:
                ranked.append((0, name))
        return [_actor(table, name) for _rank, name in sorted(ranked)]

    return remedies(policy, _actor(table, actor_name), action, resource, target_of, candidates_of)


# --- Running ------------------------------------------------------------------

def _show(allowed: bool, reasons) -> str:
    return f"{'allow' if allowed else 'deny'} [{', '.join(sorted(reasons))}]"


def _run_row(policy: Policy, path: Path, index: int, line: int, table: TableSpec, row: RowSpec,
             listed_cache: dict | None) -> list[RowFailure]:
    """Decide one row; with a cache (None skips it) also compare authorized_actions."""
    actor = _actor(table, row.actor)
    if row.target is not None:
        resource = _target(table, row.target, row.permission)
        question = f"{row.actor} {row.action} account {row.target}"
        if row.permission is not None:
            question += f" (permission {row.permission})"
    else:
        resource = _organization(table, row.organization)
        question = f"{row.actor} {row.action} organization {row.organization}"

    def failure(expected: str, actual: str) -> RowFailure:
        return RowFailure(path, index, line, row.name, row.rule, question, expected, actual)

    expect_allowed = row.expect == "allow"
    expected_reasons = set(row.reasons or ())
    decision = policy.decide(actor, row.action, resource)
    failures = []
    if decision.allowed != expect_allowed or set(decision.reasons) != expected_reasons:
        failures.append(failure(_show(expect_allowed, expected_reasons), _show(decision.allowed, decision.reasons)))
    if row.remedies is not None:
        expected = [_remedy_of(r) for r in row.remedies]
        actual = [_remedy_of(r) for r in table_remedies(policy, table, row.actor, row.action, resource)]
        if actual != expected:
            failures.append(failure(f"remedies {expected}", f"remedies {actual}"))
    if listed_cache is not None and row.permission is None:
        # Rows often share actor and resource; authorized_actions is the slow query.
        key = (actor, resource)
        if key not in listed_cache:
            listed_cache[key] = policy.authorized_actions(actor, resource)
        listed = listed_cache[key]
        if (row.action in listed) != expect_allowed:
            verb = "lists" if expect_allowed else "does not list"
            failures.append(failure(f"authorized_actions {verb} {row.action!r}",
                                    f"authorized_actions = {listed}"))
    return failures


def _rows(policy_dir: Path, tables_path: Path | None, check_listed: bool = True):
    """Yield the failures of each row in turn; all tables are validated before the first."""
    files = table_files(policy_dir, tables_path)
    tables = [(path, load_table(path)) for path in files]
    policy = Policy(Path(policy_dir))
    for path, table in tables:  # a row may only expect a code the policy (or the service) tells
        unknown = sorted({r for row in table.rows for r in row.reasons or ()} - set(policy.messages))
        if unknown:
            raise TableError(f"{path}: unknown reason code(s) {unknown}; known: {sorted(policy.messages)}")
    listed_cache: dict | None = {} if check_listed else None
    for path, table in tables:
        lines = row_lines(path)
        for index, row in enumerate(table.rows):
            line = lines[index] if index < len(lines) else 0
            yield _run_row(policy, path, index, line, table, row, listed_cache)


def run_tables(policy_dir: Path, tables_path: Path | None = None) -> TableReport:
    """Run every row of every table against the policy in `policy_dir`.

    All files are read and validated before any row runs, so a broken table
    is reported as a TableError rather than half a run.
    """
    report = TableReport(files=table_files(policy_dir, tables_path))
    for failures in _rows(policy_dir, tables_path):
        report.failures.extend(failures)
        report.rows_run += 1
    return report


def first_failure(policy_dir: Path, tables_path: Path | None = None) -> RowFailure | None:
    """The first failing row, or None: enough to show that a policy change is caught.

    Decisions alone are cheap, so they are all tried before authorized_actions.
    """
    for check_listed in (False, True):
        for failures in _rows(policy_dir, tables_path, check_listed):
            if failures:
                return failures[0]
    return None
