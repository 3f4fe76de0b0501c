"""Questions by shape: the facts of a question with its names renamed consistently.

Whether a member may submit claims turns on the member's standing, role and grants and on the
organization's catalog, not on what the member or the organization is called. The shipped policy
reads usernames and organization keys (the fields service/kernel/facts.py marks with `name_field()`) only
to ask whether two of them are equal: is this the actor's own account, is this membership in that
organization. So every question that differs from another only by a one-to-one renaming of its
names gets the same answer, and the policy memoizes answers by `shape_key`: the facts with each
distinct name replaced by the order of its first appearance (the actor first, then the resource),
one numbering for usernames and organization keys alike, so that no equality between any two
names is lost.

That holds only while the policy keeps to equality. `renaming_hazards` reads the loaded policy
text when it loads and lists every place where a name could be read otherwise: compared with a
literal (`actor.username = "help.desk"`), ordered, handed to a string method, bound to a variable,
matched against a pattern, passed to a rule that could take a string. A policy with any hazard is
memoized on its exact facts instead (service/policy.py), so a name-dependent rule is never
answered from another name's memo entry. The reading is conservative: what it does not recognise
as an equality between two name fields is a hazard.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, is_dataclass

from service.kernel.facts import HEAD_COUNT, NAME
from service.polar_text import Token, clauses, matching, split_args, tokens

# --- The shape of a question -----------------------------------------------------------------------

_KEY_FUNCTIONS: dict[type, typing.Callable] = {}
# The same shapes without the fields marked HEAD_COUNT: the key of a question whose rules cannot read an
# organization's head counts (service/policy.py says which), so that its answer is one entry whatever the
# counts, and whether or not they were read.
_UNCOUNTED_KEY_FUNCTIONS: dict[type, typing.Callable] = {}


def _fact_classes_in(annotation) -> set[type]:
    found = set()
    if is_dataclass(annotation):
        found.add(annotation)
    for arg in typing.get_args(annotation):
        if arg is not Ellipsis:
            found |= _fact_classes_in(arg)
    return found


def _compile(cls: type, uncounted: bool = False) -> typing.Callable:
    """Build (once per class) a function of (fact, names) giving the fact's shape as a flat tuple.

    Plain fields are kept as they are (a field another change adds is part of the shape without a
    word here); a field holding a fact or a tuple of facts is shaped in turn; a marked name field
    is replaced by its number in `names` (a dict of name -> order of first appearance). `uncounted`:
    the fields marked HEAD_COUNT are left out."""
    functions = _UNCOUNTED_KEY_FUNCTIONS if uncounted else _KEY_FUNCTIONS
    if cls in functions:
        return functions[cls]
    hints = typing.get_type_hints(cls)
    parts, scope = [], {"_cls": cls, "_k": functions}
    for f in fields(cls):
        annotation, value = hints[f.name], f"o.{f.name}"
        nested = _fact_classes_in(annotation)
        if uncounted and f.metadata.get(HEAD_COUNT):
            continue
        if f.metadata.get(NAME):
            if nested:
                raise TypeError(f"{cls.__name__}.{f.name}: a name field must hold a string")
            parts.append(f"(None if {value} is None else d.setdefault({value}, len(d)))")
        elif not nested:
            parts.append(value)
        elif len(nested) == 1 and (annotation in nested or typing.get_origin(annotation) in (typing.Union, types.UnionType)
                                   and type(None) in typing.get_args(annotation)):
            (inner,) = nested
            _compile(inner, uncounted)
            parts.append(f"(None if {value} is None else _k[{value}.__class__]({value}, d))")
        elif (typing.get_origin(annotation) is tuple and len(typing.get_args(annotation)) == 2
              and typing.get_args(annotation)[1] is Ellipsis and len(nested) == 1):
            _compile(next(iter(nested)), uncounted)
            parts.append(f"tuple([_k[x.__class__](x, d) for x in {value}])")
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: facts nested as {annotation!r} cannot be shaped")
    source = f"def shape(o, d):\n    return (_cls, {', '.join(parts)})\n"
    exec(compile(source, f"<shape of {cls.__name__}>", "exec"), scope)  # noqa: S102 - text built above from field names
    functions[cls] = scope["shape"]
    return scope["shape"]


def shape_key(*facts) -> tuple:
    """The facts of one question (fact objects and plain values such as the action), renamed
    consistently: two questions get equal keys exactly when one is the other with its names
    renamed one-to-one."""
    names: dict = {}
    shapes = _KEY_FUNCTIONS
    return tuple([shapes[f.__class__](f, names) if f.__class__ in shapes else f for f in facts])


def uncounted_shape_key(*facts) -> tuple:
    """`shape_key` without the organizations' head counts: for a question whose rules cannot read them."""
    names: dict = {}
    shapes = _UNCOUNTED_KEY_FUNCTIONS
    return tuple([shapes[f.__class__](f, names) if f.__class__ in shapes else f for f in facts])


def prepare(classes) -> None:
    """Compile the shape functions of the fact classes handed to the policy."""
    for cls in classes:
        _compile(cls)
        _compile(cls, uncounted=True)


# --- What the policy does with names ---------------------------------------------------------------

@dataclass(frozen=True)
class Hazard:
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


_BEFORE = {"if", "and", "or", "not", "(", ",", None}
_AFTER = {"and", "or", ")", ",", ";", None}
_EQUALITY = {"=", "!=", "=="}
_KEYWORDS = {"if", "and", "or", "not", "in", "forall", "matches", "isa", "new", "cut", "print", "nil", "true", "false"}


class _Schema:
    """What the fact classes hold, by the names Polar knows them by."""

    def __init__(self, polar_classes: dict[str, type]):
        self.classes = polar_classes
        self.fields: dict[type, dict[str, frozenset]] = {}
        for cls in polar_classes.values():
            hints = typing.get_type_hints(cls)
            kinds = {}
            for f in fields(cls):
                if f.metadata.get(NAME):
                    kinds[f.name] = frozenset({"name"})
                    continue
                annotation = hints[f.name]
                nested = _fact_classes_in(annotation)
                if not nested:
                    kinds[f.name] = frozenset({"other"})
                elif typing.get_origin(annotation) is tuple:
                    kinds[f.name] = frozenset(("facts", c) for c in nested)
                else:
                    kinds[f.name] = frozenset(("fact", c) for c in nested)
            self.fields[cls] = kinds
        self.attributes = {name for kinds in self.fields.values() for name in kinds}
        self.name_attributes = {name for kinds in self.fields.values() for name, k in kinds.items() if "name" in k}

    def step(self, kind: frozenset, attribute: str) -> frozenset | None:
        """The kind of `x.attribute` for x of `kind`; None if that could read a name (a hazard)."""
        out = set()
        for k in kind:
            if k == "name":
                if attribute not in self.attributes:
                    return None  # a string's own attribute or method
                continue  # a fact's field asked of a string fails whatever the string is
            if k == "unknown":
                owners = [c for c, f in self.fields.items() if attribute in f]
                if not owners:
                    out.add("other")
                for c in owners:
                    out |= self.fields[c][attribute]
            elif isinstance(k, tuple) and k[0] == "fact":
                out |= self.fields[k[1]].get(attribute, frozenset({"unknown"}))
            else:
                out.add("other")
        return frozenset(out) or frozenset({"other"})


def renaming_hazards(sources: list[tuple[str, str]], polar_classes: dict[str, type]) -> list[Hazard]:
    """Every place in the policy text (a list of (file name, text)) where a name could be read other
    than by equality with another name; empty when answers cannot depend on names."""
    schema = _Schema(polar_classes)
    parsed = []
    heads: dict[tuple[str, int], list[list[type | None]]] = {}
    hazards: list[Hazard] = []
    for file, text in sources:
        for clause in clauses(tokens(text)):
            if clause and clause[0].text == "?=":
                continue  # an inline query is checked when the policy loads; it decides nothing
            parsed.append((file, clause))
            if len(clause) >= 2 and clause[0].kind == "ident" and clause[1].text == "(":
                close = matching(clause, 1)
                if close is None:
                    continue
                specializers = []
                for arg in split_args(clause[2:close]):
                    if len(arg) >= 3 and arg[1].text == ":" and arg[2].text in polar_classes:
                        specializers.append(polar_classes[arg[2].text])
                    else:
                        specializers.append(None)
                heads.setdefault((clause[0].text, len(specializers)), []).append(specializers)

    for file, clause in parsed:
        hazards.extend(_clause_hazards(file, clause, schema, heads))
    return hazards


def _clause_hazards(file: str, clause: list[Token], schema: _Schema, heads) -> list[Hazard]:
    hazards = []
    for tok, nxt in zip(clause, clause[1:]):
        if tok.text == "new":
            hazards.append(Hazard(file, tok.line, "constructs an object (`new`), which could carry a name"))
        if tok.kind == "ident" and nxt.text == ":" and tok.text in schema.name_attributes:
            hazards.append(Hazard(file, tok.line, f"a pattern on the name field `{tok.text}`"))

    # The types a clause's variables are known to have: its head's specializers, then (read once
    # more) `x in y.field` over a field holding facts.
    env: dict[str, frozenset] = {}
    if len(clause) >= 2 and clause[0].kind == "ident" and clause[1].text == "(":
        close = matching(clause, 1)
        for arg in split_args(clause[2:close or len(clause)]):
            if len(arg) >= 3 and arg[0].kind == "ident" and arg[1].text == ":" and arg[2].text in schema.classes:
                env[arg[0].text] = frozenset({("fact", schema.classes[arg[2].text])})
    paths, _ = _paths(file, clause, schema, env)
    by_start = {start: kind for start, _end, kind in paths}
    for k, tok in enumerate(clause):
        if (tok.text == "in" and k >= 1 and clause[k - 1].kind == "ident" and (k < 2 or clause[k - 2].text != ".")
                and (k + 1) in by_start):
            element = frozenset(("fact", c[1]) for c in by_start[k + 1] if isinstance(c, tuple) and c[0] == "facts")
            if element:
                env.setdefault(clause[k - 1].text, element)
    paths, found = _paths(file, clause, schema, env)
    return hazards + found + _uses(file, clause, heads, paths)


def _paths(file, clause, schema: _Schema, env) -> tuple[list, list[Hazard]]:
    """Each variable followed by `.field` steps, with the kind of what it reads."""
    paths, hazards = [], []
    i = 0
    while i < len(clause):
        tok = clause[i]
        if (tok.kind == "ident" and tok.text not in _KEYWORDS and (i == 0 or clause[i - 1].text != ".")
                and i + 2 < len(clause) and clause[i + 1].text == "." and clause[i + 2].kind == "ident"):
            kind = env.get(tok.text, frozenset({"unknown"}))
            j = i
            while j + 2 < len(clause) and clause[j + 1].text == "." and clause[j + 2].kind == "ident":
                if j + 3 < len(clause) and clause[j + 3].text == "(":
                    hazards.append(Hazard(file, clause[j + 2].line, f"calls a method (`{_text(clause, i, j + 2)}(...)`)"))
                    kind = frozenset({"other"})
                    j += 2
                    break
                kind = schema.step(kind, clause[j + 2].text)
                j += 2
                if kind is None:
                    hazards.append(Hazard(file, clause[j].line, f"reads an attribute of a name (`{_text(clause, i, j)}`)"))
                    break
            if kind is not None:
                paths.append((i, j, kind))
            i = j + 1
            continue
        i += 1
    return paths, hazards


def _text(clause, start, end) -> str:
    return "".join(t.text for t in clause[start:min(end + 1, len(clause))])


def _uses(file, clause, heads, paths) -> list[Hazard]:
    """Each path that may hold a name must be one side of an equality whose other side may hold a
    name too, or an argument the called rule only takes as a fact object."""
    hazards = []
    by_start = {start: (end, kind) for start, end, kind in paths}
    paired = set()
    for start, end, kind in paths:
        if "name" not in kind or start in paired:
            continue
        text = _text(clause, start, end)
        before = clause[start - 1].text if start > 0 else None
        after = clause[end + 1].text if end + 1 < len(clause) else None
        if before in _BEFORE and after in _EQUALITY and (end + 2) in by_start:
            other_end, other_kind = by_start[end + 2]
            beyond = clause[other_end + 1].text if other_end + 1 < len(clause) else None
            if "name" in other_kind and beyond in _AFTER:
                paired.add(end + 2)
                continue
        if kind != frozenset({"name"}) and before in ("(", ",") and after in (")", ","):
            callee = _callee(clause, start)
            if callee is not None:
                name, position, arity = callee
                defined = heads.get((name, arity), [])
                if defined and all(spec[position] is not None for spec in defined):
                    continue  # every clause of the rule takes a fact object there, never a string
        hazards.append(Hazard(file, clause[start].line, f"`{text}` may hold a name and is not compared "
                                                         f"by equality with another name"))
    return hazards


def _callee(clause, start) -> tuple[str, int, int] | None:
    """The rule called with the argument at `start`: its name, the argument's position, the arity."""
    depth, position = 0, 0
    for k in range(start - 1, -1, -1):
        text = clause[k].text
        if clause[k].kind == "op" and text in ")]}":
            depth += 1
        elif clause[k].kind == "op" and text in "([{":
            if depth == 0:
                if text != "(" or k == 0 or clause[k - 1].kind != "ident" or clause[k - 1].text in _KEYWORDS:
                    return None
                if k >= 2 and clause[k - 2].text == ".":
                    return None
                close = matching(clause, k)
                if close is None:
                    return None
                return clause[k - 1].text, position, len(split_args(clause[k + 1:close]))
            depth -= 1
        elif text == "," and depth == 0:
            position += 1
    return None
