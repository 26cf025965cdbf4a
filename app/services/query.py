"""The query layer: statements built with Piccolo's query builder once, bound per call.

Building a Piccolo query costs more CPU than running it (UPSTREAM.md, Piccolo), so a statement
on a hot path is built once per shape, with ``Param`` placeholders where values go, compiled to
``$n`` SQL, and asyncpg prepares it once per connection. Each call binds its values by name::

    GET = Statement(Task.select(Task.title).where(Task.id == Param("id")))
    rows = await GET.fetch(id=7)

Every statement runs through the engine (app/db.py): in the current transaction if there is one,
else on one pool connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg
from piccolo.columns import Column
from piccolo.query.base import Query
from piccolo.querystring import QueryString

from app.db import TaskapiTransaction, get_engine

T = TypeVar("T")


class Param:
    """A named placeholder for a value bound when the statement runs."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Param({self.name!r})"


def column_sql(column: Column) -> str:
    """A column as ``"table"."column"``, for the few conditions Piccolo takes as text."""
    return f'"{column._meta.table._meta.tablename}"."{column._meta.db_column_name}"'


def querystring(query: Query[Any, Any] | QueryString) -> QueryString:
    """A Piccolo query's one statement, for composing into a larger one."""
    if isinstance(query, QueryString):
        return query
    (statement,) = query.querystrings
    return statement


class Statement:
    """One SQL statement compiled from Piccolo once; values are bound by name per call.

    A value in the query that is not a ``Param`` is a constant of the statement.
    """

    __slots__ = ("_constants", "_names", "sql")

    def __init__(self, query: Query[Any, Any] | QueryString) -> None:
        sql, values = querystring(query).compile_string(engine_type="postgres")
        self.sql: str = sql
        self._names = tuple(v.name if isinstance(v, Param) else None for v in values)
        self._constants = tuple(None if isinstance(v, Param) else v for v in values)

    @property
    def params(self) -> frozenset[str]:
        return frozenset(name for name in self._names if name is not None)

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``values`` (a missing name is a KeyError: a bug)."""
        return [
            constant if name is None else values[name]
            for name, constant in zip(self._names, self._constants, strict=True)
        ]

    async def fetch(self, **values: Any) -> list[asyncpg.Record]:
        return await get_engine().fetch(self.sql, *self.bind(values))

    async def fetch_one(self, **values: Any) -> asyncpg.Record | None:
        rows = await self.fetch(**values)
        return rows[0] if rows else None

    async def fetch_on(self, connection: asyncpg.Connection, **values: Any) -> list[asyncpg.Record]:
        """On a connection given by ``on_one_connection``."""
        rows: list[asyncpg.Record] = await connection.fetch(self.sql, *self.bind(values))
        return rows


async def on_one_connection(work: Callable[[asyncpg.Connection], Awaitable[T]], *, read_only: bool = False) -> T:
    """Statements run by ``work`` share one connection: one pool acquire, and one replica for all."""
    return await get_engine().run(work, read_only=read_only)


def transaction() -> TaskapiTransaction:
    """A transaction every statement inside it joins (nested ones join the outer one)."""
    return get_engine().transaction()
