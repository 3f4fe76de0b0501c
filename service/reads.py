"""Answers by what an evaluation read: a memo keyed only by the facts a decision turned on.

Polar reads the facts of a question one attribute at a time, asking the host for each. So the
facts are handed to it wrapped (`Reader.wrap`), each wrapper recording every field read: its path
from the question's roots (`(1, "organization", "active_admins")`) and what was read, namely

- a plain value (with its class, so `True` and `1` stay apart),
- a name (a field `service/facts.py` marks) as its order of first appearance in the question when
  the policy reads names by equality only (service/canonical.py), else as it is,
- a nested fact as its class, a tuple as the classes of its facts and its plain values.

A Polar evaluation on a loaded policy is a function of what its host answers (the facts are frozen,
nothing else is consulted), and the answer is the set of its results, whatever order the engine
explores them in. So a later question of the same action whose facts read the same at every path
an earlier evaluation read gets that evaluation's answer, however its other facts differ: a
member's claims do not turn on the organization's admin count, an unknown actor's denial not on
the target's grants. The reads are kept as a decision tree (`ReadTree`): each node names the path
read next, each branch a value read there, each leaf an answer. Finding an answer walks the tree
on the new question's facts, reading plain attributes, no engine involved.

Exact and fail closed: a read of anything but a field (a method, a property) marks the evaluation
as not replayable and nothing is kept (a method of a value read, such as a tuple's, is a function of
what was read); the policy's own names are a different branch unless it reads them by equality only; an evaluation that raises keeps nothing; the tree belongs to
one loaded engine, so a reload starts empty; a changed fact that the decision read is a different
branch, so a revoked grant or a disabled account is never answered from before the change.
"""
from __future__ import annotations

import threading
from dataclasses import fields
from typing import Any, Iterable

from service.facts import NAME

MISS = object()
_OWN = frozenset({"__class__", "_read_by"})


class Fields:
    """Per fact class: its fields, which of them hold names, and its reading wrapper (`wrappers`, which the
    engine registers as the class itself)."""

    def __init__(self, classes: Iterable[type]):
        self.names: dict[type, dict[str, bool]] = {
            cls: {f.name: bool(f.metadata.get(NAME)) for f in fields(cls)} for cls in classes}
        self.wrappers: dict[type, type] = {cls: _wrapper(cls, names) for cls, names in self.names.items()}


def _wrapper(cls: type, names: dict[str, bool]) -> type:
    """A subclass of the fact class whose field reads go to the reader that made it (isinstance holds, so
    the policy's specializers match it as they match the fact)."""

    def __getattribute__(self, attribute: str):
        if attribute in names:
            reader, source, path = object.__getattribute__(self, "_read_by")
            return reader.read(source, path, attribute, names[attribute])
        if attribute in _OWN:  # the class (asked by the host and by the dataclass's __eq__), our own slot
            return object.__getattribute__(self, attribute)
        reader, source, _path = object.__getattribute__(self, "_read_by")
        reader.replayable = False  # a method, a property, anything else: what it gives is not read here
        return getattr(source, attribute)

    return type(f"Read{cls.__name__}", (cls,), {"__getattribute__": __getattribute__})


class Reader:
    """The reads of one evaluation, in order, each path once (the facts are frozen: a path reads the same
    every time)."""

    __slots__ = ("fields", "names", "trace", "seen", "replayable")

    def __init__(self, known: Fields, names: dict | None):
        self.fields = known
        self.names = names
        self.trace: list[tuple[tuple, bool, Any]] = []
        self.seen: set[tuple] = set()
        self.replayable = True

    def wrap(self, value, path: tuple):
        wrapper = self.fields.wrappers.get(value.__class__)
        if wrapper is not None:
            wrapped = object.__new__(wrapper)
            object.__setattr__(wrapped, "_read_by", (self, value, path))
            return wrapped
        if value.__class__ is tuple:
            return tuple([self.wrap(item, (*path, i)) if item.__class__ in self.fields.wrappers else item
                          for i, item in enumerate(value)])
        return value

    def read(self, source, path: tuple, attribute: str, is_name: bool):
        value = getattr(source, attribute)
        at = (*path, attribute)
        if at not in self.seen:
            self.seen.add(at)
            self.trace.append((at, is_name, summary(value, is_name, self.names, self.fields.wrappers)))
        return self.wrap(value, at)


def summary(value, is_name: bool, names: dict | None, facts) -> Any:
    """What a read gives the engine, up to the identity of nested facts (read in turn when the engine asks)."""
    if is_name:
        return ("name", names.get(value, value) if names is not None and value is not None else value)
    cls = value.__class__
    if cls in facts:
        return cls
    if cls is tuple:
        return tuple([item.__class__ if item.__class__ in facts else (item.__class__, item) for item in value])
    return (cls, value)


def resolve(roots: tuple, path: tuple):
    value = roots[path[0]]
    for step in path[1:]:
        value = value[step] if step.__class__ is int else getattr(value, step)
    return value


class _Node:
    __slots__ = ("path", "is_name", "kids", "answer")

    def __init__(self):
        self.path = None  # the path read next; None at a leaf (or a node not yet filled)
        self.is_name = False
        self.kids: dict = {}
        self.answer = MISS


class ReadTree:
    """Answers by what their evaluations read; at most `size` answers (then it starts empty again)."""

    def __init__(self, known: Fields, size: int):
        self.fields = known
        self.size = size
        self.answers = 0
        self._roots: dict = {}
        self._lock = threading.Lock()

    def reader(self, names: dict | None) -> Reader:
        return Reader(self.fields, names)

    def find(self, key, roots: tuple, names: dict | None):
        """The answer kept for a question asking `key` about `roots`, or MISS."""
        node = self._roots.get(key)
        facts = self.fields.wrappers
        while node is not None:
            if node.path is None:
                return node.answer
            read = summary(resolve(roots, node.path), node.is_name, names, facts)
            node = node.kids.get(read)
        return MISS

    def keep(self, key, reader: Reader, answer) -> None:
        if not reader.replayable or answer is MISS:
            return
        with self._lock:
            if self.answers >= self.size:
                self._roots, self.answers = {}, 0
            node = self._roots.get(key)
            if node is None:
                node = self._roots[key] = _Node()
            for path, is_name, read in reader.trace:
                if node.path is None:
                    if node.answer is not MISS:
                        return  # an answer here already: nothing read beyond it
                    node.is_name = is_name
                    node.path = path  # last: a concurrent find sees a node to follow only once it is whole
                elif node.path != path:
                    return  # the engine read in another order this time: keep the tree as it is
                child = node.kids.get(read)
                if child is None:
                    child = _Node()
                    node.kids[read] = child
                node = child
            if node.path is None and node.answer is MISS:
                node.answer = answer
                self.answers += 1
