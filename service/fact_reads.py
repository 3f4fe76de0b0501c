"""Which facts a question can read, derived from the loaded policy text.

A decision reads what the rules it reaches read, and which rules it reaches turns mostly on the
action: portal.polar's `would_orphan` (R3) is the one rule that reads an organization's head counts
(`active_admins`, `has_active_members`), and its clauses apply to downgrade, remove and disable
only. Counting an organization's admins and members costs the database more than the rest of a
member's question (bench/README.md), so the facts statement leaves the counts out when no question
of the request can read them. This module says which questions can, from the same text oso loads
(the authored files and the clauses generated from their rule lists), never from a list kept in
Python.

The reading is an abstract evaluation of the rules, value-sensitive where the policy dispatches:
from the rules the engine asks for a question (`allow` and `deny_reason`, or the generated clauses
that stand for them, and `deny_remedy`), it follows every call to every clause that may apply,
with each argument known as a string literal, as "a string no literal of the policy equals" (an
action the policy never names, such as a catalog's function), as an instance of a fact class, or
as unknown. A clause is left out only when it certainly cannot apply: a head literal or
specializer the argument certainly does not match, or a test of the body on known values that is
certainly false (`action in ["remove", "disable"]`, `action = "view"`, and their negations); the
goals of a conjunction before such a test are still read. A question reads a fact when some clause
it reaches names the fact's attribute. Fail safe: text the parser (service/polar_parse.py) does
not read exactly reads everything; anything it cannot decide (a variable bound in a body, an
attribute's value, a comparison of two facts) is taken to apply.

A rule that compares two fact objects whole (`link.organization = target.organization`) compares
their head counts too, without naming them; it gets the same answer with or without them, since
every organization of one request is read the same way. And a rule that reads a head count the
derivation missed still fails closed: service/kernel/facts.py's UNREAD raises when read.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.polar_parse import NotCompiled, Rule, parse

# The abstract values of an argument.
ANY = ("any",)          # anything
OTHER = ("other",)      # a string equal to no string literal of the policy


def literal(text: str) -> tuple:
    return ("str", text)


def instance(class_name: str) -> tuple:
    return ("instance", class_name)


_BUILTIN = {"String", "Integer", "Float", "Boolean", "List", "Dictionary"}


@dataclass(frozen=True)
class Entry:
    """A rule the engine asks, with the abstract value of each argument."""

    rule: str
    args: tuple


class FactReads:
    """The reading of one policy text: `reads(entries, attributes)` says whether asking those rules can read
    any of those attributes."""

    def __init__(self, sources: list[tuple[str, str]], classes: dict[str, type]):
        self.classes = classes
        try:
            rules = parse(sources)
        except NotCompiled as exc:
            self.not_read = str(exc)  # why every question is taken to read everything
            rules = []
        else:
            self.not_read = ""
        self.rules: dict[tuple[str, int], list[Rule]] = {}
        self.literals: set[str] = set()
        for rule in rules:
            self.rules.setdefault((rule.name, len(rule.params)), []).append(rule)
            for param in rule.params:
                _strings(param.term, self.literals)
            if rule.body is not None:
                _strings(rule.body, self.literals)

    def action(self, action: str | None) -> tuple:
        """An action's abstract value: itself if the policy names it, else a string no literal equals;
        None (every action) is unknown."""
        if action is None:
            return ANY
        return literal(action) if action in self.literals else OTHER

    def reads(self, entries: Iterable[Entry], attributes: frozenset[str]) -> bool:
        if self.not_read:
            return True
        seen: set[tuple] = set()
        work = [(e.rule, tuple(e.args)) for e in entries]
        while work:
            call = work.pop()
            if call in seen:
                continue
            seen.add(call)
            name, args = call
            for rule in self.rules.get((name, len(args)), ()):
                env = self._match(rule, args)
                if env is None:
                    continue
                walk = _Walk(self, env, attributes)
                if rule.body is not None:
                    walk.goal(rule.body)
                if walk.found or any(_names_attribute(p.term, attributes) for p in rule.params):
                    return True
                work.extend(walk.calls)
        return False

    def _match(self, rule: Rule, args: tuple) -> dict | None:
        """The clause's variables bound to what the call certainly passes, or None when it certainly does not
        apply."""
        env: dict[str, tuple] = {}
        for param, arg in zip(rule.params, args):
            term = param.term
            if param.specializer is not None and not self._may_be(arg, param.specializer):
                return None
            if term[0] == "const":
                if isinstance(term[1], str) and arg[0] in ("str", "other") and _equal(literal(term[1]), arg) is False:
                    return None
                if arg[0] == "instance":
                    return None  # a fact object never unifies with a literal
                continue
            if term[0] != "var":
                continue
            value = arg
            if value is ANY and param.specializer in self.classes:
                value = instance(param.specializer)
            bound = env.get(term[1])
            if bound is not None and _equal(bound, value) is False:
                return None
            env[term[1]] = value if bound is None else bound
        return env

    def _may_be(self, arg: tuple, specializer: str) -> bool:
        kind = arg[0]
        if kind == "any":
            return True
        if kind in ("str", "other"):
            return specializer == "String" or (specializer not in self.classes and specializer not in _BUILTIN)
        if kind == "instance":
            if specializer in _BUILTIN:
                return False
            have, want = self.classes.get(arg[1]), self.classes.get(specializer)
            # Known as an instance of `have` (or of a subclass of it: a specializer refines no further).
            return have is None or want is None or issubclass(have, want) or issubclass(want, have)
        return True


class _Walk:
    """One clause's body read under its bindings: the calls it may make and whether it names an attribute."""

    def __init__(self, reads: FactReads, env: dict[str, tuple], attributes: frozenset[str]):
        self.reads = reads
        self.env = env
        self.attributes = attributes
        self.calls: list[tuple[str, tuple]] = []
        self.found = False

    def goal(self, node) -> bool | None:
        """Read a goal; whether it certainly holds (True), certainly fails (False), or may do either (None)."""
        tag = node[0]
        if tag == "and":
            certain = True
            for goal in node[1]:
                holds = self.goal(goal)
                if holds is False:
                    return False  # the goals after it are never reached
                if holds is None:
                    certain = None
            return certain
        if tag == "or":
            outcomes = [self.goal(goal) for goal in node[1]]  # each alternative is tried on backtracking
            if any(o is True for o in outcomes):
                return True
            return False if all(o is False for o in outcomes) else None
        if tag == "not":
            holds = self.goal(node[1])
            return None if holds is None else not holds
        if tag == "forall":
            self.goal(node[1])
            self.goal(node[2])
            return None
        if tag == "call":
            for arg in node[2]:
                self.term(arg)
            self.calls.append((node[1], tuple(self.value(arg) for arg in node[2])))
            return None
        if tag == "op":
            self.term(node[2])
            self.term(node[3])
            return self.compare(node[1], node[2], node[3])
        if tag == "isa":
            self.term(node[1])
            return None
        self.term(node)  # a term as a goal
        return None

    def term(self, node) -> None:
        if _names_attribute(node, self.attributes):
            self.found = True

    def value(self, node) -> tuple:
        if node[0] == "const" and isinstance(node[1], str):
            return literal(node[1])
        if node[0] == "var":
            return self.env.get(node[1], ANY)
        return ANY

    def compare(self, op: str, left, right) -> bool | None:
        if op in ("=", "==", "!="):
            same = _equal(self.value(left), self.value(right))
            if same is None or op != "!=":
                return same
            return not same
        if op == "in" and right[0] == "list" and right[2] is None \
                and all(item[0] == "const" and isinstance(item[1], str) for item in right[1]):
            outcomes = [_equal(self.value(left), literal(item[1])) for item in right[1]]
            if any(o is True for o in outcomes):
                return True
            return False if all(o is False for o in outcomes) else None
        return None


def _equal(a: tuple, b: tuple) -> bool | None:
    """Whether two abstract values are certainly equal (True), certainly not (False), or may be either."""
    if a[0] == "str" and b[0] == "str":
        return a[1] == b[1]
    if {a[0], b[0]} == {"str", "other"}:
        return False
    return None


def _names_attribute(node, attributes: frozenset[str]) -> bool:
    """Whether a term or goal reads one of `attributes` anywhere within it."""
    if not isinstance(node, tuple) or not node:
        return False
    if node[0] == "lookup" and node[2] in attributes:
        return True
    if node[0] == "const":
        return False
    return any(_names_attribute(part, attributes) for part in _parts(node))


def _parts(node) -> list:
    out = []
    for part in node[1:]:
        if isinstance(part, tuple):
            out.append(part)
        elif isinstance(part, list):
            out.extend(p for p in part if isinstance(p, tuple))
        elif isinstance(part, dict):
            out.extend(p for p in part.values() if isinstance(p, tuple))
    return out


def _strings(node, into: set[str]) -> None:
    """Every string literal of a term or goal."""
    if not isinstance(node, tuple) or not node:
        return
    if node[0] == "const":
        if isinstance(node[1], str):
            into.add(node[1])
        return
    for part in _parts(node):
        _strings(part, into)
