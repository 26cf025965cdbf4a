"""Labels."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, patch, post
from litestar.dto import DTOData
from litestar.params import JSONBody

from app.controllers.params import (
    IdempotencyKeyHeader,
    IfMatch,
    LabelSort,
    Limit,
    ObjectId,
    Offset,
    UserRequest,
    created,
    expected_version,
    idempotency,
    with_etag,
)
from app.dto import LabelCreateDTO, LabelPatchDTO, LabelReadDTO, Page
from app.openapi import problem_responses
from app.services import labels
from app.tables import Label


class LabelController(Controller):
    path = "/api/v1/labels"
    tags = ["labels"]
    return_dto = LabelReadDTO

    @get("/")
    async def list_labels(
        self, request: UserRequest, sort: LabelSort = None, limit: Limit = 20, offset: Offset = 0
    ) -> Page[Label]:
        """The caller's labels. Sort by name, created_at, id (default name)."""
        items, total = await labels.list_labels(request.user.id, sort=sort, limit=limit, offset=offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @post("/", dto=LabelCreateDTO, responses=problem_responses(409))
    async def create_label(
        self,
        request: UserRequest,
        data: JSONBody[DTOData[Label]],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Label]:
        """Create a label; names are unique per user, case-insensitively (409)."""
        label, replayed = await labels.create_label(
            request.user.id, data.as_builtins(), idempotency=await idempotency(request, idempotency_key)
        )
        return created(request, label, f"{self.path}/{label.id}", label.version, replayed)

    @get("/{label_id:int}")
    async def get_label(self, request: UserRequest, label_id: ObjectId) -> Response[Label]:
        """One label."""
        label = await labels.get_label(request.user.id, label_id)
        return with_etag(label, label.version)

    @patch("/{label_id:int}", dto=LabelPatchDTO, responses=problem_responses(409))
    async def update_label(
        self, request: UserRequest, label_id: ObjectId, data: JSONBody[DTOData[Label]], if_match: IfMatch = None
    ) -> Response[Label]:
        """Rename or recolour a label; honours If-Match."""
        label = await labels.update_label(
            request.user.id, label_id, data.as_builtins(), expected_version=expected_version(if_match)
        )
        return with_etag(label, label.version)

    @delete("/{label_id:int}")
    async def delete_label(self, request: UserRequest, label_id: ObjectId, if_match: IfMatch = None) -> None:
        """Delete a label; it is detached from its tasks. Honours If-Match."""
        await labels.delete_label(request.user.id, label_id, expected_version=expected_version(if_match))
