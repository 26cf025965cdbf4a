"""Comments on tasks, oldest first, with their authors.

Everyone who can see a task reads its comments; commenters and up write them (an inbox task's
owner always may). Only the author edits a comment; the author or a project admin+ deletes it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import asyncpg
from piccolo.columns.combination import WhereRaw

from app.errors import ForbiddenError, NotAuthorError, NotFoundError, PreconditionFailedError
from app.services import access, sql
from app.services.common import from_row, utcnow
from app.services.idempotency import Idempotency, run_once
from app.services.query import Param, Statement, column_sql, querystring, transaction
from app.tables import Comment, ProjectRole, Task

USER = access.USER
ID = Param("id")
COLUMNS = [*Comment._meta.columns, Comment.owner.display_name.as_alias("author_name")]


def _task_where(least: ProjectRole) -> Any:
    """The comment's task is one ``user`` may act on with role ``least``."""
    tasks = Task.select(Task.id).where(
        WhereRaw(f"{column_sql(Task.id)} = {column_sql(Comment.task)}") & access.tasks(least)
    )
    return WhereRaw("EXISTS ({})", querystring(tasks))


TASK_ROLE = Statement(Task.select(Task.id, Task.project).where((Task.id == ID) & access.tasks(access.READ)))
_ON_TASK = (Comment.task == ID) & _task_where(access.READ)
LIST = Statement(
    sql.limited(
        querystring(Comment.select(*COLUMNS).where(_ON_TASK).order_by(Comment.created_at, Comment.id)), offset=True
    )
)
COUNT = Statement(Comment.count().where(_ON_TASK))
GET = Statement(Comment.select(*COLUMNS).where((Comment.id == ID) & _task_where(access.READ)))


def _comment(row: Any) -> Comment:
    values = dict(row)
    values["author"] = {"id": values["owner"], "display_name": values.pop("author_name")}
    return from_row(Comment, values)


async def _task_role(user_id: int, task_id: int) -> str | None:
    """The user's role in the task's project (``owner`` for their inbox task); 404 if unseen."""
    row = await TASK_ROLE.fetch_one(id=task_id, user=user_id)
    if row is None:
        raise NotFoundError("Task", task_id)
    if row["project"] is None:
        return access.OWN.value
    return await access.role_in(user_id, row["project"])


async def list_comments(user_id: int, task_id: int, *, limit: int, offset: int) -> tuple[list[Comment], int]:
    """A page of a task's comments, oldest first (ties by id); 404 if the user cannot see the task."""
    await _task_role(user_id, task_id)
    rows = await LIST.fetch(id=task_id, user=user_id, limit=limit, offset=offset)
    total = (await COUNT.fetch(id=task_id, user=user_id))[0]["count"]
    return [_comment(r) for r in rows], total


async def get_comment(user_id: int, comment_id: int) -> Comment:
    row = await GET.fetch_one(id=comment_id, user=user_id)
    if row is None:
        raise NotFoundError("Comment", comment_id)
    return _comment(row)


async def create_comment(
    user_id: int, task_id: int, data: dict[str, Any], *, idempotency: Idempotency | None = None
) -> tuple[Comment, bool]:
    async def may_comment() -> None:
        role = await _task_role(user_id, task_id)
        if not access.may(role, access.COMMENT):
            raise ForbiddenError("Task", task_id, access.COMMENT.value, str(role))

    async def create() -> list[dict[str, Any]]:
        await may_comment()
        try:
            rows = await Comment.insert(Comment(owner=user_id, task=task_id, **data)).returning(*Comment._meta.columns)
        except asyncpg.ForeignKeyViolationError:
            # The task was deleted between the check and the insert: it is gone, as a 404 says.
            raise NotFoundError("Task", task_id) from None
        comment = await get_comment(user_id, rows[0]["id"])
        return [{**rows[0], "author": comment.author}]  # type: ignore[attr-defined]

    # One transaction: a comment whose answer cannot be read back (access lost meanwhile) is undone.
    async with transaction():
        rows, replayed = await run_once(user_id, idempotency, create)
    if replayed:
        await may_comment()  # a replay answers only someone who could create it now
    return from_row(Comment, dict(rows[0])), replayed


@lru_cache(maxsize=64)
def _update_statement(fields: tuple[str, ...], check_version: bool) -> Statement:
    """The author's change of ``fields`` (parameters by name), version +1, while the task is seen."""
    values: dict[Any, Any] = {Comment._meta.get_column_by_name(name): Param(name) for name in fields}
    values[Comment.version] = Comment.version + 1
    values[Comment.updated_at] = Param("now")
    # Editing is writing: the author, while still a commenter or more.
    where = (Comment.id == ID) & (Comment.owner == USER) & _task_where(access.COMMENT)
    if check_version:
        where = where & (Comment.version == Param("version"))
    return Statement(Comment.update(values, use_auto_update=False).where(where).returning(Comment.id))


# The author, or an admin+ of the task's project, while they can see the task.
_DELETABLE = (Comment.id == ID) & _task_where(access.READ) & ((Comment.owner == USER) | _task_where(access.ADMIN))
DELETE = {
    False: Statement(Comment.delete().where(_DELETABLE).returning(Comment.id)),
    True: Statement(Comment.delete().where(_DELETABLE & (Comment.version == Param("version"))).returning(Comment.id)),
}


async def update_comment(
    user_id: int, comment_id: int, changes: dict[str, Any], *, expected_version: int | None
) -> Comment:
    """Only the author edits a comment (and only while they can see its task)."""
    if changes:
        statement = _update_statement(tuple(changes), expected_version is not None)
        # One transaction: an edit whose answer cannot be read back (access lost meanwhile) is undone.
        async with transaction():
            if await statement.fetch(**changes, id=comment_id, user=user_id, now=utcnow(), version=expected_version):
                return await get_comment(user_id, comment_id)
    comment = await get_comment(user_id, comment_id)  # why nothing was written: 404, 403 or 412
    if comment.owner != user_id:
        raise NotAuthorError(comment_id)
    role = await _task_role(user_id, comment.task)  # type: ignore[arg-type]
    if not access.may(role, access.COMMENT):
        raise ForbiddenError("Task", comment.task, access.COMMENT.value, str(role))  # type: ignore[arg-type]
    if expected_version is not None and comment.version != expected_version:
        raise PreconditionFailedError("Comment", comment.version)
    return comment


async def delete_comment(user_id: int, comment_id: int, *, expected_version: int | None) -> None:
    """The author, or an admin+ of the task's project, deletes a comment."""
    checked = expected_version is not None
    if await DELETE[checked].fetch(id=comment_id, user=user_id, version=expected_version):
        return
    comment = await get_comment(user_id, comment_id)  # why nothing was deleted: 404, 403 or 412
    if comment.owner != user_id:
        role = await _task_role(user_id, comment.task)  # type: ignore[arg-type]
        if not access.may(role, access.ADMIN):
            raise ForbiddenError("Comment", comment_id, access.ADMIN.value, str(role))
    raise PreconditionFailedError("Comment", comment.version)
