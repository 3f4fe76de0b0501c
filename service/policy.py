"""The only module that talks to oso.

Loads `policies/*.polar`, names the loaded text by a hash (`policy_version`),
and answers decisions with reasons: `allow` decides, and only when it fails
is `deny_reason` asked why (both derived in portal.polar from each action's
rule, a list of named requirements; reasons.polar maps them to reason codes). A policy that does not load is an error at start
(never a silent allow-nothing), and a reload that fails keeps the running one.

Beside the authored files it loads the clauses generated from their rule lists
(service/policy_generate.py), which stand for `allow` and `deny_reason` and are
asked instead; and it memoizes answers by the facts' shape, names renamed
(service/canonical.py), unless the policy reads names other than by equality.

A memo miss is answered by the same text compiled to Python (service/polar_compile.py)
when it compiles; oso stays the reference: it loads and validates the text, answers the
workbench, and answers any question the compiled rules are not certain of.

Which questions can read an organization's head counts is derived from the same text
(service/fact_reads.py, `Policy.reads_head_counts`): the facts statement leaves them out of a
request none of whose questions can, and the memo leaves them out of such a question's key.
"""
from __future__ import annotations

import bisect
import hashlib
import logging
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from oso import Oso, Variable
from polar.exceptions import OsoError
from polar.ffi import PolarSource as Source

from service import canonical, fact_reads, policy_generate
from service.kernel.catalog import ACCOUNT_ACTIONS, ACCOUNT_STATUSES, ORGANIZATION_ACTIONS, ROLES
from service.kernel.facts import (HEAD_COUNT, AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts,
                                  UnreadFact)
from service.polar_compile import CompiledPolicy, NotCompiled, Out, compile_policy

log = logging.getLogger(__name__)

# The service's own reason codes, told when the policy cannot answer; every other code and its message is the
# policy's (reasons.polar `message`), read when it loads.
SERVICE_MESSAGES = {
    "policy_error": "The policy could not be evaluated; denied to fail closed.",
    "policy_gap": "No rule allows this and the policy gave no reason.",
}
# The messages of each policy text loaded in this process, by policy version (a hash of the text, so a version's
# messages never change): a decision carries only its version, and its reasons are worded by that text.
_MESSAGES: dict[str, dict[str, str]] = {}


def messages_of(version: str) -> dict[str, str]:
    """The reason codes of the policy of that version and the service's, with their messages, in the order a
    denial lists them (the service's own last)."""
    return _MESSAGES.get(version, SERVICE_MESSAGES)


__all__ = ["Decision", "Policy", "PolicyCheckError", "PolicyLoadError", "SERVICE_MESSAGES", "check_policy",
           "messages_of"]


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
_REMEDY_ACTION = re.compile(r'\baction\s*:\s*"(\w+)"')


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
    worded = {s.first_argument() for s in statements if s.head == "message"} - {None}
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
            if s.head == "reason" and len(literals) >= 2 and literals[1][0] not in worded:
                problems.append(f'{s.where(literals[1][1])}: reason code "{literals[1][0]}" has no message: give it '
                                f'message("{literals[1][0]}", TEXT) in reasons.polar')
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
                                f"(service/kernel/catalog.py)")
    # A remedy (the change that satisfies a requirement) names a defined requirement, and a change that is an
    # account action of the catalog or one the policy declares self-service.
    self_served = {name for s in statements if s.head == "self_service" for name, _at in s.literals()}
    for s in statements:
        if s.head != "remedy":
            continue
        name = s.first_argument()
        if name not in defined:
            problems.append(f'{s.where(len(s.text) - len(s.text.lstrip()))}: remedy names "{name}", a requirement '
                            f"none defines")
        for match in _REMEDY_ACTION.finditer(s.text):
            if match.group(1) not in ACCOUNT_ACTIONS and match.group(1) not in self_served:
                problems.append(f'{s.where(match.start(1))}: remedy change "{match.group(1)}" is neither an account '
                                f"action of the catalog nor a self_service change")
    return problems


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]
    policy_version: str
    # The (actor, resource) facts the policy decided on, for the decision log to record so that
    # `policy diff` can replay the decision; not part of the answer or of equality.
    facts: tuple | None = field(default=None, compare=False, repr=False)

    def reason_objects(self) -> list[dict[str, str]]:
        messages = messages_of(self.policy_version)
        return [{"code": code, "message": messages.get(code, code)} for code in self.reasons]


def policy_files(policy_dir: Path) -> list[Path]:
    return sorted(p for p in Path(policy_dir).glob("*.polar") if p.is_file())


def version_of(files: list[Path]) -> str:
    """A hash of the files' names and contents: the same text gives the same version in every process."""
    return _version([(path, path.read_bytes()) for path in files])


def _version(contents: list[tuple[Path, bytes]]) -> str:
    digest = hashlib.sha256()
    for path, content in contents:
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(content)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


# The fact classes handed to Polar, by the names the policy knows them by.
POLAR_CLASSES = {
    "Account": ActorFacts,
    "Membership": MembershipFacts,
    "Organization": OrganizationFacts,
    "TargetAccount": AccountFacts,
    "Link": LinkFacts,
}
canonical.prepare(POLAR_CLASSES.values())
# The names the policy knows each fact class by, and the attributes that hold an organization's head counts.
_POLAR_NAMES = {cls: name for name, cls in POLAR_CLASSES.items()}
HEAD_COUNTS = frozenset(f.name for cls in POLAR_CLASSES.values() for f in fields(cls) if f.metadata.get(HEAD_COUNT))
# The resource types of a question (service/domain/decisions.py `Resource.type`), as fact classes.
_RESOURCE_CLASSES = {"organization": OrganizationFacts, "account": AccountFacts}
_READS_KEPT = 4096  # derivations kept per engine, by action and resource class (an action never named is one)


GENERATED = "<generated from the rule lists>"


def _build(files: list[Path], texts: list[str] | None = None, generated: str | None = None) -> Oso:
    """An engine with the fact classes registered and the files loaded (from `texts`, their contents
    as already read, when given: the text analysed and versioned is then the text loaded), and beside
    them the clauses generated from their rule lists, if any."""
    oso = Oso()
    for name, cls in POLAR_CLASSES.items():
        oso.register_class(cls, name=name)
    if texts is None:
        oso.load_files([str(p) for p in files])
    else:
        sources = [Source(text, str(path)) for path, text in zip(files, texts)]
        if generated is not None:
            sources.append(Source(generated, GENERATED))
        oso._load_sources(sources)
    return oso


class _Asked:
    """A question as the memo sees it: equal to another when their keys are equal, carrying its own
    facts so that a miss is evaluated on exactly what the caller asked about."""

    __slots__ = ("key", "hash", "facts")

    def __init__(self, key: tuple, facts: tuple):
        self.key = key
        self.hash = hash(key)
        self.facts = facts

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other) -> bool:
        return self.key == other.key


class _Engine:
    """One loaded policy and the answers it gave, swapped in and out as a whole.

    Answers are memoized keyed by the facts Polar is handed: frozen dataclasses holding
    everything the policy reads (and nothing it could read elsewhere), so equal keys get
    equal answers, and a changed fact is a different key. When the policy reads names
    only by equality (`canonical.renaming_hazards` finds nothing), the key is the facts'
    shape, their names renamed consistently (`canonical.shape_key`), so that questions
    differing only in who is asked about share one entry; otherwise it is the facts
    themselves. The memo belongs to this engine, so a reload can never serve an old
    answer. An evaluation error raises through the memo and is never remembered.
    """

    def __init__(self, oso: Oso, version: str, memo_size: int, by_shape: bool = False, generated: bool = False,
                 compiled: CompiledPolicy | None = None, reads: fact_reads.FactReads | None = None):
        self.oso = oso
        # What a question can read (service/fact_reads.py); without it, every question reads everything.
        self.fact_reads = reads
        self._reads: dict[tuple, bool] = {}  # by action and resource class, at most _READS_KEPT
        self._derived: dict[tuple, bool] = {}  # by the action's abstract value: bounded by the policy's literals
        self.version = version
        self.by_shape = by_shape
        # The same rules compiled to Python (service/polar_compile.py), asked first on every miss; a
        # question they are not certain of (`Unsure`) or that fails in them is asked of oso.
        self.compiled = compiled
        self._doubts: set[str] = set()
        # With clauses generated from the rule lists (service/policy_generate.py), ask them; they
        # stand for the authored `allow` and `deny_reason`, which are asked otherwise.
        self.generated = generated
        self.allow_rule, self.deny_rule = ("generated_allow", "generated_deny") if generated else ("allow", "deny_reason")
        self._answer = lru_cache(maxsize=memo_size)(self._evaluate)
        self._actions = lru_cache(maxsize=memo_size)(self._evaluate_actions)
        self.target_states = lru_cache(maxsize=256)(self._target_states)
        self.account_wide = lru_cache(maxsize=64)(lambda action: self._once("account_wide", action))
        # reasons.polar's messages, in the order a denial lists its reasons (the order of the message lines).
        self.messages = {str(r["bindings"]["code"]): str(r["bindings"]["text"])
                         for r in oso.query_rule("message", Variable("code"), Variable("text"))}
        self.rank = {code: i for i, code in enumerate([*self.messages, *SERVICE_MESSAGES])}
        _MESSAGES[version] = {**self.messages, **SERVICE_MESSAGES}
        self.sees_membership = lru_cache(maxsize=memo_size)(
            lambda actor, own, link: self._once("sees_membership", actor, own, link))
        self.self_service = lru_cache(maxsize=64)(lambda change: self._once("self_service", change))
        # A change names no account or organization (the caller fills those in), so remedies memoize by shape too.
        self._remedies = lru_cache(maxsize=memo_size // 16)(self._evaluate_remedies)

    def _doubt(self, exc: Exception) -> None:
        """The compiled rules left a question to oso: said once per kind of doubt, not per question."""
        why = f"{type(exc).__name__}: {exc}"
        if why not in self._doubts and len(self._doubts) < 100:
            self._doubts.add(why)
            log.warning("policy %s: a question the compiled rules are not certain of is asked of oso (%s)",
                        self.version, why)

    def _compiled(self, ask):
        """`ask(compiled)`'s answer, or None when there is no compiled policy or it leaves the question to oso."""
        if self.compiled is None:
            return None
        try:
            return ask(self.compiled)
        except Exception as exc:  # noqa: BLE001 - Unsure, or a fault of the compiled code: oso answers
            self._doubt(exc)
            return None

    def _once(self, rule: str, *args) -> bool:
        found = self._compiled(lambda c: c.query_once(rule, *args))
        return self.oso.query_rule_once(rule, *args) if found is None else found

    def _all(self, rule: str, *args) -> list[dict]:
        """Every result of the rule, as {name: value} of its `Out` arguments (oso `Variable`s when asked of oso)."""
        results = self._compiled(lambda c: c.query(rule, *args))
        if results is not None:
            return results
        host_args = [Variable(a.name) if isinstance(a, Out) else a for a in args]
        return [result["bindings"] for result in self.oso.query_rule(rule, *host_args)]

    def remedies(self, actor: ActorFacts, action: str, resource) -> tuple[tuple[str, tuple], ...]:
        """(reason code, change as sorted (key, value) pairs) for each failing, told requirement with a remedy.
        Asked only when a caller wants remedies, never on the plain decision path."""
        return self._remedies(_Asked(self._key(actor, action, resource), (actor, action, resource)))

    def _evaluate_remedies(self, asked: _Asked) -> tuple[tuple[str, tuple], ...]:
        actor, action, resource = asked.facts
        found = set()
        for bindings in self._all("deny_remedy", actor, action, resource, Out("code"), Out("change")):
            code, change = bindings["code"], bindings["change"]
            if isinstance(code, str) and isinstance(change, dict) and isinstance(change.get("action"), str):
                found.add((code, tuple(sorted(change.items()))))
            else:  # a remedy clause that leaves its change open: never guessed at
                log.error("policy remedy with an open change: %r %r", code, change)
        return tuple(sorted(found, key=lambda r: (self.rank.get(r[0], len(self.rank)), r)))

    def _target_states(self, action: str, portal: str) -> frozenset[tuple[str, str]]:
        """The (status, role) pairs of a target account of `portal` for which the policy's `status_allows` holds."""
        org = OrganizationFacts("", (), None, 0, False, portal=portal)
        return frozenset(
            (status, role) for status in ACCOUNT_STATUSES for role in ROLES
            if self._once("status_allows", action, AccountFacts("", org, role, status))
        )

    def reads_head_counts(self, action: str | None, resource_class: type) -> bool:
        """Whether a decision of `action` (None: every action, as authorized_actions asks) on a resource of that
        fact class can read an organization's head counts: asking the decision's rules (allow and deny, or the
        clauses generated for them) or its remedies. Derived once per action and class, and kept."""
        key = (action, resource_class)
        found = self._reads.get(key)
        if found is None:
            found = self._derive_reads(action, resource_class)
            if len(self._reads) < _READS_KEPT:
                self._reads[key] = found
        return found

    def _derive_reads(self, action, resource_class: type) -> bool:
        """Derived once per abstract value of the action (each literal of the policy, any other string, every
        action), so that actions the policy never names cost one derivation between them."""
        reads = self.fact_reads
        name = _POLAR_NAMES.get(resource_class)
        if reads is None or name is None or not (action is None or type(action) is str):
            return True
        abstract = reads.action(action)
        found = self._derived.get((abstract, resource_class))
        if found is not None:
            return found
        args = (fact_reads.instance(_POLAR_NAMES[ActorFacts]), abstract, fact_reads.instance(name))
        entries = [fact_reads.Entry(self.allow_rule, args)]
        if action is not None:  # authorized_actions asks `allow` alone, with the action open
            entries += [fact_reads.Entry(self.deny_rule, (*args, fact_reads.ANY)),
                        fact_reads.Entry("deny_remedy", (*args, fact_reads.ANY, fact_reads.ANY))]
        found = self._derived[(abstract, resource_class)] = reads.reads(entries, HEAD_COUNTS)
        return found

    def _key(self, actor: ActorFacts, action: str, resource) -> tuple:
        if not self.by_shape:
            return actor, action, resource
        if self.reads_head_counts(action, resource.__class__):
            return canonical.shape_key(actor, action, resource)
        return canonical.uncounted_shape_key(actor, action, resource)

    def _actions_key(self, actor: ActorFacts, resource) -> tuple:
        if not self.by_shape:
            return actor, resource
        if self.reads_head_counts(None, resource.__class__):
            return canonical.shape_key(actor, resource)
        return canonical.uncounted_shape_key(actor, resource)

    def ask(self, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> Decision:
        allowed, reasons = self._answer(_Asked(self._key(actor, action, resource), (actor, action, resource)))
        return Decision(allowed, reasons, self.version, (actor, resource))

    def actions(self, actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> tuple[str, ...]:
        return self._actions(_Asked(self._actions_key(actor, resource), (actor, resource)))

    def memo_size(self) -> int:
        """How many answers the memo holds (decisions and action lists)."""
        return self._answer.cache_info().currsize + self._actions.cache_info().currsize

    def _evaluate(self, asked: _Asked) -> tuple[bool, tuple[str, ...]]:
        actor, action, resource = asked.facts
        if self._once(self.allow_rule, actor, action, resource):
            return True, ()
        found = {bindings["code"] for bindings in self._all(self.deny_rule, actor, action, resource, Out("code"))}
        # A stable order (the order of reasons.polar's messages) so answers compare equal across runs.
        reasons = tuple(sorted(found, key=lambda code: (self.rank.get(code, len(self.rank)), code)))
        if not reasons:
            log.error("policy gap: %s %s %r denied without a reason", actor.username, action, resource)
            reasons = ("policy_gap",)
        return False, reasons

    def _evaluate_actions(self, asked: _Asked) -> tuple[str, ...]:
        actor, resource = asked.facts
        # One query with the action open: every action some rule allows.
        allowed = self._compiled(lambda c: _actions_of(c.query(self.allow_rule, actor, Out("action"), resource)))
        if allowed is None and self.generated:
            allowed = set()
            for result in self.oso.query_rule(self.allow_rule, actor, Variable("action"), resource):
                action = result["bindings"]["action"]
                if not isinstance(action, str):  # a clause allowing any action: no rule list says that
                    raise OsoError(f"generated_allow left the action open: {action!r}")
                allowed.add(action)
        elif allowed is None:
            allowed = self.oso.authorized_actions(actor, resource)
        if isinstance(resource, OrganizationFacts):
            order = [*resource.catalog, *ORGANIZATION_ACTIONS]
        else:
            order = list(ACCOUNT_ACTIONS)
        unlisted = set(allowed) - set(order)
        if unlisted:  # tests/test_catalog.py keeps this from happening; never drop one silently
            log.error("policy allows actions the catalog lacks (service/kernel/catalog.py): %s", sorted(unlisted))
        return tuple(a for a in order if a in allowed)


def _actions_of(results: list[dict]) -> set[str]:
    """The actions of the compiled `allow` results with the action open; one not a string is left to oso."""
    actions = {bindings["action"] for bindings in results}
    if any(type(action) is not str for action in actions):
        raise ValueError(f"the allow rule left the action open: {sorted(map(repr, actions))}")
    return actions


@lru_cache(maxsize=16)
def _read(files: tuple[tuple[str, str], ...], generate: bool, check: bool):
    """What is read from a policy's text before it is loaded: the generated clauses (or why none), the renaming
    hazards and the check's problems. Pure functions of the files' paths and texts, so a text loaded again (a
    reload of unchanged files, every app a test suite builds) is read once."""
    sources = [(Path(path).name, text) for path, text in files]
    generated, not_generated = policy_generate.generate(sources, POLAR_CLASSES) if generate else (None, "")
    if generated is not None:
        sources.append((GENERATED, generated))
    hazards = tuple(canonical.renaming_hazards(sources, POLAR_CLASSES))
    problems = tuple(check_policy([Path(path) for path, _text in files])) if check else ()
    return generated, not_generated, hazards, problems


@lru_cache(maxsize=16)
def _fact_reads(files: tuple[tuple[str, str], ...], generated: str | None) -> fact_reads.FactReads:
    """What each question can read, from the texts oso loads (the files by name, and the generated clauses if any)."""
    sources = list(files)
    if generated is not None:
        sources.append((GENERATED, generated))
    return fact_reads.FactReads(sources, POLAR_CLASSES)


@lru_cache(maxsize=16)
def _compile(files: tuple[tuple[str, str], ...], generated: str | None) -> tuple[CompiledPolicy | None, str]:
    """The texts oso loads (the files, and the generated clauses if any) compiled to Python, or (None, why not).
    A compiled policy holds no state between questions, so one serves every engine loaded from the same text (the
    files by name)."""
    sources = list(files)
    if generated is not None:
        sources.append((GENERATED, generated))
    try:
        return compile_policy(sources, POLAR_CLASSES), ""
    except NotCompiled as exc:
        return None, str(exc)


class Policy:
    """A loaded policy. Thread-safe: a reload swaps in a fully built engine with an empty memo."""

    MEMO_SIZE = 65536

    def __init__(self, policy_dir: Path, memo_size: int = MEMO_SIZE, generate: bool = True, *, check: bool = True,
                 compile: bool = True):
        """`generate=False` asks the authored `allow` and `deny_reason` (to compare with); `check=False` only for
        a policy that is compared with, never served (`policy diff`'s base, which may predate a check);
        `compile=False` asks oso alone (to compare with the compiled rules)."""
        self.policy_dir = Path(policy_dir)
        self.memo_size = memo_size
        self.generate = generate
        self.check = check
        self.compile = compile
        self._engine = self._load()
        self._listeners: list = []

    @property
    def version(self) -> str:
        return self._engine.version

    @property
    def messages(self) -> dict[str, str]:
        """Every reason code this policy and the service tell, with its message, in the order a denial lists them."""
        return messages_of(self._engine.version)

    @property
    def generated(self) -> bool:
        """Whether decisions ask the clauses generated from the rule lists (service/policy_generate.py)."""
        return self._engine.generated

    @property
    def compiled(self) -> bool:
        """Whether misses are answered by the policy compiled to Python (service/polar_compile.py)."""
        return self._engine.compiled is not None

    @property
    def memoizes_by_shape(self) -> bool:
        """Whether answers are memoized by the facts' shape (names renamed) rather than exactly."""
        return self._engine.by_shape

    def _load(self) -> _Engine:
        files = policy_files(self.policy_dir)
        if not files:
            raise PolicyLoadError(f"no .polar files in {self.policy_dir}")
        try:
            contents = [(path, path.read_bytes()) for path in files]
            texts = [content.decode("utf-8") for _path, content in contents]
            read = tuple((str(p), t) for p, t in zip(files, texts))
            # What is compiled and derived names each file by its name alone, so a copy of the same texts elsewhere
            # (the served snapshot of the policy just checked, a reload of an unchanged file) finds it made.
            named = tuple((p.name, t) for p, t in zip(files, texts))
            generated, not_generated, hazards, problems = _read(read, self.generate, self.check)
            oso = _build(files, texts, generated)
            # Compiled only once oso has loaded and validated the same text.
            compiled, not_compiled = _compile(named, generated) if self.compile else (None, "")
            engine = _Engine(oso, _version(contents), self.memo_size, by_shape=not hazards,
                             generated=generated is not None, compiled=compiled, reads=_fact_reads(named, generated))
        except (OsoError, OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"policy in {self.policy_dir} does not load: {exc}") from exc
        if problems:
            raise PolicyCheckError(self.policy_dir, problems)
        if not_compiled:
            log.warning("policy %s: not compiled to Python, so every decision is asked of oso (slower, same "
                        "answers): %s", engine.version, not_compiled)
        if not_generated:
            log.warning("policy %s: no clauses generated from the rule lists, so each decision interprets them "
                        "(slower, same answers): %s", engine.version, not_generated)
        if hazards:
            log.warning("policy %s reads names other than by equality, so answers are memoized on exact facts, "
                        "not by shape: %s", engine.version, "; ".join(str(h) for h in hazards))
        return engine

    def on_reload(self, listener) -> None:
        """Call `listener(previous_version, new_version)` after each reload; new_version None when it failed.

        Held weakly when it is a bound method (an app's metrics), so an app that is gone is not kept alive."""
        self._listeners.append(weakref.WeakMethod(listener) if hasattr(listener, "__self__") else lambda: listener)

    def reload(self) -> str:
        """Load the files again; on error the running policy stays in force and the error is raised."""
        previous = self._engine.version
        try:
            engine = self._load()
        except PolicyLoadError:
            self._tell(previous, None)
            raise
        self._engine = engine  # one reference swap: a request sees the old engine or the new, never a mix
        self._tell(previous, engine.version)
        return engine.version

    def _tell(self, previous: str, version: str | None) -> None:
        for ref in list(self._listeners):
            listener = ref()
            if listener is None:
                self._listeners.remove(ref)
                continue
            try:
                listener(previous, version)
            except Exception:  # noqa: BLE001 - watching a reload never changes its outcome
                log.exception("policy reload listener failed")

    def decide(self, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> Decision:
        """Allow or deny, with every reason the policy gives for a denial. A rule that reads a fact that was not
        read (UnreadFact) fails like any evaluation error: denied, and never memoized."""
        engine = self._engine
        try:
            return engine.ask(actor, action, resource)
        except (OsoError, UnreadFact):
            log.exception("policy evaluation failed; denying")
            return Decision(False, ("policy_error",), engine.version)

    def authorized_actions(self, actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> list[str]:
        """Every action the actor may take on the resource, in catalog order."""
        try:
            return list(self._engine.actions(actor, resource))
        except (OsoError, UnreadFact):
            log.exception("policy evaluation failed; no actions")
            return []

    def memo_key(self, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> tuple:
        """The key a decision is memoized under: questions with equal keys are evaluated once (`policy diff`
        counts its distinct shapes with it)."""
        return self._engine._key(actor, action, resource)

    def reads_head_counts(self, action: str | None, resource_type: str) -> bool:
        """Whether a decision of `action` on a resource of `resource_type` ("organization" or "account") can read
        an organization's head counts (R3's `active_admins`, `has_active_members`), its remedies included; None
        asks about every action (authorized_actions). Derived from the loaded policy text (service/fact_reads.py);
        True whenever the derivation cannot tell, so a caller that leaves the counts out on False is exact."""
        resource_class = _RESOURCE_CLASSES.get(resource_type)
        return resource_class is None or self._engine.reads_head_counts(action, resource_class)

    def visible_memberships(self, actor: ActorFacts, username: str,
                            links: Iterable[LinkFacts]) -> tuple[LinkFacts, ...]:
        """The links among `links` (memberships of the account `username`) the actor may see: portal.polar's
        `sees_membership`, the one read-scoping rule every read of an account follows (its role, grants and
        comments in each organization). On an evaluation error, none (fail closed)."""
        engine = self._engine
        # The rule is handed whether the account is the actor's own, never its name: a roster page reuses one
        # memoized answer per (actor, link) instead of asking again for each account on it.
        own = username == actor.username
        try:
            return tuple(link for link in links if engine.sees_membership(actor, own, link))
        except OsoError:
            log.exception("policy evaluation failed; no memberships visible")
            return ()

    def remedies(self, actor: ActorFacts, action: str,
                 resource: OrganizationFacts | AccountFacts) -> list[tuple[str, dict]]:
        """What would allow a denial: (reason code, change) for each failing requirement some change satisfies,
        from the policy's `deny_remedy` (a change is a dict: `action`, and `permission` for a grant). Who may make
        a change is asked of `decide` (service/domain/remedies.py). On an evaluation error, none (fail closed)."""
        try:
            return [(code, dict(change)) for code, change in self._engine.remedies(actor, action, resource)]
        except (OsoError, UnreadFact):
            log.exception("policy evaluation failed; no remedies")
            return []

    def self_service(self, change: str) -> bool:
        """Whether only the account's own person makes this change (portal.polar's `self_service`): a new
        password, the terms of use, the activation letter's code. On an evaluation error, false."""
        try:
            return bool(self._engine.self_service(change))
        except OsoError:
            log.exception("policy evaluation failed; %r is no self-service change", change)
            return False

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

    # --- Reading the policy itself, for the workbench (explanations, coverage): each answer is Polar's own. ---

    def rules_of(self, action: str, resource: OrganizationFacts | AccountFacts) -> list[tuple[str, tuple[str, ...]]]:
        """Each rule of the action on the resource, in the policy's order, as (kind, requirement names): kind
        "rule" (may allow) or "unknown_action" (only explains a denial of an action no rule knows)."""
        oso = self._engine.oso
        return [(kind, tuple(str(name) for name in result["bindings"]["requirements"]))
                for kind in ("rule", "unknown_action")
                for result in oso.query_rule(kind, action, resource, Variable("requirements"))]

    def requirement_holds(self, name: str, actor: ActorFacts, action: str,
                          resource: OrganizationFacts | AccountFacts) -> bool:
        """Whether the requirement `name` holds: portal.polar's `requirement`."""
        return self._engine.oso.query_rule_once("requirement", name, actor, action, resource)

    def told_as(self, name: str, actor: ActorFacts, action: str,
                resource: OrganizationFacts | AccountFacts) -> str | None:
        """The reason code a failing requirement is told as, asked of the telling rules themselves (portal.polar's
        `untold`, reasons.polar's `reason`); None when it holds, is left untold, or is never told."""
        oso = self._engine.oso
        if oso.query_rule_once("requirement", name, actor, action, resource) or \
                oso.query_rule_once("untold", name, actor, action, resource):
            return None
        codes = [str(r["bindings"]["code"]) for r in oso.query_rule("reason", name, Variable("code"))]
        return codes[0] if codes else None

    def reason_codes(self) -> dict[str, set[str]]:
        """reasons.polar's `reason`: for each requirement, the codes its failure is told as."""
        codes: dict[str, set[str]] = {}
        for result in self._engine.oso.query_rule("reason", Variable("name"), Variable("code")):
            codes.setdefault(str(result["bindings"]["name"]), set()).add(str(result["bindings"]["code"]))
        return codes

    def telling_order(self) -> dict[str, tuple[str, ...]]:
        """reasons.polar's `told_after`: for each requirement, the earlier ones its failure is told only after."""
        order: dict[str, list[str]] = {}
        for result in self._engine.oso.query_rule("told_after", Variable("name"), Variable("earlier")):
            order.setdefault(str(result["bindings"]["name"]), []).append(str(result["bindings"]["earlier"]))
        return {name: tuple(earlier) for name, earlier in order.items()}

    def oso(self) -> Oso:
        """The engine itself, for tests and benchmarks that compare the memoized, generated path with plain oso;
        the service asks only through the methods above."""
        return self._engine.oso
