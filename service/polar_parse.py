"""The subset of Polar the compiled evaluator (service/polar_compile.py) runs, read into plain trees.

A parser for rules only: `name(PARAM, ...) [if BODY];` with the operators, literals and
specializers the policy uses, at Polar's own precedence (lowest first: `and`, `or`, `not`, `=`,
comparisons, `+ -`, `* /`, `in`/`matches`, `.`). Anything else (resource blocks, rule types,
inline queries, arithmetic, method calls, `cut`, `new`, patterns with fields, `print`, `debug`, a
string escape it does not know) raises `NotCompiled` naming the line: the evaluator then leaves the
policy to oso rather than guess. oso has already parsed and validated the same text; this parser
only has to be exact on what it accepts.

Terms and goals are tuples tagged by their first item:

    ("var", name)            a variable (each `_` is a distinct fresh one)
    ("const", value)         a string, integer, float, boolean, or nil (None)
    ("list", [term], rest)   a list; rest is a ("var", name) for `[a, *rest]`, else None
    ("dict", {key: term})    a dictionary literal
    ("lookup", term, name)   `term.name`, an attribute (never a method call)
    ("call", name, [term])   a rule call (as a goal)
    ("op", op, left, right)  `=`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `in` (as a goal)
    ("isa", term, class)     `term matches Class`
    ("not", goal), ("and", [goal]), ("or", [goal]), ("forall", goal, goal)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from service.polar_text import Token, tokens as tokenize

KEYWORDS = {"if", "and", "or", "not", "in", "forall", "matches", "cut", "debug", "print", "new", "true", "false"}
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}
_I64 = 2 ** 63


class NotCompiled(Exception):
    """The policy uses something the compiled evaluator does not run; oso answers instead."""


@dataclass(frozen=True)
class Param:
    term: tuple
    specializer: str | None  # a class name, or None


@dataclass(frozen=True)
class Rule:
    name: str
    params: tuple[Param, ...]
    body: tuple | None  # None: a fact
    source: str
    line: int


def parse(sources: list[tuple[str, str]]) -> list[Rule]:
    """Every rule of the (file name, text) sources, in order."""
    rules: list[Rule] = []
    for name, text in sources:
        rules.extend(_file_rules(name, text))
    return rules


@lru_cache(maxsize=8)
def _file_rules(name: str, text: str) -> tuple[Rule, ...]:
    """One file's rules, read once per text: a reload, or a copy of the policy with one file changed, parses
    only what changed (the rules are frozen; NotCompiled is raised again on every read, as it is not cached)."""
    return tuple(_Parser(name, tokenize(text)).rules())


class _Parser:
    def __init__(self, source: str, toks: list[Token]):
        self.source = source
        self.toks = toks
        self.pos = 0
        self.anon = 0

    # --- tokens ---
    def peek(self, ahead: int = 0) -> Token | None:
        i = self.pos + ahead
        return self.toks[i] if i < len(self.toks) else None

    def at(self, text: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok is not None and tok.text == text and tok.kind != "string"

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.fail("the text ends inside a rule")
        self.pos += 1
        return tok

    def expect(self, text: str) -> Token:
        tok = self.take()
        if tok.text != text or tok.kind == "string":
            raise self.fail(f"expected `{text}`, found `{tok.text}`", tok)
        return tok

    def fail(self, what: str, tok: Token | None = None) -> NotCompiled:
        tok = tok or self.peek() or (self.toks[-1] if self.toks else None)
        line = tok.line if tok else 0
        return NotCompiled(f"{self.source}:{line}: {what}")

    # --- rules ---
    def rules(self) -> list[Rule]:
        out = []
        while self.peek() is not None:
            out.append(self.rule())
        return out

    def rule(self) -> Rule:
        head = self.take()
        if head.kind != "ident" or head.text in KEYWORDS or not self.at("("):
            raise self.fail(f"`{head.text}` does not start a rule (only rules `name(...) if ...;` are compiled)", head)
        self.expect("(")
        params: list[Param] = []
        if not self.at(")"):
            while True:
                params.append(self.param())
                if self.at(","):
                    self.take()
                    continue
                break
        self.expect(")")
        body = None
        if self.at("if"):
            self.take()
            body = self.exp_and()
        self.expect(";")
        return Rule(head.text, tuple(params), body, self.source, head.line)

    def param(self) -> Param:
        term = self.term_only(self.exp_in())  # Polar: a parameter is an expression without comparisons
        if self.at(":"):
            self.take()
            if term[0] != "var" or term[1].startswith("_anon"):
                raise self.fail("a specializer on something other than a named variable")
            cls = self.take()
            if cls.kind != "ident" or cls.text in KEYWORDS or self.at("{"):
                raise self.fail(f"specializer `{cls.text}` is not a plain class name", cls)
            return Param(term, cls.text)
        return Param(term, None)

    # --- expressions, lowest precedence first ---
    def exp_and(self) -> tuple:
        return self.joined("and", self.exp_or)

    def exp_or(self) -> tuple:
        return self.joined("or", self.exp_not)

    def joined(self, word: str, operand) -> tuple:
        """`operand (word operand)*`: one operand as it is, several as (word, [operands])."""
        goals = [operand()]
        while self.at(word):
            self.take()
            goals.append(operand())
        return goals[0] if len(goals) == 1 else (word, goals)

    def exp_not(self) -> tuple:
        if self.at("not"):
            self.take()
            return ("not", self.exp_unify())
        return self.exp_unify()

    def exp_unify(self) -> tuple:
        left = self.exp_cmp()
        while self.at("="):
            self.take()
            left = ("op", "=", left, self.exp_cmp())
        return left

    def exp_cmp(self) -> tuple:
        left = self.exp_in()
        while any(self.at(op) for op in COMPARISONS):
            op = self.take().text
            left = ("op", op, left, self.exp_in())
        if any(self.at(op) for op in ("+", "-", "*", "/")):
            raise self.fail("arithmetic is not compiled")
        return left

    def exp_in(self) -> tuple:
        left = self.exp_dot()
        while self.at("in") or self.at("matches"):
            if self.take().text == "in":
                left = ("op", "in", left, self.exp_dot())
            else:
                cls = self.take()
                if cls.kind != "ident" or cls.text in KEYWORDS or self.at("{"):
                    raise self.fail(f"`matches {cls.text}`: only a plain class name is compiled", cls)
                left = ("isa", left, cls.text)
        return left

    def exp_dot(self) -> tuple:
        term = self.primary()
        while self.at("."):
            self.take()
            name = self.take()
            if name.kind != "ident" or name.text in KEYWORDS or "::" in name.text:
                raise self.fail(f"`.{name.text}` is not an attribute", name)
            if self.at("("):
                raise self.fail(f"method call `.{name.text}(...)` is not compiled", name)
            term = ("lookup", term, name.text)
        return term

    def primary(self) -> tuple:
        tok = self.take()
        if tok.kind == "string":
            return ("const", self.string(tok))
        if tok.kind == "number":
            return ("const", self.number(tok.text, tok))
        if tok.text == "-" and tok.kind == "op" and self.peek() is not None and self.peek().kind == "number":
            return ("const", -self.number(self.take().text, tok))
        if tok.kind == "op":
            if tok.text == "(":
                inner = self.exp_and()
                self.expect(")")
                return inner
            if tok.text == "[":
                return self.list_term()
            if tok.text == "{":
                return self.dict_term()
            raise self.fail(f"unexpected `{tok.text}`", tok)
        # an identifier
        if tok.text in ("true", "false"):
            return ("const", tok.text == "true")
        if tok.text == "forall":
            self.expect("(")
            cond = self.exp_and()
            self.expect(",")
            action = self.exp_and()
            self.expect(")")
            return ("forall", cond, action)
        if tok.text in KEYWORDS:
            raise self.fail(f"`{tok.text}` is not compiled", tok)
        if "::" in tok.text:
            raise self.fail(f"`{tok.text}` is not compiled", tok)
        if self.at("("):
            self.take()
            args = []
            if not self.at(")"):
                while True:
                    args.append(self.term_only(self.exp_and()))
                    if self.at(","):
                        self.take()
                        continue
                    break
            self.expect(")")
            return ("call", tok.text, args)
        if self.at("{"):
            raise self.fail(f"instance literal `{tok.text}{{...}}` is not compiled", tok)
        if tok.text == "_":
            self.anon += 1
            return ("var", f"_anon{self.anon}")
        if tok.text == "nil":
            return ("const", None)
        return ("var", tok.text)

    def list_term(self) -> tuple:
        items, rest = [], None
        if self.at("]"):
            self.take()
            return ("list", items, None)
        while True:
            if self.at("*"):
                self.take()
                name = self.take()
                if name.kind != "ident" or name.text in KEYWORDS:
                    raise self.fail("a rest variable must be a name", name)
                rest = ("var", name.text if name.text != "_" else f"_anon{self._next_anon()}")
                self.expect("]")
                return ("list", items, rest)
            items.append(self.term_only(self.exp_and()))
            if self.at(","):
                self.take()
                continue
            self.expect("]")
            return ("list", items, None)

    def _next_anon(self) -> int:
        self.anon += 1
        return self.anon

    def dict_term(self) -> tuple:
        fields: dict[str, tuple] = {}
        if self.at("}"):
            self.take()
            return ("dict", fields)
        while True:
            key = self.take()
            if key.kind != "ident" or key.text in KEYWORDS:
                raise self.fail(f"dictionary key `{key.text}` is not a name", key)
            self.expect(":")
            if key.text in fields:
                raise self.fail(f"dictionary key `{key.text}` given twice", key)
            fields[key.text] = self.term_only(self.exp_and())
            if self.at(","):
                self.take()
                continue
            self.expect("}")
            return ("dict", fields)

    def term_only(self, node: tuple) -> tuple:
        """A value position (argument, list item, operand) holds a term, never a goal."""
        if node[0] in ("var", "const", "lookup"):
            return node
        if node[0] == "list":
            return node
        if node[0] == "dict":
            return node
        raise self.fail(f"a {node[0]} expression where a value is expected")

    def string(self, tok: Token) -> str:
        raw = tok.text[1:-1]
        if "\\" not in raw:
            return raw
        out, i = [], 0
        while i < len(raw):
            char = raw[i]
            if char == "\\":
                nxt = raw[i + 1] if i + 1 < len(raw) else ""
                if nxt not in _ESCAPES:
                    raise self.fail(f"string escape `\\{nxt}` is not compiled", tok)
                out.append(_ESCAPES[nxt])
                i += 2
            else:
                out.append(char)
                i += 1
        return "".join(out)

    def number(self, text: str, tok: Token) -> int | float:
        if "." in text:
            return float(text)
        value = int(text)
        if value >= _I64:
            raise self.fail(f"integer {text} is out of Polar's range", tok)
        return value
