"""Sorting and keyset cursors shared by the list services.

Ordering is always total: the requested keys, then ``id`` (in the direction of the first key).
A nullable column (``due_at``) sorts its NULLs last in both directions (app/tables.py).

Cursors are opaque: base64 of a JSON payload holding the format version, the sort, a fingerprint
of the user and the filters given, and the last row's sort values, signed with HMAC-SHA256 under
the server secret, so a tampered, foreign or stale cursor is a 400. Filters left at their
default are not in the fingerprint, so a deploy that adds a filter keeps live cursors valid; a
deploy that changes the payload bumps CURSOR_VERSION.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
from piccolo.columns import Column
from piccolo.columns.combination import WhereRaw
from piccolo.querystring import QueryString
from piccolo.table import Table

from app.errors import BadParameterError
from app.services.query import Param
from app.settings import get_settings
from app.tables import nulls_last, value_type

# The range of the integer columns a cursor can hold (PostgreSQL integer).
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True, slots=True)
class Sort:
    field: str
    descending: bool


def parse_sort(raw: str | None, allowed: dict[str, Column], default: str) -> list[Sort]:
    """Parse ``sort=-created_at,title`` into keys ending with ``id`` (a total order)."""
    text = raw if raw not in (None, "") else default
    keys: list[Sort] = []
    seen: set[str] = set()
    for raw_part in text.split(","):
        part = raw_part.strip()
        descending = part.startswith("-")
        name = part[1:] if descending else part
        if name not in allowed:
            raise BadParameterError("sort", f"unknown sort field {name!r}; allowed: {', '.join(allowed)}")
        # A repeated key, or any key after the unique id, cannot change the order: it is ignored.
        if name in seen or "id" in seen:
            continue
        seen.add(name)
        keys.append(Sort(name, descending))
    if "id" not in seen:
        keys.append(Sort("id", keys[0].descending))
    return keys


def _expressions(table: type[Table], sort: list[Sort]) -> tuple[tuple[str, bool], ...]:
    """(SQL expression, descending) per ORDER BY term; a NULLs-last key adds ``(col IS NULL)`` first.

    Piccolo's order_by always appends ASC/DESC, so NULLS LAST is expressed as that extra leading
    boolean term, which the expression indexes in the migrations serve.
    """
    return _expressions_of(table, tuple(sort))


@lru_cache(maxsize=256)
def _expressions_of(table: type[Table], sort: tuple[Sort, ...]) -> tuple[tuple[str, bool], ...]:
    # Derived from the table once per sort, not per request (column lookups and string building).
    terms: list[tuple[str, bool]] = []
    for key in sort:
        col = _col(table, key.field)
        if nulls_last(table._meta.get_column_by_name(key.field)):
            terms.append((f"({col} IS NULL)", False))
        terms.append((col, key.descending))
    return tuple(terms)


def _term_values(table: type[Table], sort: list[Sort], values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for key, value in zip(sort, values, strict=True):
        if nulls_last(table._meta.get_column_by_name(key.field)):
            out.append(value is None)
        out.append(value)
    return out


def order_clauses(table: type[Table], sort: list[Sort]) -> list[tuple[QueryString, bool]]:
    """(expression, ascending) pairs for ``Select.order_by``; apply them in order."""
    return [(QueryString(expr), not descending) for expr, descending in _expressions(table, sort)]


def order_sql(table: type[Table], sort: list[Sort]) -> str:
    """The ORDER BY list as SQL text (for statements built around a Piccolo WHERE)."""
    return ", ".join(f"{expr} {'DESC' if descending else 'ASC'}" for expr, descending in _expressions(table, sort))


def apply_order(query: Any, table: type[Table], sort: list[Sort]) -> Any:
    for expression, ascending in order_clauses(table, sort):
        query = query.order_by(expression, ascending=ascending)
    return query


def after_values(values: list[Any]) -> dict[str, Any]:
    """The parameters of ``after_clause`` for a cursor's sort values."""
    return {f"after{i}": value for i, value in enumerate(values) if value is not None}


def after_clause(table: type[Table], sort: list[Sort], nulls: tuple[bool, ...]) -> WhereRaw:
    """Rows strictly after the cursor's values in the ``sort`` order (keyset pagination).

    The clause's shape depends only on which values are NULL (``nulls``); the values themselves
    are parameters ``after0``, ``after1``, ... (``after_values``). Same direction everywhere and no
    NULL: a row comparison ``(a, b, id) > ($1, $2, $3)``, which an index range scan serves
    directly. Otherwise the OR expansion, with a redundant bound on the first term so the scan
    still starts at the right place.
    """
    terms = _expressions(table, sort)
    params = [None if null else Param(f"after{i}") for i, null in enumerate(nulls)]
    term_values = _term_values(table, sort, params)
    directions = {descending for _, descending in terms}
    if len(directions) == 1 and None not in term_values:
        op = "<" if directions.pop() else ">"
        placeholders = ", ".join("{}" for _ in terms)
        lhs = ", ".join(expr for expr, _ in terms)
        return WhereRaw(f"(({lhs}) {op} ({placeholders}))", *term_values)
    ors: list[str] = []
    args: list[Any] = []
    for i, (expr, descending) in enumerate(terms):
        if term_values[i] is None:
            continue  # a NULL due_at: rows equal on "IS NULL" are equal here too
        ands: list[str] = []
        for (prev, _), value in zip(terms[:i], term_values[:i], strict=True):
            if value is not None:
                ands.append(f"{prev} = {{}}")
                args.append(value)
        ands.append(f"{expr} {'<' if descending else '>'} {{}}")
        args.append(term_values[i])
        ors.append("(" + " AND ".join(ands) + ")")
    if not ors:
        return WhereRaw("FALSE")
    first, first_desc = terms[0]
    bound = f"{first} {'<=' if first_desc else '>='} {{}}"
    return WhereRaw(f"({bound} AND (" + " OR ".join(ors) + "))", term_values[0], *args)


def _col(table: type[Table], field: str) -> str:
    return f'"{table._meta.tablename}"."{table._meta.get_column_by_name(field)._meta.db_column_name}"'


# --------------------------------------------------------------------------------------------
# Cursors


# The payload's format; bump it when the payload or the fingerprint changes meaning, so a cursor
# issued by another version is refused by name instead of misread.
CURSOR_VERSION = 1


class _CursorPayload(msgspec.Struct, array_like=True):
    version: int
    sort: str
    scope: str
    values: list[Any]


def _signature(body: bytes) -> bytes:
    key = get_settings().secret_key.encode()
    return hmac.new(key, b"cursor:" + body, hashlib.sha256).digest()[:16]


def scope_fingerprint(user_id: int, filters: object) -> str:
    """Ties a cursor to the user and the filters it was issued for (a dataclass instance).

    Only the filters given count: a field at its default is left out, so adding a defaulted
    filter field does not change the fingerprint of any live cursor.
    """
    names, read, defaults = _fields_of(type(filters))
    given = {n: v for n, v, d in zip(names, read(filters), defaults, strict=True) if v is not d and v != d}
    raw = msgspec.json.encode([user_id, given], order="sorted")
    return hashlib.sha256(raw).hexdigest()[:16]


_FieldsOf = tuple[tuple[str, ...], Callable[[object], tuple[Any, ...]], tuple[Any, ...]]
_fields: dict[type, _FieldsOf] = {}


def _fields_of(filters_type: type) -> _FieldsOf:
    """Names, one getter of all their values, and defaults (MISSING: always given) of a dataclass.

    Read once per class, not per request.
    """
    found = _fields.get(filters_type)
    if found is None:
        fields = dataclasses.fields(filters_type)
        names = tuple(f.name for f in fields)
        defaults = tuple(f.default if f.default_factory is dataclasses.MISSING else f.default_factory() for f in fields)
        # attrgetter of one name returns the value itself, not a 1-tuple.
        read = operator.attrgetter(*names) if len(names) > 1 else lambda obj: (getattr(obj, names[0]),)
        found = _fields[filters_type] = (names, read, defaults)
    return found


def sort_text(sort: list[Sort]) -> str:
    return ",".join(("-" if s.descending else "") + s.field for s in sort)


def encode_cursor(sort: list[Sort], scope: str, values: list[Any]) -> str:
    body = msgspec.json.encode(_CursorPayload(CURSOR_VERSION, sort_text(sort), scope, values))
    return base64.urlsafe_b64encode(_signature(body) + body).decode().rstrip("=")


def decode_cursor(cursor: str, sort: list[Sort], scope: str, table: type[Table]) -> list[Any]:
    """Check and unpack a cursor; any tampering, other sort, other filters or user is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise BadParameterError("cursor", "malformed cursor") from None
    signature, body = raw[:16], raw[16:]
    if len(signature) != 16 or not hmac.compare_digest(signature, _signature(body)):
        raise BadParameterError("cursor", "invalid cursor (tampered or issued by another server)")
    try:
        payload = msgspec.json.decode(body, type=_CursorPayload)
    except msgspec.DecodeError:
        # Signed by this server's secret but not in this shape: issued before cursors had a version.
        raise BadParameterError("cursor", "cursor from an older version; start again") from None
    if payload.version != CURSOR_VERSION:
        older = payload.version < CURSOR_VERSION
        raise BadParameterError("cursor", f"cursor from {'an older' if older else 'a newer'} version; start again")
    if payload.sort != sort_text(sort) or payload.scope != scope or len(payload.values) != len(sort):
        raise BadParameterError("cursor", "cursor was issued for a different sort, filter or user")
    columns = [table._meta.get_column_by_name(key.field) for key in sort]
    return [
        _cursor_value(value, value_type(column), nulls_last(column))
        for value, column in zip(payload.values, columns, strict=True)
    ]


def _cursor_value(value: Any, kind: type, nullable: bool) -> Any:
    """One sort value of a signed cursor, checked against its field's type before it reaches SQL.

    The signature proves the server issued it, not that this code did (another version, or a
    leaked secret): a value of the wrong type is a 400, never a database error.
    """
    if value is None and nullable:
        return None
    if kind is int and type(value) is int and INT_MIN <= value <= INT_MAX:
        return value
    if kind is str and type(value) is str and "\x00" not in value:
        return value
    if kind is dt.datetime and type(value) is str:
        try:
            parsed = dt.datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                parsed.astimezone(dt.UTC)  # OverflowError when out of range in UTC
                return parsed
        except (ValueError, OverflowError):
            pass
    raise BadParameterError("cursor", "malformed cursor")
