"""The policy compiled to Python (service/polar_compile.py) answers exactly as oso: every decision-table
question, random facts, a sample of `policy diff`'s generated space, and small policies for each construct
it compiles; a construct it does not compile leaves the policy to oso, and a changed policy is followed."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest
from hypothesis import given, settings
from oso import Oso, Variable
from polar.exceptions import OsoError

from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts
from service.polar_compile import NotCompiled, Out, Unsure, compile_policy
from service.policy import POLAR_CLASSES, Policy
from service.workbench.diff import profiles_of, space_questions, table_questions
from tests.fixtures.fact_strategies import SETTINGS, actors, questions
from tests.fixtures.policies import copy_policy

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"


@pytest.fixture(scope="module")
def compiled():
    """The shipped policy with every miss evaluated by the compiled rules (no memo)."""
    policy = Policy(POLICIES, memo_size=0)
    assert policy.compiled and policy.generated
    return policy


@pytest.fixture(scope="module")
def plain():
    """The shipped policy asked of oso alone (its memo by shape holds oso's own answers)."""
    policy = Policy(POLICIES, compile=False)
    assert not policy.compiled
    return policy


def answers(policy: Policy, actor, action, resource) -> tuple:
    decision = policy.decide(actor, action, resource)
    return (decision.allowed, decision.reasons, tuple(policy.authorized_actions(actor, resource)),
            tuple((code, tuple(sorted(change.items()))) for code, change in policy.remedies(actor, action, resource)))


def assert_no_doubts(policy: Policy) -> None:
    """Every question was answered by the compiled rules themselves, none handed to oso."""
    assert policy._engine._doubts == set()


# --- (a) every decision-table question -----------------------------------------------------------

def test_every_table_question_is_answered_as_oso_answers_it(compiled, plain):
    questions = list(table_questions([POLICIES]))
    assert len(questions) > 200
    for q in questions:
        assert answers(compiled, q.actor, q.action, q.resource) == answers(plain, q.actor, q.action, q.resource), q.label
    assert_no_doubts(compiled)


def test_the_authored_interpreter_compiles_too_and_answers_as_oso():
    """Without the generated clauses the compiled rules run portal.polar's own `allow` and `deny_reason`."""
    authored = Policy(POLICIES, memo_size=0, generate=False)
    reference = Policy(POLICIES, generate=False, compile=False)
    assert authored.compiled and not authored.generated
    for q in list(table_questions([POLICIES]))[::3]:
        assert authored.decide(q.actor, q.action, q.resource) == reference.decide(q.actor, q.action, q.resource), q.label
    assert_no_doubts(authored)


# --- (b) random facts ------------------------------------------------------------------------------

@settings(SETTINGS, max_examples=120)
@given(actor=actors, question=questions)
def test_random_facts_are_answered_as_oso_answers_them(compiled, plain, actor, question):
    action, resource = question
    assert answers(compiled, actor, action, resource) == answers(plain, actor, action, resource)
    if isinstance(resource, AccountFacts):
        for username in (resource.username, actor.username):
            assert compiled.visible_memberships(actor, username, resource.links) == \
                plain.visible_memberships(actor, username, resource.links)
    assert_no_doubts(compiled)


# --- (c) a sample of `policy diff`'s generated space ---------------------------------------------------

def test_a_sample_of_the_diff_space_is_answered_as_oso_answers_it(config, compiled, plain):
    asked = 0
    for profile in profiles_of(config):
        for i, q in enumerate(space_questions(profile)):
            if i % 397:
                continue
            asked += 1
            assert compiled.decide(q.actor, q.action, q.resource) == plain.decide(q.actor, q.action, q.resource), q.label
    assert asked >= 4 * 40
    assert_no_doubts(compiled)


def test_the_policy_facts_read_by_the_service_are_answered_by_the_compiled_rules(compiled, plain):
    assert {a: compiled.account_wide(a) for a in ("approve", "comment", "grant", "unlock")} == \
        {a: plain.account_wide(a) for a in ("approve", "comment", "grant", "unlock")}
    for change in ("change_password", "accept_terms", "activate", "grant", "unlock"):
        assert compiled.self_service(change) == plain.self_service(change)
    for action in ("approve", "enable", "disable", "upgrade", "downgrade", "grant", "view", "teleport"):
        assert compiled.target_states(action, "ahcccs") == plain.target_states(action, "ahcccs")
    assert_no_doubts(compiled)


# --- (d) each construct, on small policies ------------------------------------------------------------

@dataclass(frozen=True)
class Thing:
    name: str = ""
    tags: tuple = ()
    flag: object = None
    items: list | None = None


class Role(str, Enum):
    ADMIN = "admin"


SMALL = '''
bound(t: Thing, n) if n = t.name;
same(x, x);
split([head, *rest], head, rest);
pattern(x) if x = [1, *_rest];
pair({action: a, permission: p}, a, p);
change(x, {action: "grant", permission: x}) if x != nil;
every(t: Thing) if forall(tag in t.tags, tag != "b");
none_b(t: Thing) if not "b" in t.tags;
either(t: Thing) if t.name = "admin" or "claims" in t.tags;
tag_of(t: Thing, tag) if tag in t.tags;
item_of(t: Thing, item) if item in t.items;
is_nil(x) if x = nil;
not_nil(x) if x != nil;
flag_of(t: Thing, f) if f = t.flag;
s(_x: String);
i(_x: Integer);
b(_x: Boolean);
l(_x: List);
d(_x: Dictionary);
thing(_x: Thing);
matches_integer(x) if x matches Integer;
one(x) if x = 1;
yes(x) if x = true;
at_most_one(x) if x <= 1;
double_equal(x) if x == 1;
char(x) if x in "abc";
mixed(x) if x = [1, "a", true, nil];
open_string(a: String) if a in ["x", 1, "y", true];
open_integer(a: Integer) if a in ["x", 1, true, 2.5];
indexed("a", 1);
indexed("b", 2);
indexed(x, 3) if x = "c";
indexed(1, 4);
indexed(true, 5);
indexed(1.5, 6);
nested(t: Thing) if (t.name = "a" or t.name = "b") and not (t.flag = true or t.flag = 1);
same_thing(a: Thing, b: Thing) if a = b;
tags_equal(a: Thing, b: Thing) if a.tags = b.tags;
tags_as_list(t: Thing) if t.tags = ["a"];
chained(t: Thing, n) if bound(t, n) and n != "x";
arity(_x);
arity(_x, _y);
neg_unbound(x) if not x = 1;
forall_unbound(xs, y) if forall(x in xs, x = y);
missing(t: Thing) if t.nothing = 1;
nil_lookup(t: Thing) if t.flag.name = 1;
text_vs_number(x) if x < 2;
escaped(x) if x = "a\\"b\\\\c\\nd";
'''


def small_engines(text: str = SMALL):
    oso = Oso()
    for name, cls in {**POLAR_CLASSES, "Thing": Thing}.items():
        oso.register_class(cls, name=name)
    oso.load_str(text)
    return oso, compile_policy([("small.polar", text)], {**POLAR_CLASSES, "Thing": Thing})


@pytest.fixture(scope="module")
def small():
    return small_engines()


def polar_results(oso, rule, args):
    host = [Variable(a.name) if isinstance(a, Out) else a for a in args]
    return sorted(repr(sorted(r["bindings"].items())) for r in oso.query_rule(rule, *host))


def compiled_results(policy, rule, args):
    return sorted(repr(sorted(r.items())) for r in policy.query(rule, *args))


T = Thing("admin", ("a", "claims"), True, [1, "a"])
CASES = [
    # unification that binds, and its failure
    ("bound", T, Out("n")), ("bound", T, "admin"), ("bound", T, "other"),
    ("same", 1, 1), ("same", 1, 1.0), ("same", 1, True), ("same", "1", 1), ("same", None, None), ("same", Out("x"), 2),
    ("same", (1,), (1,)), ("same", (1,), [1]), ("same", [1, "a"], [1, "a"]), ("same", T, Thing("admin", ("a", "claims"), True, [1, "a"])),
    # list patterns
    ("split", [1, 2, 3], Out("h"), Out("r")), ("split", [1], Out("h"), Out("r")), ("split", [], Out("h"), Out("r")),
    ("split", Out("l"), 1, [2]), ("pattern", [1, 2]), ("pattern", [2]), ("pattern", [1]),
    # dictionaries
    ("pair", {"action": "grant", "permission": "claims"}, Out("a"), Out("p")), ("pair", {"action": "grant"}, Out("a"), Out("p")),
    ("pair", Out("d"), "unlock", None), ("change", "claims", Out("c")), ("change", None, Out("c")),
    # forall, not, or
    ("every", T), ("every", Thing(tags=("a", "b"))), ("every", Thing()), ("none_b", T), ("none_b", Thing(tags=("b",))),
    ("either", T), ("either", Thing("x", ("claims",))), ("either", Thing("x")),
    ("nested", Thing("a", flag=False)), ("nested", Thing("b", flag=1)), ("nested", Thing("b", flag=True)), ("nested", Thing("c")),
    # enumeration by `in`
    ("tag_of", T, Out("tag")), ("tag_of", T, "claims"), ("tag_of", T, "x"), ("item_of", T, Out("i")), ("item_of", T, True),
    ("char", "b"), ("char", "ab"), ("char", Out("c")),
    # nil
    ("is_nil", None), ("is_nil", "x"), ("is_nil", Out("x")), ("not_nil", None), ("not_nil", "x"), ("not_nil", 0),
    ("flag_of", Thing(flag=None), Out("f")), ("flag_of", T, True), ("flag_of", T, 1),
    # specializers and Boolean vs Integer
    ("s", "x"), ("s", 1), ("i", 1), ("i", True), ("i", 1.0), ("b", True), ("b", 1), ("l", [1]), ("l", (1,)), ("d", {}),
    ("d", []), ("thing", T), ("thing", None), ("thing", "x"), ("matches_integer", True), ("matches_integer", 2),
    ("matches_integer", "2"), ("one", 1), ("one", True), ("one", 1.0), ("one", "1"), ("yes", True), ("yes", 1),
    ("at_most_one", 1), ("at_most_one", 2), ("at_most_one", 0.5), ("double_equal", 1), ("double_equal", 1.0),
    ("mixed", [1, "a", True, None]), ("mixed", [True, "a", True, None]), ("mixed", [1, "a", 1, None]), ("mixed", Out("m")),
    ("open_string", Out("a")), ("open_integer", Out("a")),
    # the first-argument index: a literal of each type
    ("indexed", "a", Out("n")), ("indexed", "c", Out("n")), ("indexed", 1, Out("n")), ("indexed", True, Out("n")),
    ("indexed", 1.0, Out("n")), ("indexed", 1.5, Out("n")), ("indexed", Out("k"), Out("n")), ("indexed", None, Out("n")),
    # host values and lists
    ("same_thing", T, T), ("same_thing", T, Thing()), ("tags_equal", T, Thing(tags=("a", "claims"))),
    ("tags_as_list", Thing(tags=("a",))), ("tags_as_list", Thing(tags=["a"])),
    ("chained", T, Out("n")), ("chained", Thing("x"), Out("n")),
    ("arity", 1), ("arity", 1, 2), ("arity", 1, 2, 3),
    ("escaped", 'a"b\\c\nd'),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1:]!r}"[:80])
def test_each_construct_answers_as_oso(small, case):
    oso, compiled_small = small
    rule, *args = case
    expected = polar_results(oso, rule, args)
    assert compiled_results(compiled_small, rule, args) == expected
    assert compiled_small.query_once(rule, *args) == bool(expected)


# Where Polar answers in a way the compiled rules do not reproduce (an error, a constraint on an unbound
# variable, a comparison it coerces), they leave the question to oso rather than answer.
UNSURE = [
    ("double_equal", True),  # Polar compares true with 1 as numbers
    ("text_vs_number", "a"),  # Polar: not supported
    ("missing", T),  # no such attribute
    ("nil_lookup", Thing()),  # an attribute of nil
    ("neg_unbound", Out("x")),  # Polar: a constraint x != 1
    ("forall_unbound", [1, 1], Out("y")),  # Polar binds y inside forall
    ("s", Out("x")),  # a specializer on an unbound answer
    ("same", Role.ADMIN, "admin"),  # a str subclass: a host instance to Polar
    ("tag_of", Thing(tags=(Role.ADMIN,)), "admin"),
    ("item_of", Thing(items=None), 1),  # nil is not iterable
    ("flag_of", Thing(flag=2 ** 64), Out("f")),  # oso cannot hand Polar an integer beyond 64 bits
    ("nope", 1),  # no such rule: an error in oso
]


@pytest.mark.parametrize("case", UNSURE, ids=lambda c: f"{c[0]}{c[1:]!r}"[:80])
def test_what_is_not_certain_is_left_to_oso(small, case):
    _oso, compiled_small = small
    rule, *args = case
    with pytest.raises(Unsure):
        compiled_small.query(rule, *args)


@pytest.mark.parametrize("text, why", [
    ("f(x) if x = 1 + 1;", "arithmetic"),
    ("f(x) if x.name() = 1;", "method call"),
    ("f(x: Thing{name: \"a\"}) if x = x;", "plain class name"),
    ("f(x) if cut and x = 1;", "`cut`"),
    ("f(x) if x = new Thing();", "`new`"),
    ("f(x) if print(x);", "`print`"),
    ("actor Thing {}", "does not start a rule"),
    ("f(x) if x = \"a\\tb\";", "escape"),
    ("f(x) if x = Thing;", "class `Thing` used as a value"),
    ("f(nil);", "nil as a parameter"),
])
def test_an_unsupported_construct_is_refused_at_load(text, why):
    with pytest.raises(NotCompiled, match=why):
        compile_policy([("p.polar", text)], {**POLAR_CLASSES, "Thing": Thing})


# --- (e) a policy that does not compile is asked of oso, as before ------------------------------------

def test_a_policy_that_does_not_compile_is_asked_of_oso(tmp_path, caplog, plain):
    folder = copy_policy(tmp_path)
    portal = folder / "portal.polar"
    portal.write_text(portal.read_text() + "\nspare_capacity(n: Integer) if n + 1 > 2;\n")
    with caplog.at_level(logging.WARNING, logger="service.policy"):
        policy = Policy(folder, memo_size=0)
    assert not policy.compiled and policy.generated
    assert "not compiled to Python" in caplog.text and "arithmetic is not compiled" in caplog.text
    for q in list(table_questions([POLICIES]))[::25]:
        assert answers(policy, q.actor, q.action, q.resource) == answers(plain, q.actor, q.action, q.resource), q.label


def test_a_question_the_compiled_rules_are_not_certain_of_is_asked_of_oso(caplog, plain):
    policy = Policy(POLICIES, memo_size=0)
    org = OrganizationFacts("O", ("claims",), None, 2, True, portal="ahcccs")
    # A role that is a str subclass reaches Polar as a host instance, whose equality oso asks of Python.
    actor = ActorFacts("ann", True, "active", True, False, (MembershipFacts("O", Role.ADMIN, True, ()),), True)
    with caplog.at_level(logging.WARNING, logger="service.policy"):
        decision = policy.decide(actor, "claims", org)
    assert "not certain of is asked of oso" in caplog.text and "Role" in caplog.text
    assert decision == plain.decide(actor, "claims", org)
    assert decision.allowed


# --- (f) a changed policy is followed ------------------------------------------------------------------

def test_a_changed_policy_is_compiled_from_its_text(tmp_path, compiled):
    folder = copy_policy(tmp_path)
    portal = folder / "portal.polar"
    # The planted change of tests/test_policy_workbench.py: unlock applies to disabled accounts too.
    old = 'status_allows("unlock", target: TargetAccount) if target.status = "locked";'
    assert old in portal.read_text()
    portal.write_text(portal.read_text().replace(
        old, 'status_allows("unlock", target: TargetAccount) if target.status in ["locked", "disabled"];'))
    changed = Policy(folder, memo_size=0)
    reference = Policy(folder, compile=False)
    assert changed.compiled
    org = OrganizationFacts("O", ("claims",), None, 2, True, portal="ahcccs")
    admin = ActorFacts("ann", True, "active", True, False, (MembershipFacts("O", "admin", True, ()),), True)
    target = AccountFacts("bob", org, "member", "disabled", None, (LinkFacts(org, "member", ()),), True)
    assert changed.decide(admin, "unlock", target) == reference.decide(admin, "unlock", target)
    assert changed.decide(admin, "unlock", target).allowed
    assert not compiled.decide(admin, "unlock", target).allowed
    assert "unlock" in changed.authorized_actions(admin, target)
    assert "unlock" not in compiled.authorized_actions(admin, target)
    assert_no_doubts(changed)


def test_a_copy_of_the_same_texts_elsewhere_is_compiled_once(tmp_path, compiled):
    """A server checks the policy, then serves a snapshot of it copied to another folder (service/reload.py): the
    same texts under the same file names are the same compiled policy, wherever they lie. A changed text is not."""
    copy = Policy(copy_policy(tmp_path), memo_size=0)
    assert copy.compiled and copy._engine.compiled is compiled._engine.compiled
    assert copy._engine.fact_reads is compiled._engine.fact_reads
    (tmp_path / "changed").mkdir()
    changed = copy_policy(tmp_path / "changed")
    (changed / "portal.polar").write_text((changed / "portal.polar").read_text() + "\n# a comment\n")
    assert Policy(changed, memo_size=0)._engine.compiled is not compiled._engine.compiled
