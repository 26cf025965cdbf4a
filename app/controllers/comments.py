"""Comments on tasks."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, patch, post
from litestar.dto import DTOData
from litestar.params import JSONBody

from app.controllers.params import (
    IdempotencyKeyHeader,
    IfMatch,
    Limit,
    ObjectId,
    Offset,
    UserRequest,
    created,
    expected_version,
    idempotency,
    with_etag,
)
from app.dto import CommentCreateDTO, CommentPatchDTO, CommentReadDTO, Page
from app.openapi import problem_responses
from app.services import comments
from app.tables import Comment


class CommentController(Controller):
    path = "/api/v1"
    tags = ["comments"]
    return_dto = CommentReadDTO

    @get("/tasks/{task_id:int}/comments")
    async def list_comments(
        self, request: UserRequest, task_id: ObjectId, limit: Limit = 20, offset: Offset = 0
    ) -> Page[Comment]:
        """A task's comments, oldest first."""
        items, total = await comments.list_comments(request.user.id, task_id, limit=limit, offset=offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @post("/tasks/{task_id:int}/comments", dto=CommentCreateDTO, responses=problem_responses(403))
    async def create_comment(
        self,
        request: UserRequest,
        task_id: ObjectId,
        data: JSONBody[DTOData[Comment]],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Comment]:
        """Comment on a task."""
        comment, replayed = await comments.create_comment(
            request.user.id, task_id, data.as_builtins(), idempotency=await idempotency(request, idempotency_key)
        )
        return created(request, comment, f"/api/v1/comments/{comment.id}", comment.version, replayed)

    @get("/comments/{comment_id:int}")
    async def get_comment(self, request: UserRequest, comment_id: ObjectId) -> Response[Comment]:
        """One comment."""
        comment = await comments.get_comment(request.user.id, comment_id)
        return with_etag(comment, comment.version)

    @patch("/comments/{comment_id:int}", dto=CommentPatchDTO, responses=problem_responses(403))
    async def update_comment(
        self,
        request: UserRequest,
        comment_id: ObjectId,
        data: JSONBody[DTOData[Comment]],
        if_match: IfMatch = None,
    ) -> Response[Comment]:
        """Edit a comment; honours If-Match."""
        comment = await comments.update_comment(
            request.user.id, comment_id, data.as_builtins(), expected_version=expected_version(if_match)
        )
        return with_etag(comment, comment.version)

    @delete("/comments/{comment_id:int}", responses=problem_responses(403))
    async def delete_comment(self, request: UserRequest, comment_id: ObjectId, if_match: IfMatch = None) -> None:
        """Delete a comment; honours If-Match."""
        await comments.delete_comment(request.user.id, comment_id, expected_version=expected_version(if_match))
