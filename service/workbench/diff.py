"""The impact of a policy change before it ships: `portal-authz policy diff`.

Both policies answer the same questions, and every question whose answer (allowed,
or the reason codes) differs is listed, grouped by action and by the requirements
whose outcome changed. The questions come from three places:

  tables  every row of the decision tables (<dir>/tests/*.yaml of both folders);
  log     the recorded decision log: each entry that carries the facts it was
          decided on (`facts`; older entries lack them) is asked again as it was;
  space   a generated space of small organizations per portal profile (each
          organization carries the profile's id as its portal, so a rule scoped
          to one portal changes that portal's questions only): for each
          profile, actors of every standing, role, grant and delegate situation
          (in the organization asked about and in a second one), target accounts
          of every role, status, grant and link, and the last-admin situations
          (sole admin with members left, sole admin alone, two admins), asked
          every action of the catalog (organizations) and of the admin duties
          (accounts), grant/revoke with no, a known and an unknown function, and
          one action no rule knows.

A policy that does not load is a `PolicyLoadError` (the CLI exits 2 with it on one line).
"""
from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Iterable, Iterator

from service.kernel.catalog import ACCOUNT_ACTIONS, ACCOUNT_STATUSES, ORGANIZATION_ACTIONS
from service.kernel.facts import UNREAD, AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts
from service.policy import Decision, Policy
from service.workbench.explain import explain

UNKNOWN_ACTION = "frobnicate"  # an action no rule knows: the fail-closed answer must not change either
UNKNOWN_FUNCTION = "teleport"  # a function no catalog holds


@dataclass(frozen=True)
class Question:
    source: str  # "tables" | "log" | "space"
    label: str
    actor: ActorFacts
    action: str
    resource: OrganizationFacts | AccountFacts

    @property
    def kind(self) -> str:
        return "account" if isinstance(self.resource, AccountFacts) else "organization"


@dataclass(frozen=True)
class Change:
    question: Question
    base: Decision
    new: Decision
    group: str  # the requirements whose outcome changed, or what changed when the rules differ


@dataclass
class DiffReport:
    evaluated: int = 0
    by_source: dict[str, int] = field(default_factory=lambda: {"tables": 0, "log": 0, "space": 0})
    log_skipped: int = 0  # logged decisions without recorded facts (older log entries): not replayable
    # Distinct shapes among the questions (the new policy's memo keys, `Policy.memo_key`): each is evaluated
    # once per policy when the policy memoizes by shape, however many questions it stands for.
    shapes: int = 0
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0
    base_version: str = ""
    new_version: str = ""

    @property
    def summary(self) -> str:
        return f"{len(self.changes)} decisions changed (of {self.evaluated} evaluated)"

    def groups(self) -> dict[tuple[str, str, str], list[Change]]:
        grouped: dict[tuple[str, str, str], list[Change]] = defaultdict(list)
        for change in self.changes:
            grouped[(change.question.kind, change.question.action, change.group)].append(change)
        return dict(sorted(grouped.items()))

    def text(self) -> str:
        lines = [f"policy diff: base {self.base_version} -> new {self.new_version}"]
        for (kind, action, group), changes in self.groups().items():
            lines.append(f"{kind} {action!r}, {group}: {len(changes)} changed")
            for change in changes:
                lines.append(f"  [{change.question.source}] {change.question.label}")
                lines.append(f"      base: {_show(change.base)}   new: {_show(change.new)}")
        sources = ", ".join(f"{name} {count}" for name, count in self.by_source.items())
        skipped = f"; {self.log_skipped} logged decisions had no recorded facts" if self.log_skipped else ""
        lines.append(f"evaluated {sources} ({self.shapes} distinct shapes) in {self.seconds:.1f} s{skipped}")
        lines.append(self.summary)
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {
            "base_version": self.base_version, "new_version": self.new_version,
            "evaluated": self.evaluated, "changed": len(self.changes), "by_source": self.by_source,
            "log_skipped": self.log_skipped, "shapes": self.shapes, "seconds": round(self.seconds, 3),
            "changes": [
                {"source": c.question.source, "question": c.question.label, "kind": c.question.kind,
                 "action": c.question.action, "group": c.group,
                 "base": {"allowed": c.base.allowed, "reasons": list(c.base.reasons)},
                 "new": {"allowed": c.new.allowed, "reasons": list(c.new.reasons)}}
                for c in self.changes
            ],
            "summary": self.summary,
        }


def _show(decision: Decision) -> str:
    return ("allow" if decision.allowed else "deny") + f" [{', '.join(decision.reasons)}]"


# --- (a) the decision tables ----------------------------------------------------

def table_questions(folders: Iterable[Path], tables_path: Path | None = None) -> Iterator[Question]:
    """Every row of the tables of each policy folder (or of `tables_path`: a table file or folder)."""
    from service.workbench.tables import _actor, _organization, _target, load_table, table_files, TableError

    seen: set[str] = set()
    for folder in folders:
        try:
            files = table_files(folder, tables_path)
        except TableError:
            continue  # a folder without tables adds no questions
        for path in files:
            if path.name in seen:
                continue  # the same table in both folders: asked once (the new folder's copy comes first)
            seen.add(path.name)
            table = load_table(path)
            for row in table.rows:
                actor = _actor(table, row.actor)
                if row.target is not None:
                    resource = _target(table, row.target, row.permission)
                else:
                    resource = _organization(table, row.organization)
                yield Question("tables", f"{path.name}: \"{row.name}\"", actor, row.action, resource)


# --- (b) the decision log ---------------------------------------------------------

def _org_from(data: dict, portal: str) -> OrganizationFacts:
    """A head count logged as null was not read for that decision: UNREAD, so that a policy whose rule for the
    action reads it fails closed (policy_error) on the replay rather than reading 0 or false."""
    admins, members = data["active_admins"], data["has_active_members"]
    return OrganizationFacts(data["key"], tuple(data["catalog"]), data["delegate_permission"],
                             UNREAD if admins is None else admins, UNREAD if members is None else members,
                             data.get("offers_links", False), data.get("offers_subordinates", False),
                             portal=data.get("portal", portal))


def facts_from_json(data: dict, portal: str = "") -> tuple[ActorFacts, OrganizationFacts | AccountFacts]:
    """The inverse of explain.facts_json: the facts a logged decision was made on. `portal` is the log
    entry's portal, for facts recorded before organizations carried theirs."""
    a = data["actor"]
    actor = ActorFacts(a["username"], a["exists"], a["status"], a["credentials_current"], a["support"],
                       tuple(MembershipFacts(m["organization"], m["role"], m["active"], tuple(m["permissions"]))
                             for m in a["memberships"]),
                       a.get("terms_accepted", True))  # logged before it was a fact: what that policy assumed
    r = data["resource"]
    if data["resource_kind"] == "organization":
        return actor, _org_from(r, portal)
    links = tuple(LinkFacts(_org_from(link["organization"], portal), link["role"], tuple(link["permissions"]))
                  for link in r["links"])
    return actor, AccountFacts(r["username"], _org_from(r["organization"], portal), r["role"], r["status"],
                               r["permission"], links, r.get("terms_accepted", True))


def log_questions(path: Path, report: DiffReport) -> Iterator[Question]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                facts = entry.get("facts")
            except (json.JSONDecodeError, AttributeError):
                report.log_skipped += 1
                continue
            if not facts:
                report.log_skipped += 1
                continue
            try:
                actor, resource = facts_from_json(facts, entry.get("portal") or "")
            except (KeyError, TypeError):
                report.log_skipped += 1
                continue
            res = entry.get("resource") or {}
            label = (f"{path.name}:{number} {entry.get('time', '')} {entry.get('portal')}: {entry.get('actor')} "
                     f"{entry.get('action')} {res.get('type')} {res.get('id')}")
            yield Question("log", label, actor, entry["action"], resource)


# --- (c) the generated space ----------------------------------------------------------

@dataclass(frozen=True)
class SpaceProfile:
    """What of a portal profile shapes a decision: its id (the organizations' portal), its catalog, its
    delegating function, what it offers."""

    name: str
    catalog: tuple[str, ...]
    delegate_permission: str | None
    offers_links: bool
    offers_subordinates: bool


# (active_admins, has_active_members) of the organization asked about: R3's situations.
ORG_SITUATIONS = ((2, True), (1, True), (1, False))


def space_questions(profile: SpaceProfile) -> Iterator[Question]:
    cat = profile.catalog
    f1 = cat[0]
    f2 = cat[1] if len(cat) > 1 else cat[0]
    dele = profile.delegate_permission

    def org(key: str, admins: int = 2, members: bool = True) -> OrganizationFacts:
        return OrganizationFacts(key, cat, dele, admins, members, profile.offers_links, profile.offers_subordinates,
                                 portal=profile.name)

    O, E = org("O"), org("E")
    # Memberships in O an actor may have: none, admin, plain member, member with a function,
    # delegate, delegate holding a function, an admin whose link is no longer active.
    in_o = {"none": None, "admin": ("admin", True, ()), "member": ("member", True, ()),
            "member+f1": ("member", True, (f1,)), "inactive-admin": ("admin", False, ())}
    if dele:
        in_o["delegate"] = ("member", True, (dele,))
        in_o["delegate+f1"] = ("member", True, (dele, f1))
    actors: list[tuple[str, ActorFacts]] = [("an unknown actor", ActorFacts.unknown("ghost"))]
    n = 0
    for (o_name, o_link), e_admin in product(in_o.items(), (False, True)):
        if e_admin and o_name not in ("admin", "delegate", "delegate+f1"):
            continue  # authority in a second organization only changes the reach of those who have some in O
        n += 1
        memberships = []
        if o_link:
            memberships.append(MembershipFacts("O", *o_link))
        if e_admin:
            memberships.append(MembershipFacts("E", "admin", True, ()))
        label = f"{o_name} of O" + (", admin of E" if e_admin else "")
        actors.append((label, ActorFacts(f"a{n}", True, "active", True, False, tuple(memberships), True)))
    admin_o = (MembershipFacts("O", "admin", True, ()),)
    actors += [
        ("a disabled admin of O", ActorFacts("x1", True, "disabled", True, False, admin_o, True)),
        ("an admin of O whose password expired", ActorFacts("x2", True, "active", False, False, admin_o, True)),
        ("support staff", ActorFacts("s1", True, "active", True, True, (), True)),
        ("disabled support staff", ActorFacts("s2", True, "disabled", True, True, (), True)),
    ]

    org_actions = (*ORGANIZATION_ACTIONS, *cat, UNKNOWN_ACTION)
    for label, actor in actors:
        for action in org_actions:
            yield Question("space", f"{profile.name}: {label} {action} organization O", actor, action, O)

    def account_asks() -> Iterator[tuple[str, str | None]]:
        for action in (*ACCOUNT_ACTIONS, UNKNOWN_ACTION):
            if action in ("grant", "revoke"):
                for permission in (None, f2, UNKNOWN_FUNCTION):
                    yield action, permission
            else:
                yield action, None

    asks = list(account_asks())
    # Target accounts: role x status x grants in O x other links, and R3's situations for active admins.
    targets: list[tuple[str, str, str, tuple, tuple, tuple[int, bool]]] = []
    elsewhere = {"": (), ", member of E": (("E", "member", (f2,)),), ", admin of E": (("E", "admin", ()),)}
    for role, status, grants, (e_label, e_links) in product(("admin", "member"), ACCOUNT_STATUSES,
                                                              ((), (f2,)), elsewhere.items()):
        if role == "admin" and grants:
            continue  # an admin holds the whole catalog: a grant adds nothing
        situations = ORG_SITUATIONS if (role, status) == ("admin", "active") else ORG_SITUATIONS[:1]
        for situation in situations:
            targets.append((role, status, e_label, grants, e_links, situation))

    def target(username: str, role, status, grants, e_links, situation, permission) -> AccountFacts:
        o = org("O", *situation)
        links = [] if status == "removed" else [LinkFacts(o, role, grants)]
        for key, link_role, link_grants in e_links:
            e_situation = (1, True) if link_role == "admin" else (2, True)
            links.append(LinkFacts(org(key, *e_situation), link_role, link_grants))
        return AccountFacts(username, o, role, status, permission,
                            tuple(sorted(links, key=lambda link: link.organization.key)), True)

    for label, actor in actors:
        for role, status, e_label, grants, e_links, situation in targets:
            described = (f"{role} {status}" + (f" holding {', '.join(grants)}" if grants else "") + e_label
                         + ("" if situation == (2, True) else
                            f" (O: {situation[0]} active admin, {'members' if situation[1] else 'no members'} left)"))
            for action, permission in asks:
                what = f" {permission}" if permission else ""
                yield Question("space", f"{profile.name}: {label} {action}{what} account t ({described})",
                               actor, action, target("t", role, status, grants, e_links, situation, permission))
        # The actor's own account (self-actions, R5, R21): as it stands in O, active and removed.
        if not actor.exists:
            continue  # an unknown username has no account to act on
        own = next((m for m in actor.memberships if m.organization == "O"), None)
        role = own.role if own else "member"
        for status in ("active", "removed"):
            for action, permission in asks:
                what = f" {permission}" if permission else ""
                yield Question("space", f"{profile.name}: {label} {action}{what} own account ({status})",
                               actor, action,
                               target(actor.username, role, status, (), (), (2, True), permission))


def profiles_of(config, names: Iterable[str] | None = None) -> list[SpaceProfile]:
    wanted = set(names or ())
    out = []
    for name, profile in config.portals.items():
        if wanted and name not in wanted:
            continue
        out.append(SpaceProfile(name, tuple(profile.catalog), profile.delegate_permission,
                                profile.links, profile.admin_created_accounts))
    return out


# --- Running ------------------------------------------------------------------------

def _group(base: Policy, new: Policy, question: Question) -> str:
    """The requirements whose outcome changed; what the rules of the action became when they differ."""
    try:
        before = explain(base, question.actor, question.action, question.resource, whole=True)
        after = explain(new, question.actor, question.action, question.resource, whole=True)
    except Exception:  # a base policy without requirement rules cannot be explained; group by action only
        return "rule changed"
    def outcomes(e) -> dict[str, bool]:
        found: dict[str, bool] = {}
        for rule in e.rules:
            for req in rule.requirements:
                found[req.name] = found.get(req.name, True) and req.holds
        return found
    b, a = outcomes(before), outcomes(after)
    changed = sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))
    if changed:
        return "requirement " + ", ".join(changed)
    if [[r.name for r in rule.requirements] for rule in before.rules] != \
            [[r.name for r in rule.requirements] for rule in after.rules]:
        return "rule's requirements changed"
    return "reason codes changed"


# Below this many questions a diff is answered in this process: starting workers would cost more.
PARALLEL_FROM = 5000


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _load(base_dir: Path, new_dir: Path) -> tuple[Policy, Policy]:
    base = Policy(Path(base_dir), check=False)  # the policy before the change is compared with, not served
    new = Policy(Path(new_dir))
    if new.version == base.version:
        new = base  # the same text: one engine, each question evaluated once
    return base, new


def _compare(base: Policy, new: Policy, questions: Iterable[tuple[int, Question]]) -> list[tuple]:
    """(index, base answer, new answer, group) of each question whose answer changed."""
    changed = []
    for index, question in questions:
        before = base.decide(question.actor, question.action, question.resource)
        after = new.decide(question.actor, question.action, question.resource)
        if before.allowed != after.allowed or before.reasons != after.reasons:
            changed.append((index, (before.allowed, before.reasons), (after.allowed, after.reasons),
                            _group(base, new, question)))
    return changed


_WORKER: dict = {}


def _start_worker(base_dir: str, new_dir: str) -> None:
    _WORKER["policies"] = _load(Path(base_dir), Path(new_dir))


def _work(part: list[tuple[int, Question]]) -> list[tuple]:
    return _compare(*_WORKER["policies"], part)


def run_diff(base_dir: Path, new_dir: Path, *, log_path: Path | None = None,
             profiles: Iterable[SpaceProfile] = (), space_actions: Iterable[str] | None = None,
             jobs: int | None = None) -> DiffReport:
    """Ask both policies every question; PolicyLoadError when either does not load.

    `space_actions` limits the generated space (never the tables or the log) to these actions. A large
    diff is shared among `jobs` worker processes (default: one per CPU), each with both policies loaded
    and its own memo: each takes consecutive questions (a profile's questions stay together, so a worker
    answers the questions of one shape from its memo); the report is the same whatever their number.
    """
    only = set(space_actions) if space_actions else None
    started = time.perf_counter()
    base, new = _load(base_dir, new_dir)
    report = DiffReport(base_version=base.version, new_version=new.version)
    shapes: set[tuple] = set()

    def questions() -> Iterator[Question]:
        yield from table_questions([Path(new_dir), Path(base_dir)])
        if log_path is not None:
            yield from log_questions(Path(log_path), report)
        for profile in profiles:
            for question in space_questions(profile):
                if only is None or question.action in only:
                    yield question

    asked = list(enumerate(questions()))
    for _index, question in asked:
        report.evaluated += 1
        report.by_source[question.source] += 1
        shapes.add(new.memo_key(question.actor, question.action, question.resource))
    jobs = min(jobs or default_jobs(), max(1, len(asked) // (PARALLEL_FROM // 2)))
    if jobs <= 1 or len(asked) < PARALLEL_FROM:
        changed = _compare(base, new, asked)
    else:
        import multiprocessing

        size = -(-len(asked) // jobs)
        parts = [asked[i:i + size] for i in range(0, len(asked), size)]
        # Spawned, not forked: the caller may run threads (a test runner's), which a fork would copy mid-step.
        with multiprocessing.get_context("spawn").Pool(len(parts), _start_worker,
                                                       (str(base_dir), str(new_dir))) as pool:
            changed = [c for part in pool.map(_work, parts) for c in part]
    by_index = dict(asked)
    for index, before, after, group in sorted(changed, key=lambda c: c[0]):
        report.changes.append(Change(by_index[index], Decision(*before, base.version),
                                     Decision(*after, new.version), group))
    report.shapes = len(shapes)
    report.seconds = time.perf_counter() - started
    return report
