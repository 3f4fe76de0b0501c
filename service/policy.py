"""The only module that talks to oso.

Loads `policies/*.polar`, names the loaded text by a hash (`policy_version`),
and answers decisions with reasons: `allow` decides, and only when it fails
is `deny_reason` asked why (both derived in portal.polar from each action's
rule, a list of named requirements; reasons.polar maps them to reason codes). A policy that does not load is an error at start
(never a silent allow-nothing), and a reload that fails keeps the running one.
"""
from __future__ import annotations

import bisect
import hashlib
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from oso import Oso, Variable
from polar.exceptions import OsoError

from service.catalog import ACCOUNT_ACTIONS, ACCOUNT_STATUSES, ORGANIZATION_ACTIONS, ROLES
from service.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts

log = logging.getLogger(__name__)

# Human-readable explanations of the reason codes the policy produces.
REASON_MESSAGES = {
    "unknown_actor": "The actor is not an account of this portal.",
    "actor_inactive": "The actor's account is not active.",
    "password_expired": "The actor's password has expired and must be changed.",
    "not_member": "The actor is not a member of the organization.",
    "not_admin": "Only an admin of the organization may do this.",
    "permission_not_granted": "The actor has not been granted this function for the organization.",
    "permission_unknown": "The function is not in this portal's catalog.",
    "action_unknown": "No such action on an account.",
    "permission_not_held": ("A delegated manager cannot grant a function it does not hold itself, "
                            "nor take over an account that holds one."),
    "self_action": "An account cannot do this to itself.",
    "target_status": "The account's status does not allow this action.",
    "last_admin": "The organization would be left with active members and no active admin.",
    "cannot_make_admin": "Only an admin can make or unmake admins.",
    "support_only": "Only portal support staff may do this.",
    "account_elsewhere": ("The account also belongs to an organization where the actor has no authority; "
                          "only this organization's link to it may be changed here."),
    "not_offered": "This portal does not offer this (its documents do not describe it).",
    "policy_error": "The policy could not be evaluated; denied to fail closed.",
    "policy_gap": "No rule allows this and the policy gave no reason.",
}

# The action lists come from the one catalog (service/catalog.py); re-exported for the modules that read them here.
__all__ = ["ACCOUNT_ACTIONS", "ORGANIZATION_ACTIONS", "Decision", "Policy", "PolicyCheckError", "PolicyLoadError",
           "REASON_MESSAGES", "check_policy"]


class PolicyLoadError(Exception):
    """The policy files could not be read or do not compile."""


class PolicyCheckError(PolicyLoadError):
    """The policy compiles but names what it does not define: refused, one line per problem ("file:line: what")."""

    def __init__(self, policy_dir: Path, problems: list[str]):
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__("\n".join([f"policy in {policy_dir} is refused ({count}):", *problems]))


# --- Checking what the rules name ----------------------------------------------------------------
#
# Polar would accept a misspelt requirement, reason code or action: a rule naming "status_allowz"
# simply never holds, and every decision under it is a denial without a reason. So when a policy
# loads, the names its rules use are read from the text (with their lines) and checked against
# what the policy defines and what the service knows; any problem refuses the policy.

# Each action's rules: (action, resource, [requirement, ...]); the unknown-action ones explain denials of
# actions no rule knows, so their requirements may be left undefined on purpose (they always fail).
_RULES = {"organization_rule": "organization", "account_rule": "account"}
_UNKNOWN_RULES = {"unknown_organization_action": "organization", "unknown_account_action": "account"}
# Predicates that name actions (first argument, and `action in [...]` / `action = "..."` in the clause),
# and which catalog each action must be in.
_ACTION_PREDICATES = {**_RULES, **_UNKNOWN_RULES, "offered": "organization", "status_allows": "account",
                      "would_orphan": "account", "admin_action": "account", "account_wide": "account",
                      "captures": "account"}
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_HEAD = re.compile(r"\s*(\w+)\s*\(")
_FIRST_LITERAL = re.compile(r'\w+\s*\(\s*"(\w+)"')
_ACTION_LIST = re.compile(r"\baction\s+in\s+\[([^\]]*)\]")
_ACTION_EQUALS = re.compile(r'\baction\s*!?=\s*"(\w+)"')


@dataclass(frozen=True)
class _Statement:
    path: Path
    head: str
    text: str      # the statement with comments blanked out
    offset: int    # where it starts in the file
    lines: tuple[int, ...]  # offsets of the file's line starts

    def line(self, at: int = 0) -> int:
        return bisect.bisect_right(self.lines, self.offset + at)

    def where(self, at: int = 0) -> str:
        return f"{self.path}:{self.line(at)}"

    def literals(self, start: int = 0, end: int | None = None) -> list[tuple[str, int]]:
        """The string literals of text[start:end], with their offsets in the statement."""
        return [(m.group(1), m.start()) for m in _STRING.finditer(self.text, start, len(self.text) if end is None else end)]

    def first_argument(self) -> str | None:
        match = _FIRST_LITERAL.match(self.text.lstrip())
        return match.group(1) if match else None

    def requirement_list(self) -> tuple[int, int] | None:
        """Where the rule head's literal list of requirement names is: (start, end) in text."""
        depth, start = 0, None
        for i, char in enumerate(self.text):
            if char == '"':
                continue
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return None  # the head closed without a list
            elif char == "[" and depth == 1 and start is None:
                start = i
            elif char == "]" and depth == 1 and start is not None:
                return start, i
        return None


def _blank_comments(text: str) -> str:
    """`#` to the end of the line becomes spaces, outside strings: offsets and lines stay where they were."""
    out, in_string, comment = [], False, False
    for i, char in enumerate(text):
        if comment:
            if char == "\n":
                comment = False
                out.append(char)
            else:
                out.append(" ")
            continue
        if char == '"' and (i == 0 or text[i - 1] != "\\"):
            in_string = not in_string
        elif char == "#" and not in_string:
            comment = True
            out.append(" ")
            continue
        out.append(char)
    return "".join(out)


def _statements(path: Path) -> list[_Statement]:
    code = _blank_comments(path.read_text(encoding="utf-8"))
    lines = tuple([0, *(i + 1 for i, char in enumerate(code) if char == "\n")])
    found, start, in_string = [], 0, False
    for i, char in enumerate(code):
        if char == '"' and (i == 0 or code[i - 1] != "\\"):
            in_string = not in_string
        elif char == ";" and not in_string:
            text = code[start:i]
            head = _HEAD.match(text)
            if head:
                found.append(_Statement(path, head.group(1), text, start, lines))
            start = i + 1
    return found


def check_policy(files: list[Path]) -> list[str]:
    """Every name a rule uses that the policy or the service does not know, as "file:line: problem"."""
    statements = [s for path in files for s in _statements(path)]
    defined = {s.first_argument() for s in statements if s.head == "requirement"} - {None}
    told = {s.first_argument() for s in statements if s.head in ("reason", "never_told")} - {None}
    named: list[tuple[str, _Statement, int, bool]] = []  # (requirement, statement, offset, in a known rule)
    for s in statements:
        if s.head in _RULES or s.head in _UNKNOWN_RULES:
            span = s.requirement_list()
            if span is not None:
                named += [(name, s, at, s.head in _RULES) for name, at in s.literals(*span)]
    problems: list[str] = []
    for name, s, at, known in named:
        if known and name not in defined:
            problems.append(f'{s.where(at)}: requirement "{name}" is named by a rule but never defined '
                            f'(no requirement("{name}", ...))')
        elif name not in told:
            problems.append(f'{s.where(at)}: requirement "{name}" has no reason code: give it '
                            f'reason("{name}", CODE) or declare never_told("{name}") in reasons.polar')
    known_names = defined | {name for name, *_ in named}
    catalogs = {"organization": set(ORGANIZATION_ACTIONS), "account": set(ACCOUNT_ACTIONS)}
    for s in statements:
        if s.head in ("reason", "told_after", "never_told"):
            literals = s.literals()
            for name, at in literals[: 1 if s.head == "reason" else 2]:
                if name not in known_names:
                    problems.append(f'{s.where(at)}: {s.head} names "{name}", a requirement no rule names and '
                                    f"none defines")
            if s.head == "reason" and len(literals) >= 2 and literals[1][0] not in REASON_MESSAGES:
                problems.append(f'{s.where(literals[1][1])}: reason code "{literals[1][0]}" is not one the service '
                                f"knows (REASON_MESSAGES in service/policy.py)")
        kind = _ACTION_PREDICATES.get(s.head)
        if kind is None:
            continue
        span = s.requirement_list() if s.head in _RULES or s.head in _UNKNOWN_RULES else None
        actions = []
        first = _FIRST_LITERAL.match(s.text, len(s.text) - len(s.text.lstrip()))
        if first:
            actions.append((first.group(1), first.start(1) - 1))
        for match in _ACTION_LIST.finditer(s.text):
            actions += [(name, at) for name, at in s.literals(match.start(1), match.end(1))]
        actions += [(m.group(1), m.start(1) - 1) for m in _ACTION_EQUALS.finditer(s.text)]
        for action, at in actions:
            if span and span[0] <= at <= span[1]:
                continue
            if action not in catalogs[kind]:
                problems.append(f'{s.where(at)}: action "{action}" is not an {kind} action of the catalog '
                                f"(service/catalog.py)")
    return problems


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]
    policy_version: str
    # The (actor, resource) facts the policy decided on, for the decision log to record so that
    # `policy diff` can replay the decision (issue 15); not part of the answer or of equality.
    facts: tuple | None = field(default=None, compare=False, repr=False)

    def reason_objects(self) -> list[dict[str, str]]:
        return [{"code": code, "message": REASON_MESSAGES.get(code, code)} for code in self.reasons]


def policy_files(policy_dir: Path) -> list[Path]:
    return sorted(p for p in Path(policy_dir).glob("*.polar") if p.is_file())


def version_of(files: list[Path]) -> str:
    """A hash of the files' names and contents: the same text gives the same version in every process."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _build(files: list[Path]) -> Oso:
    oso = Oso()
    oso.register_class(ActorFacts, name="Account")
    oso.register_class(MembershipFacts, name="Membership")
    oso.register_class(OrganizationFacts, name="Organization")
    oso.register_class(AccountFacts, name="TargetAccount")
    oso.register_class(LinkFacts, name="Link")
    oso.load_files([str(p) for p in files])
    return oso


class _Engine:
    """One loaded policy and the answers it gave, swapped in and out as a whole.

    Answers are memoized keyed by exactly what Polar is handed: the facts are frozen
    dataclasses holding everything the policy reads (and nothing it could read
    elsewhere), so equal keys get equal answers, and a changed fact is a different
    key. The memo belongs to this engine, so a reload can never serve an old answer.
    An evaluation error raises through the memo and is never remembered.
    """

    def __init__(self, oso: Oso, version: str, memo_size: int):
        self.oso = oso
        self.version = version
        self.decide = lru_cache(maxsize=memo_size)(self._decide)
        self.authorized_actions = lru_cache(maxsize=memo_size)(self._authorized_actions)
        self.target_states = lru_cache(maxsize=256)(self._target_states)
        self.account_wide = lru_cache(maxsize=64)(lambda action: self.oso.query_rule_once("account_wide", action))

    def _target_states(self, action: str, portal: str) -> frozenset[tuple[str, str]]:
        """The (status, role) pairs of a target account of `portal` for which the policy's `status_allows` holds."""
        org = OrganizationFacts("", (), None, 0, False, portal=portal)
        return frozenset(
            (status, role) for status in ACCOUNT_STATUSES for role in ROLES
            if self.oso.query_rule_once("status_allows", action, AccountFacts("", org, role, status))
        )

    def _decide(self, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> Decision:
        if self.oso.is_allowed(actor, action, resource):
            return Decision(True, (), self.version, (actor, resource))
        reasons = _reasons(self.oso, actor, action, resource)
        if not reasons:
            log.error("policy gap: %s %s %r denied without a reason", actor.username, action, resource)
            reasons = ("policy_gap",)
        return Decision(False, reasons, self.version, (actor, resource))

    def _authorized_actions(self, actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> tuple[str, ...]:
        allowed = self.oso.authorized_actions(actor, resource)
        if isinstance(resource, OrganizationFacts):
            order = [*resource.catalog, *ORGANIZATION_ACTIONS]
        else:
            order = list(ACCOUNT_ACTIONS)
        unlisted = set(allowed) - set(order)
        if unlisted:  # tests/test_catalog.py keeps this from happening; never drop one silently
            log.error("policy allows actions the catalog lacks (service/catalog.py): %s", sorted(unlisted))
        return tuple(a for a in order if a in allowed)


def _reasons(oso: Oso, actor, action, resource) -> tuple[str, ...]:
    found = {
        result["bindings"]["code"]
        for result in oso.query_rule("deny_reason", actor, action, resource, Variable("code"))
    }
    # A stable order (the order of REASON_MESSAGES) so answers compare equal across runs.
    rank = {code: i for i, code in enumerate(REASON_MESSAGES)}
    return tuple(sorted(found, key=lambda code: (rank.get(code, len(rank)), code)))


class Policy:
    """A loaded policy. Thread-safe: a reload swaps in a fully built engine with an empty memo."""

    MEMO_SIZE = 65536

    def __init__(self, policy_dir: Path, memo_size: int = MEMO_SIZE, *, check: bool = True):
        """`check=False` only for a policy that is compared with, never served (`policy diff`'s base, which
        may predate a check)."""
        self.policy_dir = Path(policy_dir)
        self.memo_size = memo_size
        self.check = check
        self._engine = self._load()

    @property
    def version(self) -> str:
        return self._engine.version

    def _load(self) -> _Engine:
        files = policy_files(self.policy_dir)
        if not files:
            raise PolicyLoadError(f"no .polar files in {self.policy_dir}")
        try:
            engine = _Engine(_build(files), version_of(files), self.memo_size)
            problems = check_policy(files) if self.check else []
        except (OsoError, OSError) as exc:
            raise PolicyLoadError(f"policy in {self.policy_dir} does not load: {exc}") from exc
        if problems:
            raise PolicyCheckError(self.policy_dir, problems)
        return engine

    def reload(self) -> str:
        """Load the files again; on error the running policy stays in force and the error is raised."""
        engine = self._load()
        self._engine = engine  # one reference swap: a request sees the old engine or the new, never a mix
        return engine.version

    def decide(self, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> Decision:
        """Allow or deny, with every reason the policy gives for a denial."""
        engine = self._engine
        try:
            return engine.decide(actor, action, resource)
        except OsoError:
            log.exception("policy evaluation failed; denying")
            return Decision(False, ("policy_error",), engine.version)

    def authorized_actions(self, actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> list[str]:
        """Every action the actor may take on the resource, in catalog order."""
        try:
            return list(self._engine.authorized_actions(actor, resource))
        except OsoError:
            log.exception("policy evaluation failed; no actions")
            return []

    def target_states(self, action: str, portal: str) -> frozenset[tuple[str, str]]:
        """The (status, role) pairs of a target account of `portal` that `action` applies to, read from the
        policy's `status_allows` rule, so that database filters (AuthZEN search) follow the policy's own table."""
        try:
            return self._engine.target_states(action, portal)
        except OsoError:
            log.exception("policy evaluation failed; no target states")
            return frozenset()

    def account_wide(self, action: str) -> bool:
        """Whether `action` reaches the whole account (portal.polar's `account_wide`), for database filters
        that must follow the reach (AuthZEN search); on an evaluation error, the stricter answer."""
        try:
            return self._engine.account_wide(action)
        except OsoError:
            log.exception("policy evaluation failed; treating %r as account-wide", action)
            return True

    def oso(self) -> Oso:
        """The engine itself, for the plain path the fast path is tested against."""
        return self._engine.oso
