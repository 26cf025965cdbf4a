"""Comments on tasks, oldest first."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.errors import NotFoundError
from app.services.common import delete_owned, from_row, get_owned, update_owned
from app.services.idempotency import Idempotency, run_once
from app.tables import Comment, Task


async def _require_task(user_id: int, task_id: int) -> None:
    if not await Task.exists().where((Task.id == task_id) & (Task.owner == user_id)):
        raise NotFoundError("Task", task_id)


async def list_comments(user_id: int, task_id: int, *, limit: int, offset: int) -> tuple[list[Comment], int]:
    """A page of a task's comments, oldest first (ties by id); 404 if the task is not the user's."""
    await _require_task(user_id, task_id)
    condition = (Comment.task == task_id) & (Comment.owner == user_id)
    rows = (
        await Comment.select(*Comment._meta.columns)
        .where(condition)
        .order_by(Comment.created_at, Comment.id)
        .limit(limit)
        .offset(offset)
    )
    return [from_row(Comment, row) for row in rows], await Comment.count().where(condition)


async def get_comment(user_id: int, comment_id: int) -> Comment:
    return await get_owned(Comment, "Comment", owner_id=user_id, obj_id=comment_id)


async def create_comment(
    user_id: int, task_id: int, data: dict[str, Any], *, idempotency: Idempotency | None = None
) -> tuple[Comment, bool]:
    async def create() -> list[dict[str, Any]]:
        await _require_task(user_id, task_id)
        try:
            return await Comment.insert(Comment(owner=user_id, task=task_id, **data)).returning(*Comment._meta.columns)
        except asyncpg.ForeignKeyViolationError:
            # The task was deleted between the check and the insert: it is gone, as a 404 says.
            raise NotFoundError("Task", task_id) from None

    rows, replayed = await run_once(user_id, idempotency, create)
    return from_row(Comment, rows[0]), replayed


async def update_comment(
    user_id: int, comment_id: int, changes: dict[str, Any], *, expected_version: int | None
) -> Comment:
    return await update_owned(
        Comment,
        "Comment",
        owner_id=user_id,
        obj_id=comment_id,
        values={Comment._meta.get_column_by_name(k): v for k, v in changes.items()},
        expected_version=expected_version,
    )


async def delete_comment(user_id: int, comment_id: int, *, expected_version: int | None) -> None:
    await delete_owned(Comment, "Comment", owner_id=user_id, obj_id=comment_id, expected_version=expected_version)
