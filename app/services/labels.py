"""Labels: per-user names, unique case-insensitively."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.errors import ConflictError
from app.services.common import delete_owned, from_row, get_owned, update_owned
from app.services.idempotency import Idempotency, run_once
from app.services.listing import apply_order, parse_sort
from app.tables import Label, sortable

SORTABLE = sortable(Label)
DUPLICATE = "A label with this name already exists (names are compared case-insensitively)"


async def list_labels(user_id: int, *, sort: str | None, limit: int, offset: int) -> tuple[list[Label], int]:
    """A page of the user's labels (default order: name, then id) and the total."""
    condition = Label.owner == user_id
    rows = (
        await apply_order(
            Label.select(*Label._meta.columns).where(condition), Label, parse_sort(sort, SORTABLE, "name")
        )
        .limit(limit)
        .offset(offset)
    )
    return [from_row(Label, row) for row in rows], await Label.count().where(condition)


async def get_label(user_id: int, label_id: int) -> Label:
    return await get_owned(Label, "Label", owner_id=user_id, obj_id=label_id)


async def create_label(
    user_id: int, data: dict[str, Any], *, idempotency: Idempotency | None = None
) -> tuple[Label, bool]:
    """Create a label; 409 if the user already has one with that name (any case)."""

    async def create() -> list[dict[str, Any]]:
        try:
            return await Label.insert(Label(owner=user_id, **data)).returning(*Label._meta.columns)
        except asyncpg.UniqueViolationError:
            raise ConflictError(DUPLICATE) from None

    rows, replayed = await run_once(user_id, idempotency, create)
    return from_row(Label, rows[0]), replayed


async def update_label(user_id: int, label_id: int, changes: dict[str, Any], *, expected_version: int | None) -> Label:
    try:
        return await update_owned(
            Label,
            "Label",
            owner_id=user_id,
            obj_id=label_id,
            values={Label._meta.get_column_by_name(k): v for k, v in changes.items()},
            expected_version=expected_version,
        )
    except asyncpg.UniqueViolationError:
        raise ConflictError(DUPLICATE) from None


async def delete_label(user_id: int, label_id: int, *, expected_version: int | None) -> None:
    """Delete a label; it is detached from every task (ON DELETE CASCADE on the link)."""
    await delete_owned(Label, "Label", owner_id=user_id, obj_id=label_id, expected_version=expected_version)
