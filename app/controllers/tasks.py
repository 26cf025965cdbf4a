"""Tasks, their filters and the bulk endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.dto import DTOData
from litestar.params import JSONBody, QueryParameter

from app.controllers.params import (
    MAX_ID,
    IdempotencyKeyHeader,
    IfMatch,
    Limit,
    ObjectId,
    Offset,
    TaskSort,
    UserRequest,
    created,
    expected_version,
    idempotency,
    mark_replayed,
    storable_text,
    storable_time,
    with_etag,
)
from app.dto import (
    FlexPage,
    Items,
    TaskBulkCreate,
    TaskBulkPatch,
    TaskCreateBody,
    TaskCreateDTO,
    TaskPatchBody,
    TaskPatchDTO,
    TaskReadDTO,
    item_errors,
    struct_changes,
)
from app.errors import InvalidBodyError, InvalidFieldError, InvalidItemsError
from app.openapi import problem_responses
from app.services import tasks
from app.tables import Task

QueryId = Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)]
QueryTime = Annotated[dt.datetime | None, QueryParameter(description="RFC 3339 datetime with a zone")]


class TaskController(Controller):
    path = "/api/v1/tasks"
    tags = ["tasks"]
    return_dto = TaskReadDTO

    @get("/")
    async def list_tasks(
        self,
        request: UserRequest,
        project_id: QueryId = None,
        inbox: Annotated[bool | None, QueryParameter(description="true: only tasks without a project")] = None,
        parent_id: QueryId = None,
        status: Annotated[list[Literal["todo", "in_progress", "done"]] | None, QueryParameter()] = None,
        priority: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=4)]] | None, QueryParameter()] = None,
        label_id: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]] | None, QueryParameter()] = None,
        assignee_id: Annotated[
            list[Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]] | None,
            QueryParameter(description="Assigned to any of these users"),
        ] = None,
        unassigned: Annotated[bool | None, QueryParameter(description="true: nobody assigned")] = None,
        due_before: QueryTime = None,
        due_after: QueryTime = None,
        overdue: Annotated[bool | None, QueryParameter(description="true: due in the past and not done")] = None,
        q: Annotated[
            str | None,
            QueryParameter(
                max_length=tasks.MAX_SEARCH_LENGTH,
                description=f"Up to {tasks.MAX_SEARCH_WORDS} words that must all appear (case-insensitive substrings"
                " of the title or description)",
            ),
        ] = None,
        sort: TaskSort = None,
        limit: Limit = 20,
        offset: Offset = 0,
        cursor: Annotated[str | None, QueryParameter(max_length=2000, description="From next_cursor")] = None,
        paginate: Annotated[
            Literal["offset", "cursor"] | None,
            QueryParameter(description="'cursor' starts a keyset walk (first page, no cursor yet)"),
        ] = None,
    ) -> FlexPage[Task]:
        """The tasks the caller can see (their inbox and their projects'), filtered and sorted.

        Filters combine with AND between parameters, OR within a repeated one.

        Sort fields: created_at, updated_at, due_at, priority, title, position, id; ``-`` for
        descending; default ``-created_at``; ties broken by id; tasks without due_at sort last.
        With ``cursor`` (or ``paginate=cursor``) the answer is a keyset page with ``next_cursor``.
        """
        filters = tasks.TaskFilters(
            project_id=project_id,
            inbox=inbox,
            parent_id=parent_id,
            status=status or (),
            priority=priority or (),
            label_id=label_id or (),
            assignee_id=assignee_id or (),
            unassigned=unassigned,
            due_before=storable_time("due_before", due_before),
            due_after=storable_time("due_after", due_after),
            overdue=overdue,
            q=storable_text("q", q),
        )
        use_cursor = paginate == "cursor"
        page = await tasks.list_tasks(
            request.user.id, filters, sort=sort, limit=limit, offset=offset, cursor=cursor, use_cursor=use_cursor
        )
        if use_cursor or cursor is not None:
            return FlexPage(items=page.items, limit=limit, next_cursor=page.next_cursor)
        return FlexPage(items=page.items, limit=limit, total=page.total, offset=offset)

    @post("/", dto=TaskCreateDTO, responses=problem_responses(403, 409, 422))
    async def create_task(
        self,
        request: UserRequest,
        data: JSONBody[DTOData[Task]],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Task]:
        """Create a task (or a subtask with parent_id); label_ids attaches labels."""
        task, replayed = await tasks.create_task(
            request.user.id, data.as_builtins(), idempotency=await idempotency(request, idempotency_key)
        )
        return created(request, task, f"{self.path}/{task.id}", task.version, replayed)

    @get("/{task_id:int}")
    async def get_task(self, request: UserRequest, task_id: ObjectId) -> Response[Task]:
        """One task with its labels."""
        task = await tasks.get_task(request.user.id, task_id)
        return with_etag(task, task.version)

    @patch("/{task_id:int}", dto=TaskPatchDTO, responses=problem_responses(403, 409, 422))
    async def update_task(
        self, request: UserRequest, task_id: ObjectId, data: JSONBody[DTOData[Task]], if_match: IfMatch = None
    ) -> Response[Task]:
        """Change some fields; label_ids replaces the whole set. Honours If-Match."""
        task = await tasks.update_task(
            request.user.id, task_id, data.as_builtins(), expected_version=expected_version(if_match)
        )
        return with_etag(task, task.version)

    @delete("/{task_id:int}", responses=problem_responses(403, 409))
    async def delete_task(self, request: UserRequest, task_id: ObjectId, if_match: IfMatch = None) -> None:
        """Delete a task with its subtasks and comments. Honours If-Match."""
        await tasks.delete_task(request.user.id, task_id, expected_version=expected_version(if_match))

    @post("/bulk", dto=None, status_code=201, responses=problem_responses(403, 422))
    async def create_tasks(
        self,
        request: UserRequest,
        data: JSONBody[TaskBulkCreate],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Items[Task]:
        """Create up to 100 tasks, all or nothing. An invalid item gives 422 naming its index."""
        bodies, errors = item_errors(TaskCreateBody, data.tasks, "tasks")
        if errors:
            raise InvalidItemsError("Some tasks are invalid; nothing was created", errors=errors)
        items, replayed = await tasks.create_tasks(
            request.user.id,
            [struct_changes(body) for body in bodies],
            idempotency=await idempotency(request, idempotency_key),
        )
        mark_replayed(request, replayed)
        return Items(items=items)

    @patch("/bulk", dto=None, responses=problem_responses(403, 404, 409, 422))
    async def update_tasks(self, request: UserRequest, data: JSONBody[TaskBulkPatch]) -> Items[Task]:
        """Apply one partial change to up to 100 tasks, all or nothing; a foreign id gives 404."""
        if bad := _non_integer_ids(await request.body()):
            raise InvalidBodyError("ids must be integers; nothing was changed", errors=bad)
        bodies, errors = item_errors(TaskPatchBody, [data.changes], "changes")
        if errors:
            for error in errors:
                error["field"] = error["field"].replace("changes[0].", "changes.")
                error.pop("index", None)
            raise InvalidBodyError("The changes are invalid; nothing was changed", errors=errors)
        try:
            items = await tasks.update_tasks(request.user.id, data.ids, struct_changes(bodies[0]))
        except InvalidFieldError as exc:
            # The service names the field of one task's changes; in this body it sits under "changes".
            for error in exc.errors or []:
                error["field"] = f"changes.{error['field']}"
            exc.detail = f"changes.{exc.detail}"
            raise
        return Items(items=items)


def _non_integer_ids(raw: bytes) -> list[dict[str, Any]]:
    """Litestar converts non-DTO bodies leniently ("1" or 1.0 -> 1); ids must be JSON integers."""
    ids = msgspec.json.decode(raw)["ids"]
    return [{"field": f"ids[{i}]", "message": "Expected `int`"} for i, v in enumerate(ids) if type(v) is not int]
