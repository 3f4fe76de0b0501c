"""Plain Polar clauses generated, when the policy loads, from the rule lists of the loaded text.

The authored policy states each action's rule once, as a list of requirement names, and
portal.polar's `allow` and `deny_reason` interpret those lists: walk the list, look each name up,
for a denial look up the reason code and whether the failure is told. That interpretation is the
same for every question, so it is done here once, at load: every rule-list clause
(`organization_rule(ACTION, RESOURCE, [NAME, ...]) if GUARD`, whatever predicates `rule` and
`unknown_action` name) becomes

    generated_allow_Class(ACTION, actor, RESOURCE) if GUARD and requirement(NAME, ...) and ...;
    generated_deny_Class(ACTION, actor, RESOURCE, code) if GUARD and generated_deny_N(actor, ACTION, RESOURCE, code);
    generated_deny_N(actor, ACTION, RESOURCE, CODE) if
        not requirement(NAME, ...) and not untold(NAME, ...);          # one per NAME with a reason CODE

under one entry per resource class with the authored specializers
(`generated_allow(actor: Account, action: String, resource: Class)`, and `generated_deny`),

which the engine asks instead of `allow` and `deny_reason`. Nothing here is written by hand: the
clauses are text derived from the loaded rule lists and reason table, loaded beside the authored
files, never saved. The authored files stay the one statement of the rules; `allow` and
`deny_reason` stay there, and tests hold the generated clauses to them.

Generation applies only to the interpreter it replaces: when `allow`, `all_hold`, `deny_reason`,
`rule` or `unknown_action` are not in the authored form, or a rule list or reason is not plain
literal text, `generate` returns None with the reason and the engine asks the authored rules.
"""
from __future__ import annotations

from service.polar_text import clauses, matching, split_args, tokens

# The interpreter the generated clauses stand for, as portal.polar states it (tokens compared,
# so layout and comments do not matter).
INTERPRETER = {
    "allow": ['''allow(actor: Account, action: String, resource) if
        rule(action, resource, [first, *rest]) and all_hold([first, *rest], actor, action, resource);'''],
    "all_hold": ['all_hold([], _actor, _action, _resource);',
                 '''all_hold([name, *rest], actor, action, resource) if
        requirement(name, actor, action, resource) and all_hold(rest, actor, action, resource);'''],
    "deny_reason": ['''deny_reason(actor: Account, action: String, resource, code) if
        (rule(action, resource, requirements) or unknown_action(action, resource, requirements)) and
        name in requirements and not requirement(name, actor, action, resource) and
        not untold(name, actor, action, resource) and reason(name, code);'''],
}
ACTOR = "generated_actor"


def _texts(clause) -> list[str]:
    return [t.text for t in clause]


class NotGenerated(Exception):
    """The loaded text is not in the form the generated clauses stand for."""


def generate(sources: list[tuple[str, str]], classes: dict[str, type]) -> tuple[str | None, str]:
    """(the generated Polar text, "") or (None, why not)."""
    try:
        return _generate(sources, classes), ""
    except NotGenerated as exc:
        return None, str(exc)


def _generate(sources, classes) -> str:
    by_head: dict[str, list] = {}
    for _file, text in sources:
        for clause in clauses(tokens(text)):
            if clause and clause[0].kind == "ident" and len(clause) > 1 and clause[1].text == "(":
                by_head.setdefault(clause[0].text, []).append((text, clause))
    if taken := sorted(h for h in by_head if h.startswith("generated_")):
        raise NotGenerated(f"the policy defines names the generated clauses use: {', '.join(taken)}")
    for head, expected in INTERPRETER.items():
        if [_texts(c) for _t, c in by_head.get(head, [])] != [_texts(tokens(e)) for e in expected]:
            raise NotGenerated(f"`{head}` is not the requirement-list interpreter the generated clauses stand for")

    rules = _delegates(by_head, "rule", classes)
    unknown = _delegates(by_head, "unknown_action", classes)
    reasons = _reasons(by_head)
    lines = ["# Generated when the policy loads (service/policy_generate.py); never edited, never saved."]
    # One entry per resource class, with the authored specializers; below it, clauses without
    # specializers and with the action first, so that Polar picks an action's clauses by its index.
    for cls_name in dict.fromkeys(c for _p, c in rules + unknown):
        for entry in ("allow", "deny"):
            code = ", code" if entry == "deny" else ""
            lines.append(f"generated_{entry}(actor: Account, action: String, resource: {cls_name}{code}) if\n"
                         f"    generated_{entry}_{cls_name}(action, actor, resource{code});")
    helpers = 0
    for predicate, cls_name in rules + unknown:
        for text, clause in by_head.get(predicate, []):
            action, resource, names, guard = _rule_clause(text, clause)
            args = f"{ACTOR}, {action}, {resource}"
            if (predicate, cls_name) in rules and names:
                body = [*guard, *(f"requirement({n}, {args})" for n in names)]
                lines.append(f"generated_allow_{cls_name}({action}, {ACTOR}, {resource}) if\n    "
                             + " and\n    ".join(body) + ";")
            told = [(n, code) for n in dict.fromkeys(names) for code in reasons.get(n, ())]
            if not told:
                continue
            helpers += 1
            helper = f"generated_deny_{helpers}"
            lines.append(f"generated_deny_{cls_name}({action}, {ACTOR}, {resource}, code) if\n    "
                         + " and\n    ".join([*guard, f"{helper}({ACTOR}, {action}, {resource}, code)"]) + ";")
            for n, code in told:
                lines.append(f"{helper}({ACTOR}, {action}, {resource}, {code}) if\n    "
                             f"not requirement({n}, {args}) and\n    not untold({n}, {args});")
    return "\n".join(lines) + "\n"


def _delegates(by_head, head: str, classes) -> list[tuple[str, str]]:
    """Each `HEAD(action, resource: Class, requirements) if predicate(action, resource, requirements);`
    as its (predicate, Class)."""
    found = []
    for _text, clause in by_head.get(head, []):
        t = _texts(clause)
        if len(t) == 20:
            r, cls_name, predicate = t[4], t[6], t[11]
            expected = [head, "(", "action", ",", r, ":", cls_name, ",", "requirements", ")", "if",
                        predicate, "(", "action", ",", r, ",", "requirements", ")", ";"]
            if t == expected and cls_name in classes and clause[4].kind == clause[11].kind == "ident":
                found.append((predicate, cls_name))
                continue
        raise NotGenerated(f"a `{head}` clause is not a plain delegation to a rule-list predicate: {' '.join(t)}")
    return found


def _rule_clause(text, clause) -> tuple[str, str, list[str], list[str]]:
    """A rule-list clause's action, resource variable, requirement names (as Polar string literals)
    and guard."""
    close = matching(clause, 1)
    if close is None:
        raise NotGenerated("unbalanced rule clause")
    args = split_args(clause[2:close])
    if len(args) != 3:
        raise NotGenerated(f"a rule-list clause with {len(args)} arguments (line {clause[0].line})")
    action, resource, names = args
    if len(action) != 1 or action[0].kind not in ("ident", "string") or len(resource) != 1 or resource[0].kind != "ident":
        raise NotGenerated(f"a rule-list clause whose action or resource is not a plain term (line {clause[0].line})")
    if names[0].text != "[" or names[-1].text != "]" or matching(names, 0) != len(names) - 1:
        raise NotGenerated(f"a rule list that is not a literal list (line {clause[0].line})")
    items = split_args(names[1:-1])
    if any(len(item) != 1 or item[0].kind != "string" for item in items):
        raise NotGenerated(f"a rule list naming something other than literal requirement names (line {clause[0].line})")
    if any(t.text == ACTOR for t in clause):
        raise NotGenerated(f"a rule-list clause using the name {ACTOR} (line {clause[0].line})")
    a = action[0].text if action[0].text != "_" else "generated_action"
    r = resource[0].text if resource[0].text != "_" else "generated_resource"
    rest = clause[close + 1:]
    if rest and rest[-1].text == ";":
        rest = rest[:-1]
    guard: list[str] = []
    if rest:
        if rest[0].text != "if" or len(rest) < 2:
            raise NotGenerated(f"a rule-list clause with something after its head (line {clause[0].line})")
        last = rest[-1]
        guard = [f"({text[rest[1].start:last.start + len(last.text)]})"]
    return a, r, [item[0].text for item in items], guard


def _reasons(by_head) -> dict[str, list[str]]:
    """The reason table, which must be ground facts: reason("NAME", "CODE");"""
    table: dict[str, list[str]] = {}
    for _text, t in by_head.get("reason", []):
        if not (len(t) == 7 and t[2].kind == "string" and t[3].text == "," and t[4].kind == "string"
                and t[5].text == ")" and t[6].text == ";"):
            raise NotGenerated(f"a `reason` clause that is not a plain fact (line {t[0].line})")
        table.setdefault(t[2].text, []).append(t[4].text)
    return table
