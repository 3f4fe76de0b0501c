"""The decision's one statement, run on the database driver itself: the hottest statement the service runs.

A decision's facts are one SELECT; through SQLAlchemy's execution machinery it cost many times what the
driver spends on it (execution context, the expansion of its `IN` lists on every call, result rows;
figures in bench/README.md, "Figures behind choices in the code").
Here SQLAlchemy still writes the SQL (the statement stays one declaration in `storage/facts.py`), but
once per shape: for each number of values in each `IN` list it compiles the text, the order of its
parameters and its constants, and keeps them. A call then runs that text on the pooled DBAPI
connection's own cursor (kept with the connection, on PostgreSQL) and returns plain tuples, with the result conversions the
columns' types ask for.

What SQLAlchemy did around a statement and still matters is kept: statement events fire (the
statement-count tests listen), a driver error is translated as SQLAlchemy translates it (so a dead
pooled connection invalidates the pool and is retried once, `retry_once_if_dead`), and PostgreSQL
prepares the text after `prepare_threshold` executions on a connection, as before. The two private
SQLAlchemy hooks this takes (`_has_events`, `_handle_dbapi_exception`) are pinned by
tests/test_sqlalchemy_hooks.py.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from threading import Lock
from typing import Any, Callable, Sequence

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Select
from sqlalchemy.sql.selectable import CompoundSelect

SHAPES_KEPT = 512  # a batch of 100 checks has at most a few hundred shapes; each is a few kB
# Where a pooled connection keeps the cursor its direct statements run on (with the DBAPI connection it belongs
# to, so a connection the pool replaced gets a new one): psycopg's new cursor per execution, and its close, cost
# more than its own part of running a prepared statement; sqlite3's cursor is cheap to make, and reusing one cost
# more instructions than it saved (bench/README.md). Its rows are fetched whole each time.
_CURSOR = "direct_statement_cursor"
KEEPS_CURSOR = frozenset({"postgresql"})  # the dialects whose connections keep their cursor


def _plain(value: Any) -> Any:
    """A StrEnum constant as its text: drivers adapt enums by name, the column holds the value."""
    return value.value if isinstance(value, Enum) else value


_LITERAL_TEXT = re.compile(r"[A-Za-z0-9_]*")


def _literal(value: Any) -> str | None:
    """A constant as SQL text when it can be written with no quoting question: a word, an integer, a Boolean."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _LITERAL_TEXT.fullmatch(value):
        return f"'{value}'"
    return None


def _inline_constants(sql: str, names: tuple[str, ...], slots: tuple, constants: dict[str, Any]):
    """The statement's own constants (a role, a status, a branch's tag) written into its text, for named
    (`%(name)s`) drivers: PostgreSQL prepares the text after `prepare_threshold` executions, and a prepared
    statement gets a generic plan only when that plan's estimate is close to a custom plan's. With 'admin'
    and 'active' as parameters the generic estimates use an average selectivity, so PostgreSQL kept planning
    the facts statement again at every execution (about 1 ms of planning for 0.2 ms of execution);
    written as literals, the estimates agree and the plan is made once per connection (bench/README.md)."""
    kept_names, kept_slots, kept = [], [], {}
    for name, slot in zip(names, slots):
        text = _literal(constants[name]) if name in constants else None
        if text is None:
            kept_names.append(name)
            kept_slots.append(slot)
            if name in constants:
                kept[name] = constants[name]
        else:
            sql = sql.replace(f"%({name})s", text)
    return sql, tuple(kept_names), tuple(kept_slots), kept


@dataclass(frozen=True)
class _Shape:
    sql: str
    names: tuple[str, ...] | None              # named drivers: the parameter names; None: positional
    slots: tuple[tuple[str, int | None], ...]  # per parameter (in the driver's order): its value's name and index
    constants: dict[str, Any]                  # values the statement itself carries (literals, enum constants)


class DirectStatement:
    """One SELECT, compiled once per shape of its parameters and run on the DBAPI connection.

    `build(values)` makes the statement for values of that shape (it may leave out a branch whose
    list is empty: PostgreSQL still starts every node of a plan, even one that finds nothing);
    the shape is the length of each `expanding` list, which other values are None, and the truth of
    each of `flags` (values that choose what the statement reads and are no parameter of it; a value left
    out reads as the flag's default). `convert`
    maps a column index to the conversion of its values (None is never converted)."""

    def __init__(self, build: Callable[[dict[str, Any]], Select | CompoundSelect], expanding: Sequence[str],
                 convert: Callable[[Dialect], dict[int, Callable[[Any], Any]]], flags: dict[str, bool] | None = None):
        self._build = build
        self._expanding = tuple(expanding)
        self._flags = tuple((flags or {}).items())
        self._convert = convert
        self._shapes: OrderedDict[tuple, _Shape] = OrderedDict()
        self._conversions: dict[str, tuple[tuple[int, Callable[[Any], Any]], ...]] = {}
        self._lock = Lock()

    def _shape(self, dialect: Dialect, values: dict[str, Any]) -> _Shape:
        key = (dialect.name, *(len(values[name]) for name in self._expanding),
               *(name for name in sorted(values) if values[name] is None),
               *(bool(values.get(name, default)) for name, default in self._flags))
        shape = self._shapes.get(key)  # first in, first out past SHAPES_KEPT: a shape costs one compile again
        if shape is not None:
            return shape
        # Placeholders of the right count; the text does not depend on the values themselves.
        sample = {name: value if name not in self._expanding else [f"_{i}" for i in range(len(value))]
                  for name, value in values.items()}
        statement = self._build(sample)
        compiled = statement.params(**sample).compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        names = tuple(compiled.positiontup) if compiled.positiontup is not None else tuple(compiled.params)
        slots = tuple(self._slot(name) for name in names)
        constants = {name: _plain(value) for name, value in compiled.params.items() if self._slot(name)[0] not in values}
        sql = compiled.string
        if compiled.positiontup is None:
            sql, names, slots, constants = _inline_constants(sql, names, slots, constants)
        shape = _Shape(sql, None if compiled.positiontup is not None else names, slots, constants)
        with self._lock:
            self._shapes[key] = shape
            while len(self._shapes) > SHAPES_KEPT:
                self._shapes.popitem(last=False)
        return shape

    def _slot(self, name: str) -> tuple[str, int | None]:
        """`usernames_3` is the third value of `usernames`; any other name is a parameter or a constant."""
        base, _, number = name.rpartition("_")
        if base in self._expanding and number.isdigit():
            return base, int(number) - 1
        return name, None

    def _parameters(self, shape: _Shape, values: dict[str, Any]):
        constants = shape.constants
        ordered = tuple((values[name] if name in values else constants[name]) if index is None
                        else values[name][index] for name, index in shape.slots)
        return ordered if shape.names is None else dict(zip(shape.names, ordered))

    def rows(self, connection: Connection, values: dict[str, Any]) -> list[tuple]:
        """The statement's rows for `values` (lists for the expanding parameters), on this connection."""
        dialect = connection.dialect
        shape = self._shape(dialect, values)
        parameters = self._parameters(shape, values)
        pooled = connection.connection
        dbapi_connection = pooled.dbapi_connection
        keep = dialect.name in KEEPS_CURSOR
        kept = pooled.info.get(_CURSOR) if keep else None  # the connection's own cursor, kept across checkouts
        if kept is not None and kept[0] is dbapi_connection:
            cursor = kept[1]
        else:
            cursor = dbapi_connection.cursor()
            if keep:
                pooled.info[_CURSOR] = (dbapi_connection, cursor)
        try:
            if connection._has_events or connection.engine._has_events:
                connection.dispatch.before_cursor_execute(connection, cursor, shape.sql, parameters, None, False)
            cursor.execute(shape.sql, parameters)
            rows = cursor.fetchall()
        except BaseException as exc:
            if keep:
                pooled.info.pop(_CURSOR, None)  # a cursor that saw an error or an interruption is not used again
            try:
                if isinstance(exc, dialect.loaded_dbapi.Error):
                    # As SQLAlchemy would: a disconnect invalidates the connection and is raised as DBAPIError
                    # with connection_invalidated set (retry_once_if_dead retries on a fresh connection).
                    connection._handle_dbapi_exception(exc, shape.sql, parameters, cursor, None)
            finally:
                try:
                    cursor.close()
                except dialect.loaded_dbapi.Error:
                    pass  # the connection is gone: the error that told it is the one raised
            raise
        if not keep:
            try:
                cursor.close()
            except dialect.loaded_dbapi.Error:
                pass
        conversions = self._conversions.get(dialect.name)
        if conversions is None:
            conversions = self._conversions[dialect.name] = tuple(self._convert(dialect).items())
        if not conversions:
            return rows
        converted = []
        for row in rows:
            row = list(row)
            for index, convert in conversions:
                if row[index] is not None:
                    row[index] = convert(row[index])
            converted.append(row)
        return converted
