"""Polar text read as tokens and clauses, for what is checked and generated from the loaded policy
text (service/canonical.py, service/policy_generate.py). Not a parser: enough structure (clauses,
bracket nesting, arguments, positions) for readings that fail closed on anything else."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_TOKEN = re.compile(r'''
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>\?=|!=|==|<=|>=|[=<>+\-*/.,;:()\[\]{}|])
''', re.VERBOSE)


@dataclass(frozen=True)
class Token:
    text: str
    kind: str
    line: int
    start: int = 0


def tokens(text: str) -> list[Token]:
    """The tokens of a Polar text, each caller its own list of the shared (frozen) tokens.

    A policy load reads each text several times (the compiled evaluator's parser, the renaming check, the
    generated clauses), and a reload, or a copy of the policy with one clause changed (the workbench, the
    decision tables' mutation tests), reads mostly the same texts again: each text is read once."""
    return list(_tokens(text))


@lru_cache(maxsize=8)  # one load's texts and the next's: a few hundred kB each
def _tokens(text: str) -> tuple[Token, ...]:
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            out.append(Token(text[pos], "op", line, pos))  # unknown character: kept, so that nothing reads as safe
            pos += 1
            continue
        if m.lastgroup != "space":
            out.append(Token(m.group(), m.lastgroup, line, pos))
        line += m.group().count("\n")
        pos = m.end()
    return tuple(out)


def clauses(tokens: list[Token]) -> list[list[Token]]:
    """The rules of a policy text: its tokens cut after each `;` outside brackets (the `;` kept)."""
    return _cut(tokens, ";", keep=True)


def split_args(tokens: list[Token]) -> list[list[Token]]:
    """A call's or a rule head's arguments: the tokens cut at each `,` outside brackets (the `,` dropped)."""
    return _cut(tokens, ",", keep=False)


def _cut(tokens: list[Token], separator: str, keep: bool) -> list[list[Token]]:
    parts, current, depth = [], [], 0
    for tok in tokens:
        if tok.kind == "op" and tok.text in "([{":
            depth += 1
        elif tok.kind == "op" and tok.text in ")]}":
            depth -= 1
        if tok.text == separator and depth == 0:
            parts.append(current + [tok] if keep else current)
            current = []
        else:
            current.append(tok)
    if current:
        parts.append(current)
    return parts


def matching(tokens: list[Token], open_index: int) -> int | None:
    depth = 0
    for i in range(open_index, len(tokens)):
        if tokens[i].kind == "op" and tokens[i].text in "([{":
            depth += 1
        elif tokens[i].kind == "op" and tokens[i].text in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return None
