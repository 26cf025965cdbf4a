"""Helpers shared by the resource services: versioned writes and clock."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from piccolo.table import Table

from app.errors import NotFoundError, PreconditionFailedError

T = TypeVar("T", bound=Table)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def from_row(table: type[T], row: dict[str, Any]) -> T:
    """A table instance from a query row, without running column defaults."""
    instance = table.__new__(table)
    instance.__dict__.update(row)
    instance._exists_in_db = True
    return instance


async def get_owned(table: type[T], resource: str, *, owner_id: int, obj_id: int) -> T:
    """One of the owner's objects; another user's object answers exactly like a missing one."""
    row = (
        await table.select(*table._meta.columns)
        .where((table._meta.primary_key == obj_id) & (table._meta.get_column_by_name("owner") == owner_id))
        .first()
    )
    if row is None:
        raise NotFoundError(resource, obj_id)
    return from_row(table, row)


async def check_unchanged(
    table: type[T], resource: str, *, owner_id: int, obj_id: int, expected_version: int | None
) -> T:
    """The object as it is, after the same 404 / 412 checks a write makes (for empty changes)."""
    obj = await get_owned(table, resource, owner_id=owner_id, obj_id=obj_id)
    current = obj.version  # type: ignore[attr-defined]
    if expected_version is not None and current != expected_version:
        raise PreconditionFailedError(resource, current)
    return obj


async def raise_missing_or_stale(table: type[Table], resource: str, owner_id: int, obj_id: int) -> None:
    """After a conditional write matched nothing: 404 if the object is not the owner's, else 412."""
    row = (
        await table.select(table._meta.get_column_by_name("version"))
        .where((table._meta.primary_key == obj_id) & (table._meta.get_column_by_name("owner") == owner_id))
        .first()
    )
    if row is None:
        raise NotFoundError(resource, obj_id)
    raise PreconditionFailedError(resource, row["version"])


async def update_owned(
    table: type[T],
    resource: str,
    *,
    owner_id: int,
    obj_id: int,
    values: dict[Any, Any],
    expected_version: int | None,
) -> T:
    """One ``UPDATE ... WHERE id AND owner [AND version] RETURNING *``: check and write are atomic.

    An empty change writes nothing and keeps the version (a no-op must not make other writers'
    If-Match stale), but still answers 404 / 412 like a write would.
    """
    if not values:
        return await check_unchanged(
            table, resource, owner_id=owner_id, obj_id=obj_id, expected_version=expected_version
        )
    version: Any = table._meta.get_column_by_name("version")
    owner = table._meta.get_column_by_name("owner")
    pk = table._meta.primary_key
    condition: Any = (pk == obj_id) & (owner == owner_id)
    if expected_version is not None:
        condition = condition & (version == expected_version)
    rows = (
        await table.update(
            {**values, version: version + 1, table._meta.get_column_by_name("updated_at"): utcnow()},
            use_auto_update=False,
        )
        .where(condition)
        .returning(*table._meta.columns)
    )
    if not rows:
        await raise_missing_or_stale(table, resource, owner_id, obj_id)
    return from_row(table, rows[0])


async def delete_owned(
    table: type[Table], resource: str, *, owner_id: int, obj_id: int, expected_version: int | None
) -> None:
    """One ``DELETE ... WHERE id AND owner [AND version]``; 404 or 412 when nothing matched."""
    pk = table._meta.primary_key
    condition: Any = (pk == obj_id) & (table._meta.get_column_by_name("owner") == owner_id)
    if expected_version is not None:
        condition = condition & (table._meta.get_column_by_name("version") == expected_version)
    rows = await table.delete().where(condition).returning(pk)
    if not rows:
        await raise_missing_or_stale(table, resource, owner_id, obj_id)
