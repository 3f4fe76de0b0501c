"""The loaded Polar policy compiled to Python, so that a decision is Python code run on the frozen fact
dataclasses instead of a walk of Polar's VM with a JSON round trip across the FFI for every attribute.

`compile_policy(sources, classes)` reads the same texts oso loads (the authored files and the clauses
generated from their rule lists) with service/polar_parse.py and turns every rule into a Python
generator function (source text passed to `compile()`): SLD resolution, each solution a `yield` with
its bindings in place, undone on the way back. A rule's clauses are indexed by their first argument
when it is a literal, as Polar does.

Exact, or not at all:
- At load, anything outside the subset this compiles raises `NotCompiled` (polar_parse.py lists it);
  the caller (service/policy.py) then asks oso for everything.
- At run time, anything whose Polar meaning this does not reproduce with certainty raises `Unsure`
  (a value of a type oso hands Polar differently, a comparison Polar refuses or leaves open, an
  unbound variable where Polar would build a constraint, an error such as a missing attribute);
  the caller asks oso that question, which answers or fails as it always has.
The values it answers on are those oso hands Polar as they are: `str`, `bool`, `int`, `float`,
`list`, `dict` (Polar's own types), and as host instances `None` (nil), `tuple` and instances of
the registered classes, whose attributes are read with `getattr`. Polar's types are kept apart as
Polar keeps them: `true` never unifies with `1`, a string never with a number, a tuple (a host
instance) never with a list literal; but `x matches Integer` holds for `true`, as oso's host
`isinstance` says, and `1 == true` holds, as Polar's numeric comparison says.

No oso import here: service/policy.py is the one module that talks to oso.
"""
from __future__ import annotations

from dataclasses import dataclass

from service.polar_parse import NotCompiled, Rule, parse

__all__ = ["CompiledPolicy", "NotCompiled", "Out", "Unsure", "compile_policy"]


class Unsure(Exception):
    """This question is not answered here with certainty: ask oso."""


# --- Runtime: variables, the trail, unification ---------------------------------------------------

_U = object()  # an unbound variable's reference


class Var:
    """A logic variable: bound by setting `ref` (recorded on the trail so it can be undone); `cons` are
    the classes a specializer requires of it once it is bound (Polar checks them at binding time)."""

    __slots__ = ("ref", "cons")

    def __init__(self):
        self.ref = _U
        self.cons = None


class Out:
    """An answer variable of a query: `query` returns what it is bound to, by name."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Out({self.name!r})"


class PList:
    """A list built by the policy from terms holding variables (`[first, *rest]`, `[x, "a"]`); `rest` is
    the tail (a variable, or None). Lists without variables are plain Python lists."""

    __slots__ = ("items", "rest")

    def __init__(self, items: list, rest=None):
        self.items = items
        self.rest = rest


def deref(t):
    while type(t) is Var:
        r = t.ref
        if r is _U:
            return t
        t = r
    return t


def undo(trail: list, mark: int) -> None:
    while len(trail) > mark:
        v = trail.pop()
        if type(v) is tuple:
            v[0].cons = v[1]
        else:
            v.ref = _U


_PRIMITIVE = (str, bool, int, float, list, dict)
_I64 = 2 ** 63
_BUILTIN_CLASSES = {"String": str, "Integer": int, "Float": float, "Boolean": bool, "List": list, "Dictionary": dict}


class _Runtime:
    """The operations the generated code calls, bound to one policy's registered classes."""

    def __init__(self, classes: dict[str, type]):
        self.classes = {**_BUILTIN_CLASSES, **classes}
        self.host = frozenset(classes.values())  # instances Polar reads through the host
        # Every type a value may have here; anything else is handed to oso.
        self.domain = frozenset({str, bool, int, float, list, dict, tuple, type(None), *self.host})

    # A value from the host (an attribute, a query argument) must be of a type whose Polar meaning is known.
    def known(self, v):
        if type(v) not in self.domain:
            raise Unsure(f"a value of type {type(v).__name__}")
        if type(v) is int and not -_I64 <= v < _I64:
            raise Unsure("an integer outside Polar's 64 bits")
        return v

    def lookup(self, x, name: str):
        if type(x) not in self.host:
            x = deref(x)
            if type(x) not in self.host:
                raise Unsure(f"attribute `{name}` of a {type(x).__name__}")
        try:
            value = getattr(x, name)
        except AttributeError as exc:
            raise Unsure(f"no attribute `{name}` on {type(x).__name__}") from exc
        if type(value) not in self.domain:
            raise Unsure(f"attribute `{name}` is a {type(value).__name__}")
        if type(value) is int and not -_I64 <= value < _I64:
            raise Unsure("an integer outside Polar's 64 bits")
        return value

    def bind(self, v, value, trail) -> bool:
        cons = v.cons
        if cons is not None:
            if type(value) is Var:
                raise Unsure("two variables aliased under a specializer")
            for cls in cons:
                if not self.isinstance(value, cls):
                    return False
        v.ref = value
        trail.append(v)
        return True

    def unify(self, a, b, trail) -> bool:
        a = deref(a)
        b = deref(b)
        ta, tb = type(a), type(b)
        if ta is Var:
            if a is b:
                return True
            return self.bind(a, b, trail)
        if tb is Var:
            return self.bind(b, a, trail)
        if ta is str and tb is str:
            return a == b
        if ta is PList or tb is PList:
            if ta not in (list, PList) or tb not in (list, PList):
                raise Unsure("a list pattern against something other than a list")
            return self.unify_lists(a, b, trail)
        if ta is list and tb is list:
            return self.unify_lists(a, b, trail)
        if ta not in self.domain or tb not in self.domain:
            raise Unsure(f"unifying a {ta.__name__} with a {tb.__name__}")
        if ta is bool or tb is bool:
            return ta is tb and a is b
        if ta in (int, float) and tb in (int, float):
            return a == b
        if ta is dict and tb is dict:
            if a.keys() != b.keys():
                return False
            return all(self.unify(a[k], b[k], trail) for k in a)
        a_host = ta not in _PRIMITIVE
        b_host = tb not in _PRIMITIVE
        if a_host and b_host:
            return a == b  # the host's equality, as oso asks it
        return False  # a host instance and a Polar value, or two Polar values of different types

    def unify_lists(self, a, b, trail) -> bool:
        a_items, a_rest = (a.items, a.rest) if type(a) is PList else (a, None)
        b_items, b_rest = (b.items, b.rest) if type(b) is PList else (b, None)
        n = min(len(a_items), len(b_items))
        for i in range(n):
            if not self.unify(a_items[i], b_items[i], trail):
                return False
        a_left, b_left = a_items[n:], b_items[n:]
        if a_left:  # b is shorter: its rest must take what a has left
            if b_rest is None:
                return False
            return self.unify(b_rest, PList(list(a_left), a_rest) if type(a) is PList else a_left, trail)
        if b_left:
            if a_rest is None:
                return False
            return self.unify(a_rest, PList(list(b_left), b_rest) if type(b) is PList else b_left, trail)
        if a_rest is None and b_rest is None:
            return True
        return self.unify(a_rest if a_rest is not None else [], b_rest if b_rest is not None else [], trail)

    def items(self, x) -> list:
        """The elements of a list value (a PList's rest followed), or Unsure."""
        x = deref(x)
        t = type(x)
        if t is list or t is tuple:
            return x
        if t is PList:
            out = list(x.items)
            rest = deref(x.rest) if x.rest is not None else []
            rest_items = self.items(rest) if type(rest) in (list, PList) else None
            if rest_items is None:
                raise Unsure("a list whose tail is not a list")
            return out + list(rest_items)
        if t is str:
            return list(x)  # Polar iterates a string's characters
        raise Unsure(f"`in` over a {t.__name__}")

    def member(self, left, right, trail):
        """`left in right`: each element of right that left unifies with, in order."""
        right = deref(right)
        elements = self.items(right)
        left = deref(left)
        if type(left) is str and type(right) is not PList:
            # Polar's unification of a string with each element is Python's equality here: a
            # string equals only a string (the domain has no str subclasses).
            for item in elements:
                if type(item) is str:
                    if item == left:
                        yield
                elif type(item) not in self.domain:
                    raise Unsure(f"a value of type {type(item).__name__}")
            return
        mark = len(trail)
        for item in elements:
            if type(item) not in self.domain and type(item) not in (Var, PList):
                raise Unsure(f"a value of type {type(item).__name__}")
            if self.unify(left, item, trail):
                yield
            undo(trail, mark)

    def isinstance(self, value, cls: type) -> bool:
        value = self.resolve(value)
        return isinstance(value, cls)

    def isa(self, x, cls_name: str) -> bool:
        x = deref(x)
        if type(x) is Var:
            raise Unsure("`matches` on an unbound variable")
        return self.isinstance(x, self.classes[cls_name])

    def specialize(self, x, cls: type, trail) -> bool:
        """A parameter's specializer: checked now, or when the variable is bound."""
        x = deref(x)
        if type(x) is Var:
            trail.append((x, x.cons))
            x.cons = (*(x.cons or ()), cls)
            return True
        return self.isinstance(x, cls)

    # Comparisons: Polar's own where certain, Unsure otherwise.
    def equal(self, a, b) -> bool:
        a, b = deref(a), deref(b)
        ta, tb = type(a), type(b)
        if ta is str and tb is str:
            return a == b
        if ta is Var or tb is Var:
            raise Unsure("a comparison with an unbound variable")
        if ta not in self.domain or tb not in self.domain:
            raise Unsure(f"comparing a {ta.__name__} with a {tb.__name__}")
        if ta in (int, float) and tb in (int, float):
            return a == b
        if ta is bool and tb is bool:
            return a is b
        if ta in (list, dict, PList) or tb in (list, dict, PList):
            raise Unsure("comparing lists or dictionaries")
        if ta not in _PRIMITIVE or tb not in _PRIMITIVE:
            return a == b  # the host's equality
        raise Unsure(f"comparing a {ta.__name__} with a {tb.__name__}")  # Polar refuses or coerces

    def order(self, op: str, a, b) -> bool:
        a, b = deref(a), deref(b)
        ta, tb = type(a), type(b)
        if not ((ta is str and tb is str) or (ta in (int, float) and tb in (int, float))):
            raise Unsure(f"`{op}` between a {ta.__name__} and a {tb.__name__}")
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        return a >= b

    def ground(self, x) -> bool:
        x = deref(x)
        t = type(x)
        if t is Var:
            return False
        if t is PList:
            return all(self.ground(i) for i in x.items) and (x.rest is None or self.ground(x.rest))
        if t is dict:
            return all(self.ground(v) for v in x.values())
        return True

    def resolve(self, x):
        """A value with every bound variable replaced, as oso would hand it back."""
        x = deref(x)
        t = type(x)
        if t is Var:
            raise Unsure("an answer left unbound")
        if t is PList:
            return [self.resolve(i) for i in self.items(x)]
        if t is list:
            return [self.resolve(i) for i in x]
        if t is dict:
            return {k: self.resolve(v) for k, v in x.items()}
        return x


# --- Compiling ---------------------------------------------------------------------------------------

def compile_policy(sources: list[tuple[str, str]], classes: dict[str, type]) -> "CompiledPolicy":
    """The policy of these (file name, text) sources compiled, or NotCompiled with the reason."""
    rules = parse(sources)
    return _Compiler(rules, classes).build()


@dataclass
class _Clause:
    rule: Rule
    function: str


def _parts(node) -> tuple:
    """The terms and goals directly inside a parsed node (polar_parse's tuples), in order."""
    tag = node[0]
    if tag == "list":
        return (*node[1], node[2]) if node[2] is not None else tuple(node[1])
    if tag == "dict":
        return tuple(node[1].values())
    if tag in ("and", "or"):
        return tuple(node[1])
    if tag in ("lookup", "isa", "not"):
        return (node[1],)
    if tag == "call":
        return tuple(node[2])
    if tag == "op":
        return (node[2], node[3])
    if tag == "forall":
        return (node[1], node[2])
    return ()


class _Compiler:
    MAX_LOOPS = 12  # nested loops per generated function (Python's limit is 20)

    def __init__(self, rules: list[Rule], classes: dict[str, type]):
        self.rules = rules
        self.classes = classes
        self.known_classes = {**_BUILTIN_CLASSES, **classes}
        self.by_name: dict[tuple[str, int], list[Rule]] = {}
        for rule in rules:
            self.by_name.setdefault((rule.name, len(rule.params)), []).append(rule)
        self.names = {name for name, _arity in self.by_name}
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self.counter = 0

    # --- names ---
    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value, force: bool = False) -> str:
        if not force and (type(value) is str or value is None or type(value) is bool or type(value) in (int, float)):
            return repr(value)
        name = self.fresh("K")
        self.consts[name] = value
        return name

    def dispatcher(self, name: str, arity: int) -> str:
        return f"P_{name}_{arity}"

    def build(self) -> "CompiledPolicy":
        for rule in self.rules:
            self.check_rule(rule)
        # Every clause's function is named first, so that a call can name the clauses it may run.
        dispatchers: dict[tuple[str, int], list[_Clause]] = {
            key: [_Clause(rule, self.fresh(f"C_{rule.name}_")) for rule in rules]
            for key, rules in self.by_name.items()}
        self.dispatchers = dispatchers
        for clauses in dispatchers.values():
            for clause in clauses:
                self.emit_clause(clause.function, clause.rule)
        index_setup = []
        for (name, arity), clauses in dispatchers.items():
            index_setup.append(self.emit_dispatcher(name, arity, clauses))
        text = "\n".join(self.lines)
        namespace = self.namespace()
        try:
            code = compile(text, "<compiled policy>", "exec")
        except (SyntaxError, RecursionError, MemoryError) as exc:  # a rule too deep for Python's parser
            raise NotCompiled(f"the generated Python does not compile: {exc}") from exc
        exec(code, namespace)  # noqa: S102 - text generated above from the parsed policy, nothing else
        for setup in index_setup:
            setup(namespace)
        entries = {key: namespace[self.dispatcher(*key)] for key in dispatchers}
        return CompiledPolicy(entries, namespace["_rt"], text)

    def namespace(self) -> dict:
        rt = _Runtime(self.classes)
        return {"_rt": rt, "Var": Var, "PList": PList, "undo": undo, "deref": deref, "Unsure": Unsure,
                "no_clause": _no_clause,
                "unify": rt.unify, "lookup": rt.lookup, "member": rt.member, "equal": rt.equal,
                "order": rt.order, "isa": rt.isa, "specialize": rt.specialize, "ground": rt.ground,
                **self.consts}

    # --- checking what a rule uses ---
    def check_rule(self, rule: Rule) -> None:
        where = f"{rule.source}:{rule.line}"
        for param in rule.params:
            if param.specializer is not None and param.specializer not in self.known_classes:
                raise NotCompiled(f"{where}: specializer `{param.specializer}` is no registered class")
            self.check_term(param.term, where, head=True)
        if rule.body is not None:
            self.check_goal(rule.body, where)

    def check_term(self, term, where: str, head: bool = False) -> None:
        tag = term[0]
        if tag == "var":
            if term[1] in self.known_classes:
                raise NotCompiled(f"{where}: the class `{term[1]}` used as a value")
        elif tag == "const":
            if head and term[1] is None:
                raise NotCompiled(f"{where}: nil as a parameter")
        elif tag == "list":
            for item in term[1]:
                self.check_term(item, where, head)
            if term[2] is not None:
                self.check_term(term[2], where, head)
        elif tag == "dict":
            for value in term[1].values():
                self.check_term(value, where, head)
        elif tag == "lookup":
            if head:
                raise NotCompiled(f"{where}: an attribute in a rule's head")
            self.check_term(term[1], where)
        else:
            raise NotCompiled(f"{where}: a {tag} expression where a value is expected")

    def check_goal(self, goal, where: str) -> None:
        tag = goal[0]
        if tag == "call":
            if goal[1] not in self.names:
                raise NotCompiled(f"{where}: call to `{goal[1]}`, which no rule defines")
            for arg in goal[2]:
                self.check_term(arg, where)
        elif tag == "op":
            self.check_term(goal[2], where)
            self.check_term(goal[3], where)
        elif tag == "isa":
            self.check_term(goal[1], where)
            if goal[2] not in self.known_classes:
                raise NotCompiled(f"{where}: `matches {goal[2]}`: no registered class")
        elif tag == "not":
            self.check_goal(goal[1], where)
        elif tag in ("and", "or"):
            for g in goal[1]:
                self.check_goal(g, where)
        elif tag == "forall":
            self.check_goal(goal[1], where)
            self.check_goal(goal[2], where)
        else:
            raise NotCompiled(f"{where}: a {tag} used as a condition")

    # --- variables ---
    @staticmethod
    def vars_of(node, out: list) -> list:
        if node[0] == "var":
            if node[1] not in out:
                out.append(node[1])
        for child in _parts(node):
            _Compiler.vars_of(child, out)
        return out

    # --- emitting ---
    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def emit_clause(self, fn: str, rule: Rule) -> None:
        arity = len(rule.params)
        args = [f"a{i}" for i in range(arity)]
        self.local = {}  # variable name -> Python local
        # How often each variable occurs in the clause, and where (to tell the variables a `not` or
        # `forall` shares with the rest of the clause).
        all_vars: list[str] = []
        for p in rule.params:
            self.vars_of(p.term, all_vars)
        if rule.body is not None:
            self.vars_of(rule.body, all_vars)
        self.rule = rule
        self.emit(0, f"def {fn}({', '.join([*args, 'T'])}):")
        self.emit(1, "m0 = len(T)")
        # Plain variable parameters seen first take the argument itself; every other variable is fresh.
        direct: dict[str, str] = {}
        for i, p in enumerate(rule.params):
            if p.term[0] == "var" and p.term[1] not in direct:
                direct[p.term[1]] = args[i]
        for name in all_vars:
            local = f"v{len(self.local)}"
            self.local[name] = local
            if name in direct:
                self.emit(1, f"{local} = {direct[name]}")
            else:
                self.emit(1, f"{local} = Var()")
        tests = []
        seen: set[str] = set()
        for i, p in enumerate(rule.params):
            term = p.term
            if term[0] == "var" and direct.get(term[1]) == args[i] and term[1] not in seen:
                seen.add(term[1])
            else:
                if term[0] == "var":
                    seen.add(term[1])
                tests.append(f"unify({args[i]}, {self.term(term)}, T)")
            if p.specializer is not None:
                # A value of exactly the class passes at once (isinstance would say so); anything else,
                # a variable included, is asked of `specialize`.
                cls = self.const(self.known_classes[p.specializer], force=True)
                tests.append(f"(type({args[i]}) is {cls} or specialize({args[i]}, {cls}, T))")
        goals = self.flatten(rule.body) if rule.body is not None else []
        head_vars: list[str] = []
        for p in rule.params:
            self.vars_of(p.term, head_vars)
        self.goal_vars_before = frozenset()
        if tests:
            self.emit(1, f"if {' and '.join(tests)}:")
            self.emit_conj(goals, 2, 0, frozenset(head_vars))
        else:
            self.emit_conj(goals, 1, 0, frozenset(head_vars))
        self.emit(1, "if len(T) > m0:")
        self.emit(2, "undo(T, m0)")
        self.emit(0, "")

    def flatten(self, goal) -> list:
        if goal[0] == "and":
            return [g for sub in goal[1] for g in self.flatten(sub)]
        return [goal]

    def term(self, term) -> str:
        """A Python expression building the term's value from the clause's locals."""
        tag = term[0]
        if tag == "var":
            return self.local[term[1]]
        if tag == "const":
            return self.const(term[1])
        if tag == "lookup":
            return f"lookup({self.term(term[1])}, {term[2]!r})"
        if tag == "list":
            if term[2] is None and all(self.is_ground(i) for i in term[1]):
                return self.const([self.value_of(i) for i in term[1]])
            items = ", ".join(self.term(i) for i in term[1])
            rest = self.term(term[2]) if term[2] is not None else "None"
            return f"PList([{items}], {rest})"
        if tag == "dict":
            if all(self.is_ground(v) for v in term[1].values()):
                return self.const({k: self.value_of(v) for k, v in term[1].items()})
            return "{" + ", ".join(f"{k!r}: {self.term(v)}" for k, v in term[1].items()) + "}"
        raise NotCompiled(f"{self.rule.source}:{self.rule.line}: a {tag} expression where a value is expected")

    def is_ground(self, term) -> bool:
        if term[0] == "const":
            return True
        if term[0] == "list":
            return term[2] is None and all(self.is_ground(i) for i in term[1])
        if term[0] == "dict":
            return all(self.is_ground(v) for v in term[1].values())
        return False

    def value_of(self, term):
        if term[0] == "const":
            return term[1]
        if term[0] == "list":
            return [self.value_of(i) for i in term[1]]
        return {k: self.value_of(v) for k, v in term[1].items()}

    def semidet(self, goal) -> str | None:
        """A Python condition for a goal with at most one solution, or None for one with many."""
        tag = goal[0]
        if tag == "op":
            op, left, right = goal[1], self.term(goal[2]), self.term(goal[3])
            if op == "=":
                for a, b in ((goal[2], goal[3]), (goal[3], goal[2])):
                    if b[0] == "const" and a[0] != "const":
                        return self.unify_literal(self.term(a), b[1])
                return f"unify({left}, {right}, T)"
            if op == "==":
                return f"equal({left}, {right})"
            if op == "!=":
                return f"not equal({left}, {right})"
            if op in ("<", "<=", ">", ">="):
                return f"order({op!r}, {left}, {right})"
            return None  # `in`
        if tag == "isa":
            return f"isa({self.term(goal[1])}, {goal[2]!r})"
        return None

    def unify_literal(self, expr: str, value) -> str:
        """`expr = literal`: a value of the literal's own type compares at once; anything else (a variable
        to bind, another type) is asked of `unify`."""
        w = self.fresh("w")
        lit = repr(value)
        if type(value) is str:
            return f"({w} == {lit} if type({w} := {expr}) is str else unify({w}, {lit}, T))"
        if type(value) is bool:
            return f"({w} is {lit} if type({w} := {expr}) is bool else unify({w}, {lit}, T))"
        if value is None:
            return f"(True if ({w} := {expr}) is None else unify({w}, None, T))"
        return f"unify({expr}, {lit}, T)"

    def emit_conj(self, goals: list, indent: int, loops: int, outside: frozenset) -> None:
        """Code running `goals` in order, yielding at each solution. `outside`: the variables the
        clause uses beyond these goals (to tell which variables a negation shares)."""
        if not goals:
            self.emit(indent, "yield")
            return
        goal, rest = goals[0], goals[1:]
        if loops >= self.MAX_LOOPS:  # the rest in a function of its own, so that loops do not nest too deep
            fn = self.fresh("r")
            self.emit(indent, f"def {fn}():")
            self.emit_conj(goals, indent + 1, 0, outside)
            self.emit(indent, f"for _ in {fn}():")
            self.emit(indent + 1, "yield")
            return
        # What this goal shares: the variables outside the conjunction and those of its other goals.
        around = set(outside)
        for i, other in enumerate(goals):
            if i:
                self.vars_of(other, around_list := [])
                around.update(around_list)
        around = frozenset(around | set(self.goal_vars_before))
        condition = self.semidet(goal)
        if condition is not None:
            mark = self.fresh("m")
            binds = goal[0] == "op" and goal[1] == "="
            if binds:
                self.emit(indent, f"{mark} = len(T)")
            self.emit(indent, f"if {condition}:")
            self.with_before(goal, lambda: self.emit_conj(rest, indent + 1, loops, outside))
            if binds:
                self.emit(indent, f"if len(T) > {mark}:")
                self.emit(indent + 1, f"undo(T, {mark})")
            return
        tag = goal[0]
        if tag in ("not", "forall"):
            self.emit_negation(goal, indent, around)
            self.emit(indent, f"if {self.last_found} is True:")
            self.with_before(goal, lambda: self.emit_conj(rest, indent + 1, loops, outside))
            return
        if tag == "call":
            name, args = goal[1], goal[2]
            call_args = ", ".join([*(self.term(a) for a in args), "T"])
            source = self.call_source(name, args, call_args)
        elif tag == "op" and goal[1] == "in":
            source = f"member({self.term(goal[2])}, {self.term(goal[3])}, T)"
        elif tag == "or":
            fn = self.fresh("o")
            self.emit(indent, f"def {fn}():")
            for alternative in goal[1]:
                others = set(around)
                for other in goal[1]:
                    if other is not alternative:
                        others.update(self.vars_of(other, []))
                self.emit_conj(self.flatten(alternative), indent + 1, 0, frozenset(others))
            self.emit(indent + 1, "return")
            self.emit(indent + 1, "yield")
            source = f"{fn}()"
        else:
            raise NotCompiled(f"{self.rule.source}:{self.rule.line}: a {tag} used as a condition")
        self.emit(indent, f"for _ in {source}:")
        self.with_before(goal, lambda: self.emit_conj(rest, indent + 1, loops + 1, outside))

    def with_before(self, goal, emit) -> None:
        """Emit the goals after `goal` knowing that its variables occur before them."""
        saved = self.goal_vars_before
        self.goal_vars_before = saved | frozenset(self.vars_of(goal, []))
        try:
            emit()
        finally:
            self.goal_vars_before = saved

    def call_source(self, name: str, args: list, call_args: str) -> str:
        """A call of a rule. With a literal first argument, the clauses it may run are known here (the
        ones the rule's index would pick at run time): none is a call that fails once its arguments are
        evaluated, one is called directly; otherwise the rule's entry picks them."""
        first = args[0] if args else None
        if first is not None and first[0] == "const" and type(first[1]) in (str, bool, int, float):
            key = (type(first[1]) is bool, first[1])
            candidates = [c.function for c in self.dispatchers[(name, len(args))]
                          if c.rule.params[0].term[0] != "const"
                          or type(c.rule.params[0].term[1]) not in (str, bool, int, float)
                          or (type(c.rule.params[0].term[1]) is bool, c.rule.params[0].term[1]) == key]
            if not candidates:
                return f"no_clause({call_args})"
            if len(candidates) == 1:
                return f"{candidates[0]}({call_args})"
        return f"{self.dispatcher(name, len(args))}({call_args})"

    def emit_negation(self, goal, indent: int, around: frozenset) -> None:
        """`not G` holds when G has no solution; `forall(C, A)` when `C and not A` has none. Polar gives
        other meanings when a variable the goal shares with the rest of the clause is still unbound
        (a constraint, a binding that escapes), so that case is Unsure. Sets `self.last_found` to the
        name of a local that is True when the negation holds."""
        inner = goal[1] if goal[0] == "not" else ("and", [goal[1], ("not", goal[2])])
        shared = [v for v in self.vars_of(goal, []) if v in around]
        for name in shared:
            self.emit(indent, f"if not ground({self.local[name]}):")
            self.emit(indent + 1, f"raise Unsure('`not` or `forall` over the unbound variable {name}')")
        fn = self.fresh("n")
        saved = self.goal_vars_before
        self.goal_vars_before = frozenset()
        self.emit(indent, f"def {fn}():")
        self.emit_conj(self.flatten(inner), indent + 1, 0, around)
        self.emit(indent + 1, "return")
        self.emit(indent + 1, "yield")
        self.goal_vars_before = saved
        mark = self.fresh("m")
        found = self.fresh("f")
        self.emit(indent, f"{mark} = len(T)")
        self.emit(indent, f"{found} = next({fn}(), True)")
        self.emit(indent, f"undo(T, {mark})")
        self.last_found = found

    def emit_dispatcher(self, name: str, arity: int, clauses: list[_Clause]):
        """A rule's entry: its clauses in order, only those whose literal first parameter can match."""
        fn = self.dispatcher(name, arity)
        args = [f"a{i}" for i in range(arity)]
        table = self.fresh("I")
        everything = tuple(c.function for c in clauses)
        indexed = arity > 0 and any(
            c.rule.params[0].term[0] == "const" and type(c.rule.params[0].term[1]) in (str, bool, int, float)
            for c in clauses)
        self.emit(0, f"def {fn}({', '.join([*args, 'T'])}):")
        if indexed:
            self.emit(1, "k = a0 if type(a0) is not Var else deref(a0)")
            self.emit(1, "t = type(k)")
            self.emit(1, "if t is str:")
            self.emit(2, f"clauses = {table}_str.get(k, {table}_open)")
            self.emit(1, "elif t is bool or t is int or t is float:")
            self.emit(2, f"clauses = {table}.get((t is bool, k), {table}_open)")
            self.emit(1, "else:")
            self.emit(2, f"clauses = {table}_all")
        else:
            self.emit(1, f"clauses = {table}_all")
        self.emit(1, "for c in clauses:")
        self.emit(2, f"yield from c({', '.join([*args, 'T'])})")
        self.emit(0, "")

        def setup(namespace: dict) -> None:
            functions = [namespace[f] for f in everything]
            namespace[f"{table}_all"] = tuple(functions)
            if not indexed:
                return
            open_ = tuple(f for c, f in zip(clauses, functions) if c.rule.params[0].term[0] != "const")
            namespace[f"{table}_open"] = open_
            index: dict = {}
            keys = {(type(c.rule.params[0].term[1]) is bool, c.rule.params[0].term[1])
                    for c in clauses if c.rule.params[0].term[0] == "const"
                    and type(c.rule.params[0].term[1]) in (str, bool, int, float)}
            for key in keys:
                # The clauses a literal first argument can match, in their order: those whose first
                # parameter is that literal (an equal number of another type, 1 and 1.0, matches too;
                # true and 1 do not) and those whose first parameter is not a literal.
                index[key] = tuple(
                    f for c, f in zip(clauses, functions)
                    if c.rule.params[0].term[0] != "const"
                    or type(c.rule.params[0].term[1]) not in (str, bool, int, float)
                    or ((type(c.rule.params[0].term[1]) is bool, c.rule.params[0].term[1]) == key
                        and (type(c.rule.params[0].term[1]) is str) == (type(key[1]) is str)))
            namespace[table] = index
            namespace[f"{table}_str"] = {key[1]: value for key, value in index.items() if type(key[1]) is str}

        return setup


def _no_clause(*_args):
    return iter(())


class CompiledPolicy:
    """The compiled rules, asked like oso's `query_rule`: arguments are values or `Out` variables."""

    def __init__(self, entries: dict[tuple[str, int], object], runtime: _Runtime, source: str):
        self.entries = entries
        self.runtime = runtime
        self.source = source  # the generated Python, for reading when a question is in doubt

    def _entry(self, name: str, args: tuple):
        entry = self.entries.get((name, len(args)))
        if entry is None:
            if not any(n == name for n, _arity in self.entries):
                raise Unsure(f"no rule `{name}`")  # oso: a query for an undefined rule is an error
            return None
        for arg in args:
            if type(arg) is not Out:
                self.runtime.known(arg)
        return entry

    def query(self, name: str, *args) -> list[dict]:
        """Every solution, each as {out variable's name: its value}."""
        entry = self._entry(name, args)
        if entry is None:
            return []
        outs = {a.name: Var() for a in args if type(a) is Out}
        args = tuple(outs[a.name] if type(a) is Out else a for a in args)
        trail: list = []
        results = []
        try:
            for _ in entry(*args, trail):
                results.append({name: self.runtime.resolve(v) for name, v in outs.items()})
        except RecursionError as exc:
            raise Unsure("recursion too deep") from exc
        finally:
            undo(trail, 0)
        return results

    def query_once(self, name: str, *args) -> bool:
        """Whether there is a solution."""
        entry = self._entry(name, args)
        if entry is None:
            return False
        args = tuple(Var() if type(a) is Out else a for a in args)
        trail: list = []
        try:
            return next(entry(*args, trail), True) is None
        except RecursionError as exc:
            raise Unsure("recursion too deep") from exc
        finally:
            undo(trail, 0)
